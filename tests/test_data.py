"""The data layer: sources, preprocessing, one-class splits with gamma, the sampler, padding.

Real data: MNIST in ../shared/datasets/mnist (skipped when absent) and sklearn's digits.
Other formats are written here in their exact distribution layouts and read back.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from jaxad.config import DataConfig
from jaxad.data import (
    Dataset,
    anomaly_count,
    batch_composition,
    epoch_indices,
    gather_batch,
    load_dataset,
    load_folder,
    load_split,
    one_class_split,
    padded_batches,
    read_cifar_dataset,
    read_idx,
    tfds_original_order,
)

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mnist"
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
PAPER_GAMMAS = (0.01, 0.03, 0.05, 0.10, 0.20)
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST files at {MNIST_DIR}")


def row_hashes(images: np.ndarray) -> set[bytes]:
    rows = np.ascontiguousarray(images).reshape(len(images), int(np.prod(images.shape[1:])))
    return {row.tobytes() for row in rows}


# ---------------------------------------------------------------- writers of the raw layouts

def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """An IDX file: big-endian magic (2051 images / 2049 labels), dims, then uint8 data."""
    magic = 2051 if array.ndim == 3 else 2049
    blob = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    blob += array.astype(np.uint8).tobytes()
    if compress:
        path, blob = path.with_name(path.name + ".gz"), gzip.compress(blob)
    path.write_bytes(blob)
    return path


def tiny_idx_arrays(n_train: int = 40, n_test: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), np.arange(n_train) % 10),
            (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), np.arange(n_test) % 10))


def write_idx_dataset(directory: Path, arrays, compress: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (train_x, train_y), (test_x, test_y) = arrays
    for stem, a in (("train-images-idx3-ubyte", train_x), ("train-labels-idx1-ubyte", train_y),
                    ("t10k-images-idx3-ubyte", test_x), ("t10k-labels-idx1-ubyte", test_y)):
        write_idx(directory / stem, a, compress)
    return directory


def cifar_batch(n: int, rng, n_classes: int = 10, cifar100: bool = False) -> dict:
    """One batch in the python-pickle layout: b'data' uint8 (n, 3072) as R, G, B planes."""
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    if cifar100:
        batch[b"fine_labels"] = list(rng.integers(0, 100, n))
        batch[b"coarse_labels"] = list(rng.integers(0, 20, n))
    else:
        batch[b"labels"] = list(rng.integers(0, n_classes, n))
    return batch


def write_cifar(root: Path, name: str, n: int = 6) -> tuple[Path, dict]:
    """Extracted folder and .tar.gz of a tiny CIFAR-10 or CIFAR-100 (python version)."""
    rng = np.random.default_rng(1)
    if name == "cifar10":
        folder, archive = "cifar-10-batches-py", "cifar-10-python.tar.gz"
        files = {f"data_batch_{i}": cifar_batch(n, rng) for i in range(1, 6)}
        files["test_batch"] = cifar_batch(n, rng)
    else:
        folder, archive = "cifar-100-python", "cifar-100-python.tar.gz"
        files = {"train": cifar_batch(n, rng, cifar100=True),
                 "test": cifar_batch(n, rng, cifar100=True)}
    (root / "extracted" / folder).mkdir(parents=True)
    (root / "archive").mkdir()
    with tarfile.open(root / "archive" / archive, "w:gz") as tar:
        for fname, batch in files.items():
            blob = pickle.dumps(batch)
            (root / "extracted" / folder / fname).write_bytes(blob)
            info = tarfile.TarInfo(f"{folder}/{fname}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return root, files


# ---------------------------------------------------------------- real MNIST

@pytest.fixture(scope="module")
def mnist() -> Dataset:
    if not MNIST_DIR.is_dir():
        pytest.skip(f"no MNIST files at {MNIST_DIR}")
    return load_dataset("mnist", str(MNIST_DIR))


@needs_mnist
def test_real_mnist_counts_shape_and_range(mnist):
    assert np.bincount(mnist.train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.test_labels).tolist() == MNIST_TEST_COUNTS
    assert mnist.train_images.shape == (60000, 32, 32, 1)
    assert mnist.test_images.shape == (10000, 32, 32, 1)
    assert mnist.train_images.dtype == np.float32
    assert mnist.train_images.min() == -1.0 and mnist.train_images.max() == 1.0
    # The MNIST background is 0, so a resized corner pixel is exactly -1.
    assert np.all(mnist.train_images[:, 0, 0, 0] == -1.0)
    assert mnist.num_classes == 10 and not mnist.train_images.flags.writeable


@needs_mnist
def test_idx_gzip_and_plain_give_identical_arrays(tmp_path):
    for gz in sorted(MNIST_DIR.glob("*.gz")):
        plain = tmp_path / gz.name[:-3]
        plain.write_bytes(gzip.decompress(gz.read_bytes()))
        assert np.array_equal(read_idx(gz), read_idx(plain))
    assert read_idx(tmp_path / "t10k-images-idx3-ubyte").shape == (10000, 28, 28)


@needs_mnist
def test_mnist_split_has_no_test_image_in_training(mnist):
    split = one_class_split(mnist, normal_class=4, gamma=0.1, seed=0)
    train = row_hashes(split.train_normal) | row_hashes(split.train_anomaly)
    assert not train & row_hashes(split.test_images)
    assert len(split.train_normal) == MNIST_TRAIN_COUNTS[4]
    assert len(split.train_anomaly) == anomaly_count(MNIST_TRAIN_COUNTS[4], 0.1) == 649
    assert split.test_labels.sum() == 10000 - MNIST_TEST_COUNTS[4]


def test_idx_directory_gzip_and_plain_identical_through_load_dataset(tmp_path):
    arrays = tiny_idx_arrays()
    plain = load_dataset("mnist", str(write_idx_dataset(tmp_path / "plain", arrays, False)))
    packed = load_dataset("mnist", str(write_idx_dataset(tmp_path / "gz", arrays, True)))
    assert np.array_equal(plain.train_images, packed.train_images)
    assert np.array_equal(plain.test_labels, packed.test_labels)
    # 28 -> 32 bilinear of the same pixels, scaled so that 0 -> -1 and 255 -> 1.
    assert plain.train_images.shape == (40, 32, 32, 1)
    constant = np.full((1, 28, 28), 255, np.uint8)
    write_idx_dataset(tmp_path / "white", ((constant, np.zeros(1)), (constant, np.zeros(1))), True)
    assert np.all(load_dataset("fashion_mnist", str(tmp_path / "white")).test_images == 1.0)


def test_idx_wrong_magic_and_truncated_files_are_named(tmp_path):
    labels = write_idx(tmp_path / "labels", np.arange(10) % 10)
    blob = bytearray(labels.read_bytes())
    blob[3] = 0x99  # magic 2049 -> 2201
    (tmp_path / "bad-magic").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="bad-magic.*wrong magic"):
        read_idx(tmp_path / "bad-magic")
    images = write_idx(tmp_path / "images", np.zeros((5, 28, 28), np.uint8))
    (tmp_path / "cut").write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ValueError, match="cut.*truncated"):
        read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(images.read_bytes())[:-30])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")


def test_missing_raw_files_name_the_files_and_their_origin(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*yann.lecun.com"):
        load_dataset("mnist", str(tmp_path), source="raw")
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz.*toronto.edu"):
        load_dataset("cifar10", str(tmp_path), source="raw")
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", None, source="raw")


# ---------------------------------------------------------------- CIFAR python archives

def test_cifar10_round_trip_archive_and_folder_identical(tmp_path):
    root, files = write_cifar(tmp_path, "cifar10")
    from_dir = load_dataset("cifar10", str(root / "extracted"), source="raw")
    from_tar = load_dataset("cifar10", str(root / "archive"), source="raw")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(from_dir, field), getattr(from_tar, field)), field
    # Batches in file order; each row is the R, G, B planes of a 32x32 image.
    first = files["data_batch_2"]
    k, i, j = 3, 7, 20
    expected_rgb = [first[b"data"][k][c * 1024 + i * 32 + j] for c in range(3)]
    assert np.allclose(from_dir.train_images[6 + k, i, j], np.array(expected_rgb) / 127.5 - 1.0)
    assert from_dir.train_labels.tolist() == sum(
        (files[f"data_batch_{b}"][b"labels"] for b in range(1, 6)), [])
    assert from_dir.train_images.shape == (30, 32, 32, 3) and from_dir.num_classes == 10


def test_cifar100_uses_the_20_coarse_labels(tmp_path):
    root, files = write_cifar(tmp_path, "cifar100")
    ds = load_dataset("cifar100", str(root / "archive"))  # 'auto' finds the raw archive
    assert ds.num_classes == 20 and len(ds.class_names) == 20
    assert ds.test_labels.tolist() == files["test"][b"coarse_labels"]
    extracted = load_dataset("cifar100", str(root / "extracted"))
    assert np.array_equal(ds.test_images, extracted.test_images)


# ---------------------------------------------------------------- TFDS, offline through its mock

class RecordSource(list):
    """A stand-in for a TFDS data source: random access and batched reads of decoded records."""

    def __getitems__(self, keys):
        return [self[k] for k in keys]


def tfds_written_order(split: str, n: int, tmp_path: Path) -> list[int]:
    """The order TFDS's own Shuffler writes keys 0..n-1 in (what preparing a split does)."""
    from tensorflow_datasets.core import shuffle

    shuffler = shuffle.Shuffler(tmp_path / f"shuffle-{split}", hash_salt=split)
    for key in range(n):
        shuffler.add(key, str(key).encode())
    return [int(data) for _, data in shuffler]


@pytest.fixture
def online(monkeypatch):
    """Pretend the download hosts resolve: the mocked TFDS never downloads anyway."""
    monkeypatch.setattr("jaxad.data.tfds_source.unreachable", lambda host: None)


def test_tfds_mnist_matches_raw_files(tmp_path, online):
    import tensorflow_datasets as tfds

    arrays = tiny_idx_arrays()
    raw = load_dataset("mnist", str(write_idx_dataset(tmp_path / "raw", arrays, True)))
    records = {}
    for split, (x, y) in zip(("train", "test"), arrays, strict=True):
        order = tfds_written_order(split, len(x), tmp_path)
        assert order != sorted(order) and order == tfds_original_order(split, len(x)).tolist()
        records[split] = RecordSource({"image": x[i][..., None], "label": np.int64(y[i])}
                                      for i in order)
    with tfds.testing.mock_data(as_data_source_fn=lambda builder, split, **kw: records[split]):
        # The folder exists but holds no raw files, so 'auto' goes to TFDS.
        (tmp_path / "tfds").mkdir()
        via_tfds = load_dataset("mnist", str(tmp_path / "tfds"), source="auto")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(raw, field), getattr(via_tfds, field)), field


def test_tfds_cifar_records_are_put_back_in_file_order(tmp_path, online):
    import tensorflow_datasets as tfds

    root, _ = write_cifar(tmp_path, "cifar10")
    raw = load_dataset("cifar10", str(root / "archive"))
    records = {}
    raw_uint8 = read_cifar_dataset(root / "archive", "cifar10")
    for split, (x, y) in zip(("train", "test"), raw_uint8, strict=True):
        scrambled = np.random.default_rng(0).permutation(len(x))
        records[split] = [{"id": f"{split}_{i:05d}".encode(), "image": x[i], "label": y[i]}
                          for i in scrambled]  # a plain list: read one record at a time
    with tfds.testing.mock_data(as_data_source_fn=lambda builder, split, **kw: records[split]):
        via_tfds = load_dataset("cifar10", str(tmp_path / "tfds"), source="tfds")
    assert np.array_equal(raw.train_images, via_tfds.train_images)
    assert np.array_equal(raw.test_labels, via_tfds.test_labels)


def test_tfds_failure_offline_says_how_to_use_local_files(tmp_path, monkeypatch, online):
    from tensorflow_datasets.core import dataset_builder

    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: network unreachable")

    monkeypatch.setattr(dataset_builder.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(RuntimeError, match=r"(?s)ConnectionError.*yann.lecun.com.*--data-dir.*"
                                           r"train-images-idx3-ubyte"):
        load_dataset("mnist", str(tmp_path), source="auto")
    with pytest.raises(RuntimeError, match=r"(?s)cifar-100-python.tar.gz"):
        load_dataset("cifar100", str(tmp_path), source="tfds")


def test_tfds_offline_is_detected_before_the_slow_download_retries(tmp_path, monkeypatch):
    import socket

    from tensorflow_datasets.core import dataset_builder

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    def download(self, *args, **kwargs):
        raise AssertionError("TFDS should not start a download (it retries for ~3.5 min)")

    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                     "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(dataset_builder.DatasetBuilder, "download_and_prepare", download)
    with pytest.raises(RuntimeError, match=r"(?s)cannot resolve www.cs.toronto.edu.*"
                                           r"cifar-10-python.tar.gz"):
        load_dataset("cifar10", str(tmp_path))


@pytest.mark.skipif(not os.environ.get("JAXAD_TFDS_PREPARE"),
                    reason="prepares real MNIST in TFDS (~35 s, needs tensorflow-cpu); "
                           "set JAXAD_TFDS_PREPARE=1")
@needs_mnist
def test_tfds_prepared_real_mnist_matches_raw(tmp_path):
    pytest.importorskip("tensorflow")
    from tensorflow_datasets.core.download import download_manager

    # The shared .gz files are recompressed (same IDX bytes), so TFDS's checksums cannot match.
    original = download_manager.DownloadManager._register_or_validate_checksums
    download_manager.DownloadManager._register_or_validate_checksums = lambda *a, **k: None
    try:
        manual = tmp_path / "downloads" / "manual"  # TFDS's default manual_dir
        manual.mkdir(parents=True)
        for gz in MNIST_DIR.glob("*.gz"):
            (manual / gz.name).write_bytes(gz.read_bytes())
        via_tfds = load_dataset("mnist", str(tmp_path), source="tfds")
    finally:
        download_manager.DownloadManager._register_or_validate_checksums = original
    raw = load_dataset("mnist", str(MNIST_DIR), source="raw")
    assert np.array_equal(raw.train_images, via_tfds.train_images)
    assert np.array_equal(raw.test_labels, via_tfds.test_labels)


# ---------------------------------------------------------------- digits

def test_digits_fixed_stratified_split():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    assert ds.train_images.shape == (1257, 32, 32, 1) and ds.test_images.shape == (540, 32, 32, 1)
    assert -1.0 <= ds.train_images.min() and ds.train_images.max() <= 1.0
    # Stratified: every class keeps ~70 % of its images in training.
    all_counts = np.bincount(load_digits().target)
    assert np.all(np.abs(np.bincount(ds.train_labels) - 0.7 * all_counts) <= 1)
    # Fixed: a second load is identical; no image is in both halves.
    again = load_dataset("digits")
    assert np.array_equal(ds.test_images, again.test_images)
    assert not row_hashes(ds.train_images) & row_hashes(ds.test_images)


# ---------------------------------------------------------------- one-class split and gamma

@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_gamma_arithmetic():
    assert anomaly_count(6000, 0.0) == 0
    assert anomaly_count(6000, 0.2) == 1500          # 0.2 = 1500 / 7500
    assert anomaly_count(5923, 0.01) == 60           # 59.83 rounds to 60
    for n in (124, 5923, 6742):
        for gamma in PAPER_GAMMAS:
            a = anomaly_count(n, gamma)
            assert abs(a / (n + a) - gamma) <= 1 / (n + a)
    for bad in (-0.01, 1.0, 1.5):
        with pytest.raises(ValueError, match="gamma"):
            anomaly_count(100, bad)


def test_split_sizes_labels_and_anomaly_classes(digits):
    split = one_class_split(digits, normal_class=3, gamma=0.2, seed=0)
    n = int(np.sum(digits.train_labels == 3))
    assert len(split.train_normal) == n and len(split.train_anomaly) == anomaly_count(n, 0.2)
    assert np.array_equal(split.test_labels, (digits.test_labels != 3).astype(np.int32))
    assert np.array_equal(split.test_classes, digits.test_labels)
    assert len(one_class_split(digits, 3).train_anomaly) == 0
    # Anomalies from chosen classes only (Deep SAD's protocol): they match those classes' images.
    chosen = one_class_split(digits, 3, gamma=0.2, anomaly_classes=(5, 8), seed=1)
    pool = row_hashes(digits.train_images[np.isin(digits.train_labels, (5, 8))])
    assert row_hashes(chosen.train_anomaly) <= pool
    assert len(row_hashes(chosen.train_anomaly)) == len(chosen.train_anomaly)  # no repeats
    # Seeded draws.
    assert np.array_equal(chosen.train_anomaly,
                          one_class_split(digits, 3, 0.2, (5, 8), seed=1).train_anomaly)
    assert not np.array_equal(chosen.train_anomaly,
                              one_class_split(digits, 3, 0.2, (5, 8), seed=2).train_anomaly)


def test_split_leaks_no_test_image_into_training(digits):
    for gamma in (0.0, 0.1):
        split = one_class_split(digits, normal_class=7, gamma=gamma, seed=0)
        train = row_hashes(split.train_normal) | row_hashes(split.train_anomaly)
        assert not train & row_hashes(split.test_images)
        sevens = digits.train_images[digits.train_labels == 7]
        assert row_hashes(split.train_normal) <= row_hashes(sevens)


def test_bad_classes_and_gamma_are_clear_errors(digits):
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*mnist.*folder"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="normal_class 10 is out of range"):
        one_class_split(digits, 10)
    with pytest.raises(ValueError, match="normal_class -1 is out of range"):
        one_class_split(digits, -1)
    with pytest.raises(ValueError, match="contains the normal class 2"):
        one_class_split(digits, 2, 0.1, anomaly_classes=(1, 2))
    with pytest.raises(ValueError, match=r"anomaly_classes \[12\] out of range"):
        one_class_split(digits, 2, 0.1, anomaly_classes=(1, 12))
    with pytest.raises(ValueError, match="gamma"):
        one_class_split(digits, 2, 1.0)
    with pytest.raises(ValueError, match="only 127 training images"):
        one_class_split(digits, 2, 0.9, anomaly_classes=(1,))
    with pytest.raises(ValueError, match="rounds to 0 anomalies"):
        one_class_split(digits, 2, 0.001)
    with pytest.raises(ValueError, match="gamma"):
        DataConfig(gamma=1.0)


def test_load_split_from_config():
    split = load_split(DataConfig(dataset="digits", normal_class=1, gamma=0.05), seed=0)
    assert len(split.train_anomaly) == anomaly_count(len(split.train_normal), 0.05) == 7


# ---------------------------------------------------------------- the sampler

def test_at_least_32_anomalies_per_batch():
    assert batch_composition(256, 0.0) == (256, 0)
    assert batch_composition(256, 0.01) == (224, 32)   # round(2.56) = 3 -> raised to 32
    assert batch_composition(256, 0.2) == (205, 51)    # round(51.2) = 51
    for gamma in PAPER_GAMMAS:
        bn, ba = batch_composition(256, gamma)
        assert ba >= 32 and bn + ba == 256
        _, anomaly_idx = epoch_indices(6000, anomaly_count(6000, gamma), 256, gamma, 0, 0)
        assert anomaly_idx.shape[1] == ba >= 32
    with pytest.raises(ValueError, match="no room for normals"):
        batch_composition(32, 0.05)


def test_batch_shapes_fixed_and_every_normal_seen_each_epoch():
    cases = ((6000, 60, 0.01), (124, 32, 0.2), (1000, 0, 0.0), (224, 8, 0.03))
    for n_normal, n_anomaly, gamma in cases:
        bn, ba = batch_composition(256, gamma)
        for epoch in range(3):
            normal, anomaly = epoch_indices(n_normal, n_anomaly, 256, gamma, seed=0, epoch=epoch)
            steps = -(-n_normal // bn)
            assert normal.shape == (steps, bn) and anomaly.shape == (steps, ba)
            assert normal.dtype == anomaly.dtype == np.int32
            assert set(normal.ravel().tolist()) == set(range(n_normal))  # every normal, none else
            if ba:
                used = np.bincount(anomaly.ravel(), minlength=n_anomaly)
                # Re-sampled evenly: no anomaly used twice more than another.
                assert used.max() - used.min() <= 1 and anomaly.max() < n_anomaly


def test_sampler_is_deterministic_in_seed_and_epoch():
    args = dict(n_normal=1000, n_anomaly=50, batch_size=128, gamma=0.05)
    a = epoch_indices(**args, seed=3, epoch=1)
    b = epoch_indices(**args, seed=3, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    for other in (epoch_indices(**args, seed=3, epoch=2), epoch_indices(**args, seed=4, epoch=1)):
        assert not np.array_equal(a[0], other[0]) and not np.array_equal(a[1], other[1])


def test_gather_batch_inside_jit(digits):
    import jax

    split = one_class_split(digits, 0, gamma=0.2)
    normal_idx, anomaly_idx = epoch_indices(len(split.train_normal), len(split.train_anomaly),
                                            64, 0.2, seed=0, epoch=0, min_anomalies=8)
    normals, anomalies = jax.jit(gather_batch)(split.train_normal, split.train_anomaly,
                                               normal_idx[0], anomaly_idx[0])
    assert np.array_equal(np.asarray(normals), split.train_normal[normal_idx[0]])
    assert np.array_equal(np.asarray(anomalies), split.train_anomaly[anomaly_idx[0]])


def test_padded_batches_cover_every_test_image_once(digits):
    images = digits.test_images  # 540 = 2 * 256 + 28
    batches, mask = padded_batches(images, 256)
    assert batches.shape == (3, 256, 32, 32, 1) and mask.shape == (3, 256)
    assert mask.sum() == 540 and np.array_equal(batches[mask], images)
    assert not batches[~mask].any()
    exact, exact_mask = padded_batches(images[:512], 256)
    assert exact.shape[0] == 2 and exact_mask.all()
    with pytest.raises(ValueError, match="no images"):
        padded_batches(images[:0], 256)


# ---------------------------------------------------------------- image folders

def write_images(directory: Path, n: int, mode: str, size=(40, 30), fmt: str = "png", seed=0):
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            directory / f"img{i:03d}.{fmt}")


def test_folder_layout_channels_holdout_and_formats(tmp_path):
    write_images(tmp_path / "normal", 10, "L", fmt="png")
    write_images(tmp_path / "abnormal" / "scratch", 3, "L", size=(64, 64), fmt="bmp")
    (tmp_path / "abnormal" / "README.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = load_dataset("folder", str(tmp_path), image_size=32)
    assert ds.train_images.shape == (8, 32, 32, 1)          # 20 % of 10 held out for testing
    # abnormal/'s subfolders are defect types: class k is the k-th (test labels are classes).
    assert ds.test_labels.tolist() == [0, 0, 1, 1, 1] and ds.class_names == ("normal", "scratch")
    assert not row_hashes(ds.train_images) & row_hashes(ds.test_images)
    write_images(tmp_path / "normal_test", 4, "RGB", fmt="jpg")  # one colour folder -> 3 channels
    with pytest.warns(UserWarning):
        ds = load_dataset("folder", str(tmp_path), image_size=64)
    assert ds.train_images.shape == (10, 64, 64, 3) and ds.test_images.shape == (7, 64, 64, 3)
    split = one_class_split(ds, normal_class=0)
    assert split.test_labels.sum() == 3 and len(split.train_normal) == 10


def test_folder_without_images_is_an_error(tmp_path):
    write_images(tmp_path / "normal", 3, "L")
    (tmp_path / "abnormal").mkdir()
    with pytest.raises(ValueError, match="abnormal holds no image"):
        load_folder(tmp_path / "normal", tmp_path / "abnormal")
    (tmp_path / "abnormal" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no image pillow can read"):
        load_dataset("folder", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(tmp_path / "missing", tmp_path / "abnormal")


def test_tfds_not_installed_says_which_extra_and_how_to_use_local_files(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"(?s)pip install 'jaxad\[tfds\]'.*--data-dir.*train-images-idx3-ubyte"):
        load_dataset("mnist", str(tmp_path), source="tfds")
