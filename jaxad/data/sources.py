"""The dataset registry: ``DATASETS``, one entry per dataset, and ``load_dataset`` dispatching
through it.

Each source is a module of its own: ``idx`` (MNIST, Fashion-MNIST), ``cifar``, ``tfds_source``,
``digits`` and ``folder``, on ``arrays`` (the ``Dataset`` type and the shared preprocessing) and
``benchmarks`` (the raw files' names and the missing-files error). A new dataset is a module
plus an entry in ``DATASETS``.

Orders are canonical: the order of the original distribution files. TFDS shuffles records
when it prepares a dataset; ``tfds_original_order`` undoes that (see its docstring), so a
TFDS-loaded dataset matches the raw files image for image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from jaxad.data.arrays import Dataset, make_dataset
from jaxad.data.benchmarks import _missing_files_error, expected_raw_files
from jaxad.data.cifar import _cifar_location, read_cifar_dataset
from jaxad.data.digits import read_digits
from jaxad.data.folder import FOLDER_CLASSES, folder_channels, folder_root, load_folder
from jaxad.data.idx import idx_files_present, read_idx_dataset
from jaxad.data.tfds_source import read_tfds_dataset

# CIFAR-100's 20 superclasses (its "coarse" labels), the classes of the paper's tables.
CIFAR100_SUPERCLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2")


def raw_files_present(data_dir: str | Path | None, name: str) -> bool:
    """Whether ``data_dir`` holds the raw distribution files of a benchmark dataset."""
    if data_dir is None:
        return False
    if name in ("mnist", "fashion_mnist"):
        return idx_files_present(data_dir, name) is not None
    return _cifar_location(data_dir, name) is not None


# ---------------------------------------------------------------- loaders: data_dir, source, size -> Dataset

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
            problem = "is a file, not a folder" if Path(data_dir).expanduser().exists() else "does not exist"
            raise FileNotFoundError(f"data_dir {data_dir} {problem}: give the folder holding the raw "
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
