"""Untrusted paths and files, OS errors at the output, one writer per directory, refusals that
leave nothing behind: what README's "Errors" section promises beyond wrong input.

Full disks and read-only directories are simulated by making ``os`` or orbax raise the
``OSError`` they would (the tests run as root, whom ``chmod`` does not stop).
"""

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxad import ExperimentConfig, ModelConfig, TrainConfig, fit, fit_many, grid, load_run, locks, loop, score
from jaxad.checkpoint import CheckpointError
from jaxad.commands import run as run_cli
from jaxad.data import OneClassSplit, load_split
from jaxad.files import write_json_atomic, write_text_atomic
from jaxad.locks import DirectoryLockedError
from jaxad.metrics import auroc
from jaxad.runs import read_run_config

ROOT = Path(__file__).resolve().parents[1]

TINY = ExperimentConfig(model=ModelConfig(width=0.125), train=TrainConfig(batch_size=32, epochs=2))


@pytest.fixture(scope="module")
def split():
    return load_split(TINY.data)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, split):
    """A finished two-epoch run on digits class 0 (checkpoints of epochs 1 and 2), and its result."""
    run_dir = tmp_path_factory.mktemp("trained")
    return run_dir, fit(TINY, split, run_dir=run_dir, progress=False)


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


def run_command(*argv: str) -> int:
    return run_cli.main([*argv, "--no-progress"])


TINY_FLAGS = ("--dataset", "digits", "--seeds", "1", "--epochs", "1", "--batch-size", "32", "--width", "0.125")


# ------------------------------------------------------------------ every file is written whole, under a name of its own

def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    write_json_atomic(tmp_path / "result.json", {"status": "complete"})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(tmp_path / "result.json", {"status": "failed"})
    assert json.loads((tmp_path / "result.json").read_text()) == {"status": "complete"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_two_writers_of_one_file_never_write_into_each_others_temporary_file(tmp_path, monkeypatch):
    replace = os.replace

    def second_writer_meanwhile(src, dst):  # another writer of the same file, between write and rename
        monkeypatch.setattr(os, "replace", replace)
        write_text_atomic(dst, "second\n")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", second_writer_meanwhile)
    write_text_atomic(tmp_path / "history.json", "first\n")
    assert (tmp_path / "history.json").read_text() == "first\n"  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


# ------------------------------------------------------------------ one writer per run directory

def hold_lock(directory: Path) -> subprocess.Popen:
    """Another process holding ``directory``'s lock (as a fit or a runner writing there does)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jaxad import locks\n"
         "with locks.locked(sys.argv[1], 'held'):\n    print('locked', flush=True); time.sleep(60)", str(directory)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_fit_refuses_a_run_directory_another_process_is_training_in(tmp_path, split):
    run_dir = tmp_path / "run"
    holder = hold_lock(run_dir)
    try:
        with pytest.raises(DirectoryLockedError, match=f"another process .* is training the run in {run_dir}"):
            fit(TINY, split, run_dir=run_dir, progress=False)
        assert locks.is_locked(run_dir)
    finally:
        holder.kill()
        holder.wait()
    assert [p.name for p in run_dir.iterdir()] == [".lock"]  # nothing written beside the holder's lock
    assert not locks.is_locked(run_dir)  # released when its holder ends, even by kill


def test_a_second_fit_into_a_run_directory_being_trained_is_refused_and_the_first_stays_whole(tmp_path, split):
    refused = []

    def second_fit(epoch, record):
        with pytest.raises(DirectoryLockedError) as err:
            fit(TINY, split, run_dir=tmp_path, progress=False)
        refused.append(str(err.value))

    result = fit(TINY, split, run_dir=tmp_path, progress=False, on_epoch=second_fit)
    assert len(refused) == 2 and "choose another run_dir" in refused[0]
    saved = json.loads((tmp_path / "result.json").read_text())
    history = json.loads((tmp_path / "history.json").read_text())
    assert saved["epochs"] == len(history) == len(result.history) == 2
    assert not list((tmp_path / "checkpoints").glob("*tmp*"))


def test_fit_many_refuses_one_run_directory_named_twice(tmp_path, split):
    cfgs = [TINY, TINY.replace(seed=1)]
    with pytest.raises(ValueError, match="more than once"):
        fit_many(cfgs, [split, split], run_dirs=[tmp_path / "a", tmp_path / "./a"], progress=False)
    assert not (tmp_path / "a").exists()


def test_a_lock_on_a_new_directory_that_writes_nothing_leaves_nothing(tmp_path):
    with pytest.raises(KeyError):
        with locks.locked(tmp_path / "out" / "runs", "held"):
            raise KeyError("refused")
    assert list(tmp_path.iterdir()) == []
    with locks.locked(tmp_path / "out", "held"):
        (tmp_path / "out" / "result.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock", "result.json"]
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        with locks.locked(tmp_path / "file", "held"):
            pass


# ------------------------------------------------------------------ splits that would train on something else than asked

def test_fit_at_gamma_0_refuses_training_anomalies_it_would_leave_unused(tmp_path, split):
    with_anomalies = dataclasses.replace(split, train_anomaly=split.test_images[split.test_labels == 1][:20])
    with pytest.raises(ValueError, match=r"20 training anomalies but data.gamma is 0.*set data.gamma to their "
                                         r"fraction, here 0.1"):
        fit(TINY, with_anomalies, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("empty,message", [("train_normal", "no training normals"), ("test_images", "no test images")])
def test_fit_refuses_a_split_it_cannot_train_or_score_before_writing(tmp_path, split, empty, message):
    arrays = {"train_normal": split.train_normal}
    if empty == "train_normal":
        arrays["train_normal"] = split.train_normal[:0]
    else:
        arrays.update(test_images=split.test_images[:0], test_labels=split.test_labels[:0],
                      test_classes=split.test_classes[:0])
    bad = dataclasses.replace(split, **arrays)
    with pytest.raises(ValueError, match=message):
        fit(TINY, bad, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_fit_at_gamma_above_0_refuses_a_split_without_anomalies(tmp_path, split):
    cfg = TINY.replace(**{"data.gamma": 0.05, "train.min_anomalies_per_batch": 4})
    with pytest.raises(ValueError, match="data.gamma is 0.05 but the split holds no training anomalies"):
        fit(cfg, split, run_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_split_whose_test_classes_do_not_match_its_test_images_is_refused(split):
    with pytest.raises(ValueError, match=r"test images but test_classes of shape \(3,\)"):
        dataclasses.replace(split, test_classes=split.test_classes[:3])


# ------------------------------------------------------------------ run directories edited or read while written

@pytest.mark.parametrize("section,field,value,message", [
    ("model", "width", "0.125", "model.width must be a number, got '0.125'"),
    ("model", "widht", 0.25, r"unknown field\(s\) model.widht"),
    ("train", "epochs", 2.5, "train.epochs must be a whole number"),
])
def test_a_hand_edited_config_json_is_named_with_its_field(trained_run, tmp_path, split, section, field, value,
                                                            message):
    run_dir = copy_of(trained_run[0], tmp_path)
    saved = json.loads((run_dir / "config.json").read_text())
    saved[section][field] = value
    (run_dir / "config.json").write_text(json.dumps(saved))
    named = f"{run_dir / 'config.json'} is not a configuration jaxad can read: {message}"
    for read in (lambda: load_run(run_dir), lambda: read_run_config(run_dir),
                 lambda: fit(TINY, split, run_dir=run_dir, progress=False)):
        with pytest.raises(ValueError, match=named):
            read()


def test_a_config_json_edited_to_another_model_is_not_called_unreadable_checkpoints(trained_run, tmp_path):
    run_dir = copy_of(trained_run[0], tmp_path)
    saved = json.loads((run_dir / "config.json").read_text())
    saved["model"]["width"] = 0.25
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match=r"holds another model than the configuration describes .*\(16,\) in "
                                              r"the checkpoint, \(32,\) in the model.*config.json was changed") as err:
        load_run(run_dir)
    assert "delete" not in str(err.value).replace("do not delete", "")


def test_load_run_tries_again_when_training_removes_the_checkpoint_it_reads(trained_run, tmp_path, monkeypatch):
    run_dir = copy_of(trained_run[0], tmp_path)
    restore, read = ocp.CheckpointManager.restore, []

    def retention_meanwhile(manager, step, *args, **kwargs):  # a run in training keeps only its latest epochs
        read.append(step)
        if len(read) == 1:
            shutil.rmtree(run_dir / "checkpoints" / str(step))
        return restore(manager, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "restore", retention_meanwhile)
    load_run(run_dir)  # the latest: epoch 2, gone while read; then epoch 1, the latest now
    assert read == [2, 1]
    shutil.rmtree(run_dir)
    run_dir = copy_of(trained_run[0], tmp_path)
    read.clear()
    with pytest.raises(CheckpointError, match=r"checkpoints/2 was removed while it was read: the run in .* is "
                                              r"training .*load one it keeps now: \[1\]"):
        load_run(run_dir, epoch=2)


# ------------------------------------------------------------------ refusals leave nothing behind

@pytest.mark.parametrize("refused,message", [
    (("--classes", "10"), "normal_class 10 is out of range for digits"),
    (("--classes", "0", "--devices", "4"), "4 devices asked for"),
])
def test_a_refused_benchmark_leaves_nothing_in_its_out_directory(tmp_path, capsys, refused, message):
    out = tmp_path / "out"
    assert run_command(*TINY_FLAGS, *refused, "--out", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # the corrected command starts afresh


def test_a_refused_merge_copies_nothing_and_marks_nothing(tmp_path, capsys):
    spec = run_cli.build_spec(run_cli.parse_args([*TINY_FLAGS, "--classes", "0", "1"]))
    source = tmp_path / "elsewhere"
    for cfg, width in zip(spec.runs(), (0.125, 0.5)):  # the second run is of another width
        run_dir = source / "runs" / "gamma0" / f"class{cfg.data.normal_class}" / "seed0"
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "config.json", cfg.replace(**{"model.width": width}).to_dict())
        write_json_atomic(run_dir / "result.json", {"status": "complete"})
    out = tmp_path / "out"
    assert run_command(*TINY_FLAGS, "--classes", "0", "1", "--out", str(out), "--merge-from", str(source)) == 2
    assert "model.width: 0.5 in the run directory, 0.125 now" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------ scores: none, or not finite

def test_no_images_give_no_scores(trained_run):
    state = trained_run[1].state
    for batch_statistics in (False, True):
        scores = score(state, np.zeros((0, 32, 32, 1), np.float32), use_batch_statistics=batch_statistics)
        assert scores.shape == (0,)


def test_a_diverged_model_scores_raise_floating_point_error_not_an_auroc_error(trained_run, split):
    state = trained_run[1].state
    diverged = state.replace(**{name: jax.tree.map(lambda w: w * np.nan, params)  # G's weights, averaged or not
                                for name, params in state.arrays().items() if name in ("g_params", "g_ema_params")})
    with pytest.raises(FloatingPointError, match=r"the scores of \d+ of 4 images are not finite .*diverged"):
        score(diverged, split.test_images[:4])


def test_a_run_whose_scores_turn_non_finite_stops_and_the_benchmark_goes_on(tmp_path, capsys, monkeypatch):
    real_fit, real_score_step = grid.fit, loop._score_step

    def nan_scores(state, images, *args):
        return np.full(len(images), np.nan, np.float32)

    def class_0_diverges_in_epoch_2(cfg, split, **kwargs):  # its losses stay finite, its scores do not
        if cfg.data.normal_class != 0:
            return real_fit(cfg, split, **kwargs)
        kwargs.pop("on_epoch", None)
        try:
            return real_fit(cfg, split, on_epoch=lambda *_: monkeypatch.setattr(loop, "_score_step", nan_scores),
                            **kwargs)
        finally:
            monkeypatch.setattr(loop, "_score_step", real_score_step)

    monkeypatch.setattr(grid, "fit", class_0_diverges_in_epoch_2)
    out = tmp_path / "out"
    flags = [*TINY_FLAGS, "--epochs", "2", "--classes", "0", "1", "--out", str(out)]
    assert run_command(*flags) == 1
    captured = capsys.readouterr()
    assert "epoch 2: the scores of" in captured.out
    assert "images are not finite (NaN or inf): the model has diverged" in captured.out
    assert "its last good checkpoint, of epoch 1, is kept" in captured.out
    assert "1 of 2 run(s) failed" in captured.err and "Input contains NaN" not in captured.err
    failed = out / "runs" / "gamma0" / "class0" / "seed0"
    assert json.loads((failed / "result.json").read_text())["status"] == "failed"
    assert load_run(failed)[0] is not None and sorted(p.name for p in (failed / "checkpoints").iterdir()) == ["1"]
    assert json.loads((out / "runs" / "gamma0" / "class1" / "seed0" / "result.json").read_text())["status"] == \
        "complete"


# ------------------------------------------------------------------ a finished benchmark's files damaged

@pytest.fixture(scope="module")
def finished_benchmark(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(out)) == 0
    return out


def test_a_finished_benchmark_whose_history_is_damaged_or_deleted_resumes(finished_benchmark, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished_benchmark, out)
    history = out / "runs" / "gamma0" / "class0" / "seed0" / "history.json"
    intact = json.loads(history.read_text())
    for damage in (lambda: history.write_text('[{"epoch": 1, "auroc'), history.unlink):
        damage()
        with pytest.warns(UserWarning, match="history.json is (damaged|missing): written afresh from the history "
                                             "its checkpoint of epoch 1 saved"):
            assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(out), "--resume") == 0
        assert json.loads(history.read_text()) == intact


def test_a_finished_benchmark_whose_scores_are_missing_says_how_to_score_them_again(finished_benchmark, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished_benchmark, out)
    run_dir = out / "runs" / "gamma0" / "class0" / "seed0"
    (run_dir / "scores.npz").write_bytes(b"PK\x03\x04 cut short")
    (run_dir / "score_extremes.png").unlink()  # a picture to redraw from them, too
    with pytest.warns(UserWarning, match=f"scores.npz cannot be read .*delete {run_dir / 'result.json'} and run "
                                         f"the benchmark with --resume"):
        assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(out), "--resume") == 0
    (run_dir / "result.json").unlink()
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(out), "--resume") == 0  # finished again
    with np.load(run_dir / "scores.npz") as saved:
        assert np.all(np.isfinite(saved["scores"]))


# ------------------------------------------------------------------ OS errors at the output: one line, the path, exit 74

def tensorstore_full_disk(*args, **kwargs):
    """What orbax raises when tensorstore cannot write a checkpoint's arrays to a full disk."""
    raise ValueError('RESOURCE_EXHAUSTED: Error writing "g_params.Conv_0.kernel/0" in OCDBT database at local file '
                     '"checkpoints/1.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed to '
                     'write 170124 bytes to file 5: No space left on device [os_error_code=\'28\']')


def test_a_full_disk_under_out_is_one_line_naming_the_path_and_exit_74(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ocp.CheckpointManager, "save", tensorstore_full_disk)
    out = tmp_path / "out"
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(out)) == 74
    err = capsys.readouterr().err
    checkpoints = out / "runs" / "gamma0" / "class0" / "seed0" / "checkpoints"
    assert err.startswith(f"error: {checkpoints}: No space left on device; free some space, or choose another "
                          f"--out; then continue with: ")
    assert err.count("\n") == 1 and "--resume" in err and "Traceback" not in err


def test_a_read_only_out_directory_is_one_line_naming_the_file_and_exit_74(tmp_path, capsys, monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr("jaxad.files.open", read_only, raising=False)  # every atomic write under --out
    out = tmp_path / "out"
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(out)) == 74
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'benchmark.json'}: Read-only file system; make it writable")
    assert err.count("\n") == 1


def test_fit_raises_the_os_error_of_a_checkpoint_written_in_the_background(tmp_path, split, monkeypatch):
    wait = ocp.CheckpointManager.wait_until_finished
    failed = []

    def fails_once(manager):
        wait(manager)
        if not failed:
            failed.append(True)
            tensorstore_full_disk()

    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", fails_once)
    with pytest.raises(OSError) as err:
        fit(TINY.replace(**{"train.epochs": 1}), split, run_dir=tmp_path, progress=False)
    assert (err.value.errno, err.value.filename) == (errno.ENOSPC, str((tmp_path / "checkpoints").absolute()))


def test_a_directory_on_a_read_only_file_system_is_read_without_a_lock(tmp_path, monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr("jaxad.locks.open", read_only, raising=False)
    with locks.locked(tmp_path, "held"):  # no writer to keep out: a finished benchmark's table still prints
        pass


# ------------------------------------------------------------------ further probes: paths and files given by hand

def damage_checkpoint(run_dir: Path, epoch: int) -> None:
    for f in (run_dir / "checkpoints" / str(epoch)).rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "state" in f.parts:
            f.write_bytes(b"\0garbage")


def test_an_epoch_damaged_again_after_it_was_retrained_is_set_aside_beside_the_first(trained_run, tmp_path, split):
    run_dir = copy_of(trained_run[0], tmp_path)
    for aside in ("2", "2.2"):
        (run_dir / "result.json").unlink()
        damage_checkpoint(run_dir, 2)
        with pytest.warns(UserWarning, match=f"moved to {run_dir / 'corrupt_checkpoints' / aside}\\)"):
            fit(TINY, split, run_dir=run_dir, progress=False)
    assert sorted(p.name for p in (run_dir / "corrupt_checkpoints").iterdir()) == ["2", "2.2"]


def test_checkpoints_without_their_config_json_are_not_resumed_under_another_configuration(trained_run, tmp_path,
                                                                                           split):
    run_dir = copy_of(trained_run[0], tmp_path)
    (run_dir / "config.json").unlink()
    with pytest.raises(ValueError, match="holds checkpoints but no config.json, so nothing says which configuration"):
        fit(TINY.replace(**{"train.learning_rate": 1e-3}), split, run_dir=run_dir, progress=False)
    assert not (run_dir / "config.json").exists()
    (run_dir / "config.json").write_text('{"model": {"width": 0.1')
    with pytest.raises(ValueError, match="config.json is damaged, not valid JSON .*restore it from a copy: it alone "
                                         "says which configuration trained the run") as err:
        load_run(run_dir)
    assert "delete" not in str(err.value)


@pytest.mark.parametrize("name,content,message", [
    ("benchmark.json", "[]", "benchmark.json is damaged: it holds a JSON list where jaxad writes a JSON dict"),
    ("runs/gamma0/class0/seed0/result.json", b"\x89PNG\r\n", "result.json is damaged, not valid JSON"),
])
def test_a_json_file_of_the_wrong_kind_is_named_as_damaged(tmp_path, capsys, name, content, message):
    spec = run_cli.build_spec(run_cli.parse_args([*TINY_FLAGS, "--classes", "0"]))
    write_json_atomic(tmp_path / "benchmark.json", spec.identity())
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(tmp_path), "--resume") == 2
    assert message in capsys.readouterr().err


def test_output_and_data_paths_that_name_files_are_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(tmp_path / "file")) == 2
    assert f"error: {tmp_path / 'file'} is a file, not a directory" in capsys.readouterr().err
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(tmp_path / "file" / "out")) == 74
    assert f"error: {tmp_path / 'file' / 'out'}: Not a directory; a part of the path is a file" in \
        capsys.readouterr().err
    assert run_command("--dataset", "mnist", "--data-dir", str(tmp_path / "file"), "--out", str(tmp_path / "o")) == 2
    assert f"data_dir {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_fit_refuses_an_empty_run_dir_rather_than_writing_into_the_current_directory(split):
    with pytest.raises(ValueError, match="run_dir is an empty path"):
        fit(TINY, split, run_dir="", progress=False)


@pytest.mark.parametrize("changes,message", [
    ({"model.latent_dim": 0}, "latent_dim must be at least 1, got 0"),
    ({"train.beta2": 1.0}, r"beta2 must lie in \[0, 1\), got 1.0"),
])
def test_settings_that_would_crash_or_divide_by_zero_are_refused_when_the_config_is_built(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_auroc_refuses_scores_that_are_not_finite():
    with pytest.raises(ValueError, match="1 of 4 scores are NaN or inf"):
        auroc(np.array([0, 1, 0, 1]), np.array([0.1, np.nan, 0.2, 0.8]))


def test_a_merge_stopped_by_a_full_disk_leaves_no_half_copied_run(tmp_path, capsys, monkeypatch):
    spec = run_cli.build_spec(run_cli.parse_args([*TINY_FLAGS, "--classes", "0"]))
    source = tmp_path / "elsewhere"
    run_dir = source / "runs" / "gamma0" / "class0" / "seed0"
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / "config.json", spec.runs()[0].to_dict())
    write_json_atomic(run_dir / "result.json", {"status": "complete"})
    copytree = shutil.copytree

    def full_disk_midway(src, dst, **kwargs):
        copytree(src, dst, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(dst) / "result.json"))

    monkeypatch.setattr(grid.shutil, "copytree", full_disk_midway)
    out = tmp_path / "out"
    assert run_command(*TINY_FLAGS, "--classes", "0", "--out", str(out), "--merge-from", str(source)) == 74
    assert "No space left on device; free some space, then run the same command again" in capsys.readouterr().err
    assert not list(out.rglob("*.merging"))
