"""Image and pixel metrics, thresholds and normalized scores, against hand-computed cases."""

import numpy as np
import pytest
from scipy import ndimage

from jaxad import maps, metrics, thresholds

LABELS = np.array([0, 0, 1, 1, 0, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])


def test_aupr_and_f1_max_by_hand():
    # Ranked: 0.9 A, 0.8 A, 0.4 N, 0.35 A. Average precision: 1/3 * (1 + 1 + 3/4).
    assert metrics.aupr(LABELS, SCORES) == pytest.approx(100 * 2.75 / 3)
    # At 0.35: 3 of 3 anomalies, 1 false alarm: P 3/4, R 1, F1 6/7; at 0.8: P 1, R 2/3, F1 4/5.
    f1, threshold = metrics.f1_max(LABELS, SCORES)
    assert f1 == pytest.approx(100 * 6 / 7) and threshold == 0.35
    with pytest.raises(ValueError, match="needs both normal"):
        metrics.aupr(np.zeros(3), np.arange(3.0))
    assert metrics.auroc_if_defined(np.zeros(3), np.arange(3.0)) is None


# One 2 x 4 image: two marked regions (8-connected), {(0,0), (0,1)} and {(1,3)}, five normal pixels.
MASK = np.array([[[1, 1, 0, 0],
                  [0, 0, 0, 1]]], bool)
MAP = np.array([[[0.9, 0.5, 0.7, 0.1],
                 [0.2, 0.3, 0.4, 0.8]]])


def test_pixel_auroc_by_hand():
    # Marked 0.9, 0.5, 0.8 against unmarked 0.7, 0.1, 0.2, 0.3, 0.4: 5 + 5 + 4 of 15 pairs ordered.
    assert metrics.pixel_auroc(MAP, MASK) == pytest.approx(100 * 14 / 15)


def test_aupro_by_hand():
    # Thresholds from the top: 0.9 covers half of region 1 (PRO 1/4, FPR 0); 0.8 all of region 2
    # (PRO 3/4); 0.7 a normal pixel (FPR 1/5); 0.5 the rest of region 1 (PRO 1); 0.4 FPR 2/5.
    fpr, pro = metrics.pro_curve(MAP, MASK)
    np.testing.assert_allclose(fpr[:6], [0, 0, 0, 0.2, 0.2, 0.4])
    np.testing.assert_allclose(pro[:6], [0, 0.25, 0.75, 0.75, 1, 1])
    # Up to FPR 0.3: 0.2 * 0.75 + 0.1 * 1 = 0.25, normalised by 0.3.
    assert metrics.aupro(MAP, MASK) == pytest.approx(100 * 0.25 / 0.3)
    assert metrics.aupro(MASK.astype(float), MASK) == pytest.approx(100.0)  # a map that is the mask


def brute_force_aupro(anomaly_maps, masks, limit=0.3):
    """PRO and FPR threshold by threshold, straight from the definition."""
    regions = []
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(i, labelled == k) for k in range(1, count + 1)]
    points = [(0.0, 0.0)]
    for t in np.unique(anomaly_maps)[::-1]:
        above = anomaly_maps >= t
        points.append(((above & ~masks).sum() / (~masks).sum(),
                       np.mean([above[i][region].mean() for i, region in regions])))
    x, y = np.array(points).T
    end = np.searchsorted(x, limit, side="right")
    cut = y[end - 1] + (limit - x[end - 1]) * (y[end] - y[end - 1]) / (x[end] - x[end - 1])
    x, y = np.r_[x[:end], limit], np.r_[y[:end], cut]
    return 100 * np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / limit


def test_aupro_agrees_with_the_definition_on_random_maps_with_ties():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 12, 12), bool)
    masks[0, 2:5, 2:6] = masks[0, 8:10, 8:11] = masks[2, 5:9, 1:4] = True
    anomaly_maps = np.round(rng.random(masks.shape) + 0.6 * masks, 1)  # rounded: many tied values
    assert metrics.aupro(anomaly_maps, masks) == pytest.approx(brute_force_aupro(anomaly_maps, masks))


def test_thresholds_and_normalized_scores():
    train_scores = np.arange(1.0, 101.0)
    assert thresholds.label_free_threshold(train_scores, 0.99) == pytest.approx(99.01)
    assert thresholds.label_free_threshold(train_scores, 1.0) == 100.0
    scores = np.array([50.0, 100.0, 150.0])
    np.testing.assert_allclose(thresholds.normalized_scores(scores, 100.0), [0.5, thresholds.NORMALIZED_THRESHOLD, 1.5])
    assert thresholds.is_anomalous(scores, 100.0).tolist() == [False, True, True]  # at the threshold: anomalous
    with pytest.raises(ValueError, match="positive score"):
        thresholds.normalized_scores(scores, 0.0)


def test_error_maps_put_the_score_on_a_per_pixel_scale():
    images = np.zeros((1, 8, 8, 3), np.float32)
    reconstructions = np.full_like(images, 0.5)
    raw = maps.raw_error_maps(images, reconstructions)
    score = np.linalg.norm(images - reconstructions)  # ||x - G(x)||_2
    assert score == pytest.approx(np.sqrt(3 * np.sum(raw ** 2)))
    # An even error at the level of an image whose score is the threshold reads 1.
    np.testing.assert_allclose(maps.threshold_level(raw, score, channels=3), 1.0, rtol=1e-6)
    assert maps.smoothing_sigma(256) == 4.0 and maps.smoothing_sigma(64) == 1.0
