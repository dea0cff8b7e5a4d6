"""The networks: parameter counts of the paper, shapes, bad configurations, formulations by backend."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxad.config import ModelConfig
from jaxad.models import build_discriminator, build_generator, count_params, layers


def generator_params(backbone: str, channels: int, pseudo_anomaly_bn: str = "shared", **kw) -> int:
    # "shared": the nets without AdvProp's auxiliary BatchNorm layers, as the paper counts them.
    cfg = ModelConfig(backbone=backbone, channels=channels, pseudo_anomaly_bn=pseudo_anomaly_bn, **kw)
    x = jnp.zeros((1, cfg.image_size, cfg.image_size, channels))
    variables = jax.eval_shape(lambda: build_generator(cfg).init(jax.random.key(0), x, train=False))
    return count_params(variables["params"])


# Exact counts at width 1 (SPEC section 1; the paper's 2.04M, 7.76M, 9.04M).
@pytest.mark.parametrize("backbone,channels,expected", [
    ("naive", 1, 2_133_632), ("naive", 3, 2_137_728),
    ("unet", 1, 7_762_465), ("unet", 3, 7_763_107),
    ("unetpp", 1, 9_045_249), ("unetpp", 3, 9_045_891),
])
def test_generator_parameter_counts_match_the_paper(backbone, channels, expected):
    assert generator_params(backbone, channels) == expected


@pytest.mark.parametrize("backbone,paper", [("unet", 7.76e6), ("unetpp", 9.04e6)])
def test_unet_counts_within_0_2_percent_of_paper(backbone, paper):
    assert abs(generator_params(backbone, 3) - paper) / paper < 0.002


def test_advprop_adds_a_scale_and_bias_per_batchnorm_channel():
    # naive, nc = 1: BatchNorm on 128 + 256 encoder and 256 + 128 + 64 decoder channels.
    assert generator_params("naive", 1, "auxiliary") - generator_params("naive", 1) == 2 * (128 + 256 + 256 + 128 + 64)


def test_discriminator_parameter_count():
    cfg = ModelConfig(channels=3)
    x = jnp.zeros((1, 32, 32, 3))
    variables = jax.eval_shape(lambda: build_discriminator(cfg).init(jax.random.key(0), x, train=False))
    assert count_params(variables["params"]) == 663_296


@pytest.mark.parametrize("backbone,size", [("naive", 32), ("naive", 64), ("unet", 32), ("unetpp", 64)])
def test_generator_and_discriminator_shapes(backbone, size):
    cfg = ModelConfig(backbone=backbone, channels=3, image_size=size, width=0.125)
    x = jax.random.uniform(jax.random.key(1), (2, size, size, 3), minval=-1, maxval=1)
    G, D = build_generator(cfg), build_discriminator(cfg)
    g_vars = G.init(jax.random.key(0), x, train=False)
    out = G.apply(g_vars, x, train=False)
    assert out.shape == x.shape and float(jnp.abs(out).max()) <= 1.0
    logits, features = D.apply(D.init(jax.random.key(0), x, train=False), x, train=False)
    assert logits.shape == (2,) and features.shape[1:3] == (4, 4)


def test_naive_net_grows_one_stage_per_doubling():
    assert generator_params("naive", 1, image_size=64) > generator_params("naive", 1)


@pytest.mark.parametrize("kwargs,message", [
    (dict(backbone="resnet"), "unknown backbone"),
    (dict(channels=2), "channels must be 1 or 3"),
    (dict(backbone="naive", image_size=48), "side 32"),
    (dict(backbone="unetpp", image_size=40), "divisible by 16"),
])
def test_bad_model_configs_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("backend,name", [("cpu", "rewrites"), ("gpu", "rewrites"), ("cuda", "rewrites"),
                                          ("tpu", "xla")])
def test_formulations_are_picked_by_backend(backend, name):
    # The rewrites where they were measured faster (a 2-core CPU, an H200); XLA's own ops elsewhere.
    assert layers.default_formulation_name(backend) == name
    assert layers.default_formulations(backend) is layers.FORMULATIONS[name]


def test_networks_are_built_with_the_default_backends_formulations_unless_told_otherwise():
    cfg = ModelConfig(backbone="unet", channels=1, width=0.125)
    default = layers.default_formulations(jax.default_backend())
    G = build_generator(cfg)
    assert (G.conv, G.upsample, G.pool) == (default.conv, default.upsample, default.pool)
    assert build_discriminator(cfg).conv == default.conv
    xla = build_generator(cfg, formulations="xla")
    assert (xla.conv, xla.upsample, xla.pool) == (nn.Conv, layers.ConvTranspose, layers.max_pool_2x2)
    assert build_discriminator(cfg, formulations="xla").conv is nn.Conv
    subpixel = build_generator(cfg, formulations="rewrites", upsample_impl="subpixel")
    assert subpixel.upsample.keywords == {"impl": "subpixel"} and subpixel.conv == layers.REWRITE_FORMULATIONS.conv
    with pytest.raises(ValueError, match="unknown formulations"):
        build_generator(cfg, formulations="metal")


@pytest.mark.parametrize("formulations", ["xla", "rewrites"])
def test_equal_builds_give_equal_networks(formulations):
    # The networks are static in the train state: equal ones let jit reuse a compiled step.
    for backbone in ("naive", "unetpp"):
        cfg = ModelConfig(backbone=backbone, channels=1)
        a = build_generator(cfg, formulations=formulations, upsample_impl="matmul")
        b = build_generator(cfg, formulations=formulations, upsample_impl="matmul")
        assert a == b and hash(a) == hash(b)
    cfg = ModelConfig(channels=1)
    assert build_discriminator(cfg, formulations=formulations) == build_discriminator(cfg, formulations=formulations)
