"""Rewrites of the networks' layers that run faster than XLA's own ops on CPU and GPU.

Each computes what XLA's op computes, value and gradients (``tests/test_layers.py``), with
the same kernel layout, so parameters move unchanged between formulations and backends.
They were chosen by timing on a 2-core CPU; on an NVIDIA H200 the whole set runs the train
steps 1.3-1.9x faster than XLA's ops too (docs/performance.md, Layer formulations).
``jaxad.models.layers.default_formulations`` uses them on CPU and GPU; TPUs, unmeasured,
run XLA's ops.

* ``conv_transpose_matmul`` (and ``_subpixel``, ``_zero_insert``): transposed convolutions;
  XLA's own (an ``lhs_dilation`` convolution) has a slow gradient on XLA:CPU.
* ``conv_general_dilated``: a drop-in for ``nn.Conv(conv_general_dilated=...)`` that runs
  convolutions on tiny maps as one dense matmul (``conv_dense``) and strided convolutions with
  their input gradient as a transposed convolution (``strided_conv``).
* ``max_pool_2x2``: a reshape and a max, whose gradient avoids a variadic reduce-window.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

DIMS = ("NHWC", "HWIO", "NHWC")
RewriteUpsampleImpl = Literal["matmul", "subpixel", "zero_insert"]


# --------------------------------------------------------------------------------------
# Transposed convolutions: PyTorch's ConvTranspose2d(k, s, p) on NHWC x, with the kernel
# (k, k, cin, cout) of the equivalent convolution over the zero-inserted input.
# --------------------------------------------------------------------------------------

def conv_transpose_zero_insert(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """Insert the zeros with ``lax.pad``, then a stride-1 convolution (multiplies the zeros)."""
    q = kernel.shape[0] - 1 - padding
    cfg = [(0, 0, 0), (q, q, stride - 1), (q, q, stride - 1), (0, 0, 0)]
    dilated = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    return lax.conv_general_dilated(dilated, kernel, (1, 1), "VALID", dimension_numbers=DIMS)


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


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """One stride-1 convolution for all s^2 output phases, then depth-to-space.

    No multiplication by inserted zeros, though the window also covers taps that are zero for
    some phases (9 taps for 4 useful at k=4, s=2).
    """
    if stride == 1:
        return conv_transpose_zero_insert(x, kernel, stride, padding)  # a padded convolution
    k = kernel.shape[0]
    phase_kernel, pad_lo, pad_hi = _subpixel_kernel(kernel, stride, padding)
    y = lax.conv_general_dilated(x, phase_kernel, (1, 1), [(pad_lo, pad_hi), (pad_lo, pad_hi)],
                                 dimension_numbers=DIMS)
    n, h, w, _ = y.shape
    cout = kernel.shape[3]
    y = y.reshape(n, h, w, stride, stride, cout).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, h * stride, w * stride, cout)
    out_side = stride * (x.shape[1] - 1) + k - 2 * padding
    return y[:, :out_side, :out_side, :]


def conv_transpose_matmul(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """One matmul of every input pixel onto all k*k taps, then col2im (s must divide k;
    otherwise ``conv_transpose_subpixel``).

    No multiplication is wasted and the kernel gradient is one matmul too. With the PyTorch
    tap t' = k-1-t (``kernel`` is the flipped, equivalent-conv kernel), input pixel i sends
    tap t' = s*a + r to output s*(i+a) + r - p, so each of the s*s output phases r is the sum
    of m*m = (k/s)^2 shifted copies of the matmul's output.
    """
    k, cin, cout = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    if k % stride:
        return conv_transpose_subpixel(x, kernel, stride, padding)
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


CONV_TRANSPOSE = {"matmul": conv_transpose_matmul, "subpixel": conv_transpose_subpixel,
                  "zero_insert": conv_transpose_zero_insert}


# --------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------

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
    """Whether the input gradient is exactly a transposed conv of the output gradient:
    a square stride s > 1 and kernel, equal padding p on every side, and (h + 2p - k)
    divisible by s (else the transposed conv's output misses the input's last rows)."""
    (sh, sw), ((plh, phh), (plw, phw)) = strides, pads
    kh, kw = k_shape[0], k_shape[1]
    return (sh == sw > 1 and kh == kw and plh == phh == plw == phw
            and (x_shape[1] + 2 * plh - kh) % sh == 0 and (x_shape[2] + 2 * plw - kw) % sw == 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def strided_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                 input_grad_impl: RewriteUpsampleImpl = "matmul") -> jax.Array:
    """XLA's convolution (NHWC, HWIO, square stride and padding) whose input gradient runs
    as ``CONV_TRANSPOSE[input_grad_impl]``.

    The input gradient of a strided convolution is a transposed convolution. XLA's autodiff
    writes it as an ``lhs_dilation`` convolution, which XLA:CPU runs 2-4x slower than the
    forward (docs/performance.md, Layer formulations); ``matmul`` measured no slower than ``subpixel`` on the
    naive and U-Net steps. Same forward and same gradients as XLA's convolution (tests compare
    them); the kernel gradient stays XLA's. Requires ``_strided_conv_fits``.
    """
    return _xla_conv(x, kernel, stride, padding)


def _xla_conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), [(padding, padding)] * 2,
                                    dimension_numbers=DIMS)


def _strided_conv_fwd(x, kernel, stride, padding, input_grad_impl):
    return _xla_conv(x, kernel, stride, padding), (x, kernel)


def _strided_conv_bwd(stride, padding, input_grad_impl, residuals, g):
    x, kernel = residuals
    # conv(x, w) maps input pixel s*o - p + t to output o through tap t; its transpose is
    # PyTorch's ConvTranspose2d(w), i.e. a transposed conv with the flipped, in/out-swapped kernel.
    dx = CONV_TRANSPOSE[input_grad_impl](g, kernel[::-1, ::-1].swapaxes(2, 3), stride, padding)
    _, kernel_vjp = jax.vjp(lambda k: _xla_conv(x, k, stride, padding), kernel)
    return dx, kernel_vjp(g)[0]


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)

ConvImpl = Literal["xla", "dense", "auto"]


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None, preferred_element_type=None,
                         impl: ConvImpl = "auto") -> jax.Array:
    """``lax.conv_general_dilated`` with the formulations XLA:CPU runs faster.

    A drop-in for ``flax.linen.Conv(..., conv_general_dilated=conv_general_dilated)``: the
    module, its parameters and their names stay those of ``nn.Conv``. ``impl="auto"`` takes,
    for plain 2-D NHWC convolutions, ``conv_dense`` on maps with h*w <= kh*kw, and
    ``strided_conv`` for strided convolutions where its gradient is exact
    (``_strided_conv_fits``); else XLA's conv. ``"xla"`` is always XLA's, ``"dense"`` dense
    whenever the layer is plain 2-D NHWC.
    """
    plain = (lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
             and all(d == 1 for d in (lhs_dilation or (1, 1))) and all(d == 1 for d in (rhs_dilation or (1, 1)))
             and preferred_element_type is None
             and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == lax.conv_dimension_numbers(lhs.shape, rhs.shape, DIMS))
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


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------

def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 (NHWC): a reshape and a max over the two window axes, with
    a gradient of its own.

    Same outputs and gradients as ``nn.max_pool(x, (2, 2), strides=(2, 2))``: the gradient
    goes to the window's first maximum in row-major order, as XLA's select-and-scatter sends
    it. It is about three times faster on XLA:CPU, where the gradient of ``reduce_window`` max
    carries argmax indices through a variadic reduce-window. The gradient is not jax's for
    ``jnp.max``, which divides by the number of inputs equal to the maximum: when XLA computes
    the pooled input in two fusions that round differently, that number is 0 and the gradient
    NaN (seen in U-Net steps compiled without optimisation passes). Here comparisons within
    each window pick one input, whatever the rounding.
    Odd sides fall back to ``nn.max_pool`` (which drops the last row/column).
    """
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        return nn.max_pool(x, (2, 2), strides=(2, 2))
    return _even_max_pool_2x2(x)


def _windows(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def _even_max_pool_2x2(x: jax.Array) -> jax.Array:
    return _windows(x).max(axis=(2, 4))


def _even_max_pool_2x2_forward(x: jax.Array):
    return _even_max_pool_2x2(x), x


def _even_max_pool_2x2_backward(x: jax.Array, cotangent: jax.Array):
    windows = _windows(x)
    a, b, c, d = (windows[:, :, i, :, j] for i in range(2) for j in range(2))  # row-major
    first_a = (a >= b) & (a >= c) & (a >= d)
    first_b = ~first_a & (b >= c) & (b >= d)
    first_c = ~first_a & ~first_b & (c >= d)
    first_d = ~(first_a | first_b | first_c)
    zero = jnp.zeros_like(cotangent)
    to_a, to_b, to_c, to_d = (jnp.where(first, cotangent, zero) for first in (first_a, first_b, first_c, first_d))
    rows = jnp.stack([jnp.stack([to_a, to_b], -2), jnp.stack([to_c, to_d], -2)], 2)  # (n, h/2, 2, w/2, 2, C)
    return (rows.reshape(x.shape),)


_even_max_pool_2x2.defvjp(_even_max_pool_2x2_forward, _even_max_pool_2x2_backward)
