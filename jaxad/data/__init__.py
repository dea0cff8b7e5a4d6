"""The data layer: datasets as arrays, one-class splits with gamma anomalies, the batch sampler.

    ds = load_dataset("mnist", data_dir="DIR")  # DIR: the raw IDX files; float32 NHWC in [-1, 1]
    split = one_class_split(ds, normal_class=3, gamma=0.05, seed=0)
    normal_idx, anomaly_idx = epoch_indices(len(split.train_normal), len(split.train_anomaly),
                                            batch_size=256, gamma=0.05, seed=0, epoch=0)
    test_batches, mask = padded_batches(split.test_images, 256)
"""

from jaxad.data.arrays import Dataset, make_dataset, resize_images, to_unit_range
from jaxad.data.cifar import read_cifar_dataset
from jaxad.data.digits import read_digits
from jaxad.data.folder import load_folder, load_images
from jaxad.data.idx import read_idx, read_idx_dataset
from jaxad.data.sources import DATASETS, DatasetInfo, channels_of, load_dataset, raw_files_present
from jaxad.data.split import (
    MIN_ANOMALIES_PER_BATCH,
    OneClassSplit,
    anomaly_count,
    batch_composition,
    check_one_class_split,
    epoch_indices,
    gather_batch,
    load_split,
    one_class_split,
    padded_batches,
    split_of_config,
    steps_per_epoch,
)
from jaxad.data.tfds_source import read_tfds_dataset, tfds_original_order, tfds_records_to_arrays

__all__ = [
    "DATASETS", "Dataset", "DatasetInfo", "MIN_ANOMALIES_PER_BATCH", "OneClassSplit",
    "anomaly_count", "batch_composition", "channels_of", "check_one_class_split", "epoch_indices", "gather_batch",
    "load_dataset", "load_folder", "load_images", "load_split", "make_dataset", "one_class_split", "padded_batches",
    "raw_files_present", "read_cifar_dataset", "read_digits", "read_idx", "read_idx_dataset",
    "read_tfds_dataset", "resize_images", "split_of_config", "steps_per_epoch", "tfds_original_order",
    "tfds_records_to_arrays", "to_unit_range",
]
