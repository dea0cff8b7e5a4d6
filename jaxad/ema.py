"""BatchNorm statistics for the averaged generator (``TrainConfig.ema_decay`` > 0).

An exponential moving average of G's weights is a network no training step ever ran, so
the running BatchNorm statistics gathered while training the live weights do not describe
its activations. Scored with them, the average can fall where the live generator does not
(measured: BUILD_NOTES.md, fidelity study). As stochastic weight averaging does
(``torch.optim.swa_utils.update_bn``), ``recalibrate_ema_statistics`` recomputes them: one
training-mode pass of the averaged generator over the training normals, averaging each
batch's statistics. ``fit`` does this before every scoring and checkpoint; call it yourself
before ``score`` / ``score_step`` when you train with your own loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.train import AGADState, _reconstruct_normal


@jax.jit
def _batch_statistics(state: AGADState, images: jax.Array):
    """Every main BatchNorm layer's statistics of the averaged generator on one batch (the
    auxiliary layers', which this pass does not run, come back as zeros)."""
    G = state.generator.clone(axis_name=None)
    _, _, batch_stats = _reconstruct_normal(G, state.g_ema_params, state.g_ema_batch_stats, images, True)
    return batch_stats


def _is_auxiliary(path) -> bool:
    """AdvProp's auxiliary BatchNorm (never used in scoring): its statistics are kept as they are."""
    return any(getattr(key, "key", None) == "aux" for key in path)


def recalibrate_ema_statistics(state: AGADState, normal_images: np.ndarray | jax.Array,
                               batch_size: int = 256) -> AGADState:
    """``state`` with its averaged generator's BatchNorm statistics recomputed on ``normal_images``.

    The mean over full batches of ``batch_size`` (one batch of all images when there are
    fewer) of each batch's mean and variance, as training-mode BatchNorm computes them. A
    state without an average (``ema_decay`` = 0) is returned unchanged. Pure: the same state
    and images give the same statistics, so a resumed run scores exactly as an uninterrupted
    one.
    """
    if state.g_ema_params is None:
        return state
    count = len(normal_images)
    if count == 0:
        raise ValueError("recalibrating the averaged generator needs at least one normal image")
    size = min(batch_size, count)
    batches = [normal_images[i:i + size] for i in range(0, count - size + 1, size)]
    per_batch = [_batch_statistics(state, jnp.asarray(b)) for b in batches]
    mean = jax.tree.map(lambda *s: sum(s) / len(s), *per_batch)
    stats = jax.tree_util.tree_map_with_path(
        lambda path, new, old: old if _is_auxiliary(path) else new, mean, state.g_ema_batch_stats)
    return state.replace(g_ema_batch_stats=stats)
