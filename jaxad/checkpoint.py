"""Checkpoints with orbax: the train state's arrays and the run's history, every epoch.

orbax writes each step to a temporary directory and renames it on commit, so a kill never
leaves a half-written checkpoint that reads as complete. Checkpoints hold unreplicated
arrays, so a run saved on N devices resumes on any device count.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back (corrupt, truncated, or of another model)."""


def checkpoint_manager(directory: str | Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """An orbax manager keeping the last ``max_to_keep`` epochs under ``directory``."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(manager: ocp.CheckpointManager, epoch: int, arrays: Any, history: dict[str, Any]) -> None:
    """Save the state's arrays and the JSON history after ``epoch`` (asynchronously)."""
    manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(arrays),
                                                history=ocp.args.JsonSave(history)))


def restore(manager: ocp.CheckpointManager, template: Any, epoch: int | None = None) -> tuple[Any, dict, int]:
    """Restore ``(arrays, history, epoch)``, the latest epoch unless one is named.

    ``template`` is a pytree of the same structure (arrays or ``jax.ShapeDtypeStruct``).
    Raises ``CheckpointError`` with the path, and the other epochs saved there, when the
    checkpoint cannot be read.
    """
    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise CheckpointError(f"no checkpoint under {manager.directory}")
    if epoch not in manager.all_steps():
        raise CheckpointError(f"no checkpoint of epoch {epoch} under {manager.directory}; "
                              f"saved epochs: {sorted(manager.all_steps())}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
        restored = manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
    except Exception as err:  # orbax raises many kinds; all mean the same to a user
        others = sorted(set(manager.all_steps()) - {epoch})
        advice = (f"the directory also holds epoch(s) {others}: load_run(run_dir, epoch={others[-1]}) or "
                  f"score.py --epoch {others[-1]} loads one, and fit or run.py --resume fall back to the "
                  f"latest intact one by themselves"
                  if others else f"no other checkpoint is left: delete {manager.directory} to restart the run "
                  f"from scratch")
        raise CheckpointError(
            f"checkpoint {Path(manager.directory) / str(epoch)} cannot be read ({type(err).__name__}: "
            f"{str(err)[:300]}); {advice}") from err
    arrays = restored["state"]
    mismatched = [
        (jax.tree_util.keystr(p), a.shape, b.shape)
        for (p, a), b in zip(jax.tree_util.tree_flatten_with_path(abstract)[0], jax.tree.leaves(arrays))
        if a.shape != b.shape]
    if mismatched:
        raise CheckpointError(f"checkpoint {manager.directory} holds another model: {mismatched[:3]}")
    return arrays, restored["history"], epoch


def restore_latest_intact(manager: ocp.CheckpointManager, template: Any) -> tuple[Any, dict, int]:
    """``restore`` of the latest checkpoint that can be read, for resuming a run.

    A damaged later checkpoint (a disk fault, a copy cut short) is moved to
    ``corrupt_checkpoints/`` beside the checkpoint directory, with a warning naming it, so the
    run retrains that epoch. Raises ``CheckpointError`` when no checkpoint can be read.
    """
    while True:
        epoch = manager.latest_step()
        try:
            return restore(manager, template, epoch)
        except CheckpointError as err:
            if len(manager.all_steps()) < 2 or "cannot be read" not in str(err):
                raise
            aside = Path(manager.directory).parent / "corrupt_checkpoints" / str(epoch)
            aside.parent.mkdir(exist_ok=True)
            (Path(manager.directory) / str(epoch)).rename(aside)
            manager.reload()
            warnings.warn(f"checkpoint of epoch {epoch} cannot be read (moved to {aside}); resuming from "
                          f"epoch {manager.latest_step()}, the latest intact checkpoint", stacklevel=2)
