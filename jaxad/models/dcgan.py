"""GANomaly's DCGAN encoder-decoder (the ``naive`` generator) and its discriminator.

Networks of GANomaly (Akcay et al., 2018; github.com/samet-akcay/ganomaly, ``lib/networks.py``),
which AGAD's appendix A.2 takes as its naive generator and its discriminator. One stride-2
stage is added per doubling of the image side beyond 32, as GANomaly does.

The convolutions and transposed convolutions are module fields (``conv``, ``upsample``),
XLA's own by default; ``jaxad.models.build_generator`` passes the backend's
(``layers.default_formulations``).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.models.layers import ConvTranspose, DualBatchNorm, ModuleDef, conv_init, leaky_relu, scaled


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
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, aux: bool = False) -> jax.Array:
        # DCGAN's Conv(k=4, s=2, p=1) without bias: halves the side.
        down = functools.partial(self.conv, kernel_size=(4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                                 use_bias=False, kernel_init=conv_init)
        channels = scaled(64, self.width)
        x = leaky_relu(down(channels)(x))
        for _ in range(2 + _extra_stages(self.image_size)):
            channels *= 2
            x = down(channels)(x)
            x = DualBatchNorm(self.advprop, self.axis_name)(x, train, aux)
            x = leaky_relu(x)
        if self.latent_dim:
            x = self.conv(self.latent_dim, (4, 4), padding="VALID", use_bias=False, kernel_init=conv_init)(x)
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
    conv: ModuleDef = nn.Conv
    upsample: ModuleDef = ConvTranspose

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, aux: bool = False) -> jax.Array:
        def bn(h):
            return DualBatchNorm(self.advprop, self.axis_name)(h, train, aux)

        z = Encoder(self.image_size, self.width, self.latent_dim, self.advprop,
                    self.axis_name, self.conv)(x, train, aux)
        stages = 2 + _extra_stages(self.image_size)
        channels = scaled(64, self.width) * 2 ** stages
        h = nn.relu(bn(self.upsample(channels, 4, 1, 0)(z)))
        for _ in range(stages):
            channels //= 2
            h = nn.relu(bn(self.upsample(channels, 4, 2, 1)(h)))
        # The image in float32 whatever the layers compute in: losses and scores read it.
        return jnp.tanh(self.upsample(self.channels, 4, 2, 1)(h)).astype(jnp.float32)


class Discriminator(nn.Module):
    """GANomaly's discriminator: the encoder's 4x4 feature map and a Conv(4,1,0) logit.

    Returns ``(logits, features)``: logits of shape (N,), features (N, 4, 4, 256*width), the
    map the latent (feature-matching) loss compares. 663,296 parameters for nc=3 at 32x32.
    """

    image_size: int = 32
    width: float = 1.0
    axis_name: str | None = None
    conv: ModuleDef = nn.Conv

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        features = Encoder(self.image_size, self.width, 0, False, self.axis_name, self.conv)(x, train)
        logits = self.conv(1, (4, 4), padding="VALID", use_bias=False, kernel_init=conv_init)(features)
        # Float32 whatever the layers compute in: the losses read both.
        return logits.reshape(x.shape[0]).astype(jnp.float32), features.astype(jnp.float32)
