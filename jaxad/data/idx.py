"""MNIST and Fashion-MNIST from their raw IDX distribution files (gzip or not)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from jaxad.data.benchmarks import IDX_FILES, _missing_files_error, _raw_dirs

IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049


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
