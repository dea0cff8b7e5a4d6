"""Every refusal of README's "Errors" section: wrong input gives a sentence, never a plausible number.

Most of these need no training: the checks run before any jitted code.
"""

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, checkpoint, score, score_step
from jaxad.files import write_json_atomic
from jaxad.train import check_images, create_train_state

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import score as score_cli  # noqa: E402

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
