"""Clipping a gradient at a multiple of its own running norm (``jaxad.clipping``)."""

import jax.numpy as jnp
import optax
import pytest

from jaxad.clipping import clip_by_running_norm


def gradient(norm: float) -> dict:
    # Two leaves: the global norm is over both, as optax.clip_by_global_norm's is.
    return {"w": jnp.full((3,), norm / jnp.sqrt(4.0)), "b": jnp.full((1,), norm / jnp.sqrt(4.0))}


def clipped_norms(norms: list[float], factor: float = 3.0, decay: float = 0.5):
    tx = clip_by_running_norm(factor, decay)
    state = tx.init(gradient(1.0))
    out = []
    for norm in norms:
        updates, state = tx.update(gradient(norm), state)
        out.append((float(optax.tree.norm(updates)), float(state.clipped)))
    return out


def test_steady_gradients_pass_unchanged_and_a_spike_is_cut_to_the_factor_times_the_running_norm():
    out = clipped_norms([2.0, 2.0, 2.0, 20.0, 2.0])
    assert [n for n, _ in out[:3]] == pytest.approx([2.0, 2.0, 2.0], rel=1e-6)
    assert out[3] == (pytest.approx(6.0, rel=1e-5), 1.0)  # 3 x the bias-corrected running norm, 2
    assert out[4] == (pytest.approx(2.0, rel=1e-6), 0.0)


def test_the_first_step_has_no_reference_and_the_running_norm_follows_a_drift():
    # Any first gradient passes; a norm that grows 2x a step stays under a 3x factor.
    out = clipped_norms([100.0, 200.0, 400.0, 800.0])
    assert [c for _, c in out] == [0.0, 0.0, 0.0, 0.0]


def test_a_clipped_spike_enters_the_running_norm_at_its_clipped_size():
    # After a spike, the running norm holds 6 (the clipped value), not 20: the next spike is
    # cut against a reference that the first one barely raised.
    tx = clip_by_running_norm(3.0, decay=0.5)
    state = tx.init(gradient(1.0))
    for norm in (2.0, 2.0, 20.0):
        _, state = tx.update(gradient(norm), state)
    debiased = float(state.mean_norm) / (1 - 0.5 ** 3)
    assert debiased == pytest.approx(0.5 * (0.25 * 2 + 0.5 * 2 + 6) / (1 - 0.125), rel=1e-5)


@pytest.mark.parametrize("factor,decay,message", [(1.0, 0.9, "factor must be above 1"),
                                                  (2.0, 1.0, "decay must lie in")])
def test_bad_settings_are_refused(factor, decay, message):
    with pytest.raises(ValueError, match=message):
        clip_by_running_norm(factor, decay)
