"""Metrics over a whole evaluation pass (scores and labels collected, sklearn called once).

Image metrics read one score per image (label 1 = anomaly, higher = more anomalous): AUROC,
AUPR (average precision), F1-max. Pixel metrics read anomaly maps against masks: pixel AUROC
and AUPRO, MVTec AD's per-region overlap integrated up to 30% false-positive rate. All in
percent.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

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


def both_kinds(labels: np.ndarray) -> bool:
    """Whether ``labels`` hold both normal (0) and anomalous (1) images: what the image metrics need."""
    return len(np.unique(np.asarray(labels))) == 2


def auroc_if_defined(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """``auroc``, or None when the labels hold one kind of image only (a folder without anomalies)."""
    return auroc(labels, scores) if both_kinds(labels) else None


def _checked(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels), np.asarray(scores)
    check_labels(labels)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if not both_kinds(labels):
        raise ValueError("this metric needs both normal (0) and anomalous (1) images")
    return labels, scores


def aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve of the anomalies (sklearn's average precision), in percent."""
    labels, scores = _checked(labels, scores)
    return 100.0 * float(average_precision_score(labels, scores))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(F1 in percent, threshold)``: the highest F1 of any threshold, calling an image anomalous
    when its score is at or above it, and the lowest such threshold. The threshold is chosen
    with the labels: optimistic as a decision rule for new images."""
    labels, scores = _checked(labels, scores)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # The last point (precision 1, recall 0) has no threshold.
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = int(np.argmax(f1))
    return 100.0 * float(f1[best]), float(thresholds[best])


def _pixels(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps, masks = np.asarray(maps), np.asarray(masks).astype(bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"anomaly maps {maps.shape} and masks {masks.shape} must be one (H, W) pair per image")
    if masks.all() or not masks.any():
        raise ValueError("pixel metrics need both anomalous and normal pixels in the masks")
    return maps, masks


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """AUROC (%) of every pixel of every image, its map value against its mask ((N, H, W) each)."""
    maps, masks = _pixels(maps, masks)
    return 100.0 * float(roc_auc_score(masks.ravel(), maps.ravel()))


AUPRO_FPR_LIMIT = 0.3


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MVTec AD's per-region overlap curve: (false-positive rates, PRO) over every threshold.

    Each connected region of the masks (8-connected, per image) counts once, whatever its
    size: PRO is the mean over regions of the fraction of the region's pixels at or above the
    threshold; the false-positive rate is the fraction of unmarked pixels, over all images, at
    or above it. As Bergmann et al. (IJCV 2021) compute it: thresholds at every map value, from
    the highest, ties taken together; the curve starts at (0, 0).
    """
    maps, masks = _pixels(maps, masks)
    fp_step = np.zeros(maps.shape)     # what each pixel adds to the false-positive count
    pro_step = np.zeros(maps.shape)    # what each pixel adds to the summed region overlaps
    regions = 0
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += count
        fp_step[i][labelled == 0] = 1.0
        if count:
            sizes = np.bincount(labelled.ravel())
            pro_step[i] = np.where(labelled > 0, 1.0 / sizes[labelled], 0.0)
    order = np.argsort(maps.ravel(), kind="stable")[::-1]
    values = maps.ravel()[order]
    fpr = np.cumsum(fp_step.ravel()[order]) / fp_step.sum()
    pro = np.cumsum(pro_step.ravel()[order]) / regions
    last_of_tie = np.append(np.diff(values) != 0, True)
    return np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Area under the PRO curve up to ``fpr_limit`` false-positive rate, divided by
    ``fpr_limit`` so that a perfect map scores 100 (%): MVTec AD's AUPRO (``pro_curve``). The
    curve is cut at the limit by linear interpolation between its neighbouring points."""
    fpr, pro = pro_curve(maps, masks)
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))  # points at or below the limit: fpr[:end]
    x, y = fpr[:end], pro[:end]
    if end < len(fpr) and x[-1] < fpr_limit:
        weight = (fpr_limit - x[-1]) / (fpr[end] - x[-1])
        x, y = np.r_[x, fpr_limit], np.r_[y, y[-1] + weight * (pro[end] - y[-1])]
    return 100.0 * float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2) / fpr_limit


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
