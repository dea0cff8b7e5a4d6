"""Checks of the data-parallel step, run by tests/test_parallel.py in a process that sees two
fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2 must be set before jax
is imported, hence a separate process). Prints one JSON object."""

import json
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, fit
from jaxad.data import load_split
from jaxad.parallel import AXIS, replicate, unreplicate
from jaxad.train import create_train_state, train_step


def max_relative_difference(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-12)), a, b)
    return max(jax.tree.leaves(diffs))


def one_step_1_vs_2_devices(backbone: str, with_anomalies: bool) -> dict:
    cfg = ExperimentConfig(model=ModelConfig(backbone=backbone, channels=1, width=0.125))
    key = jax.random.key(3)
    batch = {"normal": jax.random.uniform(jax.random.key(1), (8, 32, 32, 1), minval=-1, maxval=1)}
    if with_anomalies:
        batch["anomaly"] = jax.random.uniform(jax.random.key(2), (4, 32, 32, 1), minval=-1, maxval=1)
    single, single_metrics = jax.jit(train_step)(create_train_state(cfg, jax.random.key(0)), batch, key)

    state = replicate(create_train_state(cfg, jax.random.key(0), axis_name=AXIS), 2)
    sharded = jax.tree.map(lambda x: x.reshape((2, x.shape[0] // 2) + x.shape[1:]), batch)
    step = jax.pmap(train_step, axis_name=AXIS, in_axes=(0, 0, None))
    multi, multi_metrics = step(state, sharded, key)
    multi = unreplicate(multi)
    return {"params": max_relative_difference(multi.arrays(), single.arrays()),
            "g_loss": abs(float(multi_metrics["g_loss"][0]) / float(single_metrics["g_loss"]) - 1),
            "devices": jax.local_device_count()}


def short_run_1_vs_2_devices() -> dict:
    cfg = ExperimentConfig(model=ModelConfig(width=0.125), train=TrainConfig(batch_size=32, epochs=2))
    split = load_split(cfg.data)
    one = fit(cfg, split, devices=1, progress=False)
    two = fit(cfg, split, devices=2, progress=False)
    # A checkpoint written on 2 devices resumes on 1.
    with tempfile.TemporaryDirectory() as run_dir:
        fit(cfg.replace(**{"train.epochs": 1}), split, run_dir=run_dir, devices=2, progress=False)
        import shutil, pathlib
        config = pathlib.Path(run_dir) / "config.json"
        config.write_text(cfg.to_json())  # same run, now asked for 2 epochs
        (pathlib.Path(run_dir) / "result.json").unlink()
        resumed = fit(cfg, split, run_dir=run_dir, devices=1, progress=False)
    try:
        bad = cfg.replace(**{"train.batch_size": 33})
        fit(bad, split, devices=2, progress=False)
        refused = ""
    except ValueError as err:
        refused = str(err)
    return {"auroc_1": one.final_auroc, "auroc_2": two.final_auroc, "auroc_resumed_on_1": resumed.final_auroc,
            "refused": refused}


if __name__ == "__main__":
    name = sys.argv[1]
    if name == "step":
        out = one_step_1_vs_2_devices(sys.argv[2], sys.argv[3] == "anomalies")
    else:
        out = short_run_1_vs_2_devices()
    print(json.dumps(out))
