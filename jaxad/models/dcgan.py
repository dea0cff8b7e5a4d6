"""GANomaly's DCGAN encoder-decoder (the ``naive`` generator) and its discriminator.

Networks of GANomaly (Akcay et al., 2018; github.com/samet-akcay/ganomaly, ``lib/networks.py``),
which AGAD's appendix A.2 takes as its naive generator and its discriminator. One stride-2
stage is added per doubling of the image side beyond 32, as GANomaly does.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.models.layers import (DEFAULT_UPSAMPLE, ConvTranspose, DualBatchNorm, UpsampleImpl,
                                 conv_general_dilated, conv_init, down_conv, leaky_relu, scaled)


def _extra_stages(image_size: int) -> int:
    return int(round(math.log2(image_size // 32)))


class Encoder(nn.Module):
    """Conv(nc,64)-LReLU, then Conv-BN-LReLU stages doubling channels down to 4x4.

    Returns the 4x4 feature map; ``latent_dim`` > 0 adds the final Conv(4,1,0) to a 1x1 code.
    """

    image_size: int = 32
    width: float = 1.0
    latent_dim: int = 0
    advprop: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, aux: bool = False) -> jax.Array:
        channels = scaled(64, self.width)
        x = leaky_relu(down_conv(channels)(x))
        for _ in range(2 + _extra_stages(self.image_size)):
            channels *= 2
            x = down_conv(channels)(x)
            x = DualBatchNorm(self.advprop, self.axis_name)(x, train, aux)
            x = leaky_relu(x)
        if self.latent_dim:
            # A 4x4 kernel over the 4x4 map: one matmul (conv_general_dilated picks it).
            x = nn.Conv(self.latent_dim, (4, 4), padding="VALID", use_bias=False,
                        kernel_init=conv_init, conv_general_dilated=conv_general_dilated)(x)
        return x


class NaiveGenerator(nn.Module):
    """AGAD's ``naive`` generator: GANomaly's encoder to a 100-d code and DCGAN decoder.

    2,133,632 parameters for one channel at 32x32, width 1 (the paper's "2.04M" = 2^20 units).
    """

    channels: int = 1
    image_size: int = 32
    width: float = 1.0
    latent_dim: int = 100
    advprop: bool = False
    axis_name: str | None = None
    upsample_impl: UpsampleImpl = DEFAULT_UPSAMPLE

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, aux: bool = False) -> jax.Array:
        def bn(h):
            return DualBatchNorm(self.advprop, self.axis_name)(h, train, aux)

        z = Encoder(self.image_size, self.width, self.latent_dim, self.advprop,
                    self.axis_name)(x, train, aux)
        stages = 2 + _extra_stages(self.image_size)
        channels = scaled(64, self.width) * 2 ** stages
        h = nn.relu(bn(ConvTranspose(channels, 4, 1, 0, impl=self.upsample_impl)(z)))
        for _ in range(stages):
            channels //= 2
            h = nn.relu(bn(ConvTranspose(channels, 4, 2, 1, impl=self.upsample_impl)(h)))
        return jnp.tanh(ConvTranspose(self.channels, 4, 2, 1, impl=self.upsample_impl)(h))


class Discriminator(nn.Module):
    """GANomaly's discriminator: the encoder's 4x4 feature map and a Conv(4,1,0) logit.

    Returns ``(logits, features)``: logits of shape (N,), features (N, 4, 4, 256*width), the
    map the latent (feature-matching) loss compares. 663,296 parameters for nc=3 at 32x32.
    """

    image_size: int = 32
    width: float = 1.0
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        features = Encoder(self.image_size, self.width, 0, False, self.axis_name)(x, train)
        logits = nn.Conv(1, (4, 4), padding="VALID", use_bias=False, kernel_init=conv_init,
                         conv_general_dilated=conv_general_dilated)(features)
        return logits.reshape(x.shape[0]), features
