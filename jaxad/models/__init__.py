"""The networks: generators ``naive``, ``unet``, ``unetpp`` and the discriminator.

``BACKBONES`` is the one place a generator is added: its builder and the image sides it takes.
``ModelConfig`` checks a config against it, and the command line offers its names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import numpy as np

from jaxad.models.dcgan import Discriminator, Encoder, NaiveGenerator
from jaxad.models.layers import (DEFAULT_UPSAMPLE, ConvTranspose, DualBatchNorm, Formulations, UpsampleImpl,
                                 choose_formulations, conv_transpose, default_formulations, in_precision)
from jaxad.models.unet import NestedUNet

if TYPE_CHECKING:  # jaxad.config looks backbones up here when a ModelConfig is built
    from jaxad.config import ModelConfig


def naive_side_problem(image_size: int) -> str | None:
    """Why the naive generator cannot take ``image_size`` (it halves down to 32), or None."""
    side, ok = image_size, image_size >= 32
    while ok and side > 32:
        ok, side = side % 2 == 0, side // 2
    return None if ok and side == 32 else "takes images of side 32 * 2^k (32, 64, 128, ...)"


def unet_side_problem(image_size: int) -> str | None:
    """Why a U-Net (four 2x poolings) cannot take ``image_size``, or None."""
    if image_size % 16 or image_size < 16:
        return "needs an image side divisible by 16"
    return None


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A generator: ``build(cfg, axis_name, formulations)`` makes the module, called as
    ``G.apply(vars, x, train, aux)``; ``image_size_problem(side)`` says why a side does not fit
    (None when it does)."""

    build: Callable[[ModelConfig, str | None, Formulations], nn.Module]
    image_size_problem: Callable[[int], str | None]


def _naive(cfg: ModelConfig, axis_name: str | None, f: Formulations) -> nn.Module:
    return NaiveGenerator(cfg.channels, cfg.image_size, cfg.width, cfg.latent_dim, cfg.advprop, axis_name,
                          conv=f.conv, upsample=f.upsample)


def _unet(nested: bool) -> Callable[[ModelConfig, str | None, Formulations], nn.Module]:
    def build(cfg: ModelConfig, axis_name: str | None, f: Formulations) -> nn.Module:
        return NestedUNet(cfg.channels, cfg.width, nested, cfg.advprop, axis_name, conv=f.conv, upsample=f.upsample,
                          pool=f.pool)
    return build


BACKBONES: dict[str, Backbone] = {
    "naive": Backbone(_naive, naive_side_problem),
    "unet": Backbone(_unet(nested=False), unet_side_problem),
    "unetpp": Backbone(_unet(nested=True), unet_side_problem),
}


def build_generator(cfg: ModelConfig, axis_name: str | None = None,
                    upsample_impl: UpsampleImpl = DEFAULT_UPSAMPLE,
                    formulations: Formulations | str | None = None) -> nn.Module:
    """The generator ``cfg.backbone`` names; called as ``G.apply(vars, x, train, aux)``.

    It carries AdvProp's auxiliary BatchNorm layers (``aux=True`` selects them) when
    ``cfg.pseudo_anomaly_bn == "auxiliary"``.

    ``formulations``: how its layers are computed, a name in ``layers.FORMULATIONS``, a
    ``Formulations``, or None for the default backend's; ``upsample_impl`` other than "auto"
    overrides its up-sampling. Its convolutions compute in ``cfg.compute_dtype``."""
    chosen = choose_formulations(formulations, upsample_impl)
    return BACKBONES[cfg.backbone].build(cfg, axis_name, in_precision(chosen, cfg.compute_dtype))


def build_discriminator(cfg: ModelConfig, axis_name: str | None = None,
                        formulations: Formulations | str | None = None) -> Discriminator:
    """GANomaly's discriminator for images of ``cfg.image_size`` (``formulations`` as in
    ``build_generator``), its convolutions computing in ``cfg.compute_dtype``."""
    chosen = in_precision(choose_formulations(formulations), cfg.compute_dtype)
    return Discriminator(cfg.image_size, cfg.width, axis_name, conv=chosen.conv)


def count_params(params) -> int:
    """Number of trainable parameters in a params pytree."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


__all__ = ["BACKBONES", "Backbone", "build_generator", "build_discriminator", "count_params", "NaiveGenerator",
           "NestedUNet", "Discriminator", "Encoder", "ConvTranspose", "DualBatchNorm",
           "conv_transpose", "Formulations", "default_formulations"]
