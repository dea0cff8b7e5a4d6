"""The train and score steps: which branches run, BatchNorm bookkeeping, D reset, determinism."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxad.compat import upgrade_config_dict
from jaxad.config import ExperimentConfig, ModelConfig, without_inert_fields
from jaxad.runs import config_differences
from jaxad.train import (_apply, _reconstruct_normal, _reconstruct_pseudo, check_images, create_train_state,
                         generator_passes, live_generator, reconstruct, score_step, train_step)

TINY = ModelConfig(backbone="naive", channels=1, width=0.125)


def tiny_config(**changes) -> ExperimentConfig:
    return ExperimentConfig(model=TINY).replace(**changes)


def images(key: int, n: int, channels: int = 1) -> jax.Array:
    return jax.random.uniform(jax.random.key(key), (n, 32, 32, channels), minval=-1, maxval=1)


NORMAL = {"normal": images(1, 8)}
WITH_ANOMALIES = {"normal": images(1, 8), "anomaly": images(2, 4)}
step = jax.jit(train_step)


def tree_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


def tree_close(a, b, atol: float = 1e-7) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.allclose(x, y, rtol=1e-5, atol=atol)), a, b)))


def test_normal_batch_never_touches_the_anomaly_terms():
    state = create_train_state(tiny_config(), jax.random.key(0))
    _, metrics = step(state, NORMAL, jax.random.key(1))
    assert not any(name.startswith("g_anomaly") for name in metrics)
    assert "d_anomaly" not in metrics
    assert float(metrics["g_loss"]) == pytest.approx(float(metrics["g_normal_loss"]))


@pytest.mark.parametrize("anomaly_bn", ["joint", "own"])
def test_batch_with_anomalies_adds_the_anomaly_branch(anomaly_bn):
    state = create_train_state(tiny_config(**{"train.anomaly_bn": anomaly_bn}), jax.random.key(0))
    _, normal_only = step(state, NORMAL, jax.random.key(1))
    _, metrics = step(state, WITH_ANOMALIES, jax.random.key(1))
    assert float(metrics["g_anomaly_loss"]) > 0
    assert float(metrics["g_loss"]) == pytest.approx(
        float(metrics["g_normal_loss"] + metrics["g_anomaly_loss"]), rel=1e-5)
    assert float(metrics["d_loss"]) > float(normal_only["d_loss"])
    # With the anomalies as a sub-batch of their own, the normal branch is the same
    # computation on the same normal images; in a joint batch they share its statistics.
    same = float(metrics["g_normal_loss"]) == pytest.approx(float(normal_only["g_normal_loss"]), rel=1e-5)
    assert same == (anomaly_bn == "own")


def main_and_aux_stats(batch_stats):
    flat = jax.tree_util.tree_flatten_with_path(batch_stats)[0]
    main = {jax.tree_util.keystr(p): v for p, v in flat if "'main'" in jax.tree_util.keystr(p)}
    aux = {jax.tree_util.keystr(p): v for p, v in flat if "'aux'" in jax.tree_util.keystr(p)}
    return main, aux


def normal_pass_statistics(state):
    """The running statistics after one training-mode pass of the normal images alone."""
    _, updates = state.generator.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                                       NORMAL["normal"], train=True, mutable=["batch_stats"])
    return updates["batch_stats"]


def test_advprop_pseudo_anomaly_pass_updates_only_auxiliary_statistics():
    cfg = tiny_config(**{"model.pseudo_anomaly_bn": "auxiliary"})
    state = create_train_state(cfg, jax.random.key(0))
    new_state, _ = step(state, NORMAL, jax.random.key(1))
    # What one training-mode pass of the normal images alone does to the main statistics:
    _, updates = state.generator.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                                       NORMAL["normal"], train=True, mutable=["batch_stats"])
    expected_main, _ = main_and_aux_stats(updates["batch_stats"])
    main, aux = main_and_aux_stats(new_state.g_batch_stats)
    _, old_aux = main_and_aux_stats(state.g_batch_stats)
    assert main.keys() == expected_main.keys() and main
    for name in main:
        # Equal up to float reassociation between the jitted step and this eager pass.
        np.testing.assert_allclose(main[name], expected_main[name], rtol=1e-5, atol=1e-7)
    assert any(not np.array_equal(aux[n], old_aux[n]) for n in aux), "aux statistics never moved"


def test_shared_bn_pseudo_pass_mixes_into_the_normal_statistics():
    state = create_train_state(tiny_config(**{"model.pseudo_anomaly_bn": "shared"}), jax.random.key(0))
    new_state, _ = step(state, NORMAL, jax.random.key(1))
    assert not tree_close(new_state.g_batch_stats, normal_pass_statistics(state))


@pytest.mark.parametrize("mode", ["shared_no_update", "normal_batch"])
def test_pseudo_pass_that_never_updates_leaves_only_the_normal_pass_in_the_statistics(mode):
    state = create_train_state(tiny_config(**{"model.pseudo_anomaly_bn": mode}), jax.random.key(0))
    new_state, _ = step(state, NORMAL, jax.random.key(1))
    assert tree_close(new_state.g_batch_stats, normal_pass_statistics(state))


def test_normal_batch_mode_normalises_the_pseudo_pass_with_the_normal_batch_statistics():
    # Fed the normal images themselves, a pass normalised with their batch statistics is
    # exactly the training-mode pass; "shared_no_update" (its own statistics) is not, for x_hat.
    state = create_train_state(tiny_config(**{"model.pseudo_anomaly_bn": "normal_batch"}), jax.random.key(0))
    x, G = NORMAL["normal"], state.generator
    x_hat, _, batch_stats = _reconstruct_normal(G, state.g_params, state.g_batch_stats, x, True)
    again, stats_after, updated = _reconstruct_pseudo(G, state.g_params, state.g_batch_stats, batch_stats, x,
                                                      "normal_batch")
    np.testing.assert_allclose(again, x_hat, rtol=1e-4, atol=1e-5)
    assert tree_equal(stats_after, state.g_batch_stats) and not updated
    with_own_stats, _, _ = _reconstruct_pseudo(G, state.g_params, state.g_batch_stats, None, x_hat,
                                               "shared_no_update")
    with_normal_stats, _, _ = _reconstruct_pseudo(G, state.g_params, state.g_batch_stats, batch_stats, x_hat,
                                                  "normal_batch")
    assert not np.allclose(with_own_stats, with_normal_stats, atol=1e-3)


def test_detach_pseudo_changes_only_the_gradient():
    results = {}
    for detach in (False, True):
        state = create_train_state(tiny_config(**{"train.detach_pseudo": detach}), jax.random.key(0))
        results[detach] = step(state, NORMAL, jax.random.key(1))
    (attached, m_attached), (detached, m_detached) = results[False], results[True]
    assert float(m_attached["g_loss"]) == pytest.approx(float(m_detached["g_loss"]), rel=1e-6)
    assert not tree_close(attached.g_params, detached.g_params)


def test_ema_generator_scores_and_follows_the_warmed_up_average():
    plain = create_train_state(tiny_config(**{"train.ema_decay": 0.0}), jax.random.key(0))
    after, _ = step(plain, NORMAL, jax.random.key(1))
    # Decay 0: no average is kept; G itself scores.
    assert after.g_ema_params is None and after.g_ema_batch_stats is None
    ema_state = create_train_state(tiny_config(**{"train.ema_decay": 0.99}), jax.random.key(0))
    ema_after, _ = step(ema_state, NORMAL, jax.random.key(1))
    # The average never feeds training: with another net's weights as the average, G trains
    # the same, bit for bit (one compiled program); and as with no average kept (another
    # program, so equal up to float rounding: within 5% of one Adam step, lr 2e-4).
    other = create_train_state(tiny_config(), jax.random.key(5))
    swapped, _ = step(ema_state.replace(g_ema_params=other.g_params), NORMAL, jax.random.key(1))
    assert tree_equal(swapped.g_params, ema_after.g_params)
    assert tree_close(ema_after.g_params, after.g_params, atol=1e-5)
    # Step 0 decays by min(0.99, 1/10): the average keeps a tenth of the initial weights.
    expected = jax.tree.map(lambda new, old: 0.9 * new + 0.1 * old, ema_after.g_params, ema_state.g_params)
    assert tree_close(ema_after.g_ema_params, expected)
    # Scores come from the averaged generator, not from G's live weights.
    scorer = ema_after.replace(g_ema_params=other.g_params)
    x = NORMAL["normal"]
    reconstruction = other.generator.apply({"params": other.g_params, "batch_stats": scorer.g_ema_batch_stats},
                                           x, train=False)
    np.testing.assert_allclose(score_step(scorer, x),
                               jnp.sqrt(jnp.sum((x - reconstruction) ** 2, axis=(1, 2, 3))), rtol=1e-5)
    # An untrained tiny G returns nearly 0, so scores barely move with its weights: compare
    # the reconstructions themselves.
    assert not np.allclose(reconstruct(scorer, x), reconstruct(ema_after, x), atol=1e-6)
    # live_generator(state) scores with G's own weights, as a run without the average would.
    np.testing.assert_allclose(score_step(live_generator(scorer), x), score_step(after, x), rtol=1e-6)


@pytest.mark.parametrize("changes,message", [
    ({"model.pseudo_anomaly_bn": "separate"}, "pseudo_anomaly_bn"),
    ({"train.ema_decay": 1.0}, "ema_decay"),
    ({"train.grad_clip_norm": 0.0}, "grad_clip_norm"),
    ({"train.g_grad_clip_factor": 1.0}, "g_grad_clip_factor must be above 1"),
    ({"train.g_update_rms_clip": 0.0}, "g_update_rms_clip must be positive"),
    ({"train.ema_decay": -0.1}, "ema_decay"),
    ({"data.dataset": "svhn"}, "unknown dataset 'svhn'.*mnist"),
    ({"data.gamma": 1.0}, r"gamma must lie in \[0, 1\), got 1.0"),
    ({"data.gamma": -0.01}, "gamma must lie in"),
])
def test_bad_settings_are_refused_when_the_config_is_built(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_freeze_bn_anomalies_leave_normal_statistics_unchanged():
    state = create_train_state(tiny_config(**{"train.freeze_bn": True}), jax.random.key(0))
    after_normal, _ = step(state, NORMAL, jax.random.key(1))
    after_anomalies, _ = step(state, WITH_ANOMALIES, jax.random.key(1))
    assert tree_close(after_normal.g_batch_stats, after_anomalies.g_batch_stats)
    # (Without Freeze-BN too by default: the next test.)


def test_freeze_bn_starts_the_latent_reciprocal_on_a_near_zero_error():
    # Under Freeze-BN the anomaly passes are normalised with running statistics, which start
    # at mean 0 and variance 1 while a fresh net's N(0, 0.02) activations are far smaller: D's
    # features of x_a and of G(x_a) nearly vanish, and with them their L2, which the latent
    # term w_lat / (L2 + eps) divides by. Batch statistics give features of unit scale.
    metrics = {}
    for freeze in (True, False):
        state = create_train_state(tiny_config(**{"train.freeze_bn": freeze}), jax.random.key(0))
        _, metrics[freeze] = step(state, WITH_ANOMALIES, jax.random.key(1))
    assert float(metrics[False]["g_anomaly_latent"]) > 0.1
    assert float(metrics[True]["g_anomaly_latent"]) < 1e-3 * float(metrics[False]["g_anomaly_latent"])
    assert float(metrics[True]["g_anomaly_loss"]) > 1e3 * float(metrics[False]["g_anomaly_loss"])


def test_anomalies_enter_the_running_statistics_only_when_asked_and_training_is_the_same_either_way():
    # With anomaly_bn="own" (a sub-batch of their own). Every training pass normalises with
    # batch statistics, so the switch changes only the running statistics scoring uses: by
    # default the anomalies leave them as the normals set them.
    # (Not bit for bit: the two programs may round differently, and a GAN amplifies that.)
    after = {}
    for update in (False, True):
        own = tiny_config(**{"train.anomaly_bn": "own", "train.anomalies_update_statistics": update})
        state = create_train_state(own, jax.random.key(0))
        after[update], _ = step(state, WITH_ANOMALIES, jax.random.key(1))
    normal_only, _ = step(create_train_state(tiny_config(), jax.random.key(0)), NORMAL, jax.random.key(1))
    # Two programs, which XLA may round differently: equal to float32 rounding.
    assert tree_close(after[False].g_params, after[True].g_params)
    assert tree_close(after[False].d_params, after[True].d_params)
    assert not tree_close(after[False].g_batch_stats, after[True].g_batch_stats)
    assert tree_equal(after[False].g_batch_stats, normal_only.g_batch_stats)


def test_joint_batches_normalise_normals_and_anomalies_together_in_g_and_d():
    # "own": the anomalies are a sub-batch of their own, so G's reconstructions of the normals
    # cannot depend on which anomalies sit beside them; "joint": one pass, one set of
    # statistics, so they do, and BatchNorm no longer tells G (or D) which rows are anomalies.
    other = {**WITH_ANOMALIES, "anomaly": images(3, 4)}
    for mode in ("own", "joint"):
        state = create_train_state(tiny_config(**{"train.anomaly_bn": mode}), jax.random.key(0))
        passes = [generator_passes(state.generator, state.g_params, state.g_batch_stats, batch, state.settings)
                  for batch in (WITH_ANOMALIES, other)]
        assert jnp.array_equal(passes[0].x_hat, passes[1].x_hat) == (mode == "own")
        d_anomaly = [float(step(state, {**WITH_ANOMALIES, "normal": normal}, jax.random.key(1))[1]["d_anomaly"])
                     for normal in (images(1, 8), images(4, 8))]
        assert (d_anomaly[0] == d_anomaly[1]) == (mode == "own")
    # Joint: exactly one training-mode pass over the concatenated batch, which is also what
    # G's running statistics (the ones scoring uses) take in: the anomalies at their share.
    both = jnp.concatenate([WITH_ANOMALIES["normal"], WITH_ANOMALIES["anomaly"]])
    out, stats = _apply(state.generator, state.g_params, state.g_batch_stats, both, True)
    assert jnp.allclose(jnp.concatenate([passes[0].x_hat, passes[0].xa_hat]), out, atol=1e-6)
    # (The main statistics: AdvProp's G(x_hat) updates its auxiliary ones.)
    main = main_and_aux_stats(stats)[0]
    assert tree_close(main_and_aux_stats(passes[0].batch_stats)[0], main) and passes[0].updates == 1
    after, _ = step(state, WITH_ANOMALIES, jax.random.key(1))
    assert tree_close(main_and_aux_stats(after.g_batch_stats)[0], main)


def test_joint_batches_change_nothing_without_anomalies_or_under_freeze_bn():
    def after_step(batch, **changes):
        return step(create_train_state(tiny_config(**changes), jax.random.key(0)), batch, jax.random.key(1))[0]

    own, joint = (after_step(NORMAL, **{"train.anomaly_bn": mode}) for mode in ("own", "joint"))
    assert tree_equal(own.arrays(), joint.arrays())
    # Freeze-BN normalises the anomalies with running statistics, whatever anomaly_bn says.
    own, joint = (after_step(WITH_ANOMALIES, **{"train.anomaly_bn": mode, "train.freeze_bn": True})
                  for mode in ("own", "joint"))
    assert tree_equal(own.arrays(), joint.arrays())
    with pytest.raises(ValueError, match="anomaly_bn"):
        tiny_config(**{"train.anomaly_bn": "shared"})


def test_discriminator_reset_fires_below_threshold_and_only_then():
    # Two batches whose D losses differ, and a threshold between them: the same step (one
    # compile) must reset D on the batch below it and only there.
    key = jax.random.key(7)
    batches = [NORMAL, {"normal": images(3, 8)}]
    never = create_train_state(tiny_config(**{"train.d_reset_threshold": 0.0}), jax.random.key(0))
    kept = [step(never, batch, key) for batch in batches]
    assert [float(m["d_reset"]) for _, m in kept] == [0.0, 0.0]
    d_losses = [float(m["d_loss"]) for _, m in kept]
    assert abs(d_losses[0] - d_losses[1]) > 1e-3 * max(d_losses), d_losses
    low = min(range(2), key=d_losses.__getitem__)
    high = 1 - low

    state = create_train_state(tiny_config(**{"train.d_reset_threshold": sum(d_losses) / 2}), jax.random.key(0))
    not_reset, metrics = step(state, batches[high], key)
    assert float(metrics["d_reset"]) == 0.0  # above the threshold: D trained as with no reset at all
    assert tree_equal(not_reset.d_params, kept[high][0].d_params)

    reset, metrics = step(state, batches[low], key)
    assert float(metrics["d_reset"]) == 1.0
    fresh = reset.discriminator.init(key, batches[low]["normal"][:1], train=False)["params"]
    assert tree_close(reset.d_params, fresh)
    assert not tree_close(reset.d_params, kept[low][0].d_params)
    # Adam's state is kept, as GANomaly does.
    assert tree_equal(reset.d_opt_state, kept[low][0].d_opt_state)


def run_steps(seed: int, n: int):
    state = create_train_state(tiny_config(**{"data.gamma": 0.1}), jax.random.key(seed))
    for i in range(n):
        state, _ = step(state, WITH_ANOMALIES, jax.random.key(100 + i))
    return state


def test_same_seed_same_inputs_give_bit_identical_parameters():
    a, b = run_steps(0, 3), run_steps(0, 3)
    assert tree_equal(a.arrays(), b.arrays())
    assert not tree_equal(a.g_params, run_steps(1, 3).g_params)


def test_anomaly_recon_pair_switch_changes_the_anomaly_term():
    # Freeze-BN: anomalies pass G with the running statistics the normal passes left, and
    # never update them; so each term can be recomputed from the step's output statistics.
    xa = WITH_ANOMALIES["anomaly"]
    terms = {}
    for pair in ("input", "pseudo"):
        state = create_train_state(tiny_config(**{"loss.anomaly_recon_pair": pair, "train.freeze_bn": True}),
                                   jax.random.key(0))
        after, metrics = step(state, WITH_ANOMALIES, jax.random.key(1))
        terms[pair] = float(metrics["g_anomaly_reconstruction"])
    G = lambda x, aux=False: state.generator.apply({"params": state.g_params, "batch_stats": after.g_batch_stats},
                                                   x, train=False, aux=aux)
    xa_hat = G(xa)
    # "input": G must fail to reconstruct the anomaly itself; "pseudo": Algorithm 1's pair,
    # (x_hat, G(x_hat)), the second pass through AdvProp's auxiliary layers.
    assert terms["input"] == pytest.approx(float(jnp.mean(jnp.abs(xa - xa_hat))), rel=1e-4)
    assert terms["pseudo"] == pytest.approx(float(jnp.mean(jnp.abs(xa_hat - G(xa_hat, aux=True)))), rel=1e-4)
    assert terms["input"] != pytest.approx(terms["pseudo"], rel=1e-2)
    with pytest.raises(ValueError, match="anomaly_recon_pair"):
        tiny_config(**{"loss.anomaly_recon_pair": "both"})


def test_anomaly_adversarial_target_is_the_label_the_reciprocal_takes_bce_against():
    # As a sub-batch of their own (anomaly_bn "own", without Freeze-BN) the anomalies pass G
    # and D in training mode on their own batch statistics, so D's logits on G(x_a) can be
    # recomputed from the parameters alone.
    xa = WITH_ANOMALIES["anomaly"]
    for target in (0, 1):
        state = create_train_state(tiny_config(**{"loss.anomaly_adversarial_target": target,
                                                  "train.anomaly_bn": "own"}), jax.random.key(0))
        _, metrics = step(state, WITH_ANOMALIES, jax.random.key(1))
        xa_hat, _ = state.generator.apply({"params": state.g_params, "batch_stats": state.g_batch_stats}, xa,
                                          train=True, mutable=["batch_stats"])
        (logits, _), _ = state.discriminator.apply({"params": state.d_params, "batch_stats": state.d_batch_stats},
                                                   xa_hat, train=True, mutable=["batch_stats"])
        expected = optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)).mean()
        assert float(metrics["g_anomaly_adversarial"]) == pytest.approx(float(expected), rel=1e-4)
        assert float(expected) != pytest.approx(
            float(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, 1 - target)).mean()), rel=1e-3)
    with pytest.raises(ValueError, match="anomaly_adversarial_target"):
        tiny_config(**{"loss.anomaly_adversarial_target": 2})


def test_score_is_l2_norm_of_reconstruction_error_with_running_statistics():
    state = create_train_state(tiny_config(), jax.random.key(0))
    x = NORMAL["normal"]
    reconstruction = state.generator.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                                           x, train=False)
    expected = jnp.sqrt(jnp.sum((x - reconstruction) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(score_step(state, x), expected, rtol=1e-5)
    # Running statistics: an image's score does not depend on the rest of its batch.
    np.testing.assert_allclose(score_step(state, x[:2]), expected[:2], rtol=1e-5)
    # GANomaly's test-time batch statistics (paper_protocol) do depend on the batch.
    batch_scores = score_step(state, x, use_batch_statistics=True)
    assert not np.allclose(batch_scores, expected)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((2, 32, 32, 3)), "1-channel"),
    (np.zeros((2, 28, 28, 1)), "32x32"),
    (np.zeros((32, 32, 1)), "NHWC"),
    (np.full((2, 32, 32, 1), np.nan), "NaN"),
])
def test_bad_images_are_refused_before_jit(bad, message):
    with pytest.raises(ValueError, match=message):
        check_images(bad, TINY)


def test_gradient_clipping_bounds_what_adam_sees():
    # One step with anomalies: Adam's second moment after step 1 is (1 - beta2) g^2, so the
    # global norm of sqrt(nu / (1 - beta2)) is the norm of the gradient Adam was given.
    def adam_gradient_norms(clip):
        cfg = tiny_config(**{"train.grad_clip_norm": clip})
        after, _ = step(create_train_state(cfg, jax.random.key(0)), WITH_ANOMALIES, jax.random.key(1))
        nus = [optax.tree_utils.tree_get(opt, "nu") for opt in (after.g_opt_state, after.d_opt_state)]
        beta2 = cfg.train.beta2
        return [float(optax.tree.norm(jax.tree.map(lambda v: jnp.sqrt(v / (1 - beta2)), nu))) for nu in nus]

    unclipped = adam_gradient_norms(None)
    clip = min(unclipped) / 4
    assert all(norm == pytest.approx(clip, rel=1e-3) for norm in adam_gradient_norms(clip)), (unclipped, clip)


def test_running_norm_clip_acts_on_the_generator_alone_and_reports_it():
    # The first step has no running norm to compare with; a factor just above 1 then clips
    # any step whose gradient is larger than the steps before it.
    cfg = tiny_config(**{"train.g_grad_clip_factor": 1.0001})
    state = create_train_state(cfg, jax.random.key(0))
    assert state.g_tx is not state.d_tx
    clipped = []
    for i in range(4):
        state, metrics = step(state, WITH_ANOMALIES, jax.random.key(i))
        clipped.append(float(metrics["g_clipped"]))
    assert clipped[0] == 0.0 and set(clipped) <= {0.0, 1.0}
    running_mean = optax.tree_utils.tree_get(state.g_opt_state, "mean_norm")
    assert float(running_mean) > 0
    assert optax.tree_utils.tree_get(state.d_opt_state, "mean_norm") is None  # D's optimiser is plain Adam
    # Without the factor (the paper's plain Adam) the step reports nothing about clipping.
    plain = tiny_config(**{"train.g_grad_clip_factor": None})
    _, metrics = step(create_train_state(plain, jax.random.key(0)), WITH_ANOMALIES, jax.random.key(0))
    assert "g_clipped" not in metrics
    # The default clips at 3x (docs/fidelity-study.md, 5.5): G's optimiser keeps a running norm.
    assert tiny_config().train.g_grad_clip_factor == 3.0
    default_state = create_train_state(tiny_config(), jax.random.key(0))
    assert optax.tree_utils.tree_get(default_state.g_opt_state, "mean_norm") is not None


def test_update_rms_clip_bounds_each_of_the_generators_arrays_steps():
    # Adafactor's update clipping after Adam: no array of G moves more than the RMS bound
    # (in learning rates) in one step; D's step is Adam's own. The bound here is far below
    # Adam's first step (about one learning rate per coordinate), so it must act.
    def step_rms(cfg):
        before = create_train_state(cfg, jax.random.key(0))
        after, _ = step(before, WITH_ANOMALIES, jax.random.key(1))
        rms = lambda a, b: float(jnp.sqrt(jnp.mean((a - b) ** 2)))  # noqa: E731
        return ([rms(a, b) for a, b in zip(jax.tree.leaves(after.g_params), jax.tree.leaves(before.g_params))],
                [rms(a, b) for a, b in zip(jax.tree.leaves(after.d_params), jax.tree.leaves(before.d_params))])

    lr, bound = tiny_config().train.learning_rate, 0.1
    g_free, d_free = step_rms(tiny_config())
    g_clipped, d_clipped = step_rms(tiny_config(**{"train.g_update_rms_clip": bound}))
    assert max(g_free) > 2 * bound * lr  # unclipped, Adam's first step is about lr per coordinate
    assert max(g_clipped) <= bound * lr * 1.01  # float32 rounding of parameter differences
    assert max(g_clipped) > 0.9 * bound * lr  # the bound binds: not a frozen G
    np.testing.assert_allclose(d_clipped, d_free, rtol=1e-6)


def test_fields_only_the_anomaly_branch_reads_make_no_other_run_at_gamma_0():
    frozen = ExperimentConfig().replace(**{"train.freeze_bn": True, "loss.anomaly_adversarial_target": 0})
    for gamma, expected in ((0.0, []), (0.05, ["loss.anomaly_adversarial_target: 1 in the run directory, 0 now",
                                               "train.freeze_bn: False in the run directory, True now"])):
        saved, current = (json.loads(c.replace(**{"data.gamma": gamma}).to_json()) for c in (ExperimentConfig(), frozen))
        assert config_differences(without_inert_fields(saved, [gamma]), without_inert_fields(current, [gamma])) == expected


def test_a_diagnostic_field_makes_no_other_run():
    saved, current = (json.loads(ExperimentConfig(test_both_generators=both).to_json()) for both in (True, False))
    assert config_differences(without_inert_fields(saved, [0.0]), without_inert_fields(current, [0.0])) == []
    assert config_differences(saved, current) == ["test_both_generators: True in the run directory, False now"]


def test_the_same_data_read_from_another_path_is_the_same_run():
    here, there = (json.loads(ExperimentConfig().replace(**{"data.data_dir": d, "data.gamma": 0.05}).to_json())
                   for d in ("../shared/datasets/mnist", "/work/shared/datasets/mnist"))
    assert config_differences(without_inert_fields(here, [0.05]), without_inert_fields(there, [0.05])) == []


def test_run_configs_written_by_earlier_versions_still_load():
    saved = json.loads(ExperimentConfig().to_json())
    del saved["model"]["pseudo_anomaly_bn"]
    # Written when the switch was TrainConfig.advprop ...
    for advprop, mode in ((True, "auxiliary"), (False, "shared")):
        old = {**saved, "train": {**saved["train"], "advprop": advprop}}
        assert ExperimentConfig.from_dict(old).model.pseudo_anomaly_bn == mode
    # ... and when it was TrainConfig.pseudo_anomaly_bn.
    old = {**saved, "train": {**saved["train"], "pseudo_anomaly_bn": "normal_batch"}}
    cfg = ExperimentConfig.from_dict(old)
    assert cfg.model.pseudo_anomaly_bn == "normal_batch" and not cfg.model.advprop
    # A field the writing version did not have takes the value that describes what it did:
    # before pick_generator, the average always scored.
    for added in ("pick_generator", "grad_clip_norm", "g_grad_clip_factor", "g_update_rms_clip"):
        del old["train"][added]
    assert ExperimentConfig.from_dict(old).train.pick_generator is False
    assert ExperimentConfig.from_dict(old).train.grad_clip_norm is None  # no clipping before it
    assert ExperimentConfig.from_dict(old).train.g_grad_clip_factor is None
    assert ExperimentConfig.from_dict(old).train.g_update_rms_clip is None
    del old["loss"]["anomaly_adversarial_target"]
    assert ExperimentConfig.from_dict(old).loss.anomaly_adversarial_target == 0  # Algorithm 1's label before it
    assert ExperimentConfig().train.pick_generator is True
    # Resuming such a run directory with today's default is refused, naming the field.
    before_the_choice = json.loads(ExperimentConfig().to_json())
    del before_the_choice["train"]["pick_generator"]
    assert config_differences(upgrade_config_dict(before_the_choice), json.loads(ExperimentConfig().to_json())) == [
        "train.pick_generator: False in the run directory, True now"]


def _separate_passes(module, params, stats, images):
    """What a shared pass of D stands for: G's loss reads a pass with D's parameters held, D's
    loss a pass with the images held (two forward passes, as the two halves of a step would run)."""
    for_generator, _ = _apply(module, jax.lax.stop_gradient(params), stats, images, True)
    for_discriminator, stats = _apply(module, params, stats, jax.lax.stop_gradient(images), True)
    return (for_generator, for_discriminator), stats


@pytest.mark.parametrize("changes,batch", [
    ({}, NORMAL),
    ({"train.anomaly_bn": "joint"}, WITH_ANOMALIES),
    ({"train.anomaly_bn": "own"}, WITH_ANOMALIES),
    ({"train.freeze_bn": True}, WITH_ANOMALIES),
])
def test_each_network_gets_the_gradient_of_its_own_loss_from_one_forward_pass_of_d(monkeypatch, changes, batch):
    from jaxad import train

    state = create_train_state(tiny_config(**changes), jax.random.key(0))
    state, _ = step(state, batch, jax.random.key(1))  # away from the initialisation's symmetries

    def gradients():
        summed = lambda params: sum(train.step_losses(*params, state, batch)[:2])  # noqa: E731
        return jax.jit(jax.grad(summed))((state.g_params, state.d_params))

    def relative_difference(a, b) -> float:  # float rounding only: under Freeze-BN G's gradient reaches 1e5
        return float(optax.tree.norm(jax.tree.map(jnp.subtract, a, b)) / optax.tree.norm(b))

    shared = gradients()
    monkeypatch.setattr(train, "_shared_pass", _separate_passes)
    separate = gradients()
    assert relative_difference(shared[0], separate[0]) < 1e-5 and relative_difference(shared[1], separate[1]) < 1e-5
    # Each half of the sum is blind to the other network: G's loss sends D nothing, and the
    # reverse; a cross term would show here as a difference from the separate passes.
    g_alone = jax.jit(jax.grad(lambda g: train.step_losses(g, state.d_params, state, batch)[0]))(state.g_params)
    assert relative_difference(shared[0], g_alone) < 1e-5
