"""What a finished run reports beside its AUROC: its decision thresholds, the other image
metrics, the AUROC of each anomaly class (a folder's defect types) and, where the test images
have masks, the pixel metrics of its anomaly maps (``jaxad.maps``).

``fit`` stores ``evaluate_run``'s figures in each run's ``result.json``; the benchmark's
``results.csv`` and ``results.md`` show them. A figure that the test split cannot define (no
anomaly to tell from the normals, no mask) is None.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxad import maps, metrics, thresholds
from jaxad.data import OneClassSplit
from jaxad.train import AGADState

# result.json's fields from evaluate_run, in the order the tables show them.
IMAGE_METRICS = ("aupr", "f1_max")
PIXEL_METRICS = ("pixel_auroc", "aupro")


def evaluate_run(state: AGADState, split: OneClassSplit, test_scores: np.ndarray,
                 train_normal_scores: np.ndarray, threshold_quantile: float) -> dict[str, Any]:
    """A finished run's figures beyond its AUROC, from its final model ``state``.

    Args:
        state: the model the run scores with.
        split: the run's split; its ``test_masks`` (if any) give the pixel metrics.
        test_scores: the model's scores of ``split.test_images``.
        train_normal_scores: its scores of ``split.train_normal``.
        threshold_quantile: the quantile of those that is the label-free threshold.

    Returns:
        ``threshold`` (label-free) and ``threshold_quantile``; ``threshold_f1_optimal_on_test``
        (chosen with the test labels); ``aupr`` and ``f1_max`` (%, at that threshold);
        ``auroc_by_anomaly_class`` ({class name: AUROC %}); ``pixel_auroc``, ``aupro`` (%) and
        ``map_smoothing_sigma`` (pixels); ``train_normals`` and ``train_anomalies`` (counts).
    """
    labels = np.asarray(split.test_labels)
    result: dict[str, Any] = {
        "threshold": thresholds.label_free_threshold(train_normal_scores, threshold_quantile),
        "threshold_quantile": threshold_quantile,
        "train_normals": len(split.train_normal), "train_anomalies": len(split.train_anomaly),
        "aupr": None, "f1_max": None, "threshold_f1_optimal_on_test": None, "auroc_by_anomaly_class": {},
        "pixel_auroc": None, "aupro": None, "map_smoothing_sigma": None,
    }
    if not metrics.both_kinds(labels):
        return result
    result["aupr"] = metrics.aupr(labels, test_scores)
    result["f1_max"], result["threshold_f1_optimal_on_test"] = metrics.f1_max(labels, test_scores)
    by_class = metrics.auroc_by_anomaly_class(labels, test_scores, split.test_classes)
    result["auroc_by_anomaly_class"] = {split.class_name(c): value for c, value in by_class.items()}
    masks = split.test_masks
    if masks is not None and masks.any():
        anomaly_maps = maps.error_maps(state, split.test_images)
        result["pixel_auroc"] = metrics.pixel_auroc(anomaly_maps, masks)
        result["aupro"] = metrics.aupro(anomaly_maps, masks)
        result["map_smoothing_sigma"] = maps.smoothing_sigma(masks.shape[1])
    return result
