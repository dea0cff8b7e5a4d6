"""The one train step, data-parallel over two fake CPU devices (pmap, shard_map, jit over a mesh),
equals the single-device step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("parallel_checks.py")


pytestmark = pytest.mark.slow  # minutes: every check compiles on two (fake) devices

# pmap: every backbone with anomalies (all collectives: BatchNorm, gradients, the anomaly
# branch's cross-device means, the D-reset decision); the normal-only branch on the naive net.
# shard_map (default varying-axes checking) and jit over a mesh: the naive net with anomalies.
CASES = [("pmap", "naive", "normal-only"), ("pmap", "naive", "anomalies"), ("pmap", "unet", "anomalies"),
         ("pmap", "unetpp", "anomalies"), ("shard_map", "naive", "anomalies"), ("jit", "naive", "anomalies")]


def run_on_two_devices(*args: str) -> dict:
    # Full optimisation here, unlike the rest of the suite (conftest.py): with most XLA passes
    # off, the UNet++ pmap step's gradient differs from the one-device step by 0.2% (4% in
    # parameters after Adam's first step), with them 2e-6; not yet understood (BUILD_NOTES).
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "JAX_DISABLE_MOST_OPTIMIZATIONS": "0"}
    done = subprocess.run([sys.executable, str(CHECKS), *args], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def step_checks() -> dict:
    """Every case's comparison, from one process (jax starts and compiles once)."""
    return run_on_two_devices("steps", *(":".join(case) for case in CASES))


@pytest.mark.parametrize("mode,backbone,anomalies", CASES)
def test_one_step_on_two_devices_equals_one_device(step_checks, mode, backbone, anomalies):
    result = step_checks[f"{mode}:{backbone}:{anomalies}"]
    assert result["devices"] == 2
    # Parameters, BatchNorm statistics and Adam's moments alike: Adam's update is nearly
    # invariant to a scaled gradient, so parameters alone would not show one.
    assert max(result["differences"].values()) < 1e-3, result
    assert abs(result["g_mu_ratio"] - 1) < 1e-4, result
    assert result["g_loss"] < 1e-4, result


def test_short_run_on_two_devices_matches_one_device_and_checkpoints_move_between_counts():
    result = run_on_two_devices("run")
    assert abs(result["auroc_2"] - result["auroc_1"]) < 1.0, result
    assert abs(result["auroc_resumed_on_1"] - result["auroc_1"]) < 1.0, result
    assert "does not split over 2 devices" in result["refused"]
