"""The one train step, data-parallel over two fake CPU devices (pmap, shard_map, jit over a mesh),
equals the single-device step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("parallel_checks.py")


pytestmark = pytest.mark.long  # minutes: every check compiles on two (fake) devices

# The full step (gradients, Adam's moments, BatchNorm, the anomaly branch's cross-device means,
# the D-reset decision) on the naive net: pmap with and without anomalies, shard_map (default
# varying-axes checking; also with joint batches, whose BatchNorm statistics span normals and
# anomalies on every device) and jit over a mesh. The step is one code path for every backbone;
# what a backbone adds is its BatchNorm layers, checked for the U-Nets by a train-mode pass.
STEP_CASES = [("pmap", "naive", "normal-only"), ("pmap", "naive", "anomalies"), ("shard_map", "naive", "anomalies"),
              ("shard_map", "naive", "joint"), ("jit", "naive", "anomalies")]
FORWARD_BACKBONES = ["unet", "unetpp"]


def run_on_two_devices(*args: str) -> dict:
    # The subprocess inherits the suite's compile settings (conftest.py), the device count added.
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(CHECKS), *args], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def checks() -> dict:
    """Every case's comparison and the short run, from one process (jax starts once)."""
    return run_on_two_devices(*(":".join(case) for case in STEP_CASES),
                              *(f"forward:{backbone}" for backbone in FORWARD_BACKBONES), "run")


@pytest.mark.parametrize("mode,backbone,anomalies", STEP_CASES)
def test_one_step_on_two_devices_equals_one_device(checks, mode, backbone, anomalies):
    result = checks[f"{mode}:{backbone}:{anomalies}"]
    assert result["devices"] == 2
    # Parameters, BatchNorm statistics and Adam's moments alike: Adam's update is nearly
    # invariant to a scaled gradient, so parameters alone would not show one.
    assert max(result["differences"].values()) < 1e-3, result
    assert abs(result["g_mu_ratio"] - 1) < 1e-4, result
    assert result["g_loss"] < 1e-4, result


@pytest.mark.parametrize("backbone", FORWARD_BACKBONES)
def test_every_batchnorm_of_the_unets_averages_over_devices(checks, backbone):
    result = checks[f"forward:{backbone}"]
    assert result["devices"] == 2
    # Output and new running statistics, main and auxiliary BatchNorm; a layer left without
    # the device axis (statistics of half the batch) differs by about 0.1.
    assert max(result["differences"].values()) < 1e-5, result


def test_short_run_on_two_devices_matches_one_device_and_checkpoints_move_between_counts(checks):
    result = checks["run"]
    assert abs(result["auroc_2_epoch_1"] - result["auroc_1_epoch_1"]) < 1.0, result
    assert abs(result["auroc_resumed_on_1"] - result["auroc_1"]) < 1.0, result
    assert "does not split over 2 devices" in result["refused"]
