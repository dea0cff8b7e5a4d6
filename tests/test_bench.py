"""The benchmark runs (tiny nets, one repetition; no timing is checked) and its fast paths
compute the same numbers as the plain formulations."""

import json
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxad.config import ModelConfig
from jaxad.models import build_discriminator, build_generator
from jaxad.models import unet
from jaxad.models.layers import conv_dense, conv_general_dilated, conv_transpose, max_pool_2x2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import bench  # noqa: E402

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("kernel,stride,padding,side", [
    (4, 2, 1, 4), (4, 2, 1, 8), (2, 2, 0, 5), (4, 1, 0, 1), (4, 1, 0, 3), (4, 2, 1, 1), (3, 2, 1, 3)])
def test_matmul_transposed_conv_equals_xla_transposed_conv(kernel, stride, padding, side):
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))

    def loss(impl):
        return lambda x_, w_: jnp.sum(jnp.sin(conv_transpose(x_, w_, stride, padding, impl)))

    np.testing.assert_allclose(conv_transpose(x, w, stride, padding, "matmul"),
                               conv_transpose(x, w, stride, padding, "lhs_dilation"), atol=1e-5)
    for got, want in zip(jax.grad(loss("matmul"), (0, 1))(x, w), jax.grad(loss("lhs_dilation"), (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,pad,side", [
    (3, 1, 1, 2), (3, 1, 1, 1), (3, 1, 1, 4), (4, 1, 0, 4), (4, 2, 1, 4), (1, 1, 0, 2), (3, 2, 1, 3)])
def test_dense_conv_equals_xla_conv(kernel, stride, pad, side):
    x = jax.random.normal(jax.random.key(0), (2, side, side, 3))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, 3, 5))
    pads = [(pad, pad), (pad, pad)]

    def xla(x_, w_):
        return lax.conv_general_dilated(x_, w_, (stride, stride), pads, dimension_numbers=DIMS)

    def dense(x_, w_):
        return conv_general_dilated(x_, w_, (stride, stride), pads, dimension_numbers=DIMS, impl="dense")

    np.testing.assert_allclose(dense(x, w), xla(x, w), atol=1e-5)
    np.testing.assert_allclose(conv_dense(x, w, (stride, stride), pads), xla(x, w), atol=1e-5)
    for got, want in zip(jax.grad(lambda *a: jnp.sum(jnp.sin(dense(*a))), (0, 1))(x, w),
                         jax.grad(lambda *a: jnp.sum(jnp.sin(xla(*a))), (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_fast_conv_in_nn_conv_keeps_parameters_and_outputs():
    x = jax.random.normal(jax.random.key(0), (2, 2, 2, 3))
    plain = nn.Conv(5, (3, 3), padding=((1, 1), (1, 1)), use_bias=True)
    fast = plain.clone(conv_general_dilated=conv_general_dilated)
    variables = plain.init(jax.random.key(1), x)
    assert jax.tree.structure(variables) == jax.tree.structure(fast.init(jax.random.key(1), x))
    np.testing.assert_allclose(fast.apply(variables, x), plain.apply(variables, x), atol=1e-5)


def test_max_pool_2x2_equals_flax_max_pool_and_its_gradient_after_relu():
    pre = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    x = jax.nn.relu(pre)
    np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))
    dy = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
    grads = [jax.grad(lambda p: jnp.sum(pool(jax.nn.relu(p)) * dy))(pre)
             for pool in (max_pool_2x2, lambda h: nn.max_pool(h, (2, 2), strides=(2, 2)))]
    np.testing.assert_array_equal(grads[0], grads[1])
    odd = jax.random.normal(jax.random.key(2), (1, 5, 5, 2))
    np.testing.assert_array_equal(max_pool_2x2(odd), nn.max_pool(odd, (2, 2), strides=(2, 2)))


@pytest.mark.parametrize("backbone", ["naive", "unet"])
def test_networks_agree_with_flax_convs_routed_through_layers(backbone):
    cfg = ModelConfig(backbone=backbone, channels=3, width=0.125)
    x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3), minval=-1, maxval=1)
    G, D = build_generator(cfg, advprop=True), build_discriminator(cfg)
    g_vars, d_vars = G.init(jax.random.key(0), x, train=False), D.init(jax.random.key(2), x, train=False)

    def outputs(params):
        y, _ = G.apply({**g_vars, "params": params}, x, train=True, mutable=["batch_stats"])
        logits, feats = D.apply(d_vars, y, train=False)
        return jnp.sum(y ** 2) + jnp.sum(logits) + jnp.sum(feats), y

    # Two jitted functions: the switch acts when a function is traced.
    plain = jax.jit(jax.value_and_grad(outputs, has_aux=True))(g_vars["params"])
    try:
        bench.route_flax_convs_through_layers(True)
        routed = jax.jit(jax.value_and_grad(lambda p: outputs(p), has_aux=True))(g_vars["params"])
    finally:
        bench.route_flax_convs_through_layers(False)
    for got, want in zip(jax.tree.leaves(routed), jax.tree.leaves(plain)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_quick_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--backbones", "naive", "--channels", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["machine"]["devices"] and saved["machine"]["matmul_peak_flops"]["flops_per_s"] > 0
    (row,) = result["rows"]
    assert row["jax_train"]["finite"] and row["jax_train"]["images_per_s"] > 0
    assert row["jax_score"]["images_per_s"] > 0 and row["jax_score"]["latency_ms"] > 0
    assert row["step_flops"] > 0 and row["jax_train"]["xla_flops"] > 0
    assert {r["impl"] for r in result["upsample_impls"]} >= {bench.LIBRARY_UPSAMPLE_IMPL, "matmul"}
    assert [r["k"] for r in result["vmap"]["rows"]] == [2]
    assert result["vmap"]["rows"][0]["vmap_images_per_s"] > 0
    if "torch" in row:  # the PyTorch reference is optional
        assert row["torch"]["g_params"] == row["g_params"]
        assert row["torch"]["train"]["finite"]
        counted = row["torch"].get("flop_counter_per_image")
        if counted:  # the analytic count is the work PyTorch's counter sees
            assert counted == pytest.approx(row["model_flops_per_image"]["step"], rel=0.02)
    import flax.linen.linear as flax_linear
    assert flax_linear.lax is jax.lax  # the benchmark-only switch is undone
    assert unet._pool is bench._PLAIN_POOL
