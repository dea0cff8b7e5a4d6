"""The benchmarks through TensorFlow Datasets, put back in the distribution files' order.

TFDS shuffles records when it prepares a dataset; ``tfds_original_order`` undoes that (see its
docstring), so a TFDS-loaded dataset matches the raw files image for image. tensorflow_datasets
is an extra (``jaxad[tfds]``), imported only inside ``read_tfds_dataset``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxad.data.benchmarks import SOURCES_URL, expected_raw_files

# Hosts TFDS downloads each benchmark from (its builders' URLs), for a fast offline check.
TFDS_DOWNLOAD_HOST = {"mnist": "storage.googleapis.com",
                      "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                      "cifar10": "www.cs.toronto.edu", "cifar100": "www.cs.toronto.edu"}
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                   "all_proxy")
TFDS_LABEL_KEY = {"mnist": "label", "fashion_mnist": "label", "cifar10": "label",
                  "cifar100": "coarse_label"}


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
