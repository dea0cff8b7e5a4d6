"""The averaged generator's BatchNorm statistics, recomputed for its own weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad import fit, load_run, score
from jaxad.config import ExperimentConfig, ModelConfig
from jaxad.data import load_split
from jaxad.ema import recalibrate_ema_statistics
from jaxad.metrics import auroc
from jaxad.runs import as_scored, recalibrated
from jaxad.train import create_train_state, generator_passes, live_generator, reconstruct, train_step

step = jax.jit(train_step)


def trained_state(pseudo_anomaly_bn: str = "auxiliary", ema_decay: float = 0.99, steps: int = 3,
                  freeze_bn: bool = True, anomalies_update_statistics: bool = False, anomaly_bn: str = "own"):
    cfg = ExperimentConfig(model=ModelConfig(backbone="naive", channels=1, width=0.125)).replace(
        **{"train.ema_decay": ema_decay, "model.pseudo_anomaly_bn": pseudo_anomaly_bn, "train.freeze_bn": freeze_bn,
           "train.anomalies_update_statistics": anomalies_update_statistics, "train.anomaly_bn": anomaly_bn})
    state = create_train_state(cfg, jax.random.key(0))
    for i in range(steps):
        batch = {"normal": jax.random.uniform(jax.random.key(10 + i), (8, 32, 32, 1), minval=-1, maxval=1)}
        state, _ = step(state, batch, jax.random.key(i))
    return state


def test_recalibrated_statistics_are_those_of_the_calibration_batch():
    state = trained_state()
    x = jax.random.uniform(jax.random.key(99), (16, 32, 32, 1), minval=-1, maxval=1)
    # Before: the average scores with statistics gathered for the live weights.
    assert not np.allclose(reconstruct(state, x), reconstruct(state, x, use_batch_statistics=True), atol=1e-4)
    recalibrated = recalibrate_ema_statistics(state, x, batch_size=16)
    # After, on that one batch, running statistics are exactly the batch's own.
    np.testing.assert_allclose(reconstruct(recalibrated, x), reconstruct(recalibrated, x, use_batch_statistics=True),
                               atol=2e-5)
    assert recalibrated.g_ema_params is state.g_ema_params and recalibrated.g_batch_stats is state.g_batch_stats


def test_statistics_average_over_full_batches():
    state = trained_state()
    x = jax.random.uniform(jax.random.key(7), (20, 32, 32, 1), minval=-1, maxval=1)
    halves = [recalibrate_ema_statistics(state, x[i:i + 8], batch_size=8).g_ema_batch_stats for i in (0, 8)]
    expected = jax.tree.map(lambda a, b: (a + b) / 2, *halves)
    # Batches of 8 from 20 images: [0:8] and [8:16]; the last 4 are left out.
    both = recalibrate_ema_statistics(state, x, batch_size=8).g_ema_batch_stats
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b, atol=1e-6)), both, expected)))


def test_auxiliary_statistics_and_a_state_without_average_are_left_alone():
    state = trained_state()
    x = jax.random.uniform(jax.random.key(5), (8, 32, 32, 1), minval=-1, maxval=1)
    new = recalibrate_ema_statistics(state, x, batch_size=8).g_ema_batch_stats
    flat_old = dict(jax.tree_util.tree_flatten_with_path(state.g_ema_batch_stats)[0])
    flat_new = dict(jax.tree_util.tree_flatten_with_path(new)[0])
    aux = [p for p in flat_old if any(getattr(k, "key", None) == "aux" for k in p)]
    main = [p for p in flat_old if p not in aux]
    assert aux and main
    assert all(np.array_equal(flat_old[p], flat_new[p]) for p in aux)
    assert all(not np.array_equal(flat_old[p], flat_new[p]) for p in main)
    plain = trained_state(ema_decay=0.0, steps=1)
    assert recalibrate_ema_statistics(plain, x) is plain
    with pytest.raises(ValueError, match="at least one normal image"):
        recalibrate_ema_statistics(state, x[:0])


def repeat_passes(state, batch, times: int):
    """G's running statistics after ``times`` train steps' passes on ``batch`` with the averaged weights."""
    passes = jax.jit(lambda stats: generator_passes(state.generator, state.g_ema_params, stats, batch,
                                                    state.settings).batch_stats)
    stats = state.g_ema_batch_stats
    for _ in range(times):
        stats = passes(stats)
    return stats


def main_leaves(stats) -> list:
    return [v for path, v in jax.tree_util.tree_flatten_with_path(stats)[0]
            if not any(getattr(k, "key", None) == "aux" for k in path)]


@pytest.mark.parametrize("freeze_bn, anomalies_update_statistics, anomaly_bn",
                         [(False, False, "own"), (False, True, "own"), (True, False, "own"), (False, False, "joint")])
def test_with_anomalies_the_statistics_are_where_the_steps_passes_settle(freeze_bn, anomalies_update_statistics,
                                                                          anomaly_bn):
    # By default, and under Freeze-BN, anomalies never enter G's running statistics: the
    # normals' alone remain. With anomalies_update_statistics each step updates them twice,
    # with the normals' and then with the anomalies' own statistics: they settle at
    # (0.9 normal + anomaly) / 1.9, over half the anomalies', and the live G scores with that.
    # Joint batches update them once, with the mixed batch's statistics.
    state = trained_state(freeze_bn=freeze_bn, anomalies_update_statistics=anomalies_update_statistics,
                          anomaly_bn=anomaly_bn)
    normals = jax.random.uniform(jax.random.key(3), (8, 32, 32, 1), minval=-1, maxval=1)
    anomalies = jax.random.uniform(jax.random.key(4), (4, 32, 32, 1), minval=-0.2, maxval=1)
    recalibrated = recalibrate_ema_statistics(state, normals, 8, anomaly_images=anomalies, anomalies_per_batch=4)
    settled = repeat_passes(state, {"normal": normals, "anomaly": anomalies}, 150)  # 0.81^150 ~ 2e-14
    for got, want in zip(main_leaves(recalibrated.g_ema_batch_stats), main_leaves(settled)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
    normals_only = recalibrate_ema_statistics(state, normals, 8).g_ema_batch_stats
    same = [np.allclose(a, b, rtol=1e-5, atol=1e-7)
            for a, b in zip(main_leaves(recalibrated.g_ema_batch_stats), main_leaves(normals_only))]
    assert not any(same) if anomalies_update_statistics or anomaly_bn == "joint" else all(same)


def test_fit_scores_checkpoints_and_returns_the_recalibrated_average(tmp_path):
    cfg = ExperimentConfig(model=ModelConfig(width=0.125)).replace(
        **{"train.epochs": 1, "train.batch_size": 32, "train.pick_generator": False})
    split = load_split(cfg.data)
    result = fit(cfg, split, run_dir=tmp_path / "run", progress=False)
    again = recalibrated(result.state, cfg, split)
    assert jax.tree.all(jax.tree.map(np.array_equal, again.g_ema_batch_stats, result.state.g_ema_batch_stats))
    assert result.final_auroc == pytest.approx(auroc(split.test_labels, score(result.state, split.test_images)))
    # Each epoch also records, label-free, how both generators score training normals.
    normals = split.train_normal[:1024]
    last = result.history[-1]
    assert last["train_normal_score"] == pytest.approx(float(np.mean(score(result.state, normals))), rel=1e-5)
    assert last["train_normal_score_live_generator"] == pytest.approx(
        float(np.mean(score(live_generator(result.state), normals))), rel=1e-5)
    saved, _ = load_run(tmp_path / "run")
    np.testing.assert_array_equal(score(saved, split.test_images), score(result.state, split.test_images))


def test_each_epoch_scores_with_the_chosen_generator_and_load_run_returns_it(tmp_path):
    cfg = ExperimentConfig(model=ModelConfig(width=0.125)).replace(
        **{"train.epochs": 2, "train.batch_size": 32})
    assert cfg.train.pick_generator  # the default
    split = load_split(cfg.data)
    result = fit(cfg, split, run_dir=tmp_path / "run", progress=False)
    for record in result.history:
        chosen, other = (("average", "live") if record["scoring_generator"] == "average" else ("live", "average"))
        assert record[f"train_normal_score_{chosen}_generator"] <= record[f"train_normal_score_{other}_generator"]
        assert "train_auroc" not in record  # gamma 0: no training anomalies to tell apart
        assert record["train_normal_score"] == record[f"train_normal_score_{chosen}_generator"]
        assert record["auroc"] == record[f"auroc_{chosen}_generator"]
    # The returned model, its scores and the saved run all are the final epoch's choice.
    assert (result.state.g_ema_params is None) == (result.history[-1]["scoring_generator"] == "live")
    np.testing.assert_allclose(score(result.state, split.test_images), result.test_scores, rtol=1e-6)
    saved, _ = load_run(tmp_path / "run")
    np.testing.assert_array_equal(score(saved, split.test_images), score(result.state, split.test_images))
    # Each epoch's model as its record says it scored.
    for record in result.history:
        state, _ = load_run(tmp_path / "run", epoch=record["epoch"])
        assert (state.g_ema_params is None) == (record["scoring_generator"] == "live")
    assert as_scored(saved, {"scoring_generator": "live"}).g_ema_params is None


def test_the_test_split_is_scored_by_the_reporting_generator_alone_unless_both_are_asked(tmp_path):
    cfg = ExperimentConfig(model=ModelConfig(width=0.125)).replace(**{"train.epochs": 2, "train.batch_size": 32})
    split = load_split(cfg.data)
    alone = fit(cfg, split, run_dir=tmp_path / "alone", progress=False)
    both = fit(cfg.replace(test_both_generators=True), split, run_dir=tmp_path / "both", progress=False)
    for quick, full in zip(alone.history, both.history):
        chosen = quick["scoring_generator"]
        other = "live" if chosen == "average" else "average"
        assert quick[f"auroc_{chosen}_generator"] == quick["auroc"] and f"auroc_{other}_generator" not in quick
        assert f"auroc_{other}_generator" in full
        # Every reported figure and choice is the same either way: only the diagnostic is added.
        timing = ("train_seconds", "eval_seconds", "seconds")
        assert {k: v for k, v in full.items() if k not in timing and k != f"auroc_{other}_generator"} == \
               {k: v for k, v in quick.items() if k not in timing}
        assert quick["seconds"] == quick["train_seconds"] + quick["eval_seconds"]
        assert quick["train_seconds"] > 0 and quick["eval_seconds"] > 0
    np.testing.assert_array_equal(alone.test_scores, both.test_scores)
    # The final scores are the last epoch's, as scoring the returned model gives them.
    np.testing.assert_array_equal(alone.test_scores, score(alone.state, split.test_images))
