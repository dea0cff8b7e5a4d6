"""Decisions on new images in one call: scores, normalized scores and anomalous or not.

    from jaxad.detection import detect
    found = detect("runs/folder_naive/runs/gamma0/class0/seed0", images)
    found.is_anomalous, found.normalized_scores, found.threshold, found.threshold_source

The threshold is the run's label-free one (``jaxad.thresholds``), stored in its
``result.json`` when it finished; for another epoch's model, or a run that has not finished,
it is computed again from the run's training normals, read as its config names them. Give
``threshold=`` to decide at a threshold of your own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxad import thresholds
from jaxad.config import ExperimentConfig
from jaxad.data import load_split
from jaxad.files import read_json
from jaxad.loop import score
from jaxad.rundir import load_run
from jaxad.train import AGADState


@dataclasses.dataclass(frozen=True)
class Detections:
    """Scores of images and the decisions at one threshold, image by image."""

    scores: np.ndarray              # ||x - G(x)||_2
    normalized_scores: np.ndarray   # scores / threshold: 1.0 at the threshold
    is_anomalous: np.ndarray        # scores >= threshold
    threshold: float
    threshold_source: str           # where the threshold came from, in words


def decide(scores: np.ndarray, threshold: float, threshold_source: str = "given") -> Detections:
    """``Detections`` of ``scores`` at ``threshold``."""
    scores = np.asarray(scores)
    return Detections(scores, thresholds.normalized_scores(scores, threshold),
                      thresholds.is_anomalous(scores, threshold), float(threshold), threshold_source)


def _final_result(run_dir: Path, epoch: int | str | None) -> dict | None:
    """The finished run's result.json when ``epoch`` loads its final model (the one its stored
    threshold belongs to); None otherwise."""
    marker = run_dir / "result.json"
    if not marker.exists():
        return None
    result = read_json(marker)
    if result.get("status") != "complete" or result.get("threshold") is None:
        return None
    return result if epoch in (None, "final", result.get("epochs")) else None


def run_threshold(run_dir: str | Path, state: AGADState, cfg: ExperimentConfig,
                  epoch: int | str | None = None) -> tuple[float, str]:
    """The label-free threshold of the model ``load_run(run_dir, epoch)`` gave (``state``, ``cfg``)
    and where it came from, in words: the one stored in result.json for a finished run's final
    model, else computed from the run's training normals (``ValueError`` when they cannot be read)."""
    run_dir = Path(run_dir)
    result = _final_result(run_dir, epoch)
    quantile = cfg.threshold_quantile
    if result is not None:
        return result["threshold"], f"the run's label-free threshold (quantile {quantile:g} of its training normals' scores)"
    try:
        split = load_split(cfg.data, seed=cfg.seed)
    except (FileNotFoundError, ValueError, ImportError) as err:
        raise ValueError(f"{run_dir} stores no threshold for this model and its training images cannot be read "
                         f"({err}): give a threshold of your own (--threshold, threshold=...)") from err
    value = thresholds.label_free_threshold(score(state, split.train_normal), quantile)
    return value, (f"quantile {quantile:g} of this model's scores on the run's {len(split.train_normal)} "
                   f"training normals, computed now")


def unfinished_note(run_dir: str | Path) -> str | None:
    """What to tell a user scoring with a run that did not finish (None for a finished run)."""
    run_dir = Path(run_dir)
    marker = run_dir / "result.json"
    status = read_json(marker).get("status") if marker.exists() else None
    if status == "complete":
        return None
    history = run_dir / "history.json"
    epochs = len(read_json(history)) if history.exists() else 0
    planned = read_json(run_dir / "config.json")["train"]["epochs"]
    if status == "failed":
        return f"{run_dir} failed ({read_json(marker).get('error')}): scoring with its last good checkpoint"
    return (f"{run_dir} has not finished ({epochs} of {planned} epochs, no result.json): scoring with its "
            f"latest checkpoint; resume it (jaxad-run --resume, or fit with the same run_dir) for the final model")


def detect(run_dir: str | Path, images: np.ndarray, *, epoch: int | str | None = None,
           threshold: float | None = None) -> Detections:
    """Score ``images`` with a run's model and decide each: the research API's one call.

    Args:
        run_dir: a run directory (``fit(..., run_dir=...)``, or one of the runner's).
        images: float32 NHWC in [-1, 1] at the run's side and channels.
        epoch: which checkpoint, as ``load_run`` takes it (None: the final model).
        threshold: decide at this score instead of the run's label-free threshold.

    Returns:
        ``Detections``: scores, normalized scores (1.0 at the threshold), is_anomalous, and the
        threshold with its source.
    """
    state, cfg = load_run(run_dir, epoch)
    scores = score(state, images)
    if threshold is not None:
        return decide(scores, threshold, "given")
    return decide(scores, *run_threshold(run_dir, state, cfg, epoch))
