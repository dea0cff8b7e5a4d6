"""The command line generated from the config dataclasses: every field a flag, defaults in one place."""

import argparse
import dataclasses
import importlib
import runpy
import tomllib
from pathlib import Path
from typing import Literal

import pytest

from jaxad import ExperimentConfig, ModelConfig, TrainConfig
from jaxad.cli import CONFIG_SECTIONS, add_config_flags, config_changes, config_flags, flag_name, flag_words
from jaxad.commands import run as run_command
from jaxad.data import DATASETS
from jaxad.models import BACKBONES

ROOT = Path(__file__).resolve().parents[1]

# Every flag the runner has been spelled with (README, docs/, results.md of earlier runs).
FLAGS_IN_USE = ("--dataset", "--backbone", "--classes", "--seeds", "--gammas", "--anomaly-classes", "--epochs",
                "--batch-size", "--min-anomalies-per-batch", "--lr", "--w-adv", "--w-con", "--w-adcon", "--w-lat",
                "--anomaly-recon-pair", "--pseudo-anomaly-bn", "--detach-pseudo", "--ema-decay", "--no-freeze-bn",
                "--paper-protocol", "--width", "--image-size", "--data-dir", "--source", "--out", "--resume",
                "--keep-checkpoints", "--devices", "--models-at-once", "--no-progress")


@dataclasses.dataclass(frozen=True)
class Toy:
    rate: float = dataclasses.field(default=0.5, metadata={"help": "how fast", "flag": "r"})
    steps: int = 3
    kind: Literal["a", "b"] = "a"
    on: bool = True
    name: str | None = None
    ids: tuple[int, ...] | None = None
    limit: float | None = 2.0


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, {"toy": Toy})
    return parser


def test_the_generator_maps_each_type_to_its_flag():
    parser = toy_parser()
    assert config_changes(parser.parse_args([]), {"toy": Toy}) == {}  # left out: the dataclass default holds
    args = parser.parse_args(["--r", "0.1", "--steps", "7", "--kind", "b", "--no-on", "--name", "x", "--ids", "1", "2"])
    assert config_changes(args, {"toy": Toy}) == {"toy.rate": 0.1, "toy.steps": 7, "toy.kind": "b", "toy.on": False,
                                                  "toy.name": "x", "toy.ids": (1, 2)}
    with pytest.raises(SystemExit):
        parser.parse_args(["--kind", "c"])  # a Literal's values are the choices
    assert "how fast (default: 0.5)" in parser.format_help()


def test_a_number_that_may_be_none_is_turned_off_with_none():
    parser = toy_parser()
    assert config_changes(parser.parse_args(["--limit", "none"]), {"toy": Toy}) == {"toy.limit": None}
    assert config_changes(parser.parse_args(["--limit", "3"]), {"toy": Toy}) == {"toy.limit": 3.0}
    assert config_changes(parser.parse_args([]), {"toy": Toy}) == {}  # left out is not "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["--limit", "off"])
    assert "(default: 2.0; none: off)" in " ".join(parser.format_help().split())
    cfg = run_command.build_spec(run_command.parse_args(["--g-grad-clip-factor", "none"])).base
    assert cfg.train.g_grad_clip_factor is None


def test_flag_words_say_a_saved_value_on_the_command_line():
    # The inverse of config_changes: what a refused --out directory asks to add.
    for dotted, value in [("train.epochs", 7), ("train.g_grad_clip_factor", None), ("train.detach_pseudo", False),
                          ("train.learning_rate", 1e-3), ("data.anomaly_classes", [1, 2]), ("paper_protocol", True)]:
        words = flag_words(dotted, value)
        assert words is not None, dotted
        parsed = config_changes(run_command.parse_args(words))
        assert parsed[dotted] == (tuple(value) if isinstance(value, list) else value), (dotted, words)
    assert flag_words("train.no_such_field", 1) is None
    assert flag_words("data.data_dir", None) is None  # a path has no "none"


def test_every_config_field_is_a_runner_flag():
    options = {o for a in run_command.parser()._actions for o in a.option_strings}
    generated = config_flags(CONFIG_SECTIONS, run_command.GRID_FIELDS)
    for section, cls in CONFIG_SECTIONS.items():
        for field in dataclasses.fields(cls):
            if field.name in generated:
                assert flag_name(field) in options, f"{section}.{field.name}"
    # the grid flags stand for the fields the benchmark sets run by run
    assert set(config_flags(CONFIG_SECTIONS)) - set(config_flags(CONFIG_SECTIONS, run_command.GRID_FIELDS)) == {
        "dataset", "normal_class", "gamma", "seed"}
    assert {"--classes", "--gammas", "--seeds", "--dataset"} <= options
    assert set(FLAGS_IN_USE) <= options


def test_defaults_are_the_dataclasses_and_flags_reach_every_section():
    base = run_command.build_spec(run_command.parse_args(["--dataset", "mnist"])).base
    assert base == ExperimentConfig(data=dataclasses.replace(ExperimentConfig().data, dataset="mnist"))
    argv = ["--dataset", "cifar10", "--backbone", "unet", "--image-size", "64", "--latent-dim", "50", "--w-adcon", "0",
            "--eps", "1e-6", "--lr", "1e-3", "--beta1", "0.9", "--beta2", "0.99", "--d-reset-threshold", "0",
            "--no-freeze-bn", "--detach-pseudo", "--ema-decay", "0.9", "--pseudo-anomaly-bn", "shared",
            "--anomaly-classes", "1", "2", "--source", "raw", "--data-dir", "d", "--paper-protocol"]
    cfg = run_command.build_spec(run_command.parse_args(argv)).base
    assert (cfg.model.backbone, cfg.model.channels, cfg.model.image_size, cfg.data.image_size) == ("unet", 3, 64, 64)
    assert (cfg.model.latent_dim, cfg.loss.w_adcon, cfg.loss.eps) == (50, 0.0, 1e-6)
    assert (cfg.train.learning_rate, cfg.train.beta1, cfg.train.beta2, cfg.train.d_reset_threshold) == (1e-3, 0.9, 0.99, 0)
    assert (cfg.train.freeze_bn, cfg.train.detach_pseudo, cfg.train.ema_decay) == (False, True, 0.9)
    assert cfg.model.pseudo_anomaly_bn == "shared"
    assert (cfg.data.anomaly_classes, cfg.data.source, cfg.data.data_dir, cfg.paper_protocol) == ((1, 2), "raw", "d", True)


def test_the_help_shows_the_dataclass_defaults_read_when_it_is_built(monkeypatch):
    help_text = " ".join(run_command.parser().format_help().split())
    assert f"(default: {ModelConfig().pseudo_anomaly_bn})" in help_text
    monkeypatch.setattr(TrainConfig.__dataclass_fields__["ema_decay"], "default", 0.123)  # a default changed
    assert "(default: 0.123)" in " ".join(run_command.parser().format_help().split())


def test_the_demo_keeps_its_small_setting_unless_a_flag_says_otherwise():
    spec = run_command.build_spec(run_command.parse_args([]))
    assert (spec.base.data.dataset, spec.seeds, spec.base.train.epochs, spec.base.train.batch_size,
            spec.base.model.width) == ("digits", (0,), 30, 32, 0.25)
    spec = run_command.build_spec(run_command.parse_args(["--epochs", "2", "--width", "0.5"]))
    assert (spec.base.train.epochs, spec.base.model.width, spec.base.train.batch_size) == (2, 0.5, 32)


def test_registries_give_choices_channels_and_classes():
    parser = run_command.parser()
    choices = {a.dest: a.choices for a in parser._actions}
    assert tuple(choices["backbone"]) == tuple(BACKBONES) and tuple(choices["dataset"]) == tuple(DATASETS)
    spec = run_command.build_spec(run_command.parse_args(["--dataset", "cifar100"]))
    assert spec.classes == tuple(range(20)) and spec.base.model.channels == 3
    with pytest.raises(ValueError, match="--channels 3 but mnist's images have 1"):
        run_command.build_spec(run_command.parse_args(["--dataset", "mnist", "--channels", "3"]))


def test_a_folder_dataset_takes_its_channels_from_the_image_headers(tmp_path):
    from PIL import Image
    for sub, mode in (("normal", "L"), ("abnormal", "RGB")):
        (tmp_path / sub).mkdir()
        Image.new(mode, (8, 8)).save(tmp_path / sub / "0.png")
    spec = run_command.build_spec(run_command.parse_args(["--dataset", "folder", "--data-dir", str(tmp_path)]))
    assert spec.base.model.channels == 3 and spec.classes == (0,)


def test_model_and_data_image_sides_are_checked_when_the_config_is_built():
    with pytest.raises(ValueError, match="ModelConfig.image_size 64 and DataConfig.image_size 32 differ"):
        ExperimentConfig().replace(**{"model.image_size": 64})
    assert ExperimentConfig().replace(**{"model.image_size": 64, "data.image_size": 64}).model.image_size == 64


@pytest.mark.parametrize("script", ["jaxad-run", "jaxad-score", "jaxad-redraw"])
def test_console_scripts_point_at_the_commands(script, capsys):
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"][script]
    module, function = target.split(":")
    assert callable(getattr(importlib.import_module(module), function))
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0 and "--help" in capsys.readouterr().out


@pytest.mark.parametrize("script, command", [("run", "run"), ("score", "score"), ("images_demo", "images_demo")])
def test_the_scripts_in_experiments_are_the_commands(script, command):
    module = runpy.run_path(str(ROOT / "experiments" / f"{script}.py"))  # as a module, not as __main__
    assert module["main"] is importlib.import_module(f"jaxad.commands.{command}").main
