"""One-class splits with gamma injected anomalies, the epoch sampler, padded test batches.

The paper's protocol (docs/method.md, Data and protocol): train on the normal class, plus ``a = gamma n / (1 - gamma)`` anomalies drawn
from the other classes' training images; every training batch with gamma > 0 holds at least
32 anomalies (re-sampled as needed); the test split is the whole test set, labelled 0 for the
normal class and 1 for the rest. The sampler yields index arrays, not images: the runner keeps
the split on the device and gathers each batch inside jit (``gather_batch``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from jaxad.data.arrays import Dataset
from jaxad.data.sources import load_dataset
from jaxad.data.synthetic import SYNTHETIC_KINDS, synthesize

if TYPE_CHECKING:
    import jax

MIN_ANOMALIES_PER_BATCH = 32


@dataclasses.dataclass(frozen=True)
class OneClassSplit:
    """Training normals and injected anomalies; the labelled test set.

    ``test_masks``: (n_test, H, W) booleans marking anomalous pixels, where the data has masks
    (pixel metrics are computed from them); None otherwise. ``class_names``: the name of each
    value of ``test_classes`` (a folder's defect types), where known.
    """

    train_normal: np.ndarray   # (n, H, W, C)
    train_anomaly: np.ndarray  # (a, H, W, C); a = 0 when gamma = 0
    test_images: np.ndarray
    test_labels: np.ndarray    # 0 normal (the normal class), 1 anomaly
    test_classes: np.ndarray   # original class label of each test image
    test_masks: np.ndarray | None = None
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_labels(self.test_labels)
        if len(self.test_labels) != len(self.test_images):
            raise ValueError(f"{len(self.test_images)} test images but {len(self.test_labels)} test labels")
        if np.ndim(self.test_classes) != 1 or len(self.test_classes) != len(self.test_images):
            raise ValueError(f"{len(self.test_images)} test images but test_classes of shape "
                             f"{np.shape(self.test_classes)}: give the class of each test image")
        if self.test_masks is not None and np.shape(self.test_masks) != np.shape(self.test_images)[:3]:
            raise ValueError(f"test_masks must be one (H, W) mask per test image, {np.shape(self.test_images)[:3]}; "
                             f"got shape {np.shape(self.test_masks)}")

    def class_name(self, value: int) -> str:
        """The name of class ``value`` of ``test_classes`` (its number where no names are known)."""
        return self.class_names[value] if 0 <= value < len(self.class_names) else str(value)


def check_labels(labels) -> None:
    """Refuse test labels that are not the numbers 0 (normal) and 1 (anomaly), or booleans.

    Other labels would not fail: string labels sort "anomaly" before "normal" and invert the
    AUROC; a class index as label counts every class but 0 as anomalous.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"test labels must be one number per image, got shape {labels.shape}")
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"test labels must be numbers, 0 = normal and 1 = anomaly; got dtype {labels.dtype} "
                         f"(e.g. {labels[:3].tolist()}): convert them, e.g. (labels == 'anomaly').astype(np.int32)")
    values = np.unique(labels)
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(f"test labels must be 0 = normal and 1 = anomaly, got the values {values[:6].tolist()}: "
                         f"convert them, e.g. (classes != normal_class).astype(np.int32)")


def check_gamma(gamma: float) -> None:
    """Raise unless 0 <= gamma < 1 (gamma = 1 would mean no normal images at all)."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must lie in [0, 1), got {gamma}")


def anomaly_count(n_normal: int, gamma: float) -> int:
    """Anomalies to add to ``n_normal`` normals for a fraction ``gamma = a / (n + a)``.

    ``a = round(gamma * n / (1 - gamma))``, rounding halves up.
    """
    check_gamma(gamma)
    if n_normal < 0:
        raise ValueError(f"n_normal must be non-negative, got {n_normal}")
    # The small epsilon absorbs float error such as 0.2 * 6000 / 0.8 = 1500.0000000000002.
    return int(math.floor(gamma * n_normal / (1.0 - gamma) + 0.5 + 1e-9))


def batch_composition(batch_size: int, gamma: float,
                      min_anomalies: int = MIN_ANOMALIES_PER_BATCH) -> tuple[int, int]:
    """(normals, anomalies) per batch: ``k = max(min_anomalies, round(gamma * B))`` if gamma > 0.

    The paper keeps at least 32 anomalies in every batch of 256 (``TrainConfig.min_anomalies_per_batch``);
    smaller batches need a smaller minimum. A batch with no room for normals is refused with
    the setting to change.
    """
    check_gamma(gamma)
    if gamma == 0.0:
        return batch_size, 0
    if min_anomalies < 1:
        raise ValueError(f"min_anomalies_per_batch must be at least 1 with gamma {gamma} > 0 (anomalies are "
                         f"what gamma adds), got {min_anomalies}")
    by_gamma = anomaly_count_in_batch(batch_size, gamma)
    k = max(min_anomalies, by_gamma)
    if k >= batch_size:
        if by_gamma >= batch_size:
            raise ValueError(f"batch_size {batch_size} leaves no room for normals beside round(gamma * "
                             f"batch_size) = {by_gamma} anomalies per batch (gamma {gamma}): lower gamma, or raise "
                             f"the batch size (TrainConfig.batch_size, run.py --batch-size)")
        raise ValueError(f"batch_size {batch_size} leaves no room for normals beside {k} anomalies per batch: "
                         f"with gamma {gamma} > 0 every batch holds at least min_anomalies_per_batch = "
                         f"{min_anomalies}; lower TrainConfig.min_anomalies_per_batch (run.py "
                         f"--min-anomalies-per-batch), e.g. to {max(1, batch_size // 8)} (the paper's 32 of 256 is "
                         f"1/8), or raise the batch size above {k} (TrainConfig.batch_size, run.py --batch-size)")
    return batch_size - k, k


def anomaly_count_in_batch(batch_size: int, gamma: float) -> int:
    """``round(gamma * batch_size)``, halves up."""
    return int(math.floor(gamma * batch_size + 0.5 + 1e-9))


def steps_per_epoch(n_normal: int, batch_size: int, gamma: float,
                    min_anomalies: int = MIN_ANOMALIES_PER_BATCH) -> int:
    """Batches in one epoch, one pass over the normals: ``ceil(n_normal / normals per batch)``."""
    n_per_batch, _ = batch_composition(batch_size, gamma, min_anomalies)
    return max(1, math.ceil(n_normal / n_per_batch))


def _cycled_permutations(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    # Fresh permutations end to end: each item is used once before any is used again.
    reps = math.ceil(length / n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:length]


def epoch_indices(n_normal: int, n_anomaly: int, batch_size: int, gamma: float, seed: int,
                  epoch: int, min_anomalies: int = MIN_ANOMALIES_PER_BATCH
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of indices: ``(steps, Bn)`` into train_normal, ``(steps, Ba)`` into train_anomaly.

    Every normal image appears at least once per epoch (the last batch is topped up from a
    fresh permutation, as are batches when n_normal < Bn); anomalies are drawn in cycles of
    fresh permutations, so they repeat only when needed. Deterministic in (seed, epoch).
    """
    if n_normal < 1:
        raise ValueError("no normal training images to sample from")
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got {seed}, {epoch}")
    bn, ba = batch_composition(batch_size, gamma, min_anomalies)
    steps = math.ceil(n_normal / bn)
    # Separate streams, so the normal order does not depend on how many anomalies are drawn.
    normal_rng = np.random.default_rng([seed, epoch, 0])
    anomaly_rng = np.random.default_rng([seed, epoch, 1])
    normal = _cycled_permutations(normal_rng, n_normal, steps * bn).reshape(steps, bn)
    if ba == 0:
        anomaly = np.zeros((steps, 0), np.int64)
    elif n_anomaly < 1:
        raise ValueError(f"gamma {gamma} asks for {ba} anomalies per batch but the split has none")
    else:
        anomaly = _cycled_permutations(anomaly_rng, n_anomaly, steps * ba).reshape(steps, ba)
    return normal.astype(np.int32), anomaly.astype(np.int32)


def gather_batch(train_normal: jax.Array, train_anomaly: jax.Array, normal_idx: jax.Array,
                 anomaly_idx: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(normal batch, anomaly batch) from device-resident arrays and one row of ``epoch_indices``.

    Call it inside the jitted step, as ``jaxad.train.indexed_train_step`` does, so only indices
    cross from the host. Indexing, not ``jnp.take``: the sampler's indices are in range, and
    indexing compiles to a gather without ``take``'s out-of-range fill.
    """
    return train_normal[normal_idx], train_anomaly[anomaly_idx]


def padded_batches(images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(num_batches, batch_size, ...)`` zero-padded batches and the mask of real images.

    Evaluation never drops an image: the last batch is padded and ``mask`` marks the real ones.
    """
    n = len(images)
    if n == 0:
        raise ValueError("no images to batch")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    num_batches = math.ceil(n / batch_size)
    padded = np.zeros((num_batches * batch_size,) + images.shape[1:], images.dtype)
    padded[:n] = images
    mask = np.arange(num_batches * batch_size) < n
    return (padded.reshape((num_batches, batch_size) + images.shape[1:]),
            mask.reshape(num_batches, batch_size))


def _check_classes(dataset: Dataset, normal_class: int,
                   anomaly_classes: Iterable[int] | None) -> tuple[int, ...]:
    k = dataset.num_classes
    if not (isinstance(normal_class, (int, np.integer)) and 0 <= normal_class < k):
        raise ValueError(f"normal_class {normal_class!r} is out of range for {dataset.name} "
                         f"(classes 0..{k - 1}: {', '.join(dataset.class_names)})")
    if anomaly_classes is None:
        return tuple(c for c in range(k) if c != normal_class)
    chosen = tuple(sorted(set(int(c) for c in anomaly_classes)))
    if not chosen:
        raise ValueError("anomaly_classes is empty; give None to use every other class")
    bad = [c for c in chosen if not 0 <= c < k]
    if bad:
        raise ValueError(f"anomaly_classes {bad} out of range for {dataset.name} (0..{k - 1})")
    if normal_class in chosen:
        raise ValueError(f"anomaly_classes {chosen} contains the normal class {normal_class}")
    return chosen


def check_one_class_split(dataset: Dataset, normal_class: int, gamma: float = 0.0,
                          anomaly_classes: Iterable[int] | None = None,
                          synthetic_anomalies: str = "none") -> None:
    """Raise the ``ValueError`` that ``one_class_split`` with these arguments would raise (a
    class out of range, too few images for gamma's anomalies, an empty test split, synthetic
    anomalies at gamma 0 or beside chosen anomaly classes), without copying any image: a
    benchmark checks each of its splits before it writes anything."""
    check_gamma(gamma)
    chosen = _check_classes(dataset, normal_class, anomaly_classes)
    n_normal = int(np.sum(dataset.train_labels == normal_class))
    if n_normal == 0:
        raise ValueError(f"{dataset.name}: no training images of class {normal_class}")
    a = anomaly_count(n_normal, gamma)
    if gamma > 0 and a == 0:
        raise ValueError(f"gamma {gamma} with {n_normal} normals rounds to 0 anomalies")
    if synthetic_anomalies != "none":
        if synthetic_anomalies not in SYNTHETIC_KINDS:
            raise ValueError(f"unknown synthetic anomalies {synthetic_anomalies!r}; one of "
                             f"{('none', *SYNTHETIC_KINDS)}")
        if gamma == 0:
            raise ValueError(f"synthetic anomalies ({synthetic_anomalies}) are the gamma fraction of the "
                             "training set; at gamma 0 there are none: give a gamma above 0 (--gammas 0.05)")
        if anomaly_classes is not None:
            raise ValueError("synthetic anomalies are made from the normals, not drawn from anomaly_classes: "
                             "give one or the other")
    else:
        pool = int(np.sum(np.isin(dataset.train_labels, chosen)))
        if a > pool:
            most = f"; gamma at most {pool / (n_normal + pool):.4g} uses them all" if pool else ""
            raise ValueError(f"gamma {gamma} needs {a} anomalies but classes {chosen} have only "
                             f"{pool} training images in {dataset.name}{most}")
    if len(dataset.test_labels) == 0:
        raise ValueError(f"{dataset.name}: the test split holds no image")


def one_class_split(dataset: Dataset, normal_class: int, gamma: float = 0.0,
                    anomaly_classes: Iterable[int] | None = None, seed: int = 0,
                    synthetic_anomalies: str = "none") -> OneClassSplit:
    """The one-class protocol for ``normal_class``, with a fraction ``gamma`` of anomalies.

    Args:
        dataset: the labelled dataset.
        normal_class: the class trained on as normal.
        gamma: the fraction ``a / (n + a)`` of training anomalies.
        anomaly_classes: draw the anomalies from these classes' training images only
            (default: every other class).
        seed: the draw's seed.
        synthetic_anomalies: ``"none"`` draws the anomalies without replacement from the
            other classes; a kind of ``jaxad.data.synthetic`` makes them from the training
            normals instead (jaxad's extension; no label is used).

    Returns:
        The split; its test set is the whole test split.

    Raises:
        ValueError: arguments that make no split (``check_one_class_split``).
    """
    check_one_class_split(dataset, normal_class, gamma, anomaly_classes, synthetic_anomalies)
    chosen = _check_classes(dataset, normal_class, anomaly_classes)
    train_normal = dataset.train_images[dataset.train_labels == normal_class]
    count = anomaly_count(len(train_normal), gamma)
    if synthetic_anomalies != "none":
        train_anomaly = synthesize(synthetic_anomalies, train_normal, count, seed)
    else:
        pool = np.flatnonzero(np.isin(dataset.train_labels, chosen))
        train_anomaly = dataset.train_images[np.sort(np.random.default_rng(seed).choice(pool, size=count,
                                                                                         replace=False))]
    test_classes = np.asarray(dataset.test_labels, dtype=np.int32)
    return OneClassSplit(train_normal=train_normal, train_anomaly=train_anomaly,
                         test_images=dataset.test_images,
                         test_labels=(test_classes != normal_class).astype(np.int32),
                         test_classes=test_classes, test_masks=dataset.test_masks,
                         class_names=tuple(dataset.class_names))


def split_of_config(dataset: Dataset, cfg, seed: int = 0) -> OneClassSplit:
    """``one_class_split`` of ``dataset`` as a ``jaxad.config.DataConfig`` asks for it.

    Args:
        dataset: the dataset ``cfg`` names, loaded.
        cfg: its normal class, gamma, anomaly classes and synthetic anomalies.
        seed: the run's seed.

    Returns:
        The split.
    """
    return one_class_split(dataset, cfg.normal_class, cfg.gamma, cfg.anomaly_classes, seed, cfg.synthetic_anomalies)


def load_split(cfg, seed: int = 0) -> OneClassSplit:
    """``load_dataset`` then ``split_of_config`` for a ``jaxad.config.DataConfig``."""
    dataset = load_dataset(cfg.dataset, cfg.data_dir, cfg.source, cfg.image_size, cfg.category)
    return split_of_config(dataset, cfg, seed)
