"""Gradient clipping relative to the gradient's own recent scale (an optax transform).

optax clips to a fixed global norm (``clip_by_global_norm``) or relative to the parameters
(``adaptive_grad_clip``); neither bounds a single step's gradient against the steps before
it, which is what stops AGAD's falls: a fall starts with one step whose contextual
adversarial gradient is about 8x its usual norm, passed almost whole by Adam at beta1 0.5
(docs/fidelity-study.md, 5.1). A threshold relative to a running norm follows the gradient's
scale through training and across datasets, where a fixed one would have to be read off a
run.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


DEFAULT_DECAY = 0.95


class RunningNormClipState(NamedTuple):
    """``count``: steps seen. ``mean_norm``: exponential moving average of the global norms
    passed on (after clipping), not bias-corrected. ``clipped``: 1.0 when the last step was
    clipped (its epoch mean is the fraction of steps clipped)."""

    count: jax.Array
    mean_norm: jax.Array
    clipped: jax.Array


def running_norm(state: RunningNormClipState, decay: float = DEFAULT_DECAY) -> jax.Array:
    """The bias-corrected running mean of the norms passed on so far (NaN before the first)."""
    return state.mean_norm / (1.0 - decay ** state.count.astype(jnp.float32))


def clip_by_running_norm(factor: float, decay: float = DEFAULT_DECAY) -> optax.GradientTransformation:
    """Scale the gradient down to global norm ``factor`` times the running mean of the norms
    before it, when it is larger; leave it unchanged otherwise.

    The running mean is a bias-corrected exponential moving average at ``decay`` (0.95: about
    the last 20 steps, so it follows the norm's drift through training) of the norms passed
    on, so a clipped spike enters it at its clipped size. The first step has no reference and
    passes unclipped. With Adam at beta1 = 0.5 a gradient k times the usual norm moves the
    parameters about (k + 1) / 2 times the usual step, so ``factor`` bounds the largest
    update a single step can make.
    """
    if not factor > 1.0:
        raise ValueError(f"factor must be above 1 (a multiple of the running norm), got {factor}")
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must lie in (0, 1), got {decay}")

    def init_fn(params) -> RunningNormClipState:
        del params
        return RunningNormClipState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32),
                                    jnp.zeros((), jnp.float32))

    def update_fn(updates, state: RunningNormClipState, params=None):
        del params
        norm = optax.tree.norm(updates)
        limit = jnp.where(state.count > 0, factor * running_norm(state, decay), jnp.inf)
        clipped = norm > limit
        scale = jnp.where(clipped, limit / norm, 1.0)
        updates = jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates)
        mean_norm = decay * state.mean_norm + (1.0 - decay) * jnp.minimum(norm, limit)
        return updates, RunningNormClipState(state.count + 1, mean_norm, clipped.astype(jnp.float32))

    return optax.GradientTransformation(init_fn, update_fn)
