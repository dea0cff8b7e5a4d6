"""Building blocks shared by the generators and the discriminator.

Initialisation follows GANomaly (and DCGAN): conv weights N(0, 0.02), BatchNorm scale
N(1, 0.02), biases 0. BatchNorm uses PyTorch's defaults (momentum 0.1, eps 1e-5), written in
Flax's convention (momentum 0.9 is the weight of the old running average).

The convolutions, transposed convolutions and max-pool have several formulations with the
same parameters: XLA's own ops (here) and rewrites that run faster on CPU and GPU
(``rewrites``).
``default_formulations(backend)`` picks them per backend; the networks take the choice as
module fields (``conv``, ``upsample``, ``pool``), as flax's ResNet example takes ``conv``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Callable, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxad.config import ComputeDtype
from jaxad.models import rewrites

conv_init = nn.initializers.normal(stddev=0.02)
# Flax's weight of the old running average (PyTorch's momentum 0.1).
BN_MOMENTUM = 0.9


def bn_scale_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def scaled(channels: int, width: float) -> int:
    """Channel count of a layer whose paper width is ``channels``, at width factor ``width``."""
    return max(1, int(round(channels * width)))


class DualBatchNorm(nn.Module):
    """BatchNorm with an optional auxiliary copy (AdvProp, paper section 6.2).

    The auxiliary copy has its own scale, bias and running statistics; the generator sends
    its pseudo-anomaly pass G(x_hat) through it so that statistics of generated images never
    mix with those of real images. With ``advprop=False`` only the main copy exists.
    """

    advprop: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, aux: bool = False) -> jax.Array:
        def make(name: str) -> nn.BatchNorm:
            return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=1e-5,
                                scale_init=bn_scale_init, axis_name=self.axis_name, name=name)

        main = make("main")
        if not self.advprop:
            if aux:
                raise ValueError("aux BatchNorm requested from a network built without AdvProp")
            return main(x)
        auxiliary = make("aux")
        if self.is_initializing():
            # Create both variable sets whichever branch is asked for.
            (main if aux else auxiliary)(x)
        return (auxiliary if aux else main)(x)


ModuleDef = Any
UpsampleImpl = Literal["auto", "lhs_dilation", "matmul", "subpixel", "zero_insert"]
UPSAMPLE_IMPLS: tuple[str, ...] = ("lhs_dilation", *rewrites.CONV_TRANSPOSE)
# Not a formulation: the backend's own choice (default_formulations), made when a model is built.
DEFAULT_UPSAMPLE: UpsampleImpl = "auto"


def conv_transpose_xla(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """XLA's transposed convolution: the convolution of ``x`` dilated by ``stride`` (``lhs_dilation``),
    what ``flax.linen.ConvTranspose`` runs."""
    q = kernel.shape[0] - 1 - padding
    return lax.conv_general_dilated(x, kernel, (1, 1), [(q, q), (q, q)], lhs_dilation=(stride, stride),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                   impl: UpsampleImpl = "lhs_dilation") -> jax.Array:
    """PyTorch-style ConvTranspose2d(k, stride, padding) on NHWC ``x``; output side s*(n-1)+k-2p.

    ``kernel`` is (k, k, cin, cout), the kernel of the equivalent convolution over the
    zero-inserted input. ``impl`` is ``lhs_dilation`` (XLA's own, ``conv_transpose_xla``) or
    one of the rewrites in ``rewrites.CONV_TRANSPOSE`` (``matmul``, ``subpixel``,
    ``zero_insert``); all give the same numbers (tests compare them).
    """
    if impl == "lhs_dilation":
        return conv_transpose_xla(x, kernel, stride, padding)
    if impl not in rewrites.CONV_TRANSPOSE:
        raise ValueError(f"unknown upsample impl {impl!r}; one of {UPSAMPLE_IMPLS}")
    return rewrites.CONV_TRANSPOSE[impl](x, kernel, stride, padding)


class ConvTranspose(nn.Module):
    """PyTorch-semantics ConvTranspose2d with a choice of formulation (see ``conv_transpose``).

    The parameters ("kernel", and "bias" with ``use_bias``) are the same for every ``impl``.
    """

    features: int
    kernel_size: int
    stride: int
    padding: int
    use_bias: bool = False
    impl: UpsampleImpl = "lhs_dilation"
    dtype: Any = None  # the compute dtype, as nn.Conv's: None computes in the inputs' and parameters' dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv_transpose(x, kernel, self.stride, self.padding, self.impl)
        return y if bias is None else y + bias


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 (NHWC): XLA's reduce-window (``nn.max_pool``)."""
    return nn.max_pool(x, (2, 2), strides=(2, 2))


@functools.cache
def upsample_module(impl: UpsampleImpl) -> ModuleDef:
    """``ConvTranspose`` with formulation ``impl``; one object per impl, so that networks built
    with equal formulations compare equal (jit reuses a step compiled for an equal network)."""
    if impl not in UPSAMPLE_IMPLS:
        raise ValueError(f"unknown upsample impl {impl!r}; one of {UPSAMPLE_IMPLS}")
    return ConvTranspose if impl == "lhs_dilation" else functools.partial(ConvTranspose, impl=impl)


@dataclasses.dataclass(frozen=True)
class Formulations:
    """How the networks compute their layers; the networks take these as module fields.

    ``conv`` builds the convolutions (``nn.Conv`` or a partial of it), ``upsample`` the
    transposed convolutions (``ConvTranspose`` or a partial of it), ``pool`` is the U-Nets'
    2x2 max-pool. Parameter trees (names, shapes, init) do not depend on them, so a checkpoint
    written under one formulation loads under another, on another backend.
    """

    conv: ModuleDef = nn.Conv
    upsample: ModuleDef = ConvTranspose
    pool: Callable[[jax.Array], jax.Array] = max_pool_2x2


# XLA's own ops: the choice where the rewrites are unmeasured (TPU).
XLA_FORMULATIONS = Formulations()
# The rewrites: measured faster on a 2-core CPU and on an H200 (docs/performance.md).
REWRITE_FORMULATIONS = Formulations(
    conv=functools.partial(nn.Conv, conv_general_dilated=rewrites.conv_general_dilated),
    upsample=upsample_module("matmul"), pool=rewrites.max_pool_2x2)
FORMULATIONS: dict[str, Formulations] = {"xla": XLA_FORMULATIONS, "rewrites": REWRITE_FORMULATIONS}
# The backends on which the rewrites were measured faster than XLA's ops: jax.default_backend()
# names a GPU "gpu" ("cuda" is its platform name); measured on an NVIDIA GPU only.
REWRITES_MEASURED_FASTER = frozenset({"cpu", "gpu", "cuda"})


@functools.cache
def in_precision(formulations: Formulations, compute_dtype: ComputeDtype) -> Formulations:
    """``formulations`` with their convolutions and transposed convolutions computing in
    ``compute_dtype`` (mixed precision: parameters stay float32 and are cast in each layer, as
    ``nn.Conv(dtype=...)`` does). BatchNorm is not among them: it normalises in float32.

    Args:
        formulations: the layers' formulations.
        compute_dtype: ``"float32"`` (``formulations`` itself) or ``"bfloat16"``.

    Returns:
        The formulations in that precision; one object per argument pair, so that networks
        built alike compare equal (jit reuses a step compiled for an equal network).
    """
    if compute_dtype == "float32":
        return formulations
    if compute_dtype not in typing.get_args(ComputeDtype):
        raise ValueError(f"unknown compute dtype {compute_dtype!r}; one of {typing.get_args(ComputeDtype)}")
    dtype = jnp.dtype(compute_dtype)
    return dataclasses.replace(formulations, conv=functools.partial(formulations.conv, dtype=dtype),
                               upsample=functools.partial(formulations.upsample, dtype=dtype))


def default_formulation_name(backend: str | None = None) -> str:
    """``"rewrites"`` (``jaxad.models.rewrites``) on CPU and GPU, where they were measured
    faster than XLA's own ops; ``"xla"`` on every other backend (TPU). ``backend`` defaults to
    ``jax.default_backend()``.

    ``python -m speed.bench --formulations`` times each formulation on the backend it runs on.
    """
    return "rewrites" if (backend or jax.default_backend()) in REWRITES_MEASURED_FASTER else "xla"


def default_formulations(backend: str | None = None) -> Formulations:
    """The ``Formulations`` a network built for ``backend`` runs (``default_formulation_name``)."""
    return FORMULATIONS[default_formulation_name(backend)]


def choose_formulations(formulations: Formulations | str | None = None,
                        upsample_impl: UpsampleImpl = DEFAULT_UPSAMPLE) -> Formulations:
    """``formulations`` as a ``Formulations``: a name in ``FORMULATIONS``, the object itself, or
    None for the default backend's; ``upsample_impl`` other than "auto" overrides its up-sampling."""
    if formulations is None:
        formulations = default_formulations()
    elif isinstance(formulations, str):
        if formulations not in FORMULATIONS:
            raise ValueError(f"unknown formulations {formulations!r}; one of {tuple(FORMULATIONS)}")
        formulations = FORMULATIONS[formulations]
    if upsample_impl != "auto":
        formulations = dataclasses.replace(formulations, upsample=upsample_module(upsample_impl))
    return formulations


leaky_relu = functools.partial(nn.leaky_relu, negative_slope=0.2)
