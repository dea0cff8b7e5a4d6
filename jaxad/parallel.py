"""Data-parallel training over local devices with the one train step.

The step is written with an ``axis_name`` for its collectives (gradients, BatchNorm
statistics, the D-reset decision, metrics), so it runs unchanged under ``jax.pmap``. Since
JAX 0.8, ``jax.pmap`` is implemented on ``jit`` + ``shard_map``; the same step also runs
under ``shard_map`` directly.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.train import indexed_train_step

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


def check_device_count(n_devices: int) -> int:
    """Resolve ``n_devices`` (None or 0 = all local devices) and refuse more than exist."""
    available = jax.local_device_count()
    n = available if not n_devices else n_devices
    if n > available:
        raise ValueError(f"{n} devices asked for, {available} available ({jax.devices()[0].platform})")
    return n
