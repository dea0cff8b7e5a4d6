"""Several seeds trained at once (the step vmapped over a model axis) equal separate runs; what
such runs record and keep at gamma > 0."""

import json

import numpy as np
import pytest

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, fit, fit_many, load_run, score
from jaxad.commands import run as run_cli
from jaxad.data import load_dataset, one_class_split
from jaxad.metrics import auroc
from jaxad.runs import NORMAL_ERROR_IMAGES
from jaxad.selection import select_epoch
from studies import rescore_statistics

BASE = ExperimentConfig(model=ModelConfig(width=0.125), train=TrainConfig(batch_size=32, epochs=2, min_anomalies_per_batch=8))


@pytest.fixture(scope="module")
def trained_at_once(tmp_path_factory):
    """Two seeds of digit 2 at gamma 0.05 trained at once, each into its own run directory.
    With anomalies, so that each model's own anomaly images travel on the model axis too;
    normal-only training at once runs end to end in the runner test below."""
    gamma, out = 0.05, tmp_path_factory.mktemp("at_once")
    digits = load_dataset("digits")
    cfgs = [BASE.replace(seed=s, **{"data.normal_class": 2, "data.gamma": gamma}) for s in (0, 1)]
    splits = [one_class_split(digits, 2, gamma, seed=c.seed) for c in cfgs]
    run_dirs = [out / "a", out / "b"]
    return cfgs, splits, fit_many(cfgs, splits, run_dirs=run_dirs, progress=False), run_dirs


def test_models_trained_at_once_match_separate_runs(trained_at_once):
    cfgs, splits, together, run_dirs = trained_at_once
    for cfg, split, result in zip(cfgs, splits, together):
        alone = fit(cfg, split, progress=False)
        assert result.final_auroc == pytest.approx(alone.final_auroc, abs=0.5)
        np.testing.assert_allclose(result.test_scores, alone.test_scores, rtol=2e-3)
    assert together[0].final_auroc != together[1].final_auroc  # two different models
    assert (run_dirs[1] / "result.json").exists()


def test_epoch_records_with_anomalies_keep_the_extremes_and_the_training_evidence(trained_at_once):
    _, splits, together, run_dirs = trained_at_once
    # Beside each step metric's mean, an epoch's record keeps the extremes a spike shows in:
    # the largest anomaly loss, and the smallest of each error it takes the reciprocal of.
    for record in together[0].history:
        assert record["g_anomaly_loss_max"] >= record["g_anomaly_loss"]
        for error in ("adversarial", "reconstruction", "latent"):
            assert record[f"g_anomaly_{error}_min"] <= record[f"g_anomaly_{error}"]
        assert record["d_loss_min"] <= record["d_loss"]
    # With training anomalies, each epoch also records how well the scoring generator tells
    # them from training normals: the evidence the label-free choices read first.
    split, last = splits[0], together[0].history[-1]
    normals, anomalies = split.train_normal[:NORMAL_ERROR_IMAGES], split.train_anomaly
    labels = np.r_[np.zeros(len(normals)), np.ones(len(anomalies))]
    assert last["train_auroc"] == pytest.approx(auroc(labels, score(together[0].state, np.r_[normals, anomalies])),
                                                abs=0.01)
    assert last["train_anomaly_score"] > last["train_normal_score"]
    assert {"train_auroc_live_generator", "train_auroc_average_generator"} <= set(last)
    assert together[0].selected_epoch == select_epoch(together[0].history)
    kept = json.loads((run_dirs[0] / "result.json").read_text())["checkpoints"]["selected"]
    assert kept == f"checkpoints/{together[0].selected_epoch}" and (run_dirs[0] / kept).is_dir()


@pytest.mark.long  # a study script (rescore_statistics)
def test_a_saved_epoch_rescored_with_and_without_the_anomalies_statistics(trained_at_once):
    _, _, _, run_dirs = trained_at_once
    live, _ = load_run(run_dirs[0], generator="live")
    assert live.g_ema_params is None
    with pytest.raises(ValueError, match="generator is 'live', 'average' or None"):
        load_run(run_dirs[0], generator="ema")
    table = rescore_statistics.rescored(run_dirs[0], None, None)
    assert set(table) == {"live", "average"}
    # fit recomputed the average's statistics as its joint batches settle them (the default),
    # so recomputing them so again gives its saved AUROC; the anomalies as a sub-batch of their
    # own, mixed in or left out, change it.
    average = table["average"]
    assert average["joint"] == pytest.approx(average["saved"], abs=1e-6)
    assert average["mixed"] != pytest.approx(average["saved"], abs=1e-6)
    assert average["normals only"] != pytest.approx(average["saved"], abs=1e-6)


@pytest.mark.long  # a study script (rescore_statistics)
def test_at_gamma_0_the_shared_pseudo_anomaly_pass_can_be_left_out_of_the_statistics(tmp_path):
    # --pseudo-anomaly-bn shared: G(x_hat) also updates the running statistics scoring uses.
    # Recomputed from the normal pass alone, the same weights score as shared_no_update would.
    cfg = BASE.replace(paper_protocol=True,
                       **{"model.pseudo_anomaly_bn": "shared", "train.epochs": 1, "data.normal_class": 3})
    result = fit(cfg, one_class_split(load_dataset("digits"), 3), run_dir=tmp_path / "shared", progress=False)
    table = rescore_statistics.rescored(tmp_path / "shared", None, None)
    average = table["average"]
    assert list(average) == ["saved", "as trained", "normals only", "test batches"]
    # The last column is the paper protocol's test-batch figure of the generator that scored.
    record = result.history[-1]
    assert table[record["scoring_generator"]]["test batches"] == pytest.approx(record["auroc_batch_statistics"])
    assert average["as trained"] == pytest.approx(average["saved"], abs=1e-6)
    assert average["normals only"] != pytest.approx(average["saved"], abs=1e-6)


def test_fit_many_refuses_configs_that_differ_beyond_the_seed():
    digits = load_dataset("digits")
    cfgs = [BASE, BASE.replace(seed=1, **{"loss.w_adcon": 0.0})]
    with pytest.raises(ValueError, match="differ only in their seed"):
        fit_many(cfgs, [one_class_split(digits, 0)] * 2, progress=False)


@pytest.mark.long  # the runner end to end; fit_many itself is tested above
def test_runner_trains_the_seeds_of_a_class_at_once(tmp_path):

    assert run_cli.main(["--dataset", "digits", "--classes", "4", "--seeds", "2", "--epochs", "1",
                         "--batch-size", "32", "--width", "0.125", "--models-at-once", "--out", str(tmp_path),
                         "--no-progress"]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [(r["seed"], r["status"]) for r in rows] == [(0, "complete"), (1, "complete")]
