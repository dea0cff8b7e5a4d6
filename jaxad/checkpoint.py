"""Checkpoints with orbax: the train state's arrays and the run's history, saved every epoch.

The checkpoint after epoch e is step e (epochs count from 1). orbax's preservation policy
keeps the ``keep_recent`` latest epochs (2 by default: the final one and the one before, which
resuming falls back to if the final one is damaged), the test-selected one, the epoch of
highest test AUROC (``manager.best_step()`` names it), and the label-free selected one, the
epoch whose scoring generator's training evidence was best (no test label; ``jaxad.selection``,
``RunResult.selected_epoch``). Each checkpoint records those figures as orbax metrics.
``keep_recent=None`` keeps every epoch.

orbax writes each step to a temporary directory and renames it on commit, so a kill never
leaves a half-written checkpoint that reads as complete. Checkpoints hold unreplicated
arrays, so a run saved on N devices resumes on any device count.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import jax
import orbax.checkpoint as ocp

from jaxad.selection import EVIDENCE, label_free_key


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back (corrupt, truncated, or of another model)."""


KEEP_RECENT = 2  # the latest epochs' checkpoints kept, beside the test-selected and label-free selected ones


def _test_selection(metrics: dict[str, float]) -> tuple[float, int]:
    # The highest AUROC, the earliest epoch on a tie: RunResult.best_epoch's choice (none
    # without test anomalies).
    return metrics.get("auroc", -math.inf), -metrics["epoch"]


def _label_free_selection(metrics: dict[str, float]) -> tuple[tuple[float, float], int]:
    # The best training evidence, the earliest epoch on a tie: RunResult.selected_epoch's choice.
    return label_free_key(metrics), -metrics["epoch"]


def _label_free_selected(metrics: list[dict[str, float] | None]) -> int | None:
    """The index of the label-free selected checkpoint among checkpoints with these metrics: the
    best by ``_label_free_selection`` among those that record a training-normal score (None if
    none does, as in a run written before it was recorded)."""
    scored = [i for i, m in enumerate(metrics) if "train_normal_score" in (m or {})]
    return max(scored, key=lambda i: _label_free_selection(metrics[i]), default=None)


class _KeepLabelFreeSelected:
    """orbax preservation policy: keep the label-free selected checkpoint (orbax's ``BestN``
    would also keep one of those that record no training-normal score)."""

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        keep = _label_free_selected([info.metrics for info in checkpoints])
        return [i == keep for i in range(len(checkpoints))]


def check_keep_recent(keep_recent: int | None) -> None:
    """Refuse a count of recent checkpoints to keep other than None (all) or a whole number >= 1."""
    if keep_recent is not None and (isinstance(keep_recent, bool) or not isinstance(keep_recent, int)
                                    or keep_recent < 1):
        raise ValueError(f"keep_checkpoints is how many of the latest epochs' checkpoints to keep, at least 1 "
                         f"(the final one), or None for every epoch; got {keep_recent!r}")


def checkpoint_manager(directory: str | Path, keep_recent: int | None = KEEP_RECENT, *,
                       read_only: bool = False) -> ocp.CheckpointManager:
    """An orbax manager under ``directory`` keeping the ``keep_recent`` latest epochs (None: all),
    the test-selected one (highest test AUROC, ``best_step()``) and the label-free selected one
    (best training evidence, ``selected_step``). Checkpoints saved without
    an AUROC (an untrained state; run directories from before) are kept.

    A writer's manager (the run's one writer: ``fit`` holds the run directory's lock) removes
    the temporary directories of saves that never finished (a full disk, a kill); a
    ``read_only`` one, for loading, changes nothing, as another process may be saving there."""
    check_keep_recent(keep_recent)
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
        best_fn=_test_selection, best_mode="max",
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=keep_recent),
            policies.BestN(get_metric_fn=_test_selection, n=1, keep_checkpoints_without_metrics=True),
            _KeepLabelFreeSelected()]))
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


# How tensorstore, which writes orbax's arrays, names the OS error behind a failed write.
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")


def os_error_of(err: BaseException, path: str | Path) -> OSError | None:
    """The ``OSError`` behind ``err`` (a full disk, a read-only file system, a permission):
    ``err`` itself or one it was raised from, or one that tensorstore describes in its message
    (raised anew with its errno, naming ``path``); None when no OS error is behind it."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        code = _OS_ERROR_CODE.search(str(seen))
        if code:
            return OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path))
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def _os_errors(path: str | Path) -> Iterator[None]:
    """Raise orbax's failures to write under ``path`` that an OS error caused as that ``OSError``."""
    try:
        yield
    except Exception as err:
        os_error = os_error_of(err, path)
        if os_error is None or os_error is err:
            raise
        raise os_error from err


def save(manager: ocp.CheckpointManager, epoch: int, arrays: Any, history: dict[str, Any]) -> None:
    """Save the state's arrays and the JSON history after ``epoch`` (asynchronously), with the
    test AUROC and the training evidence (``EVIDENCE``) of its last record as the metrics the
    test-selected and the label-free selected checkpoints are chosen by. A save that an OS
    error stopped (this one, or the previous one's writing in the background) raises that
    ``OSError``, naming the checkpoint."""
    records = history.get("epochs") or []
    metrics = {"epoch": epoch} if records else None
    if records and records[-1]["auroc"] is not None:
        metrics["auroc"] = float(records[-1]["auroc"])
    for evidence in EVIDENCE:
        if records and evidence in records[-1]:
            metrics[evidence] = float(records[-1][evidence])
    with _os_errors(manager.directory):
        manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(arrays),
                                                    history=ocp.args.JsonSave(history)), metrics=metrics)


def close(manager: ocp.CheckpointManager) -> None:
    """Wait for the checkpoints being written in the background, then close ``manager``; a
    save that an OS error stopped raises that ``OSError``, as in ``save``."""
    with _os_errors(manager.directory):
        manager.wait_until_finished()
    manager.close()


def selected_step(manager: ocp.CheckpointManager) -> int | None:
    """The label-free selected epoch among those saved: the best training evidence (None
    when no checkpoint records one)."""
    steps = sorted(manager.all_steps())
    index = _label_free_selected([manager.metrics(step) for step in steps])
    return None if index is None else steps[index]


def saved_epochs(manager: ocp.CheckpointManager) -> str:
    """``"[3, 9, 10] (10 the latest, 3 the test-selected, 9 the label-free selected)"``: what a
    user can load."""
    steps = sorted(manager.all_steps())
    if not steps:
        return "none"
    names = [f"{steps[-1]} the latest"]
    best, selected = manager.best_step(), selected_step(manager)
    if best is not None and best != steps[-1]:
        names.append(f"{best} the test-selected")
    if selected is not None and selected != steps[-1]:
        names.append(f"{selected} the label-free selected")
    return f"{steps} ({', '.join(names)})"


def resolve_epoch(manager: ocp.CheckpointManager, epoch: int | str | None) -> int:
    """The step to load for ``epoch``: a number, ``None`` or ``"final"`` (the latest), ``"best"``
    (the test-selected epoch) or ``"selected"`` (the label-free selected epoch). Raises
    ``CheckpointError`` listing the saved epochs."""
    steps = sorted(manager.all_steps())
    if not steps:
        raise CheckpointError(f"no checkpoint under {manager.directory}")
    if epoch is None or epoch == "final":
        return steps[-1]
    if epoch == "best":
        with_metrics = [s for s in steps if manager.metrics(s) is not None]
        if not with_metrics:
            raise CheckpointError(f"no checkpoint under {manager.directory} records its test AUROC (written "
                                  f"before jaxad kept the test-selected one); saved epochs: {saved_epochs(manager)}")
        return manager.best_step()
    if epoch == "selected":
        selected = selected_step(manager)
        if selected is None:
            raise CheckpointError(f"no checkpoint under {manager.directory} records its training-normal score "
                                  f"(written before jaxad kept the label-free selected one); saved epochs: "
                                  f"{saved_epochs(manager)}")
        return selected
    if isinstance(epoch, str) or epoch not in steps:
        raise CheckpointError(
            f"no checkpoint of epoch {epoch!r} under {manager.directory}; saved epochs: {saved_epochs(manager)}, "
            f"or 'final' / 'best' / 'selected'. fit keeps the latest {KEEP_RECENT} epochs, the test-selected and the "
            f"label-free selected one by default; "
            f"fit(..., keep_checkpoints=None) or run.py --keep-checkpoints all keeps every epoch")
    return epoch


def _leaf_shapes(tree: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Each array's shape in ``tree`` by its path of names (as a checkpoint's metadata names them)."""
    def name(key: Any) -> str:
        return str(getattr(key, "key", getattr(key, "idx", getattr(key, "name", key))))
    return {tuple(map(name, path)): tuple(getattr(leaf, "shape", ()))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_same_model(step_dir: Path, template: Any) -> None:
    """Raise ``CheckpointError`` when the checkpoint in ``step_dir`` holds arrays of other shapes
    (or other arrays) than ``template``: the model its run directory's configuration describes.

    Read from the checkpoint's metadata, before orbax restores (which fails on the first array
    of another shape as on a damaged file); a checkpoint whose metadata cannot be read passes,
    for ``restore`` to report."""
    try:
        saved = _leaf_shapes(ocp.StandardCheckpointHandler().metadata(step_dir / "state"))
    except Exception:  # damaged or missing metadata: restore says what it is
        return
    wanted = _leaf_shapes(template)
    differ = [f"{'.'.join(k)}: {saved[k]} in the checkpoint, {wanted[k]} in the model"
              for k in sorted(saved.keys() & wanted.keys()) if saved[k] != wanted[k]]
    differ += [f"{'.'.join(k)}: absent from the checkpoint" for k in sorted(wanted.keys() - saved.keys())]
    differ += [f"{'.'.join(k)}: not in the model" for k in sorted(saved.keys() - wanted.keys())]
    if differ:
        raise CheckpointError(
            f"checkpoint {step_dir} holds another model than the configuration describes ({len(differ)} "
            f"array(s) differ, e.g. {'; '.join(differ[:3])}): the run directory's config.json was changed "
            f"after the run was trained, or the checkpoints come from another run; restore the config.json "
            f"the run was trained with (the checkpoints are intact: do not delete them)")


# How often ``restore`` tries again when the checkpoint it reads is removed meanwhile (a run
# training in the directory keeps only its latest epochs' checkpoints).
RESTORE_ATTEMPTS = 3


def restore(manager: ocp.CheckpointManager, template: Any,
            epoch: int | str | None = None) -> tuple[Any, dict, int]:
    """Restore ``(arrays, history, epoch)``, the latest epoch unless one is named (see ``resolve_epoch``).

    ``template`` is a pytree of the same structure (arrays or ``jax.ShapeDtypeStruct``).
    Raises ``CheckpointError`` with the path, and the other epochs saved there, when the
    checkpoint cannot be read or the epoch named was not kept, or when it holds another model
    than ``template`` (``check_same_model``). A checkpoint removed while it is read (a run
    training there keeps only its latest epochs') is looked up again: the latest, test-selected
    or label-free selected one as it is now; an epoch named by number says it is gone.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    for _ in range(RESTORE_ATTEMPTS):
        step = resolve_epoch(manager, epoch)
        step_dir = Path(manager.directory) / str(step)
        check_same_model(step_dir, abstract)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
            return restored["state"], restored["history"], step
        except Exception as err:  # orbax raises many kinds; all mean the same to a user
            manager.reload()
            if step in manager.all_steps():
                raise _unreadable(manager, step, err) from err
            if isinstance(epoch, int):
                raise CheckpointError(
                    f"checkpoint {step_dir} was removed while it was read: the run in "
                    f"{Path(manager.directory).parent} is training and keeps only its latest epochs' "
                    f"checkpoints; load one it keeps now: {saved_epochs(manager)}") from err
    raise CheckpointError(f"the checkpoints under {manager.directory} were removed while they were read, "
                          f"{RESTORE_ATTEMPTS} times: the run there is training; load it again when it has "
                          f"finished")


def _unreadable(manager: ocp.CheckpointManager, step: int, err: Exception) -> CheckpointError:
    """The error for a checkpoint that is there but cannot be read: the other epochs to load."""
    others = sorted(set(manager.all_steps()) - {step})
    advice = (f"the directory also holds epoch(s) {others}: load_run(run_dir, epoch={others[-1]}) or "
              f"score.py --epoch {others[-1]} loads one, and fit or run.py --resume fall back to the "
              f"latest intact one by themselves"
              if others else f"no other checkpoint is left: delete {manager.directory} to restart the run "
              f"from scratch")
    return CheckpointError(f"checkpoint {Path(manager.directory) / str(step)} cannot be read "
                           f"({type(err).__name__}: {str(err)[:300]}); {advice}")


def _unused(path: Path) -> Path:
    """``path``, or ``path.2``, ``path.3``, ... the first that does not exist: an epoch damaged
    again after it was retrained is set aside beside the first copy, not over it."""
    candidate, copy = path, 1
    while candidate.exists():
        copy += 1
        candidate = path.with_name(f"{path.name}.{copy}")
    return candidate


def restore_latest_intact(manager: ocp.CheckpointManager, template: Any) -> tuple[Any, dict, int]:
    """``restore`` of the latest checkpoint that can be read, for resuming a run.

    A damaged later checkpoint (a disk fault, a copy cut short) is moved to
    ``corrupt_checkpoints/`` beside the checkpoint directory (``7``, or ``7.2`` if epoch 7 was
    damaged before), with a warning naming it, so the run retrains that epoch. Raises ``CheckpointError`` when no checkpoint can be read.
    """
    while True:
        epoch = manager.latest_step()
        try:
            return restore(manager, template, epoch)
        except CheckpointError as err:
            if len(manager.all_steps()) < 2 or "cannot be read" not in str(err):
                raise
            aside = _unused(Path(manager.directory).parent / "corrupt_checkpoints" / str(epoch))
            aside.parent.mkdir(exist_ok=True)
            (Path(manager.directory) / str(epoch)).rename(aside)
            manager.reload()
            warnings.warn(f"checkpoint of epoch {epoch} cannot be read (moved to {aside}); resuming from "
                          f"epoch {manager.latest_step()}, the latest intact checkpoint", stacklevel=2)
