"""Building blocks shared by the generators and the discriminator.

Initialisation follows GANomaly (and DCGAN): conv weights N(0, 0.02), BatchNorm scale
N(1, 0.02), biases 0. BatchNorm uses PyTorch's defaults (momentum 0.1, eps 1e-5), written in
Flax's convention (momentum 0.9 is the weight of the old running average).
"""

from __future__ import annotations

import functools
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

conv_init = nn.initializers.normal(stddev=0.02)


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
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
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


UpsampleImpl = Literal["subpixel", "zero_insert", "lhs_dilation"]


def _subpixel_kernel(kernel: jax.Array, stride: int, padding: int) -> tuple[jax.Array, int, int]:
    """Rewrite a transposed-conv kernel as one stride-1 conv producing stride^2 phases.

    For PyTorch's ConvTranspose2d(k, s, p), output pixel o = s*i + a receives kernel tap t from
    input pixel i + (a + t - q) / s with q = k - 1 - p, whenever that division is exact. Each
    phase a therefore sees a small window of input offsets; stacking the phases on the output
    channel axis gives an ordinary convolution followed by depth-to-space (sub-pixel).
    Returns the (w, w, cin, s*s*cout) kernel and the low/high input padding.
    """
    k = kernel.shape[0]
    q = k - 1 - padding
    offsets = [(a + t - q) // stride for a in range(stride) for t in range(k) if (a + t - q) % stride == 0]
    lo, hi = min(offsets), max(offsets)
    window = hi - lo + 1
    zero = k  # index of an appended zero tap
    table = np.full((stride, window), zero)
    for a in range(stride):
        for t in range(k):
            if (a + t - q) % stride == 0:
                table[a, (a + t - q) // stride - lo] = t
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    # (s, w, s, w, cin, cout) -> (w, w, cin, s, s, cout)
    phases = padded[table[:, :, None, None], table[None, None, :, :]]
    phases = phases.transpose(1, 3, 4, 0, 2, 5)
    cin, cout = kernel.shape[2], kernel.shape[3]
    return phases.reshape(window, window, cin, stride * stride * cout), -lo, hi


def conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                   impl: UpsampleImpl = "subpixel") -> jax.Array:
    """PyTorch-style ConvTranspose2d(k, stride, padding) on NHWC ``x``; output side s*(n-1)+k-2p.

    ``kernel`` is (k, k, cin, cout), the kernel of the equivalent convolution over the
    zero-inserted input. Three formulations give the same numbers (tests compare them):
    ``lhs_dilation`` is XLA's transposed conv (what ``flax.linen.ConvTranspose`` runs; its
    gradient is slow on XLA:CPU), ``zero_insert`` inserts the zeros with ``lax.pad`` and runs a
    stride-1 conv, ``subpixel`` runs one stride-1 conv for all s^2 output phases and
    interleaves them (no multiplications by inserted zeros).
    """
    k = kernel.shape[0]
    q = k - 1 - padding
    dims = ("NHWC", "HWIO", "NHWC")
    if impl == "lhs_dilation" or stride == 1:
        return lax.conv_general_dilated(x, kernel, (1, 1), [(q, q), (q, q)],
                                        lhs_dilation=(stride, stride), dimension_numbers=dims)
    if impl == "zero_insert":
        cfg = [(0, 0, 0), (q, q, stride - 1), (q, q, stride - 1), (0, 0, 0)]
        dilated = lax.pad(x, jnp.zeros((), x.dtype), cfg)
        return lax.conv_general_dilated(dilated, kernel, (1, 1), "VALID", dimension_numbers=dims)
    if impl != "subpixel":
        raise ValueError(f"unknown upsample impl {impl!r}")
    phase_kernel, pad_lo, pad_hi = _subpixel_kernel(kernel, stride, padding)
    y = lax.conv_general_dilated(x, phase_kernel, (1, 1), [(pad_lo, pad_hi), (pad_lo, pad_hi)],
                                 dimension_numbers=dims)
    n, h, w, _ = y.shape
    cout = kernel.shape[3]
    y = y.reshape(n, h, w, stride, stride, cout).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, h * stride, w * stride, cout)
    out_side = stride * (x.shape[1] - 1) + k - 2 * padding
    return y[:, :out_side, :out_side, :]


class ConvTranspose(nn.Module):
    """PyTorch-semantics ConvTranspose2d with a choice of formulation (see ``conv_transpose``)."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    use_bias: bool = False
    impl: UpsampleImpl = "subpixel"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features))
        y = conv_transpose(x, kernel, self.stride, self.padding, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def down_conv(features: int, name: str | None = None) -> nn.Conv:
    """DCGAN's Conv(k=4, s=2, p=1) without bias: halves the side."""
    return nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False,
                   kernel_init=conv_init, name=name)


leaky_relu = functools.partial(nn.leaky_relu, negative_slope=0.2)
