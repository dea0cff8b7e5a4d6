"""End to end on sklearn's digits: the benchmark runner, its files, resume, scoring, bad input."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, fit, grid, load_run, report
from jaxad.grid import BenchmarkMismatchError, BenchmarkSpec, merge_runs, run_benchmark
from jaxad.checkpoint import CheckpointError
from jaxad.commands import INTERRUPTED
from jaxad.commands import redraw as redraw_command
from jaxad.commands import run as run_cli
from jaxad.commands import score as score_command
from jaxad.runs import DataMismatchError, normal_first
from jaxad.data import load_split
from jaxad.metrics import auroc, auroc_by_anomaly_class
from studies import auroc_by_class, batch_layout

ROOT = Path(__file__).resolve().parents[1]
TINY = ExperimentConfig(model=ModelConfig(width=0.125), train=TrainConfig(batch_size=32, epochs=2))


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = run_cli.main(["--dataset", "digits", "--classes", "0", "3", "--seeds", "1", "--epochs", "2",
                         "--batch-size", "32", "--width", "0.125", "--out", str(out), "--no-progress",
                         "--paper-protocol"])
    assert code == 0
    return out


def test_benchmark_writes_every_file(benchmark_dir):
    for name in ("benchmark.json", "results.json", "results.csv", "results.md",
                 "auroc_per_epoch.png", "score_boxes.png", "roc.png"):
        assert (benchmark_dir / name).stat().st_size > 0, name
    for c in (0, 3):
        run_dir = benchmark_dir / "runs" / "gamma0" / f"class{c}" / "seed0"
        for name in ("config.json", "history.json", "result.json", "scores.npz", "reconstructions.png",
                     "score_extremes.png"):
            assert (run_dir / name).exists(), name
        history = json.loads((run_dir / "history.json").read_text())
        assert [h["epoch"] for h in history] == [1, 2]  # counting from 1
        assert {"auroc", "auroc_batch_statistics", "auroc_batch_statistics_normal_first", "g_loss", "d_loss",
                "d_resets"} <= history[0].keys()
        with np.load(run_dir / "scores.npz") as z:
            assert len(z["scores"]) == len(z["labels"]) == 540  # every digits test image
            # The saved scores are those of the reported final AUROC (running statistics), even
            # with --paper-protocol, whose batch-statistics figures differ and are recorded beside it.
            final = json.loads((run_dir / "result.json").read_text())
            assert auroc(z["labels"], z["scores"]) == pytest.approx(final["final_auroc"], abs=1e-6)


def test_redraw_draws_a_benchmarks_pictures_from_runs_kept_without_checkpoints(benchmark_dir, tmp_path, capsys):
    # As results/ keeps a benchmark: tables, per-run JSON and scores; no checkpoint, no picture.
    kept = tmp_path / "kept"
    shutil.copytree(benchmark_dir, kept, ignore=shutil.ignore_patterns("checkpoints", "*.png", "*.lock"))
    tables = {name: (kept / name).read_bytes() for name in ("results.json", "results.csv", "results.md")}
    assert redraw_command.main([str(kept)]) == 0
    assert "auroc_per_epoch.png, score_boxes.png, roc.png" in capsys.readouterr().out
    for name in grid.BENCHMARK_PICTURES:
        drawn = (kept / name).read_bytes()
        assert drawn[:8] == b"\x89PNG\r\n\x1a\n" and len(drawn) > 1000, name
    assert {name: (kept / name).read_bytes() for name in tables} == tables  # the tables are left as they are
    assert not list(kept.glob("runs/*/*/*/*.png"))  # per-run pictures need checkpoints or the data


def test_redraw_refuses_a_directory_that_holds_no_benchmark(tmp_path, capsys):
    assert redraw_command.main([str(tmp_path)]) == 2
    assert "not a benchmark output directory" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_tables_agree_with_results_json(benchmark_dir):
    results = json.loads((benchmark_dir / "results.json").read_text())
    runs = {r["normal_class"]: r for r in results["runs"]}
    assert set(runs) == {0, 3} and all(r["status"] == "complete" for r in runs.values())
    with open(benchmark_dir / "results.csv") as f:
        rows = {int(r["normal_class"]): r for r in csv.DictReader(f)}
    for c in (0, 3):
        assert float(rows[c]["final_auroc"]) == pytest.approx(runs[c]["final_auroc"])
    table = (benchmark_dir / "results.md").read_text()
    final_row = re.search(r"\| ours \(final\) \| (.*) \|", table).group(1).split(" | ")
    assert [float(x) for x in final_row[:2]] == [round(runs[0]["final_auroc"], 1), round(runs[3]["final_auroc"], 1)]
    avg = results["summary"]["0"]["avg_final"]
    assert float(final_row[2]) == round(avg, 1)
    assert "PARTIAL: 2 of 10 classes" in table
    assert "ours (test-selected)" in table
    selected_row = re.search(r"\| ours \(label-free selected\) \| (.*) \|", table).group(1).split(" | ")
    assert [float(x) for x in selected_row[:2]] == [round(runs[0]["selected_auroc"], 1),
                                                    round(runs[3]["selected_auroc"], 1)]
    assert float(rows[3]["selected_auroc"]) == pytest.approx(runs[3]["selected_auroc"])


def test_output_dir_of_another_benchmark_is_refused(benchmark_dir):
    spec = BenchmarkSpec(TINY.replace(**{"train.epochs": 3}), classes=(0, 3), seeds=(0,))
    with pytest.raises(BenchmarkMismatchError, match="different benchmark") as refused:
        run_benchmark(spec, benchmark_dir, resume=True, progress=False)
    assert f"train.epochs: {TINY.train.epochs} there, 3 asked" in str(refused.value)  # the field, not "base"
    assert run_cli.main(["--dataset", "digits", "--classes", "0", "--out", str(benchmark_dir),
                         "--no-progress"]) == 2


def test_a_refused_directory_says_which_flags_continue_its_benchmark(benchmark_dir, tmp_path, capsys):
    # As after a default changed: the benchmark was made with G's gradient clip at its default.
    out = tmp_path / "older"
    shutil.copytree(benchmark_dir, out)
    flags = ["--dataset", "digits", "--classes", "0", "3", "--seeds", "1", "--epochs", "2", "--batch-size", "32",
             "--width", "0.125", "--out", str(out), "--no-progress", "--paper-protocol"]
    assert run_cli.main(flags + ["--g-grad-clip-factor", "none"]) == 2
    err = capsys.readouterr().err
    assert "train.g_grad_clip_factor: 3.0 there, None asked" in err
    hint = err.split("to continue the benchmark there, add: ")[1].split()
    assert hint == ["--g-grad-clip-factor", "3.0"]
    assert run_cli.main(flags + hint) == 0  # the same benchmark: finished, its table printed
    assert "AGAD on digits" in capsys.readouterr().out


def test_a_benchmark_grows_its_seeds_on_resume_and_keeps_its_finished_runs(benchmark_dir, tmp_path, capsys):
    out = tmp_path / "grown"
    shutil.copytree(benchmark_dir, out)
    flags = ["--dataset", "digits", "--classes", "0", "3", "--seeds", "2", "--epochs", "2", "--batch-size", "32",
             "--width", "0.125", "--out", str(out), "--no-progress", "--paper-protocol"]
    seed0 = {c: (out / "runs" / "gamma0" / f"class{c}" / "seed0" / "result.json").read_bytes() for c in (0, 3)}

    assert run_cli.main(flags) == 2  # more seeds than it holds: extended only when asked
    assert "adds seeds [1]; pass --resume to extend it" in capsys.readouterr().err
    assert run_cli.main(flags + ["--resume"]) == 0
    assert json.loads((out / "benchmark.json").read_text())["seeds"] == [0, 1]
    for c in (0, 3):  # seed 0 kept as it was, seed 1 trained
        assert (out / "runs" / "gamma0" / f"class{c}" / "seed0" / "result.json").read_bytes() == seed0[c]
        assert json.loads((out / "runs" / "gamma0" / f"class{c}" / "seed1" / "result.json").read_text())[
            "status"] == "complete"
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["normal_class"], r["seed"]) for r in results["runs"]) == [(0, 0), (0, 1), (3, 0), (3, 1)]

    fewer = flags.copy()
    fewer[fewer.index("--seeds") + 1] = "1"  # it never drops runs it holds
    assert run_cli.main(fewer + ["--resume"]) == 2
    assert "holds a different benchmark (differs in: seeds)" in capsys.readouterr().err


def test_a_benchmark_written_in_an_earlier_config_layout_resumes(benchmark_dir, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(benchmark_dir, out)

    def as_written_before(config: dict) -> dict:  # pseudo_anomaly_bn was a TrainConfig field
        config["train"]["pseudo_anomaly_bn"] = config["model"].pop("pseudo_anomaly_bn")
        # Freeze-BN was on by default: at gamma 0 (no anomalies) that made no difference.
        config["train"]["freeze_bn"] = True
        return config

    marker = json.loads((out / "benchmark.json").read_text())
    as_written_before(marker["base"])
    (out / "benchmark.json").write_text(json.dumps(marker))
    run_dir = out / "runs" / "gamma0" / "class3" / "seed0"
    (run_dir / "config.json").write_text(json.dumps(as_written_before(json.loads((run_dir / "config.json").read_text()))))
    (run_dir / "result.json").unlink()  # unfinished: resuming it checks its config.json
    assert run_cli.main(["--dataset", "digits", "--classes", "0", "3", "--seeds", "1", "--epochs", "2",
                         "--batch-size", "32", "--width", "0.125", "--out", str(out), "--no-progress",
                         "--paper-protocol", "--resume"]) == 0
    assert json.loads((run_dir / "result.json").read_text())["final_auroc"] == pytest.approx(
        json.loads((benchmark_dir / "runs" / "gamma0" / "class3" / "seed0" / "result.json").read_text())["final_auroc"])


def test_resume_after_interruption_equals_a_straight_run(tmp_path):
    split = load_split(TINY.data)
    straight = fit(TINY, split, run_dir=tmp_path / "straight", progress=False)

    def interrupt(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(TINY, split, run_dir=tmp_path / "resumed", progress=False, on_epoch=interrupt)
    assert not (tmp_path / "resumed" / "result.json").exists()  # not read as complete
    resumed = fit(TINY, split, run_dir=tmp_path / "resumed", progress=False)
    assert resumed.final_auroc == straight.final_auroc
    np.testing.assert_array_equal(resumed.test_scores, straight.test_scores)


def test_a_run_stopped_before_its_pictures_gets_them_on_resume(benchmark_dir, tmp_path, monkeypatch, capsys):
    # Stopped (SIGTERM, Ctrl-C) after result.json, the completion marker, before its pictures.
    flags = ["--dataset", "digits", "--classes", "0", "--seeds", "1", "--epochs", "2", "--batch-size", "32",
             "--width", "0.125", "--no-progress", "--paper-protocol", "--out", str(tmp_path)]
    run_dir = tmp_path / "runs" / "gamma0" / "class0" / "seed0"

    def stop(*args, **kwargs):
        raise grid._Interrupted("signal 15")

    with monkeypatch.context() as patched:
        patched.setattr(grid, "_save_reconstructions", stop)
        assert run_cli.main(flags) == INTERRUPTED
    assert (run_dir / "result.json").exists()
    assert not any((run_dir / name).exists() for name in grid.RUN_PICTURES)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(grid, "fit", no_training)
    assert run_cli.main([*flags, "--resume"]) == 0
    # The final checkpoint redraws what the end of training would have drawn, byte for byte.
    made = benchmark_dir / "runs" / "gamma0" / "class0" / "seed0"
    for name in grid.RUN_PICTURES:
        assert (run_dir / name).read_bytes() == (made / name).read_bytes(), name
    assert "drew reconstructions.png, score_extremes.png" in capsys.readouterr().out

    # Copied without checkpoints: the score extremes come from scores.npz; the reconstructions cannot.
    for name in grid.RUN_PICTURES:
        (run_dir / name).unlink()
    shutil.rmtree(run_dir / "checkpoints")
    assert run_cli.main([*flags, "--resume"]) == 0
    assert (run_dir / "score_extremes.png").read_bytes() == (made / "score_extremes.png").read_bytes()
    assert not (run_dir / "reconstructions.png").exists()
    assert "keeps no final checkpoint" in capsys.readouterr().out

    # Drawn from another split (its data.json says so), a run is refused rather than mislabelled.
    (run_dir / "score_extremes.png").unlink()
    with pytest.raises(DataMismatchError, match="other data"):
        grid.redraw_missing_pictures(run_dir, load_split(TINY.replace(**{"data.normal_class": 3}).data))
    assert not (run_dir / "score_extremes.png").exists()


EXIT_WITH = """
import atexit, sys
from jaxad.commands import exit_with
atexit.register(lambda: print("teardown ran"))
print("resume hint", flush=False)  # still buffered when the process ends
exit_with(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [INTERRUPTED, 0, 1])
def test_an_interrupted_command_ends_without_the_teardown(status):
    # An interrupt during XLA compilation leaves jaxlib state that segfaults at teardown (status
    # 139): the scripts and console commands end an interrupted process without it.
    ended = subprocess.run([sys.executable, "-c", EXIT_WITH, str(status)], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    assert ended.returncode == status
    assert "resume hint" in ended.stdout  # flushed before the process ends
    assert ("teardown ran" in ended.stdout) == (status != INTERRUPTED)


def test_run_directory_of_another_config_is_refused(tmp_path):
    split = load_split(TINY.data)
    fit(TINY.replace(**{"train.epochs": 1}), split, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        fit(TINY.replace(**{"train.epochs": 1, "loss.w_adcon": 0.0}), split, run_dir=tmp_path, progress=False)


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    fit(TINY.replace(**{"train.epochs": 1}), run_dir=tmp_path, progress=False)
    for f in (tmp_path / "checkpoints").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "state" in f.parts:
            f.write_bytes(b"\0garbage")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_run(tmp_path)


def test_nan_loss_stops_that_run_and_the_benchmark_goes_on(tmp_path):
    spec = BenchmarkSpec(TINY.replace(**{"loss.w_adv": float("nan"), "train.epochs": 1}), classes=(0, 1), seeds=(0,))
    rows = run_benchmark(spec, tmp_path, progress=False)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert "not finite" in rows[0]["error"]
    assert "2 run(s) failed" in (tmp_path / "results.md").read_text()


def test_score_command_reproduces_the_run_scores(benchmark_dir, tmp_path):
    run_dir = benchmark_dir / "runs" / "gamma0" / "class3" / "seed0"
    state, cfg = load_run(run_dir)
    split = load_split(cfg.data)
    # Running statistics in both, whatever the run's --paper-protocol: an image scores alone.
    np.save(tmp_path / "test.npy", split.test_images)
    assert score_command.main(["--run", str(run_dir), "--images", str(tmp_path / "test.npy"),
                           "--out", str(tmp_path / "scored"), "--no-maps"]) == 0
    with open(tmp_path / "scored" / "scores.csv") as f:
        scored = [float(r["score"]) for r in csv.DictReader(f)]
    with np.load(run_dir / "scores.npz") as z:
        np.testing.assert_allclose(scored, z["scores"], rtol=1e-5)


@pytest.mark.long  # a study script
def test_batch_layout_rescores_kept_checkpoints_under_each_test_time_layout(benchmark_dir, tmp_path):
    labels = np.array([1, 0, 1, 1, 0])
    assert normal_first(labels).tolist() == [1, 4, 0, 2, 3]  # GANomaly's one-class test layout
    assert batch_layout.main([str(benchmark_dir), "--checkpoints", "final", "best",
                                   "--json", str(tmp_path / "rows.json")]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["class"], r["checkpoint"]) for r in rows] == [("0", "final"), ("0", "best"), ("3", "final"), ("3", "best")]
    for row in rows[::2]:  # the final checkpoints: each layout is what the run recorded (--paper-protocol)
        result = json.loads((Path(row["run"]) / "result.json").read_text())
        assert float(row["running"]) == pytest.approx(result["final_auroc"], abs=0.01)
        assert float(row["batch, mixed"]) == pytest.approx(result["final_auroc_batch_statistics"], abs=0.01)
        assert float(row["batch, normal first"]) == pytest.approx(
            result["final_auroc_batch_statistics_normal_first"], abs=0.01)
        assert result["best_auroc_batch_statistics_normal_first"] >= result["final_auroc_batch_statistics_normal_first"]


def test_score_command_reads_an_image_folder(benchmark_dir, tmp_path):
    from PIL import Image
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((28, 28)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    run_dir = benchmark_dir / "runs" / "gamma0" / "class0" / "seed0"
    with pytest.warns(UserWarning, match="skipped 1"):
        assert score_command.main(["--run", str(run_dir), "--images", str(folder), "--out", str(tmp_path / "o"),
                               "--maps"]) == 0
    lines = (tmp_path / "o" / "scores.csv").read_text().splitlines()
    assert lines[0] == "file,score,normalized_score,is_anomalous" and len(lines) == 4
    assert sorted(p.name for p in (tmp_path / "o" / "error_maps").glob("*.png")) == ["0.png", "1.png", "2.png"]


def test_score_command_interrupted_leaves_whole_files(benchmark_dir, tmp_path, monkeypatch, capsys):
    run_dir = benchmark_dir / "runs" / "gamma0" / "class0" / "seed0"
    np.save(tmp_path / "x.npy", load_split(load_run(run_dir)[1].data).test_images[:3])
    drawn = []

    def stopped_after_one_map(path, *args):
        if drawn:
            raise KeyboardInterrupt  # Ctrl-C while the maps are drawn
        drawn.append(path)
        path.write_bytes(b"png")

    monkeypatch.setattr(score_command, "save_error_map", stopped_after_one_map)
    assert score_command.main(["--run", str(run_dir), "--images", str(tmp_path / "x.npy"),
                           "--out", str(tmp_path / "o"), "--maps"]) == INTERRUPTED
    assert "interrupted; each file" in capsys.readouterr().err
    lines = (tmp_path / "o" / "scores.csv").read_text().splitlines()  # written whole before the maps
    assert lines[0] == "file,score,normalized_score,is_anomalous" and len(lines) == 4
    assert [p.name for p in (tmp_path / "o" / "error_maps").iterdir()] == [drawn[0].name]


def test_cli_refuses_bad_input(tmp_path, capsys):
    assert run_cli.main(["--dataset", "digits", "--gammas", "1.5", "--out", str(tmp_path / "a")]) == 2
    assert "gamma" in capsys.readouterr().err
    assert run_cli.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--source", "raw",
                         "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli.parse_args(["--dataset", "imagenet"])
    with pytest.raises(SystemExit):
        run_cli.parse_args(["--no-such-option"])
    assert score_command.main(["--run", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "c")]) == 2


def test_score_extremes_picks_the_highest_and_lowest_scores_in_a_stable_order():
    scores = np.array([0.5, 3.0, 0.1, 3.0, 0.1, 2.0])
    most, least = report.score_extremes(scores, 3)
    assert most.tolist() == [1, 3, 5]     # ties (3.0) in data order
    assert least.tolist() == [2, 4, 0]
    most, least = report.score_extremes(scores[:2], 8)  # fewer images than asked for
    assert most.tolist() == [1, 0] and least.tolist() == [0, 1]


def test_the_resume_hint_adds_resume_once():
    for argv in (["--dataset", "mnist"], ["--dataset", "mnist", "--resume"]):
        command = "python experiments/run.py " + " ".join(argv)
        hint = run_cli.resume_command(command, run_cli.parse_args(argv))
        assert hint.split().count("--resume") == 1 and hint.startswith(command)


def test_the_default_output_directory_keeps_a_clone_clean():
    args = run_cli.parse_args([])  # the demo
    out = run_cli.output_dir(args, run_cli.build_spec(args))
    assert out == Path("runs/digits_naive")
    if (ROOT / ".git").exists():  # git ignores it: the demo leaves `git status` clean
        ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "runs" / "x" / "result.json")], cwd=ROOT)
        assert ignored.returncode == 0
    assert run_cli.output_dir(run_cli.parse_args(["--out", "elsewhere"]), run_cli.build_spec(args)) == Path("elsewhere")


def test_auroc_by_anomaly_class_scores_normals_against_each_class_alone():
    labels = np.array([0, 0, 1, 1, 1, 1])
    classes = np.array([3, 3, 1, 1, 7, 7])
    scores = np.array([0.2, 0.4, 0.9, 0.8, 0.1, 0.3])  # 1s score above every normal; 7s mostly below
    assert auroc_by_anomaly_class(labels, scores, classes) == {1: 100.0, 7: 25.0}
    with pytest.raises(ValueError, match="differ in shape"):
        auroc_by_anomaly_class(labels, scores, classes[:-1])


@pytest.mark.long  # a study script
def test_auroc_by_class_reads_a_run_and_marks_classes_without_training_anomalies(benchmark_dir, capsys):
    run_dir = benchmark_dir / "runs" / "gamma0" / "class3" / "seed0"
    assert auroc_by_class.main([str(run_dir)]) == 0
    row = capsys.readouterr().out.splitlines()[-1].strip("| ").split(" | ")
    final = json.loads((run_dir / "result.json").read_text())["final_auroc"]
    assert float(row[1]) == round(final, 1)
    assert len(row) == 2 + 9 and all(cell.endswith("(unseen)") for cell in row[2:])  # gamma 0: no anomaly seen


@pytest.mark.long  # a study script
def test_auroc_by_class_marks_only_the_classes_left_out_of_training_as_unseen(tmp_path):
    np.savez(tmp_path / "scores.npz", labels=np.array([0, 1, 1]), scores=np.array([0.1, 0.9, 0.5]),
             classes=np.array([8, 1, 7]))
    (tmp_path / "config.json").write_text(json.dumps({"data": {"gamma": 0.05, "anomaly_classes": [1]}}))
    per_class, overall, seen = auroc_by_class.run_row(tmp_path)
    assert per_class == {1: 100.0, 7: 100.0} and overall == 100.0 and seen == {1}


@pytest.mark.long  # a study script
def test_auroc_by_class_names_the_run_dirs_that_have_not_finished(tmp_path, capsys):
    (tmp_path / "still_training").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        auroc_by_class.main([str(tmp_path / "still_training")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "not a finished run" in message and "still_training" in message


def test_runs_made_apart_merge_into_one_benchmark_without_training(benchmark_dir, tmp_path):
    # As if class 0 ran on one machine and class 3 on another: each holds its own output directory.
    flags = ["--dataset", "digits", "--classes", "0", "3", "--seeds", "1", "--epochs", "2", "--batch-size", "32",
             "--width", "0.125", "--no-progress", "--paper-protocol"]
    for machine, c in (("a", 0), ("b", 3)):
        run = Path("runs") / "gamma0" / f"class{c}" / "seed0"
        shutil.copytree(benchmark_dir / run, tmp_path / machine / run)
        (tmp_path / machine / run / "made_here.txt").write_text(machine)  # proves a copy, not a new run
    out = tmp_path / "merged"
    argv = [*flags, "--out", str(out), "--merge-from", str(tmp_path / "a"), str(tmp_path / "b"),
            "--merge-without-checkpoints"]
    assert run_cli.main(argv) == 0
    for machine, c in (("a", 0), ("b", 3)):
        run_dir = out / "runs" / "gamma0" / f"class{c}" / "seed0"
        assert (run_dir / "made_here.txt").read_text() == machine
        assert not (run_dir / "checkpoints").exists()
    merged, made = (json.loads((d / "results.json").read_text()) for d in (out, benchmark_dir))
    assert merged["summary"] == made["summary"]
    # results.md gives the command that makes the runs, not the merge.
    assert merged["command"] == " ".join(["python experiments/run.py", *flags, "--out", str(out)])
    # Nothing left to copy: a second merge copies nothing and keeps the table.
    assert run_cli.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["summary"] == made["summary"]


def test_a_merge_refuses_a_run_of_another_configuration(benchmark_dir, tmp_path):
    run = Path("runs") / "gamma0" / "class0" / "seed0"
    shutil.copytree(benchmark_dir / run, tmp_path / "other" / run)
    config = json.loads((tmp_path / "other" / run / "config.json").read_text())
    config["loss"]["w_adcon"] = 5.0
    (tmp_path / "other" / run / "config.json").write_text(json.dumps(config))
    spec = BenchmarkSpec(TINY.replace(**{"data.dataset": "digits", "paper_protocol": True}), classes=(0,), seeds=(0,))
    with pytest.raises(ValueError, match="another configuration.*w_adcon"):
        merge_runs(spec, tmp_path / "merged", [tmp_path / "other"])
    assert not (tmp_path / "merged" / run).exists()
    with pytest.raises(FileNotFoundError, match="not a benchmark output directory"):
        merge_runs(spec, tmp_path / "merged", [tmp_path / "nowhere"])


def test_the_recorded_command_of_a_merge_is_the_one_that_makes_the_runs():
    assert run_cli.without_merge_flags(["--dataset", "mnist", "--merge-from", "a", "b", "--merge-without-checkpoints",
                                        "--seeds", "1"]) == ["--dataset", "mnist", "--seeds", "1"]
    assert run_cli.without_merge_flags(["--merge-from=a", "--out", "x"]) == ["--out", "x"]


def test_batch_layout_names_missing_data_in_one_line(tmp_path, capsys):
    # A committed run's config names its data as DIR: the script asks for --data-dir.
    run_dir = tmp_path / "runs" / "gamma0" / "class0" / "seed0"
    run_dir.mkdir(parents=True)
    cfg = ExperimentConfig().replace(**{"data.dataset": "mnist", "data.data_dir": "DIR"})
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run_dir / "result.json").write_text(json.dumps({"epochs": 15}))
    (run_dir / "history.json").write_text("[]")
    assert batch_layout.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "data_dir DIR does not exist" in err and "--data-dir" in err and "Traceback" not in err
