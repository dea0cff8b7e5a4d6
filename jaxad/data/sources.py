"""The dataset registry: ``DATASETS``, one entry per dataset, and ``load_dataset`` dispatching
through it.

Each source is a module of its own: ``idx`` (MNIST, Fashion-MNIST), ``cifar``, ``tfds_source``,
``digits`` and ``folder`` (a user's image folders and MVTec AD), on ``arrays`` (the ``Dataset`` type and the shared preprocessing) and
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
from jaxad.data.folder import (FOLDER_CLASSES, ImageSet, folder_image_set, image_set_channels, load_image_set,
                               mvtec_image_set, training_gamma)
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


# ---------------------------------------------------------------- loaders: data_dir, source, size, category -> Dataset

def _image_set(name: str, data_dir: str | Path | None, category: str | None) -> ImageSet:
    return mvtec_image_set(data_dir, category) if name == "mvtec" else folder_image_set(data_dir)


def _load_image_folders(name: str) -> Callable[[str | Path | None, str, int, str | None], Dataset]:
    """The loader of a data set in image folders (the folder layout, or MVTec AD's)."""
    def load(data_dir: str | Path | None, source: str, image_size: int, category: str | None) -> Dataset:
        return load_image_set(_image_set(name, data_dir, category), image_size)
    return load


def _load_digits(data_dir: str | Path | None, source: str, image_size: int, category: str | None) -> Dataset:
    if source == "tfds":
        raise ValueError("digits ships with scikit-learn and is not in TFDS; use source='auto'")
    return make_dataset("digits", *read_digits(), DATASETS["digits"].class_names, image_size, max_value=16.0)


def _load_benchmark(name: str) -> Callable[[str | Path | None, str, int, str | None], Dataset]:
    """The loader of a distributed benchmark: its raw files in data_dir, or TFDS."""
    def load(data_dir: str | Path | None, source: str, image_size: int, category: str | None) -> Dataset:
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

    ``load(data_dir, source, image_size, category)`` gives the ``Dataset``. ``channels`` is None
    when the files decide (image folders: ``channels_of`` reads them). ``image_side``: the side
    as distributed (None: it varies). ``normal_classes``: how many normal classes the one-class
    protocol runs (None: every class; image folders have one, their normals).
    ``categories``: whether the dataset is one of several (MVTec AD's), named by ``category``.
    """

    class_names: tuple[str, ...]
    channels: int | None
    image_side: int | None
    load: Callable[[str | Path | None, str, int, str | None], Dataset]
    normal_classes: int | None = None
    categories: bool = False

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
    "folder": DatasetInfo(FOLDER_CLASSES, None, None, _load_image_folders("folder"), normal_classes=1),
    "mvtec": DatasetInfo(("good", "defective"), None, None, _load_image_folders("mvtec"), normal_classes=1,
                         categories=True),
}
IMAGE_FOLDERS = tuple(name for name, info in DATASETS.items() if info.channels is None)  # read from a user's files


def channels_of(name: str, data_dir: str | Path | None = None, category: str | None = None) -> int:
    """The channels of dataset ``name``'s images, without loading it (image folders: their
    headers are read, and a colour file decoded to be sure it is readable)."""
    info = DATASETS[name]
    return info.channels if info.channels is not None else image_set_channels(_image_set(name, data_dir, category))


def gamma_of(name: str, data_dir: str | Path | None = None, category: str | None = None) -> float:
    """The gamma at which a run trains on every training anomaly the dataset holds: ``a / (n + a)``
    for a folder with ``abnormal_train/`` (``folder.training_gamma``), else 0 (the one-class
    protocol draws anomalies from other classes at any gamma). Counts files; decodes none."""
    if name not in IMAGE_FOLDERS:
        return 0.0
    return training_gamma(_image_set(name, data_dir, category))


def check_category(name: str, category: str | None) -> None:
    """Refuse a category for a dataset that has none."""
    if category is not None and not DATASETS[name].categories:
        with_categories = [n for n, info in DATASETS.items() if info.categories]
        raise ValueError(f"category {category!r} given, but {name} has no categories (only {', '.join(with_categories)} "
                         f"has): leave --category out")


def load_dataset(name: str, data_dir: str | Path | None = None, source: str = "auto",
                 image_size: int = 32, category: str | None = None) -> Dataset:
    """Load a dataset by name as preprocessed arrays (float32 NHWC in [-1, 1], side image_size).

    ``source``: ``"raw"`` reads the distribution files in ``data_dir`` (or ``data_dir/name``);
    ``"tfds"`` goes through tensorflow-datasets (``data_dir`` is then its data_dir);
    ``"auto"`` takes the raw files when present, else TFDS. ``digits`` ships with
    scikit-learn; ``folder`` reads the folder layout under ``data_dir`` and ``mvtec`` MVTec
    AD's category ``category`` under ``data_dir`` (``jaxad.data.folder``).
    Load once and split many times: loading CIFAR takes seconds.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {tuple(DATASETS)}")
    if source not in ("auto", "raw", "tfds"):
        raise ValueError(f"source must be 'auto', 'raw' or 'tfds', got {source!r}")
    check_category(name, category)
    return DATASETS[name].load(data_dir, source, image_size, category)
