"""AGAD's loss terms as pure functions (Shi and Zhang, arXiv 2304.04211, section 3).

Each term is a mean over its own sub-batch and all elements. The weighted sums live in
``generator_normal_loss``, ``generator_anomaly_loss`` and ``discriminator_loss``; the train
step only gathers network outputs and calls them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxad.config import LossConfig


def bce(logits: jax.Array, target: float) -> jax.Array:
    """Mean sigmoid binary cross-entropy of ``logits`` against the constant label ``target``."""
    return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)).mean()


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """``mean |a - b|``."""
    return jnp.abs(a - b).mean()


def l2(a: jax.Array, b: jax.Array) -> jax.Array:
    """``mean (a - b)^2``."""
    return jnp.square(a - b).mean()


def adversarial_loss(fake_logits: jax.Array) -> jax.Array:
    """Adversarial loss L_adv: the generator wants D to call its reconstructions real."""
    return bce(fake_logits, 1.0)


def contextual_loss(images: jax.Array, reconstructions: jax.Array) -> jax.Array:
    """Contextual loss L_con = ||x - G(x)||_1: reconstruct normal images."""
    return l1(images, reconstructions)


def contextual_adversarial_loss(reconstructions: jax.Array, re_reconstructions: jax.Array) -> jax.Array:
    """Contextual adversarial loss L_adcon = ||G(x) - G(G(x))||_1.

    The reconstruction is a pseudo-anomaly that G must fail to reconstruct: the generator
    MAXIMISES this term (it enters ``generator_normal_loss`` with a minus sign).
    """
    return l1(reconstructions, re_reconstructions)


def latent_loss(real_features: jax.Array, fake_features: jax.Array) -> jax.Array:
    """Latent (feature-matching) loss L_lat = ||f(x) - f(G(x))||_2^2 on D's feature map."""
    return l2(real_features, fake_features)


class NormalTerms(NamedTuple):
    """The unweighted terms of the generator's loss on normal images."""

    adversarial: jax.Array
    contextual: jax.Array
    contextual_adversarial: jax.Array
    latent: jax.Array


class AnomalyTerms(NamedTuple):
    """The unweighted errors the generator maximises on true anomalies."""

    adversarial: jax.Array      # bce(D(G(x_a)), t), t = LossConfig.anomaly_adversarial_target
    reconstruction: jax.Array   # L1 on the pair ``LossConfig.anomaly_recon_pair`` chooses
    latent: jax.Array           # L2(f(x_a), f(G(x_a)))


def generator_normal_loss(terms: NormalTerms, cfg: LossConfig) -> jax.Array:
    """L_n = w_adv L_adv + w_con L_con - w_adcon L_adcon + w_lat L_lat."""
    return (cfg.w_adv * terms.adversarial + cfg.w_con * terms.contextual
            - cfg.w_adcon * terms.contextual_adversarial + cfg.w_lat * terms.latent)


def generator_anomaly_loss(terms: AnomalyTerms, cfg: LossConfig) -> jax.Array:
    """L_a: the anomaly branch maximises its errors through reciprocals (smoother than negatives).

    L_a = w_adv / (bce + eps) + w_adcon / (L1 + eps) + w_lat / (L2 + eps), each error already
    averaged over the anomaly sub-batch.
    """
    return (cfg.w_adv / (terms.adversarial + cfg.eps)
            + cfg.w_adcon / (terms.reconstruction + cfg.eps)
            + cfg.w_lat / (terms.latent + cfg.eps))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array,
                       anomaly_logits: jax.Array | None = None) -> jax.Array:
    """L_D = bce(D(x), 1) + bce(D(sg(G(x))), 0) [+ bce(D(x_a), 0) when anomalies are given]."""
    loss = bce(real_logits, 1.0) + bce(fake_logits, 0.0)
    if anomaly_logits is not None:
        loss = loss + bce(anomaly_logits, 0.0)
    return loss


def reconstruction_error(images: jax.Array, reconstructions: jax.Array) -> jax.Array:
    """The anomaly score A(x) = ||x - G(x)||_2 per image, over all pixels and channels."""
    diff = (images - reconstructions).reshape(images.shape[0], -1)
    return jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))
