"""Every refusal of docs/errors.md: wrong input gives a sentence, never a plausible number.

Most of these need no training: the checks run before any jitted code.
"""

import dataclasses
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, checkpoint, fit, load_run, report, score, score_step
from jaxad.grid import BenchmarkSpec, _row, classes_in_protocol, locked, run_dir_of
from jaxad.checkpoint import CheckpointError
from jaxad.commands import run as run_cli
from jaxad.commands import score as score_cli
from jaxad.data import OneClassSplit, load_folder, load_split
from jaxad.files import write_json_atomic
from jaxad.compat import numbered_from_one
from jaxad.runs import ConfigMismatchError, DataMismatchError, progress_postfix
from jaxad.metrics import auroc
from jaxad.train import check_images, create_train_state

ROOT = Path(__file__).resolve().parents[1]

TINY = ExperimentConfig(model=ModelConfig(width=0.125), train=TrainConfig(batch_size=32, epochs=1))


@pytest.fixture(scope="module")
def state():
    return create_train_state(TINY, jax.random.key(0))


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory, state):
    """A run directory holding an untrained model: enough for load_run and score.py."""
    run_dir = tmp_path_factory.mktemp("run")
    write_json_atomic(run_dir / "config.json", TINY.to_dict())
    manager = checkpoint.checkpoint_manager(run_dir / "checkpoints")
    checkpoint.save(manager, 0, state.arrays(), {"epochs": []})
    manager.wait_until_finished()
    manager.close()
    return run_dir


def unit_images(n: int = 4, channels: int = 1, side: int = 32) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, side, side, channels)).astype(np.float32)


# ------------------------------------------------------------------ images: float32 NHWC in [-1, 1]

@pytest.mark.parametrize("bad,message", [
    ((unit_images() * 127.5 + 127.5).astype(np.uint8), "dtype uint8.*127.5"),
    (unit_images() * 127.5 + 127.5, r"\[-1, 1\].*x / 127.5 - 1"),
    (unit_images() * 3.0, r"\[-1, 1\]"),
    (unit_images()[0], r"one image: pass images\[None\]"),
])
def test_images_outside_the_float_unit_range_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        check_images(bad, TINY.model)


def test_images_within_rounding_of_the_unit_range_pass():
    check_images(np.clip(unit_images() * 1.0005, -1.0005, 1.0005), TINY.model)


def test_fit_warns_when_every_pixel_lies_in_0_1():
    split = load_split(TINY.data)
    unit = dataclasses.replace(split, train_normal=(split.train_normal + 1) / 2,
                               test_images=(split.test_images + 1) / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # stop at the warning, before any training
        with pytest.raises(UserWarning, match=r"\[0, 1\], not \[-1, 1\].*x \* 2 - 1"):
            fit(TINY, unit, progress=False)


@pytest.mark.parametrize("bad,message", [
    (unit_images(channels=3), "1-channel"),
    (unit_images(side=28), "32x32"),
    (unit_images()[0], "NHWC"),
    (np.full((2, 32, 32, 1), np.nan, np.float32), "NaN"),
    (unit_images() * 127.5 + 127.5, r"\[-1, 1\]"),
])
def test_score_and_score_step_check_their_images(state, bad, message):
    with pytest.raises(ValueError, match=message):
        score(state, bad)
    with pytest.raises(ValueError, match=message):
        score_step(state, bad)


def test_score_step_under_jit_is_not_checked_but_score_is_its_checked_entry_point(state):
    images = unit_images()
    np.testing.assert_allclose(jax.jit(score_step)(state, images), score(state, images), rtol=1e-5)


def test_score_command_refuses_uint8_npy_input(untrained_run, tmp_path, capsys):
    np.save(tmp_path / "pixels.npy", (unit_images() * 127.5 + 127.5).astype(np.uint8))
    assert score_cli.main(["--run", str(untrained_run), "--images", str(tmp_path / "pixels.npy"),
                           "--out", str(tmp_path / "out"), "--no-maps"]) == 2
    assert "uint8" in capsys.readouterr().err
    np.save(tmp_path / "unit.npy", unit_images().astype(np.float64))
    assert score_cli.main(["--run", str(untrained_run), "--images", str(tmp_path / "unit.npy"),
                           "--out", str(tmp_path / "out"), "--no-maps"]) == 0


# ------------------------------------------------------------------ labels: the numbers 0 and 1

@pytest.mark.parametrize("labels,message", [
    (np.array(["normal", "anomaly", "normal", "anomaly"]), "must be numbers"),
    (np.array([0, 2, 0, 2]), r"got the values \[0, 2\]"),
])
def test_labels_other_than_0_and_1_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        auroc(labels, np.array([0.1, 0.9, 0.2, 0.8]))
    with pytest.raises(ValueError, match=message):
        OneClassSplit(unit_images(), unit_images(0), unit_images(), labels, np.zeros(4, np.int32))


def test_labels_as_floats_or_booleans_are_numbers():
    assert auroc(np.array([0.0, 1.0, 0.0, 1.0]), np.array([0.1, 0.9, 0.2, 0.8])) == 100.0
    assert auroc(np.array([False, True, False, True]), np.array([0.1, 0.9, 0.2, 0.8])) == 100.0


def test_a_split_with_fewer_labels_than_test_images_is_refused():
    with pytest.raises(ValueError, match="4 test images but 3 test labels"):
        OneClassSplit(unit_images(), unit_images(0), unit_images(), np.array([0, 1, 0]), np.zeros(3))


# ------------------------------------------------------------------ fit's arguments and run directories

def test_fit_with_a_path_where_the_split_belongs_says_run_dir():
    with pytest.raises(TypeError, match="run_dir="):
        fit(TINY, "runs/x")


TWO_EPOCHS = TINY.replace(**{"train.epochs": 2})


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished two-epoch run on digits class 0, and its result."""
    run_dir = tmp_path_factory.mktemp("trained")
    return run_dir, fit(TWO_EPOCHS, load_split(TWO_EPOCHS.data), run_dir=run_dir, progress=False)


def test_run_directory_records_its_data_and_refuses_other_data(trained_run):
    run_dir, result = trained_run
    assert (run_dir / "data.json").exists()
    split = load_split(TWO_EPOCHS.data)
    other = dataclasses.replace(split, train_normal=split.train_normal[:-1])
    with pytest.raises(DataMismatchError, match="other data .*train_normal"):
        fit(TWO_EPOCHS, other, run_dir=run_dir, progress=False)
    relabelled = dataclasses.replace(split, test_labels=1 - split.test_labels)
    with pytest.raises(DataMismatchError, match="test_labels"):
        fit(TWO_EPOCHS, relabelled, run_dir=run_dir, progress=False)
    again = fit(TWO_EPOCHS, split, run_dir=run_dir, progress=False)  # the same data: the finished run
    assert again.final_auroc == result.final_auroc


def test_config_mismatch_names_the_fields_that_differ(trained_run):
    run_dir, _ = trained_run
    with pytest.raises(ConfigMismatchError) as err:
        fit(TWO_EPOCHS.replace(**{"loss.w_adcon": 0.0}), load_split(TWO_EPOCHS.data), run_dir=run_dir,
            progress=False)
    assert "loss.w_adcon: 15.0 in the run directory, 0.0 now" in str(err.value)
    assert "w_con" not in str(err.value)  # only the fields that differ


def test_epochs_count_from_1_in_files_results_and_checkpoints(trained_run):
    run_dir, result = trained_run
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [h["epoch"] for h in result.history] == [1, 2]
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["best_epoch"] == result.best_epoch in (1, 2) and saved["epochs_count_from"] == 1
    assert result.best_auroc == history[result.best_epoch - 1]["auroc"]
    assert {int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()} == {1, 2}
    np.testing.assert_array_equal(score(load_run(run_dir, epoch=2)[0], unit_images()),
                                  score(result.state, unit_images()))  # checkpoint 2: after epoch 2


def test_run_directories_written_with_epochs_from_0_still_read(tmp_path):
    assert [r["epoch"] for r in numbered_from_one([{"epoch": 0}, {"epoch": 1}])] == [1, 2]
    assert numbered_from_one([{"epoch": 1}, {"epoch": 2}]) == [{"epoch": 1}, {"epoch": 2}]
    cfg = BenchmarkSpec(TINY, classes=(0,), seeds=(0,)).runs()[0]
    run_dir = run_dir_of(tmp_path, cfg)
    run_dir.mkdir(parents=True)
    old = {"status": "complete", "final_auroc": 90.0, "best_auroc": 95.0, "best_epoch": 0, "epochs": 2,
           "d_resets": 0.0}
    write_json_atomic(run_dir / "result.json", old)
    assert _row(cfg, run_dir, tmp_path)["best_epoch"] == 1  # the tables count from 1
    assert json.loads((run_dir / "result.json").read_text()) == old  # the file is left as it is


def damage_checkpoint(run_dir: Path, epoch: int) -> None:
    for f in (run_dir / "checkpoints" / str(epoch)).rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "state" in f.parts:
            f.write_bytes(b"\0garbage")


def test_resuming_falls_back_from_a_damaged_checkpoint_to_the_previous_one(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    damage_checkpoint(run_dir, 2)
    with pytest.raises(CheckpointError, match=r"epoch\(s\) \[1\]: load_run\(run_dir, epoch=1\)"):
        load_run(run_dir)
    load_run(run_dir, epoch=1)
    with pytest.warns(UserWarning, match="epoch 2 cannot be read.*resuming from epoch 1"):
        resumed = fit(TWO_EPOCHS, load_split(TWO_EPOCHS.data), run_dir=run_dir, progress=False)
    assert resumed.final_auroc == trained_run[1].final_auroc  # epoch 2 retrained, the same numbers
    assert (run_dir / "corrupt_checkpoints" / "2").is_dir()
    load_run(run_dir)  # the retrained epoch 2 reads back


def test_the_score_command_names_an_intact_epoch_and_scores_with_it(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    damage_checkpoint(run_dir, 2)
    np.save(tmp_path / "x.npy", unit_images())
    command = ["--run", str(run_dir), "--images", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), "--no-maps"]
    assert score_cli.main(command) == 2
    assert "score.py --epoch 1 loads one" in capsys.readouterr().err
    assert score_cli.main(command + ["--epoch", "1"]) == 0


def test_a_damaged_only_checkpoint_says_to_restart_from_scratch(untrained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(untrained_run, run_dir)
    damage_checkpoint(run_dir, 0)
    with pytest.raises(CheckpointError, match="no other checkpoint is left: delete"):
        load_run(run_dir)


# ------------------------------------------------------------------ which checkpoints are kept

def kept_epochs(run_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def test_the_latest_two_epochs_and_the_test_selected_one_are_kept_and_load(state, tmp_path):
    write_json_atomic(tmp_path / "config.json", TINY.to_dict())
    manager = checkpoint.checkpoint_manager(tmp_path / "checkpoints")  # the default
    history = []
    for epoch, value in enumerate([50.0, 90.0, 70.0, 90.0, 60.0, 65.0], 1):  # a tie: the first is chosen
        history.append({"epoch": epoch, "auroc": value})
        checkpoint.save(manager, epoch, state.arrays(), {"epochs": list(history)})
    manager.wait_until_finished()
    manager.close()
    assert kept_epochs(tmp_path) == [2, 5, 6]  # no training-normal score recorded: no third kept
    manager = checkpoint.checkpoint_manager(tmp_path / "checkpoints")
    assert checkpoint.restore(manager, state.arrays(), "best")[2] == 2
    with pytest.raises(CheckpointError, match="records its training-normal score"):
        checkpoint.restore(manager, state.arrays(), "selected")
    manager.close()
    for epoch in (2, 6, "best", "final", None):
        load_run(tmp_path, epoch=epoch)
    with pytest.raises(CheckpointError, match=r"no checkpoint of epoch 3 .*saved epochs: \[2, 5, 6\] "
                                              r"\(6 the latest, 2 the test-selected\).*keep_checkpoints=None"):
        load_run(tmp_path, epoch=3)


def test_fit_keeps_the_final_and_both_selected_checkpoints_and_names_them(tmp_path):
    cfg = TINY.replace(**{"train.epochs": 3})
    with pytest.raises(ValueError, match="keep_checkpoints is how many"):
        fit(cfg, run_dir=tmp_path, progress=False, keep_checkpoints=0)
    result = fit(cfg, run_dir=tmp_path, progress=False, keep_checkpoints=1)
    # The label-free selected epoch: the lowest training-normal score, read from the history alone.
    normal_scores = [h["train_normal_score"] for h in result.history]
    assert result.selected_epoch == normal_scores.index(min(normal_scores)) + 1
    assert result.selected_auroc == result.history[result.selected_epoch - 1]["auroc"]
    assert kept_epochs(tmp_path) == sorted({3, result.best_epoch, result.selected_epoch})
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["checkpoints"] == {"final": "checkpoints/3", "test_selected": f"checkpoints/{result.best_epoch}",
                                    "selected": f"checkpoints/{result.selected_epoch}"}
    assert (saved["selected_epoch"], saved["selected_auroc"]) == (result.selected_epoch, result.selected_auroc)
    for epoch in ("best", "selected"):
        state, _ = load_run(tmp_path, epoch=epoch)
        wanted = result.best_epoch if epoch == "best" else result.selected_epoch
        assert float(np.mean(score(state, unit_images()))) == pytest.approx(
            float(np.mean(score(load_run(tmp_path, epoch=wanted)[0], unit_images()))))
    np.save(tmp_path / "x.npy", unit_images())
    for epoch in ("best", "selected"):
        assert score_cli.main(["--run", str(tmp_path), "--images", str(tmp_path / "x.npy"), "--out",
                               str(tmp_path / "o"), "--no-maps", "--epoch", epoch]) == 0


def test_the_label_free_selected_epoch_is_kept_beside_the_latest_and_the_test_selected(state, tmp_path):
    manager = checkpoint.checkpoint_manager(tmp_path / "checkpoints")
    history = []
    # (test AUROC, training-normal score): the lowest score at epoch 3, a tie with epoch 5
    for epoch, (value, normal_score) in enumerate([(50.0, 9.0), (90.0, 8.0), (70.0, 5.0), (60.0, 30.0),
                                                   (65.0, 5.0), (66.0, 7.0), (64.0, 6.0)], 1):
        history.append({"epoch": epoch, "auroc": value, "train_normal_score": normal_score})
        checkpoint.save(manager, epoch, state.arrays(), {"epochs": list(history)})
    manager.wait_until_finished()
    assert kept_epochs(tmp_path) == [2, 3, 6, 7]
    assert checkpoint.restore(manager, state.arrays(), "selected")[2] == 3
    assert "3 the label-free selected" in checkpoint.saved_epochs(manager)
    manager.close()


def test_the_runner_takes_the_number_of_checkpoints_to_keep():
    assert run_cli.parse_args(["--keep-checkpoints", "all"]).keep_checkpoints is None
    assert run_cli.parse_args(["--keep-checkpoints", "5"]).keep_checkpoints == 5
    assert run_cli.parse_args([]).keep_checkpoints == 2
    with pytest.raises(SystemExit):
        run_cli.parse_args(["--keep-checkpoints", "0"])


# ------------------------------------------------------------------ configurations, when they are built

def test_model_and_data_shapes_are_checked_when_the_config_is_built(capsys):
    with pytest.raises(ValueError, match=r"ModelConfig.image_size 64 and DataConfig.image_size 32 differ"):
        TINY.replace(**{"model.image_size": 64})
    with pytest.raises(ValueError, match=r"the naive backbone takes images of side 32 \* 2\^k .*got 48"):
        ModelConfig(image_size=48)
    assert run_cli.main(["--dataset", "mnist", "--channels", "3", "--no-progress"]) == 2
    assert "--channels 3 but mnist's images have 1; leave --channels out" in capsys.readouterr().err


# ------------------------------------------------------------------ the benchmark runner's command line

def run_command(*argv: str) -> int:
    return run_cli.main([*argv, "--no-progress"])


def test_a_class_named_twice_and_zero_seeds_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="name 3 more than once"):
        BenchmarkSpec(TINY, classes=(3, 3))
    assert run_command("--dataset", "digits", "--classes", "3", "3", "--out", str(tmp_path)) == 2
    assert "name 3 more than once" in capsys.readouterr().err
    assert run_command("--dataset", "digits", "--seeds", "0", "--out", str(tmp_path)) == 2
    assert "--seeds is how many seeds to run per setting, at least 1" in capsys.readouterr().err
    assert not (tmp_path / "benchmark.json").exists()  # refused before any work


def test_gamma_with_a_small_batch_says_which_setting_to_change(tmp_path, capsys):
    advice = r"min_anomalies_per_batch = 32; lower TrainConfig.min_anomalies_per_batch \(run.py " \
             r"--min-anomalies-per-batch\), e.g. to 4 .* or raise the batch size above 32"
    with pytest.raises(ValueError, match=advice):
        fit(TINY.replace(**{"data.gamma": 0.05}), progress=False)  # refused before any training
    assert run_command("--dataset", "digits", "--gammas", "0.05", "--batch-size", "32", "--out", str(tmp_path)) == 2
    assert "--min-anomalies-per-batch" in capsys.readouterr().err
    assert not (tmp_path / "benchmark.json").exists()
    args = run_cli.parse_args(["--gammas", "0.05", "--min-anomalies-per-batch", "4"])  # the demo's batch of 32
    assert run_cli.build_spec(args).base.train.min_anomalies_per_batch == 4


def test_a_finished_benchmark_run_again_says_so_and_prints_its_table(tmp_path, capsys):
    argv = ["--dataset", "digits", "--classes", "0", "--seeds", "1", "--epochs", "1", "--batch-size", "32",
            "--width", "0.125", "--out", str(tmp_path)]
    spec = run_cli.build_spec(run_cli.parse_args(argv))
    write_json_atomic(tmp_path / "benchmark.json", spec.identity())
    assert run_command(*argv) == 2  # unfinished: asks for --resume
    assert "unfinished (0 of 1 runs done): pass --resume" in capsys.readouterr().err
    run_dir = run_dir_of(tmp_path, spec.runs()[0])
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / "result.json", {"status": "complete", "final_auroc": 91.0, "best_auroc": 95.0,
                                                "best_epoch": 1, "epochs": 1, "d_resets": 0.0, "epochs_count_from": 1})
    (tmp_path / "results.md").write_text("# the table\n")
    assert run_command(*argv) == 0  # finished: said so, and its table, as the documented command is run again
    out = capsys.readouterr().out
    assert "holds this benchmark, finished: 1 run(s); nothing to train" in out and "# the table" in out
    assert (tmp_path / "results.md").read_text() == "# the table\n"  # nothing rewritten


def write_image_folder(root: Path, counts: dict[str, int]) -> Path:
    from PIL import Image
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.random.default_rng(i).integers(0, 255, (16, 16), np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_a_folder_dataset_is_one_class_and_its_table_is_not_partial(tmp_path):
    root = write_image_folder(tmp_path, {"normal": 3, "abnormal": 2})
    dataset = load_folder(root / "normal", root / "abnormal")
    assert classes_in_protocol(dataset) == 1
    rows = [{"gamma": 0.0, "normal_class": 0, "seed": 0, "status": "complete", "final_auroc": 80.0,
             "best_auroc": 90.0}]
    table = report.markdown_tables(rows, "folder", "naive", classes_in_protocol(dataset), 1)
    assert "PARTIAL" not in table and "paper" not in table.split("ours (test-selected)")[1]


def test_missing_data_folders_are_named(tmp_path, capsys):
    write_image_folder(tmp_path / "mine", {"abnormal": 1})
    assert run_command("--dataset", "folder", "--data-dir", str(tmp_path / "mine"), "--out", str(tmp_path / "a")) == 2
    assert "has no normal/: dataset 'folder' expects DIR/normal/" in capsys.readouterr().err
    assert run_command("--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")) == 2
    assert f"data_dir {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err


def test_a_damaged_benchmark_json_is_named(tmp_path, capsys):
    (tmp_path / "benchmark.json").write_text('{"base": {"data": ')
    assert run_command("--dataset", "digits", "--resume", "--out", str(tmp_path)) == 2
    assert f"{tmp_path / 'benchmark.json'} is damaged, not valid JSON" in capsys.readouterr().err


def test_a_second_process_on_the_same_out_directory_is_refused(tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_command("--dataset", "digits", "--classes", "0", "--seeds", "1", "--epochs", "1",
                           "--width", "0.125", "--resume", "--out", str(tmp_path)) == 2
        assert "another process is running the benchmark in" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    with locked(tmp_path):  # released when its holder ends, even by kill -9
        pass


def test_the_runner_exits_non_zero_naming_the_runs_that_failed(tmp_path, capsys):
    assert run_command("--dataset", "digits", "--classes", "0", "--seeds", "1", "--epochs", "1",
                       "--batch-size", "32", "--width", "0.125", "--w-adv", "nan", "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "1 of 1 run(s) failed" in err and "runs/gamma0/class0/seed0: epoch 1: loss" in err


# ------------------------------------------------------------------ what a new user reads

def test_one_class_split_is_exported_for_your_own_arrays():
    import jaxad
    assert jaxad.OneClassSplit is OneClassSplit and "OneClassSplit" in jaxad.__all__


def test_the_progress_bar_names_its_units():
    assert progress_postfix([{"auroc": 97.25, "d_loss": 1.44, "g_loss": 40.2}]) == {
        "AUROC %": "97.2", "D loss": "1.44", "G loss": "40.2"}
    assert progress_postfix([{"auroc": 97.0, "d_loss": 1.0, "g_loss": 4.0}] * 2) == {"AUROC %": "97.0/97.0"}
    # The epoch's split of time: the shared train steps, then every model's evaluation.
    timed = {"auroc": 97.0, "d_loss": 1.0, "g_loss": 4.0, "train_seconds": 40.3, "eval_seconds": 4.4}
    assert progress_postfix([timed] * 2) == {"AUROC %": "97.0/97.0", "train/eval s": "40/9"}


def test_the_module_behind_fit_is_reachable_by_its_own_name():
    import jaxad
    import jaxad.runs
    assert jaxad.fit is jaxad.runs.fit and callable(jaxad.runs.fit_many)  # no module rebound to a function
