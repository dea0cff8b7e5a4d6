"""Mixed precision: ``ModelConfig(compute_dtype="bfloat16")`` computes the convolutions in
bfloat16 and keeps everything a run stores in float32; its step and scores agree with float32
within the tolerances docs/performance.md states (measured on CPU: losses within 1.3e-3
relative, gradients at cosine 0.985, reconstructions within about 3% of their norm)."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.compat import upgrade_config_dict
from jaxad.config import ExperimentConfig, ModelConfig
from jaxad.data import load_dataset
from jaxad.models import build_discriminator, build_generator, layers
from jaxad.train import create_train_state, reconstruct, score_step, step_losses, train_step

step = jax.jit(train_step)


def config(backbone: str, compute_dtype: str = "float32") -> ExperimentConfig:
    return ExperimentConfig(model=ModelConfig(backbone=backbone, width=0.125, compute_dtype=compute_dtype))


@functools.cache
def digits():
    return load_dataset("digits")


def digits_batch(start: int, size: int = 32) -> jax.Array:
    """Real images (sklearn's digits at 32x32 in [-1, 1]), so that the networks see what they train on."""
    return jnp.asarray(digits().train_images[start:start + size])


def trained_state(backbone: str, steps: int = 10):
    """A float32 state after a few steps, so that G's output is more than its initial noise."""
    state = create_train_state(config(backbone), jax.random.key(0))
    for i in range(steps):
        state, _ = step(state, {"normal": digits_batch(32 * i), "anomaly": digits_batch(0, 0)}, jax.random.key(i))
    return state


def in_bfloat16(state, backbone: str):
    """The same parameters and statistics, the networks computing in bfloat16."""
    model = config(backbone, "bfloat16").model
    return state.replace(generator=build_generator(model), discriminator=build_discriminator(model))


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def test_bfloat16_computes_the_convolutions_in_bfloat16_and_stores_float32():
    state = create_train_state(config("naive", "bfloat16"), jax.random.key(0))
    batch = {"normal": digits_batch(0), "anomaly": digits_batch(0, 0)}
    program = str(jax.make_jaxpr(train_step)(state, batch, jax.random.key(1)))
    assert "bf16" in program
    assert "bf16" not in str(jax.make_jaxpr(train_step)(create_train_state(config("naive"), jax.random.key(0)),
                                                        batch, jax.random.key(1)))
    state, metrics = step(state, batch, jax.random.key(1))
    stored = state.arrays()
    assert {leaf.dtype for leaf in jax.tree.leaves(stored) if jnp.issubdtype(leaf.dtype, jnp.floating)} == {
        jnp.dtype("float32")}
    assert all(value.dtype == jnp.float32 and np.isfinite(value) for value in metrics.values())
    assert reconstruct(state, batch["normal"]).dtype == jnp.float32
    assert score_step(state, batch["normal"]).dtype == jnp.float32


@pytest.mark.parametrize("backbone", ["naive", "unet"])
def test_bfloat16_step_and_scores_agree_with_float32_within_the_stated_tolerance(backbone):
    state = trained_state(backbone)
    half = in_bfloat16(state, backbone)
    batch = {"normal": digits_batch(400), "anomaly": digits_batch(0, 0)}
    g_loss, d_loss, _ = step_losses(state.g_params, state.d_params, state, batch)
    g_half, d_half, _ = step_losses(half.g_params, half.d_params, half, batch)
    assert float(g_half) == pytest.approx(float(g_loss), rel=1e-2)
    assert float(d_half) == pytest.approx(float(d_loss), rel=1e-2)

    def summed(params, s):
        g, d, _ = step_losses(*params, s, batch)
        return g + d

    want = flat(jax.grad(summed)((state.g_params, state.d_params), state))
    got = flat(jax.grad(summed)((half.g_params, half.d_params), half))
    assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.95

    images = digits_batch(800, 256)
    full, approx = reconstruct(state, images), reconstruct(half, images)
    assert np.linalg.norm(approx - full) / np.linalg.norm(full) < 0.05
    scores, half_scores = np.asarray(score_step(state, images)), np.asarray(score_step(half, images))
    ranks = [np.argsort(np.argsort(s)) for s in (scores, half_scores)]
    assert np.corrcoef(*ranks)[0, 1] > 0.999


def test_networks_in_bfloat16_keep_float32_parameters_and_compare_equal():
    model = ModelConfig(backbone="unet", width=0.125, compute_dtype="bfloat16")
    # One object per precision: jit reuses a step compiled for an equal network.
    assert build_generator(model) == build_generator(model)
    assert build_generator(model) != build_generator(ModelConfig(backbone="unet", width=0.125))
    formulations = layers.default_formulations()
    assert layers.in_precision(formulations, "float32") is formulations
    x = digits_batch(0, 2)
    variables = build_generator(model).init(jax.random.key(0), x, train=False)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype("float32")}


def test_compute_dtype_is_checked_and_runs_made_without_it_computed_in_float32():
    with pytest.raises(ValueError, match="compute_dtype"):
        ModelConfig(compute_dtype="float16")
    written_before = json.loads(ExperimentConfig().to_json())
    del written_before["model"]["compute_dtype"]
    assert ExperimentConfig.from_dict(upgrade_config_dict(written_before)).model.compute_dtype == "float32"
