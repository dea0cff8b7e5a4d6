"""A user's images in folders, in anomalib's layout: normal/, abnormal/, optionally normal_test/."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jaxad.data.arrays import Dataset, _readonly, resize_images, to_unit_range

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
FOLDER_CLASSES = ("normal", "abnormal")


def read_image_folder(directory: str | Path) -> list[Any]:
    """Every image pillow can read under ``directory`` (recursively, sorted by path).

    Files pillow cannot identify are skipped with a warning; no readable image is an error.
    """
    return [img for _, img in read_image_files(directory)]


def read_image_files(directory: str | Path) -> list[tuple[Path, Any]]:
    """``(path, PIL image)`` of every image pillow can read under ``directory``, sorted by path."""
    from PIL import Image, UnidentifiedImageError

    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder {directory} does not exist")
    images, skipped = [], []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            with Image.open(path) as img:
                img.load()
                images.append((path, img.copy()))
        except (UnidentifiedImageError, OSError, ValueError):
            skipped.append(path.name)
    if not images:
        raise ValueError(f"image folder {directory} holds no image pillow can read "
                         f"({len(skipped)} other files)")
    if skipped:
        warnings.warn(f"{directory}: skipped {len(skipped)} unreadable files, e.g. {skipped[:3]}",
                      stacklevel=2)
    return images


def load_images(directory: str | Path, image_size: int, channels: int) -> tuple[list[Path], np.ndarray]:
    """The images of a folder as the models take them: paths and float32 NHWC in [-1, 1]."""
    files = read_image_files(directory)
    return [p for p, _ in files], _images_to_array([img for _, img in files], channels, image_size)


def _images_to_array(images: list[Any], channels: int, image_size: int) -> np.ndarray:
    """PIL images -> float32 (n, image_size, image_size, channels) in [-1, 1].

    Images of different sizes are resized group by group through the one ``resize_images``.
    """
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(img.convert(mode), dtype=np.uint8) for img in images]
    out = np.empty((len(arrays), image_size, image_size, channels), np.float32)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(arrays):
        by_shape.setdefault(a.shape, []).append(i)
    for idx in by_shape.values():
        out[idx] = resize_images(to_unit_range(np.stack([arrays[i] for i in idx])), image_size)
    return out


def load_folder(normal_dir: str | Path, abnormal_dir: str | Path,
                normal_test_dir: str | Path | None = None, image_size: int = 32,
                channels: int | None = None, holdout: float = 0.2, seed: int = 0) -> Dataset:
    """A user's images in anomalib's layout, as a two-class ``Dataset`` (0 normal, 1 abnormal).

    Train: the normal images. Test: ``normal_test_dir`` (or, if None, a fixed seeded
    ``holdout`` fraction of ``normal_dir``, removed from training) plus every abnormal image.
    Channels are 3 unless every image is grayscale (or as given).
    """
    normals = read_image_folder(normal_dir)
    abnormals = read_image_folder(abnormal_dir)
    normal_tests = read_image_folder(normal_test_dir) if normal_test_dir is not None else None
    if channels is None:
        every = normals + abnormals + (normal_tests or [])
        channels = 1 if all(img.mode in GRAY_MODES for img in every) else 3
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    train = _images_to_array(normals, channels, image_size)
    if normal_tests is None:
        if len(train) < 2:
            raise ValueError(f"{normal_dir}: need at least 2 normal images to hold some out for "
                             f"testing (or give normal_test_dir)")
        perm = np.random.default_rng(seed).permutation(len(train))
        n_test = min(len(train) - 1, max(1, round(holdout * len(train))))
        test_normal, train = train[np.sort(perm[:n_test])], train[np.sort(perm[n_test:])]
    else:
        test_normal = _images_to_array(normal_tests, channels, image_size)
    test_abnormal = _images_to_array(abnormals, channels, image_size)
    test = np.concatenate([test_normal, test_abnormal])
    test_labels = np.concatenate([np.zeros(len(test_normal)), np.ones(len(test_abnormal))])
    return Dataset(name="folder", train_images=_readonly(train),
                   train_labels=_readonly(np.zeros(len(train), np.int32)),
                   test_images=_readonly(test), test_labels=_readonly(test_labels.astype(np.int32)),
                   num_classes=2, class_names=FOLDER_CLASSES)


# ---------------------------------------------------------------- image folders: the layout on disk

def folder_root(data_dir: str | Path | None) -> Path:
    """``data_dir`` as the root of a folder dataset, or an error naming the layout it lacks."""
    if data_dir is None:
        raise ValueError("dataset 'folder' needs data_dir: a folder holding normal/, abnormal/ "
                         "and optionally normal_test/")
    root = Path(data_dir).expanduser()
    missing = [name for name in ("normal", "abnormal") if not (root / name).is_dir()]
    if missing:
        where = f"{root} does not exist" if not root.is_dir() else f"{root} has no {' or '.join(missing)}/"
        raise FileNotFoundError(f"{where}: dataset 'folder' expects DIR/normal/ (training normals), "
                                f"DIR/abnormal/ (test anomalies) and optionally DIR/normal_test/ "
                                f"(test normals), each holding image files")
    return root


def folder_channels(data_dir: str | Path | None) -> int:
    """The channels ``load_dataset("folder", data_dir)`` gives (3 unless every image is
    grayscale), read from the image headers only: no pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    root = folder_root(data_dir)
    modes = []
    for sub in ("normal", "abnormal", "normal_test"):
        for path in sorted(p for p in (root / sub).rglob("*") if p.is_file()):
            try:
                with Image.open(path) as img:  # lazy: reads the header
                    modes.append(img.mode)
            except (UnidentifiedImageError, OSError, ValueError):
                continue  # skipped by the loader too
    return 1 if all(mode in GRAY_MODES for mode in modes) else 3
