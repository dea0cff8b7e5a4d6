"""Checkpoints with orbax: the train state's arrays and the run's history, every epoch.

orbax writes each step to a temporary directory and renames it on commit, so a kill never
leaves a half-written checkpoint that reads as complete. Checkpoints hold unreplicated
arrays, so a run saved on N devices resumes on any device count.
"""

from __future__ import annotations

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
    Raises ``CheckpointError`` with the path when the checkpoint cannot be read.
    """
    epoch = manager.latest_step() if epoch is None else epoch
    if epoch is None:
        raise CheckpointError(f"no checkpoint under {manager.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
        restored = manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
    except Exception as err:  # orbax raises many kinds; all mean the same to a user
        raise CheckpointError(
            f"checkpoint {Path(manager.directory) / str(epoch)} cannot be read ({type(err).__name__}: "
            f"{str(err)[:300]}); delete that directory to restart the run from scratch") from err
    arrays = restored["state"]
    mismatched = [
        (jax.tree_util.keystr(p), a.shape, b.shape)
        for (p, a), b in zip(jax.tree_util.tree_flatten_with_path(abstract)[0], jax.tree.leaves(arrays))
        if a.shape != b.shape]
    if mismatched:
        raise CheckpointError(f"checkpoint {manager.directory} holds another model: {mismatched[:3]}")
    return arrays, restored["history"], epoch
