"""Decisions from scores: a run's thresholds and what a score means against one.

A run stores a label-free threshold: the ``threshold_quantile`` quantile (0.99 by default)
of its final model's scores on its training normals. No test label enters it. Those images
trained the model, so they score lower than new normals: expect more than 1% of new normal
images at or above it; raise the quantile (1.0 is their highest score) or pass a threshold
of your own where false alarms cost more than misses. When the run's test split held both
normal and anomalous images, it also stores the threshold of highest F1 on that split,
labelled as chosen with test labels.

An image is anomalous when its score is at or above the threshold. Its normalized score is
``score / threshold``: ``NORMALIZED_THRESHOLD`` = 1.0 at the threshold, 2.0 at twice its
reconstruction error, whatever the data set and the model.
"""

from __future__ import annotations

import numpy as np

NORMALIZED_THRESHOLD = 1.0  # the normalized score of an image scoring exactly the threshold


def label_free_threshold(train_normal_scores: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the training normals' scores (linear interpolation between them)."""
    scores = np.asarray(train_normal_scores, np.float64)
    if not len(scores):
        raise ValueError("a label-free threshold needs the scores of at least one training normal")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
    return float(np.quantile(scores, quantile))


def check_threshold(threshold: float) -> None:
    """Refuse a threshold that cannot divide scores: scores are norms, so it must be positive."""
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"a threshold is a positive score (||x - G(x)||_2), got {threshold}")


def normalized_scores(scores: np.ndarray, threshold: float) -> np.ndarray:
    """``scores / threshold``: ``NORMALIZED_THRESHOLD`` (1.0) at the threshold."""
    check_threshold(threshold)
    return np.asarray(scores, np.float64) / threshold * NORMALIZED_THRESHOLD


def is_anomalous(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Booleans: each score at or above ``threshold``."""
    check_threshold(threshold)
    return np.asarray(scores) >= threshold
