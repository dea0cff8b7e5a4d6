"""The one train step, data-parallel over two fake CPU devices, equals the single-device step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("parallel_checks.py")


def run_on_two_devices(*args: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(CHECKS), *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Every backbone with anomalies (all collectives: BatchNorm, gradients, the anomaly branch's
# cross-device means, the D-reset decision); the normal-only branch on the naive net.
@pytest.mark.parametrize("backbone,anomalies", [("naive", "normal-only"), ("naive", "anomalies"),
                                                ("unet", "anomalies"), ("unetpp", "anomalies")])
def test_one_step_on_two_devices_equals_one_device(backbone, anomalies):
    result = run_on_two_devices("step", backbone, anomalies)
    assert result["devices"] == 2
    assert result["params"] < 1e-3, result
    assert result["g_loss"] < 1e-4, result


def test_short_run_on_two_devices_matches_one_device_and_checkpoints_move_between_counts():
    result = run_on_two_devices("run")
    assert abs(result["auroc_2"] - result["auroc_1"]) < 1.0, result
    assert abs(result["auroc_resumed_on_1"] - result["auroc_1"]) < 1.0, result
    assert "does not split over 2 devices" in result["refused"]
