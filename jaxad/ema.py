"""BatchNorm statistics for the averaged generator (``TrainConfig.ema_decay`` > 0).

An exponential moving average of G's weights is a network no training step ever ran, so
the running BatchNorm statistics gathered while training the live weights do not describe
its activations. Scored with them, the average can fall where the live generator does not
(docs/fidelity-study.md, 5.2). As stochastic weight averaging does
(``torch.optim.swa_utils.update_bn``), ``recalibrate_ema_statistics`` recomputes them for
the averaged weights: the running statistics the train step's own passes through G
(``train.generator_passes``) would settle at, over the training images. With gamma = 0 and
AdvProp (the defaults) that is the mean of the normal batches' statistics; with anomalies
in joint batches (``anomaly_bn = "joint"``, the default), the mean of the mixed batches'.
When further passes update the statistics (the anomalies' own with
``anomalies_update_statistics``, the ``shared`` pseudo-anomaly pass), their statistics enter
as the momentum updates weight them. ``fit`` does this before every scoring and checkpoint;
call it yourself before ``score`` / ``score_step`` when you train with your own loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.models.layers import BN_MOMENTUM
from jaxad.train import AGADState, Batch, generator_passes


@jax.jit
def _settled_statistics(state: AGADState, batch: Batch):
    """The running statistics the step's passes through the averaged generator settle at on
    one batch. From zero, k updating passes leave sum_i (1 - m) m^(k - i) b_i (m the momentum,
    b_i pass i's batch statistics); repeating them from s gives m^k s + that, whose fixed point
    is that / (1 - m^k). The auxiliary layers' come back as zeros (the caller keeps their old
    values): so XLA drops the passes that only update those, such as AdvProp's G(x_hat)."""
    G = state.generator.clone(axis_name=None)
    zeros = jax.tree.map(jnp.zeros_like, state.g_ema_batch_stats)
    passes = generator_passes(G, state.g_ema_params, zeros, batch, state.settings)
    return jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.zeros_like(s) if _is_auxiliary(path) else s / (1.0 - BN_MOMENTUM ** passes.updates),
        passes.batch_stats)


def _is_auxiliary(path) -> bool:
    """AdvProp's auxiliary BatchNorm (never used in scoring): its statistics are kept as they are."""
    return any(getattr(key, "key", None) == "aux" for key in path)


def recalibrate_ema_statistics(state: AGADState, normal_images: np.ndarray | jax.Array,
                               batch_size: int = 256, *, anomaly_images: np.ndarray | jax.Array | None = None,
                               anomalies_per_batch: int = 0) -> AGADState:
    """``state`` with its averaged generator's BatchNorm statistics recomputed for its weights.

    Calibration batches of ``batch_size`` normals (full ones; one batch of all images when
    there are fewer), each with ``anomalies_per_batch`` of ``anomaly_images`` beside it (taken
    in order, cycling) when given, composed as the train step's batches are
    (``data.batch_composition``). The result is the mean over the batches of the statistics
    ``generator_passes`` would settle at on each: with normals only and AdvProp, each batch's
    own mean and variance, as training-mode BatchNorm computes them. A state without an
    average (``ema_decay`` = 0) is returned unchanged. Pure: the same state and images give
    the same statistics, so a resumed run scores exactly as an uninterrupted one.
    """
    if state.g_ema_params is None:
        return state
    count = len(normal_images)
    if count == 0:
        raise ValueError("recalibrating the averaged generator needs at least one normal image")
    with_anomalies = anomaly_images is not None and anomalies_per_batch > 0
    if with_anomalies and len(anomaly_images) == 0:
        raise ValueError(f"anomalies_per_batch is {anomalies_per_batch} but no anomaly images were given")
    size = min(batch_size, count)
    anomaly_images = np.asarray(anomaly_images) if with_anomalies else None
    per_batch = []
    for b, start in enumerate(range(0, count - size + 1, size)):
        batch = {"normal": jnp.asarray(normal_images[start:start + size])}
        if with_anomalies:
            index = (b * anomalies_per_batch + np.arange(anomalies_per_batch)) % len(anomaly_images)
            batch["anomaly"] = jnp.asarray(anomaly_images[index])
        per_batch.append(_settled_statistics(state, batch))
    mean = jax.tree.map(lambda *s: sum(s) / len(s), *per_batch)
    stats = jax.tree_util.tree_map_with_path(
        lambda path, new, old: old if _is_auxiliary(path) else new, mean, state.g_ema_batch_stats)
    return state.replace(g_ema_batch_stats=stats)
