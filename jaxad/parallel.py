"""Data-parallel training with the one train step, three ways.

- ``jax.pmap`` (``pmap_train_step``, what ``fit(devices=N)`` uses) and ``jax.shard_map``
  (``shard_map_train_step``, default varying-axes checking): the state is built with
  ``axis_name=AXIS`` and the step names its collectives by that axis (the cross-device mean
  losses it differentiates, gradients, BatchNorm statistics, the D-reset decision, metrics).
- ``jax.jit`` with shardings (``sharded_jit_train_step``): the plain one-device step
  (``axis_name=None``) with the batch split over a mesh axis; XLA's SPMD partitioner inserts
  the collectives, so BatchNorm statistics and gradients are over the global batch.

All three equal the one-device step on the global batch, parameters and optimiser state
alike (tests/test_parallel.py, two fake CPU devices). Since JAX 0.8 ``jax.pmap`` is in
maintenance mode and runs on ``jit`` + ``shard_map``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxad.train import indexed_train_step, train_step

AXIS = "devices"


def replicate(tree: Any, n_devices: int) -> Any:
    """Stack ``n_devices`` copies on a leading axis (pmap places one on each device)."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n_devices,) + jnp.shape(x)), tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)


def shard_batch_indices(index: np.ndarray, n_devices: int) -> np.ndarray:
    """(steps, B) batch indices -> (steps, devices, B / devices): each device a slice of every batch."""
    steps, batch = index.shape
    if batch % n_devices:
        raise ValueError(f"a sub-batch of {batch} images does not split over {n_devices} devices; "
                         f"choose a batch size whose normal and anomaly parts divide by {n_devices}")
    return index.reshape(steps, n_devices, batch // n_devices)


def pmap_train_step() -> Callable:
    """``indexed_train_step`` over all devices: state and indices sharded on axis 0, the
    training images and the key broadcast. Build the state with ``axis_name=AXIS``."""
    return jax.pmap(indexed_train_step, axis_name=AXIS, in_axes=(0, None, None, 0, 0, None),
                    donate_argnums=(0,))


def device_mesh(n_devices: int = 0) -> Mesh:
    """A 1-D mesh with axis ``AXIS`` over the first ``n_devices`` devices (0 = all, every host's).

    The axis type is Auto: ``shard_map`` and sharded ``jit`` then move inputs to the
    shardings they ask for, rather than requiring them to arrive already placed."""
    devices = jax.devices()[:n_devices] if n_devices else jax.devices()
    return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def shard_map_train_step(mesh: Mesh) -> Callable:
    """``train_step`` under ``jax.shard_map`` over ``mesh``'s ``AXIS``, jitted, the state donated.

    Call it as ``step(state, batch, key)`` with the global batch (its leading axis is split over
    the devices, so each sub-batch must divide by their number), the state replicated and
    built with ``axis_name=AXIS``, and one key. Returns the replicated state and metrics."""
    step = jax.shard_map(train_step, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()))
    return jax.jit(step, donate_argnums=(0,))


def sharded_jit_train_step(mesh: Mesh) -> Callable:
    """The one-device ``train_step`` under ``jit``, the batch split over ``mesh``'s ``AXIS``.

    Build the state with ``axis_name=None`` (no named collectives: the SPMD partitioner adds
    what the global-batch computation needs). The state and key are replicated, the state
    donated; call it as ``step(state, batch, key)`` with the global batch."""
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    return jax.jit(train_step, in_shardings=(replicated, split, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def check_device_count(n_devices: int) -> int:
    """Resolve ``n_devices`` (None or 0 = all local devices) and refuse more than exist."""
    available = jax.local_device_count()
    n = available if not n_devices else n_devices
    if n > available:
        raise ValueError(f"{n} devices asked for, {available} available ({jax.devices()[0].platform})")
    return n
