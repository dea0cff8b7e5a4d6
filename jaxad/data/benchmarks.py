"""The distributed benchmarks' raw files (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100): their
names, where they come from, where they are looked for, and the error when they are missing."""

from __future__ import annotations

from pathlib import Path

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

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
