"""The networks: generators ``naive``, ``unet``, ``unetpp`` and the discriminator."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from jaxad.config import ModelConfig
from jaxad.models.dcgan import Discriminator, Encoder, NaiveGenerator
from jaxad.models.layers import (DEFAULT_UPSAMPLE, ConvTranspose, DualBatchNorm, Formulations, UpsampleImpl,
                                 choose_formulations, conv_transpose, default_formulations)
from jaxad.models.unet import NestedUNet


def build_generator(cfg: ModelConfig, advprop: bool = False, axis_name: str | None = None,
                    upsample_impl: UpsampleImpl = DEFAULT_UPSAMPLE,
                    formulations: Formulations | str | None = None) -> nn.Module:
    """The generator ``cfg.backbone`` names; called as ``G.apply(vars, x, train, aux)``.

    ``formulations`` ("xla", "cpu" or a ``Formulations``; None: the default backend's, see
    ``default_formulations``) and ``upsample_impl`` (other than "auto") choose how its layers
    compute; the parameters are the same whatever they are.
    """
    f = choose_formulations(formulations, upsample_impl)
    if cfg.backbone == "naive":
        return NaiveGenerator(cfg.channels, cfg.image_size, cfg.width, cfg.latent_dim, advprop,
                              axis_name, conv=f.conv, upsample=f.upsample)
    return NestedUNet(cfg.channels, cfg.width, cfg.backbone == "unetpp", advprop, axis_name,
                      conv=f.conv, upsample=f.upsample, pool=f.pool)


def build_discriminator(cfg: ModelConfig, axis_name: str | None = None,
                        formulations: Formulations | str | None = None) -> Discriminator:
    """GANomaly's discriminator for images of ``cfg.image_size`` (``formulations`` as in
    ``build_generator``)."""
    return Discriminator(cfg.image_size, cfg.width, axis_name, conv=choose_formulations(formulations).conv)


def count_params(params) -> int:
    """Number of trainable parameters in a params pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


__all__ = ["build_generator", "build_discriminator", "count_params", "NaiveGenerator",
           "NestedUNet", "Discriminator", "Encoder", "ConvTranspose", "DualBatchNorm",
           "conv_transpose", "Formulations", "default_formulations"]
