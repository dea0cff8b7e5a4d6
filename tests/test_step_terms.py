"""studies/step_terms.py replays a run's steps: from its start, or from a saved epoch (to look
inside an epoch where a run fell). Both retrace what ``fit`` recorded."""

import json

import numpy as np
import pytest

from jaxad import fit
from jaxad.commands.run import build_spec, parse_args
from jaxad.data import load_split
from studies import step_terms

pytestmark = pytest.mark.long  # a study script: each replay compiles its own steps

RUN_FLAGS = ["--dataset", "digits", "--classes", "3", "--gammas", "0", "--seeds", "1", "--epochs", "2",
             "--width", "0.125", "--batch-size", "32"]
REPLAYED = ("g_contextual", "g_contextual_adversarial", "g_adversarial", "d_loss")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A two-epoch gamma-0 run of digit 3 that keeps every epoch's checkpoint and records the
    live generator's test AUROC, which the replay retraces."""
    spec = build_spec(parse_args(RUN_FLAGS))
    cfg = spec.base.replace(seed=0, test_both_generators=True, **{"data.normal_class": 3, "data.gamma": 0.0})
    run_dir = tmp_path_factory.mktemp("step_terms") / "run"
    fit(cfg, load_split(cfg.data, seed=0), run_dir=run_dir, progress=False, keep_checkpoints=None)
    return run_dir


def assert_retraces(replayed: dict, recorded: dict) -> None:
    for name in REPLAYED:
        assert np.mean(replayed["steps"][name]) == pytest.approx(recorded[name], rel=1e-6), name
    assert replayed["auroc_live_generator"] == pytest.approx(recorded["auroc_live_generator"], abs=1e-9)
    assert replayed["train_normal_score_live_generator"] == pytest.approx(
        recorded["train_normal_score_live_generator"], rel=1e-6)


def test_replaying_from_a_saved_epoch_retraces_the_next_one(run_dir, tmp_path, capsys):
    history = json.loads((run_dir / "history.json").read_text())
    out = tmp_path / "steps.json"
    assert step_terms.main([str(out), "--run", str(run_dir), "--after-epoch", "1", "--gradients"]) == 0
    epochs = json.loads(out.read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [2]
    assert_retraces(epochs[0], history[1])  # measuring the gradients leaves the steps as they were
    steps = epochs[0]["steps"]
    for weight in step_terms.LOSS_WEIGHTS:
        assert all(0 < g < np.inf for g in steps[f"g_grad_{weight}"]), weight
    assert all(0 < g < np.inf for g in steps["g_grad"])  # the whole loss's
    assert all(0 < u < 1 for u in steps["g_update"])
    printed = capsys.readouterr().out
    assert "L1(G(x_hat), x_hat)" in printed and "|grad w_adcon|" in printed
    assert "anomaly" not in printed  # gamma 0: the normal branch only


def test_replaying_from_the_start_retraces_the_run(run_dir, tmp_path):
    history = json.loads((run_dir / "history.json").read_text())
    out = tmp_path / "steps.json"
    assert step_terms.main([str(out), *RUN_FLAGS]) == 0
    epochs = json.loads(out.read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for replayed, recorded in zip(epochs, history):
        assert_retraces(replayed, recorded)


def test_an_epoch_the_run_did_not_keep_is_refused(run_dir, tmp_path):
    with pytest.raises(Exception, match="epoch"):
        step_terms.main([str(tmp_path / "steps.json"), "--run", str(run_dir), "--after-epoch", "7"])


def test_a_counterfactual_replay_clips_the_generator_gradient(run_dir, tmp_path):
    replays = {}
    for name, flags in {"as run": [], "clipped": ["--clip-g-norm", "1e-3"]}.items():
        out = tmp_path / f"{name}.json"
        assert step_terms.main([str(out), "--run", str(run_dir), "--after-epoch", "1", *flags]) == 0
        replays[name] = json.loads(out.read_text())["epochs"][0]["steps"]
    run, clipped = replays["as run"], replays["clipped"]
    # The first step's losses come before its update, so they agree; the clipped updates
    # (Adam's moments still full of the run's unclipped gradients) then take G elsewhere.
    assert clipped["g_contextual"][0] == pytest.approx(run["g_contextual"][0], rel=1e-6)
    assert clipped["g_contextual"][1:] != pytest.approx(run["g_contextual"][1:], rel=1e-3)


def test_a_counterfactual_replay_clips_at_a_multiple_of_the_running_norm(run_dir, tmp_path):
    # Just above 1, every step whose gradient is larger than the running norm is clipped; the
    # first has no running norm yet (it starts afresh at the saved epoch) and passes.
    out = tmp_path / "factor.json"
    assert step_terms.main([str(out), "--run", str(run_dir), "--after-epoch", "1", "--clip-g-factor", "1.0001",
                            "--gradients"]) == 0
    steps = json.loads(out.read_text())["epochs"][0]["steps"]
    assert steps["g_clipped"][0] == 0.0 and sum(steps["g_clipped"]) > 0
    # --gradients also gives the running norm each step's gradient was measured against.
    running = np.array(steps["g_grad_running_norm"])
    assert np.isnan(running[0]) and np.all(running[1:] > 0)
    assert all(g > 1.0001 * r for g, r, c in zip(steps["g_grad"][1:], running[1:], steps["g_clipped"][1:]) if c)


def test_a_counterfactual_replay_clips_the_generator_update_after_adam(run_dir, tmp_path):
    out = tmp_path / "update.json"
    assert step_terms.main([str(out), "--run", str(run_dir), "--after-epoch", "1", "--clip-g-update-factor", "1.0001",
                            "--gradients"]) == 0
    steps = json.loads(out.read_text())["epochs"][0]["steps"]
    # The clip follows Adam: each step's update is at most the factor times the running norm of
    # the updates before it (the first has none), which bounds G's relative change step to step.
    assert steps["g_clipped"][0] == 0.0
    updates = steps["g_update"]
    for i, clipped in enumerate(steps["g_clipped"][1:], start=1):
        if clipped:
            assert updates[i] <= 1.0001 * max(updates[:i]) * (1 + 1e-3)


def test_a_counterfactual_replay_builds_the_generators_optimiser_anew(run_dir, tmp_path):
    history = json.loads((run_dir / "history.json").read_text())
    replays = {}
    for name, changes in {"unchanged": ["beta2=0.999"], "update clip": ["g_update_rms_clip=0.01"]}.items():
        out = tmp_path / f"{name}.json"
        assert step_terms.main([str(out), "--run", str(run_dir), "--after-epoch", "1", "--gradients",
                                "--g-optimizer", *changes]) == 0
        replays[name] = json.loads(out.read_text())["epochs"][0]
    # Rebuilt with the run's own settings, the optimiser carries Adam's saved moments (and
    # step count) on, so the replay retraces the run; a fresh Adam would not.
    assert_retraces(replays["unchanged"], history[1])
    # Each of G's arrays now moves at most 0.01 learning rates RMS a step: far less than Adam did.
    run, clipped = replays["unchanged"]["steps"], replays["update clip"]["steps"]
    assert max(clipped["g_update"]) < 0.5 * min(run["g_update"])


def test_optimiser_changes_are_read_as_numbers_switches_or_none():
    assert step_terms.parse_changes(["beta2=0.9", "g_update_rms_clip=1", "g_grad_clip_factor=None"]) == {
        "beta2": 0.9, "g_update_rms_clip": 1.0, "g_grad_clip_factor": None}
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        step_terms.parse_changes(["beta2"])


def test_the_anatomy_replay_shows_what_the_contextual_adversarial_term_meets(run_dir, tmp_path, capsys):
    history = json.loads((run_dir / "history.json").read_text())
    out = tmp_path / "anatomy.json"
    assert step_terms.main([str(out), "--run", str(run_dir), "--after-epoch", "1", "--anatomy", "--gradients"]) == 0
    epoch = json.loads(out.read_text())["epochs"][0]
    assert_retraces(epoch, history[1])  # looking leaves the steps as they were
    steps = epoch["steps"]
    # The worst image is at most the batch mean; the count of close images is a count of the batch.
    assert all(low <= mean + 1e-6 for low, mean in zip(steps["pseudo_l1_min"], steps["g_contextual_adversarial"]))
    assert all(0 <= n <= 32 for n in steps["pseudo_close"])
    assert all(0 <= slope <= 1 for slope in steps["pseudo_tanh_slope"])
    assert all(-1 - 1e-6 <= c <= 1 + 1e-6 for c in steps["cos_adcon_con"])
    # The per-array norms are the term's gradient taken apart: together they give its norm.
    layers = steps["g_grad_w_adcon_layers"]
    assert any("Encoder" in name for name in layers)
    together = np.sqrt(np.sum([np.square(norms) for norms in layers.values()], axis=0))
    np.testing.assert_allclose(together, steps["g_grad_w_adcon"], rtol=1e-4)
    printed = capsys.readouterr().out
    assert "per-image L1(G(x_hat), x_hat) min" in printed and "per parameter array" in printed


def test_the_line_search_walks_along_the_update_the_step_took(run_dir, tmp_path, capsys):
    out = tmp_path / "line.json"
    assert step_terms.main([str(out), "--run", str(run_dir), "--after-epoch", "1", "--line-search", "2"]) == 0
    epoch = json.loads(out.read_text())["epochs"][0]
    steps, search = epoch["steps"], epoch["line_search"]
    assert search["step"] == 2
    rows = {row["t"]: row for row in search["rows"]}
    # No move: the errors step 2 measured before its update; the whole move: those step 3
    # measured on its own batch, before its update.
    assert rows[0.0]["normal_l1"][0] == pytest.approx(steps["g_contextual"][2], rel=1e-4)
    assert rows[0.0]["pseudo_l1"][0] == pytest.approx(steps["g_contextual_adversarial"][2], rel=1e-4)
    assert rows[1.0]["normal_l1"][1] == pytest.approx(steps["g_contextual"][3], rel=1e-4)
    assert rows[1.0]["pseudo_l1"][1] == pytest.approx(steps["g_contextual_adversarial"][3], rel=1e-4)
    assert rows[2.0]["normal_l1"][0] != pytest.approx(rows[0.0]["normal_l1"][0], rel=1e-3)  # it moved
    assert "along step 2's update of G" in capsys.readouterr().out
