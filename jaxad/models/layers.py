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


UpsampleImpl = Literal["subpixel", "zero_insert", "lhs_dilation", "matmul"]
# The fastest formulation measured on XLA:CPU (BUILD_NOTES, issue 6); all four agree.
DEFAULT_UPSAMPLE: UpsampleImpl = "matmul"


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
                   impl: UpsampleImpl = DEFAULT_UPSAMPLE) -> jax.Array:
    """PyTorch-style ConvTranspose2d(k, stride, padding) on NHWC ``x``; output side s*(n-1)+k-2p.

    ``kernel`` is (k, k, cin, cout), the kernel of the equivalent convolution over the
    zero-inserted input. Three formulations give the same numbers (tests compare them):
    ``lhs_dilation`` is XLA's transposed conv (what ``flax.linen.ConvTranspose`` runs; its
    gradient is slow on XLA:CPU), ``zero_insert`` inserts the zeros with ``lax.pad`` and runs a
    stride-1 conv, ``subpixel`` runs one stride-1 conv for all s^2 output phases and
    interleaves them (no multiplications by inserted zeros; its window also covers taps that are
    zero for some phases, 9 taps for 4 useful at k=4, s=2), ``matmul`` (when s divides k) runs
    one matmul of every input pixel with all k*k taps and adds the overlapping taps into place
    (col2im): no multiplication is wasted and the kernel gradient is one matmul too.
    """
    k = kernel.shape[0]
    q = k - 1 - padding
    dims = ("NHWC", "HWIO", "NHWC")
    if impl == "matmul" and k % stride == 0:
        return _conv_transpose_matmul(x, kernel, stride, padding)
    if impl == "lhs_dilation" or stride == 1:
        return lax.conv_general_dilated(x, kernel, (1, 1), [(q, q), (q, q)],
                                        lhs_dilation=(stride, stride), dimension_numbers=dims)
    if impl == "zero_insert":
        cfg = [(0, 0, 0), (q, q, stride - 1), (q, q, stride - 1), (0, 0, 0)]
        dilated = lax.pad(x, jnp.zeros((), x.dtype), cfg)
        return lax.conv_general_dilated(dilated, kernel, (1, 1), "VALID", dimension_numbers=dims)
    if impl not in ("subpixel", "matmul"):  # matmul with k % stride != 0 falls back here
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


def _conv_transpose_matmul(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """ConvTranspose2d(k, s, p) with s | k: one matmul onto all k*k taps, then col2im.

    With the PyTorch tap t' = k-1-t (``kernel`` is the flipped, equivalent-conv kernel),
    input pixel i sends tap t' = s*a + r to output s*(i+a) + r - p. So each of the s*s output
    phases r is the sum of m*m = (k/s)^2 shifted copies of the matmul's output.
    """
    k, cin, cout = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    s, m = stride, k // stride
    n, h, w, _ = x.shape
    taps = kernel[::-1, ::-1]
    if h == 1 and w == 1:
        # A 1x1 input (the DCGAN decoder's first layer): the output is the matmul itself.
        y = jnp.dot(x.reshape(n, cin), taps.transpose(2, 0, 1, 3).reshape(cin, k * k * cout))
        y = y.reshape(n, k, k, cout)
        return y[:, padding:k - padding, padding:k - padding, :]
    # columns ordered (a, b, r_h, r_w, cout) for taps (s*a + r_h, s*b + r_w)
    cols = taps.reshape(m, s, m, s, cin, cout).transpose(4, 0, 2, 1, 3, 5).reshape(cin, k * k * cout)
    y = jnp.dot(x, cols).reshape(n, h, w, m, m, s, s, cout)
    if m == 1:
        phases = y[:, :, :, 0, 0]
    else:
        phases = sum(jnp.pad(y[:, :, :, a, b], ((0, 0), (a, m - 1 - a), (b, m - 1 - b), (0, 0), (0, 0), (0, 0)))
                     for a in range(m) for b in range(m))
    hp, wp = h + m - 1, w + m - 1
    out = phases.transpose(0, 1, 3, 2, 4, 5).reshape(n, hp * s, wp * s, cout)
    ho, wo = s * (h - 1) + k - 2 * padding, s * (w - 1) + k - 2 * padding
    return out[:, padding:padding + ho, padding:padding + wo, :]


ConvImpl = Literal["xla", "dense", "auto"]


def _dense_conv_table(h: int, w: int, kh: int, kw: int, strides, pads) -> tuple[np.ndarray, int, int]:
    """For each (input pixel, output pixel), the kernel tap that joins them (kh*kw: none)."""
    (sh, sw), ((plh, phh), (plw, phw)) = strides, pads
    ho, wo = (h + plh + phh - kh) // sh + 1, (w + plw + phw - kw) // sw + 1
    table = np.full((h, w, ho, wo), kh * kw)
    for i in range(h):
        for oi in range(ho):
            a = i - sh * oi + plh
            if not 0 <= a < kh:
                continue
            for j in range(w):
                for oj in range(wo):
                    b = j - sw * oj + plw
                    if 0 <= b < kw:
                        table[i, j, oi, oj] = a * kw + b
    return table.reshape(h * w, ho * wo), ho, wo


def conv_dense(x: jax.Array, kernel: jax.Array, strides=(1, 1), padding=((0, 0), (0, 0)),
               precision=None) -> jax.Array:
    """A 2-D convolution (NHWC, HWIO) as ONE matmul with the layer's dense (h*w*cin, ho*wo*cout) matrix.

    Exact (same sums, only the order differs). Worth it on maps so small that the matrix has
    no more entries than the kernel has taps per output (h*w <= kh*kw): XLA:CPU runs a 3x3
    convolution on a 2x2 map (the U-Nets' bottom level) at about 1 GFLOP/s; as a matmul it runs
    at the machine's matmul speed.
    """
    n, h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    table, ho, wo = _dense_conv_table(h, w, kh, kw, tuple(strides), tuple(map(tuple, padding)))
    taps = jnp.concatenate([kernel.reshape(kh * kw, cin, cout), jnp.zeros((1, cin, cout), kernel.dtype)])
    matrix = taps[table].transpose(0, 2, 1, 3).reshape(h * w * cin, ho * wo * cout)
    y = jnp.dot(x.reshape(n, h * w * cin), matrix, precision=precision)
    return y.reshape(n, ho, wo, cout)


def _dense_pays(x_shape, k_shape) -> bool:
    return x_shape[1] * x_shape[2] <= k_shape[0] * k_shape[1]


def _strided_conv_fits(x_shape, k_shape, strides, pads) -> bool:
    """Whether the input gradient is exactly ``conv_transpose`` of the output gradient:
    a square stride s > 1 and kernel, equal padding p on every side, and (h + 2p - k)
    divisible by s (else the transposed conv's output misses the input's last rows)."""
    (sh, sw), ((plh, phh), (plw, phw)) = strides, pads
    kh, kw = k_shape[0], k_shape[1]
    return (sh == sw > 1 and kh == kw and plh == phh == plw == phw
            and (x_shape[1] + 2 * plh - kh) % sh == 0 and (x_shape[2] + 2 * plw - kw) % sw == 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def strided_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                 input_grad_impl: UpsampleImpl = DEFAULT_UPSAMPLE) -> jax.Array:
    """``lax.conv_general_dilated`` (NHWC, HWIO, square stride and padding) whose input
    gradient runs as ``conv_transpose(..., impl=input_grad_impl)``.

    The input gradient of a strided convolution is a transposed convolution. XLA's autodiff
    writes it as an ``lhs_dilation`` convolution, which XLA:CPU runs 2-4x slower than the
    forward (BUILD_NOTES, issue 6). The default formulation is the up-convolutions' one
    (``subpixel`` measured no faster on the naive and U-Net steps). Same forward and same
    gradients as XLA's convolution (tests compare them); the kernel gradient stays XLA's.
    Requires ``_strided_conv_fits``.
    """
    return _xla_conv(x, kernel, stride, padding)


def _xla_conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), [(padding, padding)] * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _strided_conv_fwd(x, kernel, stride, padding, input_grad_impl):
    return _xla_conv(x, kernel, stride, padding), (x, kernel)


def _strided_conv_bwd(stride, padding, input_grad_impl, residuals, g):
    x, kernel = residuals
    # conv(x, w) maps input pixel s*o - p + t to output o through tap t; its transpose is
    # PyTorch's ConvTranspose2d(w), i.e. conv_transpose with the flipped, in/out-swapped kernel.
    dx = conv_transpose(g, kernel[::-1, ::-1].swapaxes(2, 3), stride, padding, input_grad_impl)
    _, kernel_vjp = jax.vjp(lambda k: _xla_conv(x, k, stride, padding), kernel)
    return dx, kernel_vjp(g)[0]


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None, preferred_element_type=None,
                         impl: ConvImpl = "auto") -> jax.Array:
    """``lax.conv_general_dilated`` with the formulations XLA:CPU runs faster.

    A drop-in for ``flax.linen.Conv(..., conv_general_dilated=conv_general_dilated)``: the
    module, its parameters and their names stay those of ``nn.Conv``. ``impl="auto"`` takes,
    for plain 2-D NHWC convolutions, ``conv_dense`` on maps with h*w <= kh*kw, and
    ``strided_conv`` (XLA's forward, the input gradient as ``conv_transpose``) for strided
    convolutions where that gradient is exact (``_strided_conv_fits``); else XLA's conv.
    ``"xla"`` is always XLA's, ``"dense"`` dense whenever the layer is plain 2-D NHWC.
    """
    plain = (lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
             and all(d == 1 for d in (lhs_dilation or (1, 1))) and all(d == 1 for d in (rhs_dilation or (1, 1)))
             and preferred_element_type is None
             and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
    if impl not in ("xla", "dense", "auto"):
        raise ValueError(f"unknown conv impl {impl!r}")
    pads = None
    if plain:
        pads = tuple(map(tuple, lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
                         if isinstance(padding, str) else padding))
    if plain and (impl == "dense" or (impl == "auto" and _dense_pays(lhs.shape, rhs.shape))):
        return conv_dense(lhs, rhs, window_strides, pads, precision)
    if (plain and impl == "auto" and precision is None
            and _strided_conv_fits(lhs.shape, rhs.shape, tuple(window_strides), pads)):
        return strided_conv(lhs, rhs, window_strides[0], pads[0][0])
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count,
                                    precision=precision, preferred_element_type=preferred_element_type)


class ConvTranspose(nn.Module):
    """PyTorch-semantics ConvTranspose2d with a choice of formulation (see ``conv_transpose``)."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    use_bias: bool = False
    impl: UpsampleImpl = DEFAULT_UPSAMPLE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", conv_init, (k, k, x.shape[-1], self.features))
        y = conv_transpose(x, kernel, self.stride, self.padding, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 (NHWC), as a reshape and a max over the two window axes.

    Same outputs as ``nn.max_pool(x, (2, 2), strides=(2, 2))``. Its gradient is three times
    faster on XLA:CPU: the gradient of ``reduce_window`` max carries argmax indices through a
    variadic reduce-window. Where a window holds tied maxima the gradient is shared equally
    among them instead of going to the first; after a ReLU (the U-Nets) ties are zeros whose
    ReLU gradient is zero, so the gradient reaching the convolutions is identical.
    Odd sides fall back to ``nn.max_pool`` (which drops the last row/column).
    """
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        return nn.max_pool(x, (2, 2), strides=(2, 2))
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def down_conv(features: int, name: str | None = None) -> nn.Conv:
    """DCGAN's Conv(k=4, s=2, p=1) without bias: halves the side (input gradient through
    ``strided_conv``, see ``conv_general_dilated``)."""
    return nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False,
                   kernel_init=conv_init, conv_general_dilated=conv_general_dilated, name=name)


leaky_relu = functools.partial(nn.leaky_relu, negative_slope=0.2)
