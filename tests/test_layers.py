"""The rewrites (``jaxad.models.rewrites``) compute what XLA's own ops do, values and gradients.

Each rewrites a layer XLA:CPU runs slowly (BUILD_NOTES.md, Performance): transposed convolutions,
convolutions on tiny maps, the max-pool gradient. Random inputs and weights throughout. The
whole networks built with the "rewrites" and the "xla" formulations compute the same too.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxad.config import ModelConfig
from jaxad.models import build_discriminator, build_generator, layers, rewrites
from jaxad.models.rewrites import conv_dense, conv_general_dilated, max_pool_2x2, strided_conv
from jaxad.models.layers import conv_transpose

DIMS = ("NHWC", "HWIO", "NHWC")


def assert_same_value_and_grads(fast, plain, *args, rtol=1e-5, atol=1e-4):
    """fast(*args) == plain(*args), and so are the gradients of a non-linear loss of them."""
    np.testing.assert_allclose(fast(*args), plain(*args), atol=1e-5)
    argnums = tuple(range(len(args)))
    got = jax.grad(lambda *a: jnp.sum(jnp.sin(fast(*a))), argnums)(*args)
    want = jax.grad(lambda *a: jnp.sum(jnp.sin(plain(*a))), argnums)(*args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("impl", ["matmul", "subpixel", "zero_insert"])
@pytest.mark.parametrize("kernel,stride,padding,side", [
    (4, 2, 1, 4), (4, 2, 1, 8), (2, 2, 0, 5), (4, 1, 0, 1), (4, 1, 0, 3), (4, 2, 1, 1), (3, 2, 1, 3)])
def test_transposed_conv_formulations_equal_xla_transposed_conv(impl, kernel, stride, padding, side):
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))
    out = conv_transpose(x, w, stride, padding, impl)
    assert out.shape[1] == stride * (side - 1) + kernel - 2 * padding  # PyTorch's output side
    assert_same_value_and_grads(lambda x_, w_: rewrites.CONV_TRANSPOSE[impl](x_, w_, stride, padding),
                                lambda x_, w_: layers.conv_transpose_xla(x_, w_, stride, padding), x, w)


@pytest.mark.parametrize("kernel,stride,pad,side", [
    (3, 1, 1, 2), (3, 1, 1, 1), (3, 1, 1, 4), (4, 1, 0, 4), (4, 2, 1, 4), (1, 1, 0, 2), (3, 2, 1, 3)])
def test_dense_conv_equals_xla_conv(kernel, stride, pad, side):
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))
    pads = [(pad, pad), (pad, pad)]

    def xla(x_, w_):
        return lax.conv_general_dilated(x_, w_, (stride, stride), pads, dimension_numbers=DIMS)

    assert_same_value_and_grads(
        lambda x_, w_: conv_general_dilated(x_, w_, (stride, stride), pads, dimension_numbers=DIMS, impl="dense"),
        xla, x, w)
    np.testing.assert_allclose(conv_dense(x, w, (stride, stride), pads), xla(x, w), atol=1e-5)


@pytest.mark.parametrize("impl", ["matmul", "subpixel", "zero_insert"])
@pytest.mark.parametrize("kernel,stride,pad,side", [(4, 2, 1, 8), (4, 2, 1, 2), (3, 2, 1, 5), (2, 2, 0, 4)])
def test_strided_conv_input_gradient_as_transposed_conv_equals_xla(impl, kernel, stride, pad, side):
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))
    assert_same_value_and_grads(
        lambda x_, w_: strided_conv(x_, w_, stride, pad, impl),
        lambda x_, w_: lax.conv_general_dilated(x_, w_, (stride, stride), [(pad, pad)] * 2, dimension_numbers=DIMS),
        x, w)


@pytest.mark.parametrize("side,fast", [(8, True), (7, False)])
def test_conv_general_dilated_takes_strided_conv_only_where_it_is_exact(side, fast):
    # 4x4, stride 2, pad 1 on a side-7 map: the transposed conv would miss the last row.
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    w = jax.random.normal(jax.random.key(1), (4, 4, 3, 5))

    def auto(x_, w_):
        return conv_general_dilated(x_, w_, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)

    assert ("custom_vjp" in str(jax.make_jaxpr(auto)(x, w))) == fast
    assert_same_value_and_grads(
        auto, lambda x_, w_: lax.conv_general_dilated(x_, w_, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS),
        x, w)


def test_fast_conv_in_nn_conv_keeps_parameters_and_outputs():
    x = jax.random.normal(jax.random.key(0), (2, 2, 2, 3))
    plain = nn.Conv(5, (3, 3), padding=((1, 1), (1, 1)), use_bias=True)
    fast = plain.clone(conv_general_dilated=conv_general_dilated)
    variables = plain.init(jax.random.key(1), x)
    assert jax.tree.structure(variables) == jax.tree.structure(fast.init(jax.random.key(1), x))
    np.testing.assert_allclose(fast.apply(variables, x), plain.apply(variables, x), atol=1e-5)


def flax_max_pool(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def test_max_pool_2x2_equals_flax_max_pool_and_its_gradient_even_with_ties():
    pre = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    dy = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    # After a ReLU most windows tie at 0; rounded to halves, many tie at their maximum.
    for x in (pre, jax.nn.relu(pre), jnp.round(2 * pre) / 2):
        np.testing.assert_array_equal(max_pool_2x2(x), flax_max_pool(x))
        grads = [jax.grad(lambda h: jnp.sum(pool(h) * dy))(x) for pool in (max_pool_2x2, flax_max_pool)]
        np.testing.assert_array_equal(grads[0], grads[1])
    odd = jax.random.normal(jax.random.key(2), (1, 5, 5, 2))
    np.testing.assert_array_equal(max_pool_2x2(odd), flax_max_pool(odd))
    with_nan = pre.at[0, 3, 2, 1].set(jnp.nan)
    assert np.isnan(max_pool_2x2(with_nan)[0, 1, 1, 1]) and np.isnan(flax_max_pool(with_nan)[0, 1, 1, 1])


def test_a_unet_trained_under_the_suites_compiler_settings_keeps_finite_gradients():
    # The suite compiles without optimisation passes (conftest.py): XLA then computes the
    # pooled activations in two fusions, and a pool whose gradient divides by the count of
    # inputs equal to the maximum gave NaN from the third step on.
    from jaxad.config import ExperimentConfig
    from jaxad.data import load_dataset
    from jaxad.train import create_train_state, train_step

    images = jnp.asarray(load_dataset("digits").train_images[:96])
    state = create_train_state(ExperimentConfig(model=ModelConfig(backbone="unet", width=0.125)), jax.random.key(0))
    step = jax.jit(train_step)
    for i in range(3):
        state, metrics = step(state, {"normal": images[32 * i:32 * (i + 1)], "anomaly": images[:0]},
                              jax.random.key(i))
        assert np.isfinite(float(metrics["g_loss"])) and np.isfinite(float(metrics["d_loss"]))
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(state.g_params))


def test_conv_transpose_dispatches_every_formulation_and_refuses_unknown_ones():
    x = jax.random.normal(jax.random.key(0), (1, 3, 3, 2))
    w = jax.random.normal(jax.random.key(1), (4, 4, 2, 3))
    want = layers.conv_transpose_xla(x, w, 2, 1)
    for impl in layers.UPSAMPLE_IMPLS:
        np.testing.assert_allclose(conv_transpose(x, w, 2, 1, impl), want, atol=1e-5)
    with pytest.raises(ValueError, match="unknown upsample impl"):
        conv_transpose(x, w, 2, 1, "auto")  # "auto" is resolved when a network is built


def _loss_and_grads(backbone: str, formulations: str, params=None):
    """The loss of G then D and its gradients, with the parameters ``params`` (default: G's and
    D's own init), for networks built with ``formulations``."""
    cfg = ModelConfig(backbone=backbone, channels=3, width=0.125)
    x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3), minval=-1, maxval=1)
    G = build_generator(cfg, formulations=formulations)
    D = build_discriminator(cfg, formulations=formulations)
    g_vars, d_vars = G.init(jax.random.key(0), x, train=False), D.init(jax.random.key(2), x, train=False)
    g_params, d_params = params or (g_vars["params"], d_vars["params"])

    def loss(g_params, d_params):
        y, _ = G.apply({**g_vars, "params": g_params}, x, train=True, mutable=["batch_stats"])
        logits, features = D.apply({**d_vars, "params": d_params}, y, train=False)
        return jnp.sum(y ** 2) + jnp.sum(logits) + jnp.sum(features)

    return (g_vars["params"], d_vars["params"]), jax.jit(jax.value_and_grad(loss, (0, 1)))(g_params, d_params)


# The U-Nets are long: each layer's rewrite is tested above, naive runs them all together.
@pytest.mark.parametrize("backbone", ["naive", pytest.param("unet", marks=pytest.mark.long),
                                      pytest.param("unetpp", marks=pytest.mark.long)])
def test_networks_built_with_each_formulation_compute_the_same(backbone):
    # XLA's own convolutions, transposed convolutions and max-pool against the rewrites,
    # with the same parameters: those the "xla" networks initialise.
    params, plain = _loss_and_grads(backbone, "xla")
    rewrite_params, fast = _loss_and_grads(backbone, "rewrites", params)
    # Same parameter trees (names, shapes) and the same init: checkpoints move between backends.
    assert jax.tree.map(jnp.shape, rewrite_params) == jax.tree.map(jnp.shape, params)
    for got, want in zip(jax.tree.leaves(rewrite_params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
