"""Input checks: what ``fit``, ``score`` and the commands refuse before any jitted code runs.

Images the networks cannot take, a split that does not fit its configuration, and losses or
scores that stopped being finite each raise with a message that says what to do
(docs/errors.md). ``jaxad.train`` re-exports the image checks.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, NamedTuple

import jax
import numpy as np

from jaxad.config import ExperimentConfig
from jaxad.data import OneClassSplit, batch_composition

if TYPE_CHECKING:
    from jaxad.train import AGADState


def check_finite(tree, what: str) -> None:
    """Raise ``FloatingPointError`` naming the first non-finite entry of a (host) pytree."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = np.asarray(leaf)
        if not np.all(np.isfinite(value)):
            name = jax.tree_util.keystr(path)
            raise FloatingPointError(f"{what}{name} is not finite (NaN or inf): {value.ravel()[:4]}")


IMAGE_RANGE_TOLERANCE = 1e-3  # how far outside [-1, 1] a pixel may lie (resampling rounding)


def check_images(images, model_cfg) -> None:
    """Refuse, before any jitted code runs, images the networks cannot take.

    ``images`` must be float (N, side, side, channels) with ``model_cfg``'s ``image_size`` and
    ``channels``, no NaN or inf, and values in [-1, 1] (within ``IMAGE_RANGE_TOLERANCE``).
    Integer pixels (uint8) and floats in [0, 255] would train and score without complaint and
    give meaningless scores, so they are refused with the conversion to apply.

        check_images(np.zeros((8, 32, 32, 1), np.float32), ModelConfig())   # passes
        check_images(np.zeros((8, 32, 32, 1), np.uint8), ModelConfig())     # ValueError
    """
    shape = tuple(np.shape(images))
    expected = (model_cfg.image_size, model_cfg.image_size, model_cfg.channels)
    if len(shape) != 4:
        one_image = " (one image: pass images[None])" if len(shape) == 3 else ""
        raise ValueError(f"images must be NHWC (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                         f"got shape {shape}{one_image}")
    if shape[3] != model_cfg.channels:
        raise ValueError(f"the model takes {model_cfg.channels}-channel images, got {shape[3]} channels "
                         f"(shape {shape}); set ModelConfig.channels to match the data")
    if shape[1:3] != expected[:2]:
        raise ValueError(f"the model takes {expected[0]}x{expected[1]} images, got {shape[1]}x{shape[2]}; "
                         f"set ModelConfig.image_size or resize the data")
    values = np.asarray(images)
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"images must be float32 in [-1, 1], got dtype {values.dtype}; convert pixels "
                         f"in [0, 255] with x.astype(np.float32) / 127.5 - 1")
    if not np.all(np.isfinite(values)):
        raise ValueError("images contain NaN or inf")
    if values.size:
        check_image_range(float(values.min()), float(values.max()))


def check_image_range(low: float, high: float) -> None:
    """Refuse images whose values span ``[low, high]`` outside [-1, 1], saying how to convert."""
    if low >= -1 - IMAGE_RANGE_TOLERANCE and high <= 1 + IMAGE_RANGE_TOLERANCE:
        return
    hint = ("they look like pixels in [0, 255]: convert with x / 127.5 - 1" if low >= 0 and high <= 255
            else "rescale them to [-1, 1]")
    raise ValueError(f"images must lie in [-1, 1], got values in [{low:.4g}, {high:.4g}]; {hint}")


class ImageShape(NamedTuple):
    """The images a state's networks take: what ``check_images`` reads from a config."""

    image_size: int
    channels: int


def check_state_images(state: AGADState, images) -> None:
    """``check_images`` against the side and channels of the networks ``state`` holds."""
    check_images(images, ImageShape(state.discriminator.image_size, state.generator.channels))


def check_split(cfg: ExperimentConfig, split: OneClassSplit) -> None:
    """Refuse a split that ``fit`` could not train and score as ``cfg`` asks.

    ``check_images`` on every array of the split, and a warning for images that look
    [0, 1]-scaled.

    Args:
        cfg: the run's configuration.
        split: the data it is to train and score on.

    Raises:
        ValueError: a batch size with no room for normals beside the anomalies gamma > 0 asks
            for, a split without training normals or test images, training anomalies that
            gamma would leave unused (gamma 0) or asks for in vain (gamma > 0, none in the
            split), or images ``check_images`` refuses.
    """
    gamma = cfg.data.gamma
    batch_composition(cfg.train.batch_size, gamma, cfg.train.min_anomalies_per_batch)
    if len(split.train_normal) == 0:
        raise ValueError("the split holds no training normals: fit trains on normal images "
                         "(OneClassSplit.train_normal, (n, H, W, C) with n >= 1)")
    anomalies = len(split.train_anomaly)
    if gamma == 0 and anomalies:
        raise ValueError(
            f"the split holds {anomalies} training anomalies but data.gamma is 0, so fit would train without "
            f"them: set data.gamma to their fraction, here {anomalies / (anomalies + len(split.train_normal)):.4g} "
            f"(cfg.replace(**{{'data.gamma': ...}})), or pass the split without them "
            f"(dataclasses.replace(split, train_anomaly=split.train_anomaly[:0]))")
    if gamma > 0 and not anomalies:
        raise ValueError(f"data.gamma is {gamma} but the split holds no training anomalies: give the split its "
                         f"anomalies (OneClassSplit.train_anomaly), or set data.gamma to 0")
    if len(split.test_images) == 0:
        raise ValueError("the split holds no test images: fit scores the test split after every epoch "
                         "(OneClassSplit.test_images, with test_labels)")
    check_images(split.train_normal, cfg.model)
    check_images(split.test_images, cfg.model)
    if len(split.train_anomaly):
        check_images(split.train_anomaly, cfg.model)
    # In [-1, 1], a whole training set with no pixel darker than mid-grey is all but unheard of;
    # [0, 1] pixels pass the range check and would train and score without complaint.
    if float(np.min(split.train_normal)) >= 0 and float(np.min(split.test_images)) >= 0:
        warnings.warn("every training and test pixel lies in [0, 1], not [-1, 1]: if the images were "
                      "scaled to [0, 1], convert them with x * 2 - 1", stacklevel=3)
