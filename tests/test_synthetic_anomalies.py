"""Synthetic anomalies (``jaxad.data.synthetic``): made from the training normals alone, seeded,
in the gamma fraction of a split, refused where they cannot stand for what was asked."""

import jax
import numpy as np
import pytest

from jaxad.config import DataConfig, ExperimentConfig, ModelConfig
from jaxad.data import anomaly_count, load_dataset, load_split, one_class_split
from jaxad.data.synthetic import cutpaste, smooth_noise, smooth_noise_masks, synthesize
from jaxad.loop import SYNTHETIC_AUROC, scoring_candidates, training_evidence
from jaxad.selection import choose_scoring_generator, label_free_key
from jaxad.train import create_train_state


def flat_normals(n: int = 6, side: int = 32) -> np.ndarray:
    """Normals of one grey level each, so that every pixel of a result says which normal it came from."""
    return np.linspace(-0.9, 0.9, n, dtype=np.float32)[:, None, None, None] * np.ones((1, side, side, 1), np.float32)


def test_cutpaste_pastes_one_rectangle_of_another_normal_of_the_asked_area():
    normals = flat_normals()
    levels = normals[:, 0, 0, 0]
    out = cutpaste(normals, 200, np.random.default_rng(0))
    assert out.shape == (200, 32, 32, 1) and out.dtype == np.float32
    for image in out[..., 0]:
        values, counts = np.unique(image, return_counts=True)
        assert len(values) == 2 and set(values) <= set(levels)  # the target and one other normal
        patch = image == values[np.argmin(counts)]
        rows, cols = np.flatnonzero(patch.any(1)), np.flatnonzero(patch.any(0))
        assert patch.sum() == len(rows) * len(cols)  # a filled rectangle
        assert 0.02 * 1024 - 8 <= patch.sum() <= 0.15 * 1024 + 8


def test_smooth_noise_blends_another_normal_inside_a_mask_of_the_asked_area():
    masks = smooth_noise_masks(100, 32, np.random.default_rng(0))
    assert masks.shape == (100, 32, 32) and masks.dtype == bool
    assert np.all((masks.mean(axis=(1, 2)) >= 0.09) & (masks.mean(axis=(1, 2)) <= 0.41))
    normals = flat_normals()
    out = smooth_noise(normals, 100, np.random.default_rng(1))
    assert out.shape == (100, 32, 32, 1) and np.all(np.abs(out) <= 0.9 + 1e-6)
    for image in out[..., 0]:
        corner_values, counts = np.unique(image, return_counts=True)
        background = corner_values[np.argmax(counts)]
        assert np.isclose(normals[:, 0, 0, 0], background).any()  # the untouched normal
        assert 0.09 <= np.mean(image != background) <= 0.41


@pytest.mark.parametrize("kind", ["cutpaste", "smooth_noise"])
def test_synthesize_is_seeded_and_leaves_the_normals_unchanged(kind):
    normals = flat_normals()
    before = normals.copy()
    first, again, other = (synthesize(kind, normals, 20, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(normals, before)


def test_a_split_with_synthetic_anomalies_makes_the_gamma_fraction_from_its_normals():
    digits = load_dataset("digits")
    split = one_class_split(digits, 3, gamma=0.05, seed=0, synthetic_anomalies="cutpaste")
    drawn = one_class_split(digits, 3, gamma=0.05, seed=0)
    assert len(split.train_anomaly) == len(drawn.train_anomaly) == anomaly_count(len(split.train_normal), 0.05)
    np.testing.assert_array_equal(split.train_normal, drawn.train_normal)
    np.testing.assert_array_equal(split.test_images, drawn.test_images)
    # Each anomaly is a normal of the split with at most 15% of its pixels replaced.
    for anomaly in split.train_anomaly:
        agreement = np.mean(np.isclose(split.train_normal, anomaly[None]), axis=(1, 2, 3))
        assert agreement.max() >= 0.85 - 0.01
    through_the_config = load_split(DataConfig(dataset="digits", normal_class=3, gamma=0.05,
                                               synthetic_anomalies="cutpaste"), seed=0)
    np.testing.assert_array_equal(through_the_config.train_anomaly, split.train_anomaly)


@pytest.mark.parametrize("changes, message", [
    ({"gamma": 0.0}, "at gamma 0 there are none"),
    ({"anomaly_classes": (1, 2)}, "give one or the other"),
    ({"synthetic_anomalies": "perlin"}, "unknown synthetic anomalies"),
])
def test_synthetic_anomalies_are_refused_where_they_cannot_be_made(changes, message):
    args = {"gamma": 0.05, "anomaly_classes": None, "synthetic_anomalies": "cutpaste", **changes}
    with pytest.raises(ValueError, match=message):
        one_class_split(load_dataset("digits"), 3, seed=0, **args)
    with pytest.raises(ValueError, match="synthetic_anomalies"):
        DataConfig(synthetic_anomalies="perlin")


def test_results_say_the_anomalies_were_synthetic_and_set_no_paper_figure_beside_them():
    from jaxad import report

    rows = [{"normal_class": c, "gamma": 0.05, "seed": 0, "status": "complete", "final_auroc": 97.0,
             "best_auroc": 98.0, "selected_auroc": 97.0} for c in range(10)]
    real = report.markdown_tables(rows, "mnist", "naive", 10, 1)
    made = report.markdown_tables(rows, "mnist", "naive", 10, 1, synthetic_anomalies="cutpaste")
    assert "| paper |" in real and "synthetic" not in real
    assert "## gamma = 0.05, synthetic anomalies (cutpaste): no real anomaly in training" in made
    assert "| paper |" not in made


def test_telling_synthetic_anomalies_apart_is_recorded_but_not_read_by_the_label_free_choices():
    # G is trained to fail on exactly these images: their separation is fit, not evidence.
    cfg = ExperimentConfig(model=ModelConfig(width=0.125)).replace(**{"train.ema_decay": 0.99})
    candidates = scoring_candidates(create_train_state(cfg, jax.random.key(0)))
    split = one_class_split(load_dataset("digits"), 3, gamma=0.05, seed=0, synthetic_anomalies="cutpaste")
    drawn = training_evidence(candidates, split)
    made = training_evidence(candidates, split, synthetic_anomalies=True)
    for name in ("average", "live"):
        assert made[name][SYNTHETIC_AUROC] == drawn[name]["train_auroc"] and "train_auroc" not in made[name]
        assert label_free_key(made[name]) == label_free_key({"train_normal_score": made[name]["train_normal_score"]})
    # Live G better separates the made anomalies but reconstructs the normals worse: the normals decide.
    live_better_apart = {"average": {"train_normal_score": 5.0, SYNTHETIC_AUROC: 90.0},
                         "live": {"train_normal_score": 6.0, SYNTHETIC_AUROC: 99.0}}
    assert choose_scoring_generator(live_better_apart, pick=True) == "average"
