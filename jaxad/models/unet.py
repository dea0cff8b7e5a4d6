"""U-Net and UNet++ generators, as in the UNet++ paper's code (Zhou et al., 2018;
github.com/MrGiovanni/UNetPlusPlus), which AGAD's appendix A.2 uses.

Five levels of 32, 64, 128, 256, 512 filters; each node two 3x3 Conv-BN-ReLU (convs without
bias, since BN follows); 2x2 max-pool down, 2x2 stride-2 transposed conv up (halving the
channels), skips concatenated, a 1x1 conv to the image channels and tanh.

The convolutions, transposed convolutions and max-pool are module fields (``conv``,
``upsample``, ``pool``), XLA's own by default; ``jaxad.models.build_generator`` passes the
backend's (``layers.default_formulations``).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.models.layers import ConvTranspose, DualBatchNorm, ModuleDef, conv_init, max_pool_2x2, scaled

LEVEL_FILTERS = (32, 64, 128, 256, 512)


class ConvNode(nn.Module):
    """One U-Net node: two 3x3 Conv-BN-ReLU."""

    features: int
    advprop: bool = False
    axis_name: str | None = None
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, aux: bool = False) -> jax.Array:
        for _ in range(2):
            x = self.conv(self.features, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                          kernel_init=conv_init)(x)
            x = nn.relu(DualBatchNorm(self.advprop, self.axis_name)(x, train, aux))
        return x


class NestedUNet(nn.Module):
    """UNet++ (``nested=True``) or U-Net (``nested=False``) on the same five levels.

    Node X(i, j) at level i, column j. U-Net: X(i, 1) for the decoder path only, each taking
    up(X(i+1, ·)) and the skip X(i, 0). UNet++: X(i, j) takes up(X(i+1, j-1)) concatenated
    with every X(i, 0..j-1); the output comes from X(0, 4), no deep supervision.
    Parameters at nc=3, width 1: U-Net 7,763,107, UNet++ 9,045,891 (paper: 7.76M, 9.04M).
    """

    channels: int = 3
    width: float = 1.0
    nested: bool = True
    advprop: bool = False
    axis_name: str | None = None
    conv: ModuleDef = nn.Conv
    upsample: ModuleDef = ConvTranspose
    pool: Callable[[jax.Array], jax.Array] = max_pool_2x2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, aux: bool = False) -> jax.Array:
        filters = [scaled(f, self.width) for f in LEVEL_FILTERS]
        levels = len(filters)

        def node(i: int, j: int, h: jax.Array) -> jax.Array:
            return ConvNode(filters[i], self.advprop, self.axis_name, self.conv, name=f"X_{i}_{j}")(h, train, aux)

        def up(i: int, j: int, h: jax.Array) -> jax.Array:
            # From level i+1 to level i, halving the channels.
            return self.upsample(filters[i], 2, 2, 0, use_bias=True, name=f"up_{i}_{j}")(h)

        grid: dict[tuple[int, int], jax.Array] = {}
        h = x
        for i in range(levels):
            h = node(i, 0, h if i == 0 else self.pool(h))
            grid[i, 0] = h
        if self.nested:
            for j in range(1, levels):
                for i in range(levels - j):
                    skips = [grid[i, k] for k in range(j)]
                    grid[i, j] = node(i, j, jnp.concatenate(skips + [up(i, j, grid[i + 1, j - 1])], -1))
            out = grid[0, levels - 1]
        else:
            h = grid[levels - 1, 0]
            for i in reversed(range(levels - 1)):
                j = levels - 1 - i
                h = node(i, j, jnp.concatenate([grid[i, 0], up(i, j, h)], -1))
            out = h
        out = self.conv(self.channels, (1, 1), kernel_init=conv_init)(out)
        # The image in float32 whatever the layers compute in: losses and scores read it.
        return jnp.tanh(out).astype(jnp.float32)
