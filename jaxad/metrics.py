"""Metrics over a whole evaluation pass (scores and labels collected, sklearn called once)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from jaxad.data.split import check_labels


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve in percent; label 1 = anomaly, higher score = more anomalous.

    ``labels`` must be the numbers 0 (normal) and 1 (anomaly): ``check_labels`` refuses others.
    """
    labels, scores = np.asarray(labels), np.asarray(scores)
    check_labels(labels)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if len(np.unique(labels)) != 2:
        raise ValueError("AUROC needs both normal (0) and anomalous (1) test images")
    return 100.0 * float(roc_auc_score(labels, scores))


def roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr
