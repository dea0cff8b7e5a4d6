"""The loss terms against values computed by hand on tiny arrays."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.config import LossConfig
from jaxad.losses import (AnomalyTerms, NormalTerms, adversarial_loss, bce, contextual_adversarial_loss,
                          contextual_loss, discriminator_loss, generator_anomaly_loss,
                          generator_normal_loss, latent_loss, reconstruction_error)


def test_bce_against_hand_values():
    # logit 0 -> p = 0.5 -> -log(0.5) for either target
    assert float(bce(jnp.zeros(3), 1.0)) == pytest.approx(math.log(2))
    # logit 2, target 0: -log(1 - sigmoid(2)) = log(1 + e^2)
    assert float(bce(jnp.array([2.0]), 0.0)) == pytest.approx(math.log(1 + math.e ** 2), rel=1e-6)
    assert float(adversarial_loss(jnp.array([2.0, -1.0]))) == pytest.approx(
        (math.log(1 + math.e ** -2) + math.log(1 + math.e)) / 2, rel=1e-6)


def test_reconstruction_terms():
    x = jnp.array([[1.0, -1.0], [0.5, 0.0]])
    x_hat = jnp.array([[0.0, -1.0], [0.0, 0.5]])
    assert float(contextual_loss(x, x_hat)) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert float(contextual_adversarial_loss(x, x_hat)) == pytest.approx(0.5)
    assert float(latent_loss(x, x_hat)) == pytest.approx((1 + 0 + 0.25 + 0.25) / 4)
    np.testing.assert_allclose(reconstruction_error(x, x_hat), [1.0, math.sqrt(0.5)], rtol=1e-6)


def test_normal_loss_weights_and_sign_of_contextual_adversarial_term():
    terms = NormalTerms(adversarial=jnp.array(1.0), contextual=jnp.array(2.0),
                        contextual_adversarial=jnp.array(3.0), latent=jnp.array(4.0))
    # 1*1 + 50*2 - 15*3 + 5*4
    assert float(generator_normal_loss(terms, LossConfig())) == pytest.approx(1 + 100 - 45 + 20)
    # w_adcon = 0 is the paper's ablation without contextual adversarial information
    assert float(generator_normal_loss(terms, LossConfig(w_adcon=0.0))) == pytest.approx(121)


def test_anomaly_loss_takes_reciprocals():
    terms = AnomalyTerms(adversarial=jnp.array(0.5), reconstruction=jnp.array(0.25), latent=jnp.array(2.0))
    cfg = LossConfig(eps=0.0)
    assert float(generator_anomaly_loss(terms, cfg)) == pytest.approx(1 / 0.5 + 15 / 0.25 + 5 / 2.0)
    # eps guards the division when an error vanishes
    zero = AnomalyTerms(jnp.array(0.0), jnp.array(0.0), jnp.array(0.0))
    assert np.isfinite(float(generator_anomaly_loss(zero, LossConfig())))


def test_discriminator_loss_with_and_without_anomalies():
    real, fake, anomaly = jnp.zeros(4), jnp.zeros(4), jnp.array([2.0])
    assert float(discriminator_loss(real, fake)) == pytest.approx(2 * math.log(2))
    assert float(discriminator_loss(real, fake, anomaly)) == pytest.approx(
        2 * math.log(2) + math.log(1 + math.e ** 2), rel=1e-6)
