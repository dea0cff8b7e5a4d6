"""Checks of the data-parallel step, run by tests/test_parallel.py in a process that sees two
fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2 must be set before jax
is imported, hence a separate process). Prints one JSON object."""

import json
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, fit
from jaxad.data import load_split
from jaxad.models import build_generator
from jaxad.parallel import (AXIS, device_mesh, replicate, shard_map_train_step, sharded_jit_train_step,
                            unreplicate)
from jaxad.train import _apply, _init_variables, create_train_state, train_step


def max_relative_difference(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-12)), a, b)
    return max(jax.tree.leaves(diffs), default=0.0)


def two_device_step(mode: str, cfg: ExperimentConfig, batch: dict, key: jax.Array):
    """One step on 2 devices, the state and metrics returned as one device's copy."""
    if mode == "pmap":
        state = replicate(create_train_state(cfg, jax.random.key(0), axis_name=AXIS), 2)
        sharded = jax.tree.map(lambda x: x.reshape((2, x.shape[0] // 2) + x.shape[1:]), batch)
        step = jax.pmap(train_step, axis_name=AXIS, in_axes=(0, 0, None))
        return unreplicate(step(state, sharded, key))
    mesh = device_mesh(2)
    if mode == "shard_map":
        state = create_train_state(cfg, jax.random.key(0), axis_name=AXIS)
        return shard_map_train_step(mesh)(state, batch, key)
    state = create_train_state(cfg, jax.random.key(0))  # "jit": no axis name, GSPMD partitions
    step = sharded_jit_train_step(mesh).lower(state, batch, key).compile()
    assert "all-reduce" in step.as_text()  # the partitioner did split the computation
    return step(state, batch, key)


def one_step_1_vs_2_devices(mode: str, backbone: str, with_anomalies: bool, anomaly_bn: str = "own") -> dict:
    """The relative difference of every part of the state (parameters, BatchNorm statistics,
    Adam's moments) after one step on 2 devices under ``mode`` and one step on 1 device."""
    cfg = ExperimentConfig(model=ModelConfig(backbone=backbone, channels=1, width=0.125)).replace(
        **{"train.anomaly_bn": anomaly_bn})
    key = jax.random.key(3)
    batch = {"normal": jax.random.uniform(jax.random.key(1), (8, 32, 32, 1), minval=-1, maxval=1)}
    if with_anomalies:
        batch["anomaly"] = jax.random.uniform(jax.random.key(2), (4, 32, 32, 1), minval=-1, maxval=1)
    single, single_metrics = jax.jit(train_step)(create_train_state(cfg, jax.random.key(0)), batch, key)
    multi, multi_metrics = two_device_step(mode, cfg, batch, key)
    multi, single = multi.arrays(), single.arrays()
    differences = {name: max_relative_difference(multi[name], single[name]) for name in single}
    # Adam's moments as a ratio: a scaled gradient shows as 2x / 4x, not as a "difference".
    mu_ratio = jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.sum(jnp.abs(x)) / jnp.sum(jnp.abs(y))),
                                            optax.tree_utils.tree_get(multi["g_opt_state"], "mu"),
                                            optax.tree_utils.tree_get(single["g_opt_state"], "mu")))
    return {"differences": differences, "g_mu_ratio": max(mu_ratio),
            "g_loss": abs(float(multi_metrics["g_loss"]) / float(single_metrics["g_loss"]) - 1),
            "devices": jax.local_device_count()}


def generator_forward_1_vs_2_devices(backbone: str) -> dict:
    """The relative difference of a train-mode generator pass (output and new BatchNorm
    statistics, main and auxiliary BatchNorm) on 2 devices under pmap and on 1 device.

    This is what a backbone adds to the data-parallel step: every BatchNorm layer must average
    its statistics over the devices. The rest of the step (gradients, Adam, the anomaly
    branch) is one code path for every backbone, checked on the naive net."""
    model = ModelConfig(backbone=backbone, channels=1, width=0.125)
    G = build_generator(model, axis_name=AXIS)
    images = jax.random.uniform(jax.random.key(1), (8, 32, 32, 1), minval=-1, maxval=1)
    variables = _init_variables(G.clone(axis_name=None), jax.random.key(0), images[:1])
    differences = {}
    for aux in (False, True):
        def forward(g, x):  # the step's own train-mode apply: output and new statistics
            return _apply(g, variables["params"], variables["batch_stats"], x, True, aux=aux)
        single = jax.jit(lambda x: forward(G.clone(axis_name=None), x))(images)
        multi = jax.pmap(lambda x: forward(G, x), axis_name=AXIS)(images.reshape(2, 4, 32, 32, 1))
        multi = (multi[0].reshape(single[0].shape), unreplicate(multi[1]))
        differences[f"aux={aux}"] = max_relative_difference(multi, single)
    return {"differences": differences, "devices": jax.local_device_count()}


def short_run_1_vs_2_devices() -> dict:
    """AUROC of short runs (normal images only) on 1 and 2 devices, and of a run started on 2
    devices and resumed on 1."""
    cfg = ExperimentConfig(model=ModelConfig(width=0.125), train=TrainConfig(batch_size=32, epochs=2))
    split = load_split(cfg.data)
    one = fit(cfg, split, devices=1, progress=False)
    with tempfile.TemporaryDirectory() as run_dir:
        # Epoch 1 on 2 devices, against epoch 1 of the 1-device run; then a checkpoint written
        # on 2 devices resumes on 1 for epoch 2.
        two = fit(cfg.replace(**{"train.epochs": 1}), split, run_dir=run_dir, devices=2, progress=False)
        (Path(run_dir) / "config.json").write_text(cfg.to_json())  # same run, now asked for 2 epochs
        (Path(run_dir) / "result.json").unlink()
        resumed = fit(cfg, split, run_dir=run_dir, devices=1, progress=False)
    try:
        bad = cfg.replace(**{"train.batch_size": 33})
        fit(bad, split, devices=2, progress=False)
        refused = ""
    except ValueError as err:
        refused = str(err)
    return {"auroc_1_epoch_1": one.history[0]["auroc"], "auroc_2_epoch_1": two.final_auroc,
            "auroc_1": one.final_auroc, "auroc_resumed_on_1": resumed.final_auroc, "refused": refused}


if __name__ == "__main__":
    # CASE ...: MODE:BACKBONE:anomalies|joint|normal-only (MODE one of pmap, shard_map, jit; joint:
    # anomalies with anomaly_bn="joint") for the
    # step, forward:BACKBONE for the generator's train-mode pass, run for the short run. One
    # process for every case: jax starts once and what the cases share compiles once.
    out = {}
    for case in sys.argv[1:]:
        mode, *rest = case.split(":")
        if mode == "run":
            out[case] = short_run_1_vs_2_devices()
        elif mode == "forward":
            out[case] = generator_forward_1_vs_2_devices(rest[0])
        else:
            out[case] = one_step_1_vs_2_devices(mode, rest[0], rest[1] != "normal-only",
                                                "joint" if rest[1] == "joint" else "own")
    print(json.dumps(out))
