"""Datasets as preprocessed arrays: raw distribution files, TFDS, sklearn digits, image folders.

Every source ends in the same two steps (``to_unit_range`` then ``resize_images``), so the
raw-file and TFDS paths of one benchmark give identical arrays: float32, NHWC, in [-1, 1].

Orders are canonical: the order of the original distribution files. TFDS shuffles records
when it prepares a dataset; ``tfds_original_order`` undoes that (see its docstring), so a
TFDS-loaded dataset matches the raw files image for image.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
import socket
import tarfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# CIFAR-100's 20 superclasses (its "coarse" labels), the classes of the paper's tables.
CIFAR100_SUPERCLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2")

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049

SOURCES_URL = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ "
             "(mirror: https://storage.googleapis.com/cvdf-datasets/mnist/)",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar.html",
}
CIFAR_LAYOUT = {  # archive, folder inside it, train files, test files, label key
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",),
                 b"coarse_labels"),
}
# Hosts TFDS downloads each benchmark from (its builders' URLs), for a fast offline check.
TFDS_DOWNLOAD_HOST = {"mnist": "storage.googleapis.com",
                      "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                      "cifar10": "www.cs.toronto.edu", "cifar100": "www.cs.toronto.edu"}
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                   "all_proxy")
TFDS_LABEL_KEY = {"mnist": "label", "fashion_mnist": "label", "cifar10": "label",
                  "cifar100": "coarse_label"}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled train/test dataset, preprocessed: float32 NHWC in [-1, 1], square images."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]

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


# ---------------------------------------------------------------- MNIST / Fashion-MNIST (IDX)

def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":  # gzip magic: decide by content, not by the file name
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or not): uint8 (n, rows, cols) images or (n,) labels.

    Checks the magic number (2051 images, 2049 labels) and the length against the header.
    """
    path = Path(path)
    buf = _read_maybe_gzip(path)
    if len(buf) < 8:
        raise ValueError(f"{path}: {len(buf)} bytes is too short for an IDX header")
    magic = int.from_bytes(buf[0:4], "big")
    if magic == IDX_IMAGES_MAGIC:
        if len(buf) < 16:
            raise ValueError(f"{path}: {len(buf)} bytes is too short for an IDX image header")
        n, rows, cols = (int.from_bytes(buf[i:i + 4], "big") for i in (4, 8, 12))
        header, shape = 16, (n, rows, cols)
    elif magic == IDX_LABELS_MAGIC:
        header, shape = 8, (int.from_bytes(buf[4:8], "big"),)
    else:
        raise ValueError(f"{path}: wrong magic number {magic}; an IDX file of uint8 images starts "
                         f"with {IDX_IMAGES_MAGIC}, of labels with {IDX_LABELS_MAGIC}")
    expected = header + int(np.prod(shape))
    if len(buf) != expected:
        raise ValueError(f"{path}: {len(buf)} bytes where the header {shape} implies {expected} "
                         f"({'truncated' if len(buf) < expected else 'trailing bytes'})")
    return np.frombuffer(buf, np.uint8, offset=header).reshape(shape)


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _raw_dirs(data_dir: str | Path, name: str) -> list[Path]:
    # Accept the files directly in data_dir or in data_dir/<name>/ (one root for all datasets).
    root = Path(data_dir).expanduser()
    return [root, root / name]


def expected_raw_files(name: str) -> str:
    """The raw distribution files of a benchmark dataset, in words, for error messages."""
    if name in ("mnist", "fashion_mnist"):
        return ", ".join(f"{stem}[.gz]" for stem in IDX_FILES)
    archive, folder, train_files, test_files, _ = CIFAR_LAYOUT[name]
    return f"{archive} or its extracted folder {folder}/ ({', '.join(train_files + test_files)})"


def _missing_files_error(name: str, data_dir: str | Path | None) -> FileNotFoundError:
    where = f"in {data_dir} (or {Path(data_dir) / name})" if data_dir else "(no data_dir given)"
    return FileNotFoundError(
        f"{name}: raw files not found {where}. Expected {expected_raw_files(name)}, from "
        f"{SOURCES_URL[name]}. Pass the folder holding them as data_dir (--data-dir), "
        f"or use source='tfds'.")


def idx_files_present(data_dir: str | Path, name: str) -> Path | None:
    """The folder under ``data_dir`` holding all four IDX files, or None."""
    for d in _raw_dirs(data_dir, name):
        if all(_find_file(d, stem) for stem in IDX_FILES):
            return d
    return None


def read_idx_dataset(data_dir: str | Path, name: str = "mnist"):
    """((train_x, train_y), (test_x, test_y)) as uint8 arrays from the four IDX files."""
    d = idx_files_present(data_dir, name)
    if d is None:
        raise _missing_files_error(name, data_dir)
    arrays = [read_idx(_find_file(d, stem)) for stem in IDX_FILES]
    out = []
    for (images, labels), stem in zip((arrays[0:2], arrays[2:4]), IDX_FILES[0::2], strict=True):
        if images.ndim != 3 or labels.ndim != 1:
            raise ValueError(f"{d / stem}: images and labels files are swapped or malformed")
        if len(images) != len(labels):
            raise ValueError(f"{d / stem}: {len(images)} images but {len(labels)} labels")
        out.append((images, labels))
    return tuple(out)


# ---------------------------------------------------------------- CIFAR-10 / CIFAR-100 (pickles)

def _cifar_location(data_dir: str | Path, name: str) -> tuple[str, Path] | None:
    archive, folder, train_files, test_files, _ = CIFAR_LAYOUT[name]
    for d in _raw_dirs(data_dir, name):
        if (d / folder / train_files[0]).is_file():
            return "dir", d / folder
        if all((d / f).is_file() for f in (train_files[0], test_files[0])):
            return "dir", d  # data_dir is the extracted folder itself
        if (d / archive).is_file():
            return "tar", d / archive
    return None


def _unpickle_cifar(blob: bytes, origin: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(blob, encoding="bytes")  # the official format is a Python pickle
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{origin}: not a CIFAR python pickle ({err})") from err
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{origin}: expected a dict with b'data' and {label_key!r}")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(f"{origin}: data {data.shape} and {len(labels)} labels; expected "
                         f"(N, 3072) uint8 rows with N labels")
    # Rows are channel-major (R plane, G plane, B plane, each 32x32 row-major) -> NHWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar_dataset(data_dir: str | Path, name: str = "cifar10"):
    """((train_x, train_y), (test_x, test_y)) uint8 NHWC from the python-version archive or folder.

    CIFAR-100 takes the 20 coarse labels (superclasses).
    """
    archive, folder, train_files, test_files, label_key = CIFAR_LAYOUT[name]
    found = _cifar_location(data_dir, name)
    if found is None:
        raise _missing_files_error(name, data_dir)
    kind, where = found
    blobs: dict[str, bytes] = {}
    if kind == "tar":
        try:
            with tarfile.open(where, "r:*") as tar:
                for member in tar.getmembers():
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in train_files + test_files:
                        blobs[base] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(f"{where}: unreadable archive ({err})") from err
    else:
        blobs = {f: (where / f).read_bytes() for f in train_files + test_files
                 if (where / f).is_file()}
    missing = [f for f in train_files + test_files if f not in blobs]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)} (expected the layout of "
                         f"{archive} from {SOURCES_URL[name]})")

    def read(files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_unpickle_cifar(blobs[f], f"{where}/{f}", label_key) for f in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return read(train_files), read(test_files)


def raw_files_present(data_dir: str | Path | None, name: str) -> bool:
    """Whether ``data_dir`` holds the raw distribution files of a benchmark dataset."""
    if data_dir is None:
        return False
    if name in ("mnist", "fashion_mnist"):
        return idx_files_present(data_dir, name) is not None
    return _cifar_location(data_dir, name) is not None


# ---------------------------------------------------------------- TFDS

def tfds_original_order(split: str, n: int) -> np.ndarray:
    """Original (distribution-file) index of each of the ``n`` records of a prepared TFDS split.

    TFDS writes a split sorted by ``md5(split_name + str(key))`` of each example's key
    (tensorflow_datasets/core/hashing.py and shuffle.py; the hash is frozen by design, as
    changing it would reorder every dataset). MNIST and Fashion-MNIST use the file index as
    the key, so record ``j`` of the split is original image ``order[j]``.
    """
    salt = hashlib.md5(split.encode())
    hashes = []
    for key in range(n):
        h = salt.copy()
        h.update(str(key).encode())
        hashes.append(h.digest())  # big-endian digest sorts like TFDS's 128-bit integer
    return np.array(sorted(range(n), key=hashes.__getitem__), dtype=np.int64)


def _iter_records(source: Sequence[dict[str, Any]], chunk: int = 8192):
    # Batched reads (``__getitems__``) decode 2.6x faster than one record at a time.
    getitems = getattr(source, "__getitems__", None)
    for start in range(0, len(source), chunk):
        keys = list(range(start, min(start + chunk, len(source))))
        yield from (getitems(keys) if getitems else (source[k] for k in keys))


def tfds_records_to_arrays(records: Sequence[dict[str, Any]], name: str, split: str,
                           shuffled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decoded TFDS records (``image`` uint8 HWC, labels) to uint8 arrays in the original order.

    ``shuffled``: whether the split was written in TFDS's hashed order (``not
    info.disable_shuffling``). CIFAR records carry an ``id`` ("train_01234") naming the
    original index, which is used instead of the hash.
    """
    n = len(records)
    if n == 0:
        raise ValueError(f"tfds {name}/{split}: the split is empty")
    label_key = TFDS_LABEL_KEY[name]
    first = np.asarray(records[0]["image"])
    images = np.empty((n,) + first.shape, np.uint8)
    labels = np.empty(n, np.int64)
    ids = []
    for j, record in enumerate(_iter_records(records)):
        images[j] = record["image"]
        labels[j] = record[label_key]
        if "id" in record:
            ids.append(record["id"])
    if len(ids) == n:
        # "train_01234" (bytes or str) -> 1234: sort by the original index.
        original = np.array([int((i.decode() if isinstance(i, bytes) else str(i)).rsplit("_", 1)[1])
                             for i in ids])
        order = np.argsort(original, kind="stable")
        images, labels = images[order], labels[order]
    elif shuffled:
        restored_images, restored_labels = np.empty_like(images), np.empty_like(labels)
        order = tfds_original_order(split, n)
        restored_images[order], restored_labels[order] = images, labels
        images, labels = restored_images, restored_labels
    if images.shape[-1] == 1 and name in ("mnist", "fashion_mnist"):
        images = images[..., 0]  # same NHW uint8 as the IDX reader
    return images, labels


def unreachable(host: str) -> str | None:
    """Why ``host`` cannot be reached (its name does not resolve), or None if it may be.

    TFDS retries a failed download with back-off for about 3.5 minutes before it gives up;
    a name that does not resolve means offline, and costs a fraction of a second to find.
    Behind a proxy the local resolver says nothing, so no verdict is given.
    """
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    try:
        socket.getaddrinfo(host, 443)
    except OSError as err:
        return f"cannot resolve {host}: {err}"
    return None


def read_tfds_dataset(name: str, data_dir: str | Path | None = None,
                      manual_dir: str | Path | None = None, download: bool = True):
    """((train_x, train_y), (test_x, test_y)) uint8 via ``tfds`` ArrayRecord data sources.

    Reading needs pillow only. Preparing needs ``importlib_resources`` (imported by TFDS
    4.9.10 but not among its declared dependencies), and TensorFlow for MNIST/Fashion-MNIST.
    ``manual_dir`` holds the original archives for TFDS to use instead of downloading
    (default: ``<data_dir>/downloads/manual``).
    """
    hint = (f"To work offline, download the raw files from {SOURCES_URL[name]} and pass their "
            f"folder as data_dir (--data-dir) with source='raw'; expected there: "
            f"{expected_raw_files(name)}")
    try:
        import tensorflow_datasets as tfds  # deferred: heavy, and an extra (jaxad[tfds])
    except ImportError as err:
        raise ImportError(f"loading {name} through TensorFlow Datasets needs it installed: "
                          f"pip install 'jaxad[tfds]' (MNIST and Fashion-MNIST also need "
                          f"'jaxad[tfds-prepare]' to prepare). {hint}") from err
    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else str(data_dir),
                               file_format="array_record")
        # TFDS's default manual_dir; files there are used instead of a download.
        manual = Path(manual_dir or Path(builder.data_dir_root) / "downloads" / "manual")
        if download and not builder.is_prepared() and not any(manual.glob("*")):
            reason = unreachable(TFDS_DOWNLOAD_HOST[name])
            if reason:
                raise ConnectionError(f"{name} is not prepared and must be downloaded: {reason}")
        if download:
            config = tfds.download.DownloadConfig(
                manual_dir=None if manual_dir is None else str(manual_dir))
            builder.download_and_prepare(download_config=config)
        splits = {s: builder.as_data_source(split=s) for s in ("train", "test")}
        shuffled = not builder.info.disable_shuffling
        return tuple(tfds_records_to_arrays(source, name, split, shuffled)
                     for split, source in splits.items())
    except Exception as err:  # noqa: BLE001 - TFDS fails in many ways offline; say what to do
        raise RuntimeError(f"TFDS could not provide {name!r} ({type(err).__name__}: {err}). "
                           f"{hint}. (To prepare datasets, tensorflow-datasets 4.9 needs "
                           f"importlib_resources, and TensorFlow for mnist/fashion_mnist: "
                           f"pip install importlib_resources tensorflow-cpu.)") from err


# ---------------------------------------------------------------- digits (sklearn)

def read_digits(test_size: float = 0.3, random_state: int = 0):
    """sklearn's 8x8 digits (values 0..16) with a fixed stratified split, in original order."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, test_idx = train_test_split(np.arange(len(digits.target)), test_size=test_size,
                                           random_state=random_state, stratify=digits.target)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    images, labels = digits.images, digits.target
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


# ---------------------------------------------------------------- image folders (anomalib layout)

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


def _load_folder_dataset(data_dir: str | Path | None, source: str, image_size: int) -> Dataset:
    root = folder_root(data_dir)
    normal_test = root / "normal_test"
    return load_folder(root / "normal", root / "abnormal",
                       normal_test if normal_test.is_dir() else None, image_size=image_size)


def _load_digits(data_dir: str | Path | None, source: str, image_size: int) -> Dataset:
    if source == "tfds":
        raise ValueError("digits ships with scikit-learn and is not in TFDS; use source='auto'")
    return make_dataset("digits", *read_digits(), DATASETS["digits"].class_names, image_size, max_value=16.0)


def _load_benchmark(name: str) -> Callable[[str | Path | None, str, int], Dataset]:
    """The loader of a distributed benchmark: its raw files in data_dir, or TFDS."""
    def load(data_dir: str | Path | None, source: str, image_size: int) -> Dataset:
        if data_dir is not None and not Path(data_dir).expanduser().is_dir() and source != "tfds":
            raise FileNotFoundError(f"data_dir {data_dir} does not exist: give the folder holding the raw "
                                    f"{name} files ({expected_raw_files(name)}), or source 'tfds' (--source tfds) "
                                    f"to let TensorFlow Datasets download into a new folder")
        if source == "raw" or (source == "auto" and raw_files_present(data_dir, name)):
            if data_dir is None:
                raise _missing_files_error(name, None)
            read = read_idx_dataset if name in ("mnist", "fashion_mnist") else read_cifar_dataset
            train, test = read(data_dir, name)
        else:
            train, test = read_tfds_dataset(name, data_dir)
        return make_dataset(name, train, test, DATASETS[name].class_names, image_size)
    return load


# ---------------------------------------------------------------- the registry: one entry per dataset

@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What is known of a dataset before loading it, and how to load it.

    ``load(data_dir, source, image_size)`` gives the ``Dataset``. ``channels`` is None when the
    files decide (a folder: ``channels_of`` reads them). ``image_side``: the side as
    distributed (None: it varies). ``normal_classes``: how many normal classes the one-class
    protocol runs (None: every class; a folder's abnormal/ only tests).
    """

    class_names: tuple[str, ...]
    channels: int | None
    image_side: int | None
    load: Callable[[str | Path | None, str, int], Dataset]
    normal_classes: int | None = None

    @property
    def protocol_classes(self) -> int:
        """Normal classes in the full one-class protocol (the runner's default ``--classes``)."""
        return self.normal_classes or len(self.class_names)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(tuple(str(i) for i in range(10)), 1, 28, _load_benchmark("mnist")),
    "fashion_mnist": DatasetInfo(("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                  "Sneaker", "Bag", "Ankle boot"), 1, 28, _load_benchmark("fashion_mnist")),
    "cifar10": DatasetInfo(("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"), 3, 32, _load_benchmark("cifar10")),
    "cifar100": DatasetInfo(CIFAR100_SUPERCLASSES, 3, 32, _load_benchmark("cifar100")),
    "digits": DatasetInfo(tuple(str(i) for i in range(10)), 1, 8, _load_digits),
    "folder": DatasetInfo(FOLDER_CLASSES, None, None, _load_folder_dataset, normal_classes=1),
}


def channels_of(name: str, data_dir: str | Path | None = None) -> int:
    """The channels of dataset ``name``'s images, without loading it (a folder's headers are read)."""
    info = DATASETS[name]
    return info.channels if info.channels is not None else folder_channels(data_dir)


def load_dataset(name: str, data_dir: str | Path | None = None, source: str = "auto",
                 image_size: int = 32) -> Dataset:
    """Load a dataset by name as preprocessed arrays (float32 NHWC in [-1, 1], side image_size).

    ``source``: ``"raw"`` reads the distribution files in ``data_dir`` (or ``data_dir/name``);
    ``"tfds"`` goes through tensorflow-datasets (``data_dir`` is then its data_dir);
    ``"auto"`` takes the raw files when present, else TFDS. ``digits`` ships with
    scikit-learn; ``folder`` reads ``data_dir/{normal,abnormal[,normal_test]}``.
    Load once and split many times: loading CIFAR takes seconds.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {tuple(DATASETS)}")
    if source not in ("auto", "raw", "tfds"):
        raise ValueError(f"source must be 'auto', 'raw' or 'tfds', got {source!r}")
    return DATASETS[name].load(data_dir, source, image_size)
