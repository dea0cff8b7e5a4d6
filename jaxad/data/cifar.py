"""CIFAR-10 and CIFAR-100 from the python-version archive or its extracted folder (pickles)."""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxad.data.benchmarks import CIFAR_LAYOUT, SOURCES_URL, _missing_files_error, _raw_dirs

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
