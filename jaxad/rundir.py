"""A run directory: what one run writes, how it is checked, and how it loads.

One run = (dataset, backbone, normal class, gamma, seed) in its own directory:
``config.json``, ``data.json`` (a fingerprint of the split it trains on), ``checkpoints/``
(orbax, saved every epoch; the latest ``keep_checkpoints`` epochs, 2 by default, the
test-selected one and the label-free selected one are kept: ``load_run(run_dir, epoch="best")``,
``epoch="selected"``), ``history.json`` (per-epoch losses and AUROC), ``scores.npz`` (raw
test scores, labels and classes) and ``result.json``, written last, which marks the run
complete. The epoch loop (``jaxad.loop``) opens a run directory with ``open_run``, which
refuses one of another configuration or other data, and writes its result with
``write_result``; one process writes a run directory at a time (``writing``).

    state, config = load_run("runs/digits-0")                    # the saved final model
    state, config = load_run("runs/digits-0", epoch="selected")  # the label-free selected epoch's
    state, config = load_run("runs/digits-0", epoch="best")      # the test-selected epoch's

Epochs count from 1 everywhere: ``history.json``'s ``"epoch"``, ``result.json``'s
``"best_epoch"`` and the checkpoints: the one saved after epoch e is step e
(``checkpoints/e``), so ``load_run(run_dir, epoch=e)`` is the model as it was after epoch e.
Run directories written by earlier versions load and resume as ``jaxad.compat`` reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import jax
import numpy as np

from jaxad import checkpoint, compat, locks
from jaxad.config import ExperimentConfig, without_inert_fields
from jaxad.data import OneClassSplit
from jaxad.files import read_json, write_bytes_atomic, write_json_atomic
from jaxad.train import AGADState, create_train_state, live_generator

if TYPE_CHECKING:
    from jaxad.loop import RunResult


# What --paper-protocol adds to each epoch's record (``batch_statistics_aurocs``).
BATCH_STATISTICS_AUROCS = ("auroc_batch_statistics", "auroc_batch_statistics_normal_first")


class ConfigMismatchError(ValueError):
    """A run directory that holds a run of another configuration."""


class DataMismatchError(ValueError):
    """A run directory that holds a run trained on other data."""


FINGERPRINTED = ("train_normal", "train_anomaly", "test_images", "test_labels")


def array_fingerprint(array: np.ndarray) -> str:
    """A short hash of an array's dtype, shape and values."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str} {array.shape}".encode())
    digest.update(array.data if array.size else b"")
    return digest.hexdigest()[:16]


def split_fingerprint(split: OneClassSplit) -> dict[str, str]:
    """What a run directory's ``data.json`` records: a fingerprint of each array of the split.

        split_fingerprint(load_split(cfg.data))  # {"train_normal": "3f2a...", "test_images": ...}
    """
    return {name: array_fingerprint(getattr(split, name)) for name in FINGERPRINTED}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"train.epochs: 1 in the run directory, 2 now"`` for each field that differs."""
    saved, current = _flat(saved), _flat(current)
    return [f"{key}: {saved.get(key, '(absent)')} in the run directory, {current.get(key, '(absent)')} now"
            for key in sorted(saved.keys() | current.keys()) if saved.get(key) != current.get(key)]


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The configuration in ``run_dir/config.json``; a file that does not describe one (an
    unknown field, a value of the wrong type, damaged JSON) raises ``ValueError`` naming it."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a jaxad run directory (no config.json)")
    try:
        saved = read_json(path)
    except ValueError as err:  # not "delete it": nothing else says which configuration trained the run
        raise ValueError(f"{path} is damaged, not valid JSON ({err.__cause__}); restore it from a copy: it "
                         f"alone says which configuration trained the run") from err
    try:
        return ExperimentConfig.from_dict(saved)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a configuration jaxad can read: {err}; restore it from a copy, "
                         f"or correct it") from err


def run_config_differences(run_dir: Path, cfg: ExperimentConfig) -> list[str]:
    """How the run in ``run_dir`` (its ``config.json``, in any earlier layout) differs from ``cfg``,
    field by field; empty when it is ``cfg``'s run (fields that cannot change it are left out).
    A ``config.json`` that ``read_run_config`` refuses raises its ``ValueError``."""
    read_run_config(run_dir)
    saved = compat.upgrade_config_dict(read_json(run_dir / "config.json"))
    current = json.loads(cfg.to_json())
    return config_differences(without_inert_fields(saved, [saved["data"]["gamma"]]),
                              without_inert_fields(current, [current["data"]["gamma"]]))


def check_run_data(run_dir: Path, fingerprint: dict[str, str]) -> None:
    """Raise ``DataMismatchError`` unless the run in ``run_dir`` was made on the split whose
    ``split_fingerprint`` is ``fingerprint`` (its ``data.json``; a run that predates it
    passes, ``compat.predates_data_fingerprint``)."""
    if compat.predates_data_fingerprint(run_dir):
        return
    saved = read_json(run_dir / "data.json", dict)
    differ = [name for name in FINGERPRINTED if saved.get(name) != fingerprint[name]]
    if differ:
        raise DataMismatchError(
            f"{run_dir} holds a run trained on other data ({', '.join(differ)} differ from its "
            f"data.json): its model and history are not this data's; choose another run_dir, "
            f"or delete it to train on this data")


def check_run_dir(run_dir: Path, cfg: ExperimentConfig, split: OneClassSplit) -> None:
    """Refuse a run directory of another configuration or other data; record both in a new one.

    Args:
        run_dir: the run directory (made if missing).
        cfg: the configuration to train there.
        split: the data to train on.

    Raises:
        ConfigMismatchError: ``run_dir`` holds a run of another configuration, or checkpoints
            with no ``config.json``.
        DataMismatchError: ``run_dir`` holds a run trained on other data.
    """
    config_file, data_file = run_dir / "config.json", run_dir / "data.json"
    fingerprint = split_fingerprint(split)
    if config_file.exists():
        differences = run_config_differences(run_dir, cfg)
        if differences:
            raise ConfigMismatchError(
                f"{run_dir} holds a run of another configuration ({'; '.join(differences)}); "
                f"choose another run_dir or delete it")
        if not compat.predates_data_fingerprint(run_dir):
            check_run_data(run_dir, fingerprint)
            return
    else:
        checkpoints = run_dir / "checkpoints"
        if checkpoints.is_dir() and any(step.name.isdigit() for step in checkpoints.iterdir()):
            raise ConfigMismatchError(
                f"{run_dir} holds checkpoints but no config.json, so nothing says which configuration trained "
                f"them; restore its config.json from a copy, or choose another run_dir (or delete {run_dir})")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_file, json.loads(cfg.to_json()))
    write_json_atomic(data_file, fingerprint)  # a run that predated data.json records it now


@contextlib.contextmanager
def writing(run_dirs: Sequence[str | Path | None]) -> Iterator[None]:
    """Hold the lock (``jaxad.locks``) of each run directory for the block: one writer per run
    directory, so two processes never train into one (each would overwrite the other's files)."""
    if any(isinstance(d, str) and not d.strip() for d in run_dirs):  # Path("") would be the current directory
        raise ValueError("run_dir is an empty path; give a directory, or None to train without one")
    named = [Path(d) for d in run_dirs if d is not None]
    resolved = [d.resolve() for d in named]
    twice = sorted({str(d) for d, r in zip(named, resolved) if resolved.count(r) > 1})
    if twice:
        raise ValueError(f"run_dirs name {', '.join(twice)} more than once; give each run its own directory")
    with contextlib.ExitStack() as stack:
        for run_dir in named:
            stack.enter_context(locks.locked(
                run_dir, f"another process (or fit call) is training the run in {run_dir}; wait for it to "
                         f"finish (or stop it), or choose another run_dir"))
        yield


def open_run(run_dir: str | Path | None, cfg: ExperimentConfig, split: OneClassSplit, state: AGADState,
              keep_checkpoints: int | None = checkpoint.KEEP_RECENT):
    """Open a run directory for training: checked (``check_run_dir``) and restored from its last
    intact checkpoint.

    Args:
        run_dir: the run directory; None trains in memory.
        cfg: the run's configuration.
        split: the data it trains on.
        state: the fresh state (``create_train_state``), what a run that starts trains from.
        keep_checkpoints: as ``fit``'s.

    Returns:
        ``(manager, state, history, epochs done)``: the checkpoint manager (None in memory),
        the state to train on, the history so far (counting from 1) and its length.
    """
    if run_dir is None:
        return None, state, [], 0
    run_dir = Path(run_dir)
    check_run_dir(run_dir, cfg, split)
    manager = checkpoint.checkpoint_manager(run_dir / "checkpoints", keep_checkpoints)
    if manager.latest_step() is None:
        return manager, state, [], 0
    arrays, saved, _ = checkpoint.restore_latest_intact(manager, state.arrays())
    history = compat.numbered_from_one(saved["epochs"])
    return manager, state.replace(**arrays), history, len(history)


def as_scored(state: AGADState, record: dict[str, Any] | None) -> AGADState:
    """``state`` (a checkpoint's, both generators in it) as the generator its epoch's history
    ``record`` says scored."""
    return live_generator(state) if record and record.get("scoring_generator") == "live" else state


def save_final_scores(run_dir: Path, scores: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> None:
    """Write a run's ``scores.npz`` (final test scores, labels, classes) atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, scores=scores, labels=labels, classes=classes)
    write_bytes_atomic(run_dir / "scores.npz", buffer.getvalue())


def write_result(run_dir: Path, result: RunResult) -> None:
    """Write a finished run's ``scores.npz`` and then ``result.json``, which marks it complete:
    its final, label-free selected and test-selected figures, the checkpoints kept for them,
    ``--paper-protocol``'s figures and the evaluation (``jaxad.evaluation``)."""
    save_final_scores(run_dir, result.test_scores, result.test_labels, result.test_classes)
    # The checkpoints of the final, the test-selected and the label-free selected epoch (kept by
    # the preservation policy; absent in run directories whose checkpoint steps counted from 0).
    checkpoints = {name: f"checkpoints/{epoch}" for name, epoch in
                   (("final", len(result.history)), ("test_selected", result.best_epoch),
                    ("selected", result.selected_epoch))
                   if epoch is not None and (run_dir / "checkpoints" / str(epoch)).is_dir()}
    batch_statistics = {}  # --paper-protocol's figures: the final epoch's, the best on the test split
    for name in BATCH_STATISTICS_AUROCS:
        batch_statistics[f"final_{name}"] = result.history[-1].get(name)
        batch_statistics[f"best_{name}"] = max((h[name] for h in result.history if name in h), default=None)
    write_json_atomic(run_dir / "result.json", {
        "status": "complete",
        "final_auroc": result.final_auroc,
        "selected_auroc": result.selected_auroc,
        "selected_epoch": result.selected_epoch,
        "best_auroc": result.best_auroc,
        "best_epoch": result.best_epoch,
        compat.EPOCHS_COUNT_FROM: 1,
        "checkpoints": checkpoints,
        "epochs": len(result.history),
        "d_resets": sum(h["d_resets"] for h in result.history),
        **batch_statistics,
        **result.evaluation,
    })


def load_run(run_dir: str | Path, epoch: int | str | None = None,
             generator: str | None = None) -> tuple[AGADState, ExperimentConfig]:
    """The trained model of a run directory, as it scored.

    Args:
        run_dir: a run directory (holding ``config.json`` and ``checkpoints/``).
        epoch: None for the last checkpoint; an epoch number (counting from 1); ``"best"``,
            the test-selected epoch's; or ``"selected"``, the label-free selected epoch's
            (``RunResult.selected_epoch``).
        generator: None for the generator that scored that epoch (``pick_generator``);
            ``"live"`` for G's own weights, or ``"average"`` for the EMA.

    Returns:
        ``(state, cfg)``: the state, ready for ``score``, and the run's configuration.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory.
        CheckpointError: that epoch's checkpoint was not kept, or cannot be read, or holds
            another model than ``config.json`` describes; the message lists the epochs kept.
            (A checkpoint that a run training there removes while it is read is looked up
            again.)
        ValueError: ``generator="average"`` for a run that kept no EMA, or a ``config.json``
            that is not a configuration (an unknown field, a value of the wrong type).
    """
    if generator not in (None, "live", "average"):
        raise ValueError(f"generator is 'live', 'average' or None (the one that scored), got {generator!r}")
    state, cfg, history, restored_epoch = load_training_state(run_dir, epoch)
    # The generator that scored that epoch (pick_generator), as its history entry says.
    records = [r for r in history if r.get("epoch") == restored_epoch]
    record = records[-1] if records else None
    if generator is not None:
        if generator == "average" and cfg.train.ema_decay == 0:
            raise ValueError(f"{run_dir} kept no averaged generator (ema_decay 0); its generator is 'live'")
        record = {"scoring_generator": generator}
    return as_scored(state, record), cfg


def load_training_state(run_dir: str | Path, epoch: int | str | None = None
                        ) -> tuple[AGADState, ExperimentConfig, list[dict[str, Any]], int]:
    """A run's saved training state, as ``fit`` resumes from it (G, D, their optimiser states,
    the EMA), with its configuration, its history up to that checkpoint and the epoch restored
    (counting from 1). ``epoch`` as in ``load_run``. Training it on with the batches and keys of
    ``epoch_inputs`` replays the run's next epochs."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    state = create_train_state(cfg, jax.random.key(cfg.seed))
    manager = checkpoint.checkpoint_manager(run_dir / "checkpoints", read_only=True)
    try:
        arrays, saved, restored_epoch = checkpoint.restore(manager, state.arrays(), epoch)
    finally:
        manager.close()
    # Each checkpoint saves the history as it stood at its epoch.
    return state.replace(**arrays), cfg, compat.numbered_from_one(saved.get("epochs", [])), restored_epoch


def is_complete(run_dir: str | Path) -> bool:
    """Whether a run directory holds a finished run (its ``result.json`` was written)."""
    path = Path(run_dir) / "result.json"
    return path.exists() and read_json(path, dict).get("status") in ("complete", "failed")
