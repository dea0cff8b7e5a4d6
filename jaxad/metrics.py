"""Metrics over a whole evaluation pass (scores and labels collected, sklearn called once)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from jaxad.data.split import check_labels


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve in percent; label 1 = anomaly, higher score = more anomalous.

    ``labels`` must be the numbers 0 (normal) and 1 (anomaly): ``check_labels`` refuses others.
    ``scores`` must be finite: NaN or inf ranks nowhere, and is refused.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    check_labels(labels)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if len(np.unique(labels)) != 2:
        raise ValueError("AUROC needs both normal (0) and anomalous (1) test images")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} of {len(scores)} scores are NaN or inf: they rank "
                         f"nowhere; a model that gives them has diverged")
    return 100.0 * float(roc_auc_score(labels, scores))


def roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


def auroc_by_anomaly_class(labels: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> dict[int, float]:
    """AUROC (%) of the normal test images against each anomaly class alone: ``{class: AUROC}``.

    ``classes`` holds each test image's original class (``OneClassSplit.test_classes``, or a run's
    ``scores.npz``). It says which kinds of anomaly a model misses, which one AUROC over all of
    them averages away, and, with ``DataConfig.anomaly_classes``, whether what it learned from the
    training anomalies carries over to classes it never saw.
    """
    labels, scores, classes = np.asarray(labels), np.asarray(scores), np.asarray(classes)
    if not labels.shape == scores.shape == classes.shape:
        raise ValueError(f"labels {labels.shape}, scores {scores.shape} and classes {classes.shape} differ in shape")
    normal = labels == 0
    return {int(c): auroc(labels[normal | (classes == c)], scores[normal | (classes == c)])
            for c in np.unique(classes[labels == 1])}
