"""The ``Dataset`` type and the preprocessing every source shares.

Every source ends in the same two steps (``to_unit_range`` then ``resize_images``), so the
raw-file and TFDS paths of one benchmark give identical arrays: float32, NHWC, in [-1, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled train/test dataset, preprocessed: float32 NHWC in [-1, 1], square images.

    ``test_masks``: where a data set marks its anomalies' pixels, (n_test, H, W) booleans
    (True = anomalous; all False for a normal image); None otherwise.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    test_masks: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


# ---------------------------------------------------------------- preprocessing

def to_unit_range(images: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Scale pixel values in [0, max_value] to float32 in [-1, 1]; add a channel axis to NHW."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return x * np.float32(2.0 / max_value) - np.float32(1.0)


def resize_images(images: np.ndarray, image_size: int, chunk: int = 16384) -> np.ndarray:
    """Bilinear resize of NHWC float images to ``image_size`` square (``jax.image.resize``).

    The one resize of the project: every source goes through it. Anti-aliased when shrinking.
    Chunked so that the host does not hold two full float copies of CIFAR at once.
    """
    import jax  # deferred: importing the data layer should not start a backend

    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    n, h, w, c = images.shape
    if (h, w) == (image_size, image_size):
        return np.asarray(images, dtype=np.float32)
    out = np.empty((n, image_size, image_size, c), np.float32)
    for start in range(0, n, chunk):
        part = images[start:start + chunk]
        resized = jax.image.resize(part, (len(part), image_size, image_size, c), "bilinear")
        out[start:start + chunk] = np.asarray(resized)
    # Bilinear weights are convex, so only rounding can step outside [-1, 1].
    return np.clip(out, -1.0, 1.0, out=out)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


Arrays = tuple[np.ndarray, np.ndarray]  # (images, labels)


def make_dataset(name: str, train: Arrays, test: Arrays, class_names: Sequence[str],
                 image_size: int, max_value: float = 255.0) -> Dataset:
    """Preprocess raw pixel arrays (NHW or NHWC in [0, max_value]) into a ``Dataset``."""
    def prep(images: np.ndarray) -> np.ndarray:
        return _readonly(resize_images(to_unit_range(images, max_value), image_size))

    def labels(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.int32)
        if y.size and not (0 <= y.min() and y.max() < len(class_names)):
            raise ValueError(f"{name}: labels span {y.min()}..{y.max()}, outside the "
                             f"{len(class_names)} classes; wrong files for this dataset?")
        return _readonly(y)

    return Dataset(name=name, train_images=prep(train[0]), train_labels=labels(train[1]),
                   test_images=prep(test[0]), test_labels=labels(test[1]),
                   num_classes=len(class_names), class_names=tuple(class_names))
