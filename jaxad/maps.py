"""Anomaly maps: where in an image the generator fails, |x - G(x)| per pixel, smoothed.

A pixel's raw error is the root mean square over channels of x - G(x), so that an image's
score ``||x - G(x)||_2`` is ``sqrt(C * sum of the squared raw errors)``. The maps that pixel
metrics read and heat maps show are smoothed with a Gaussian of ``smoothing_sigma(side)``
pixels: 4 at side 256, scaled with the side (as anomalib smooths PaDiM's and PatchCore's
maps at 256), so that a map marks regions rather than single noisy pixels.
``threshold_level`` puts a map on the scale of an image threshold: 1 is the per-pixel error
that, spread evenly over an image, would give it a score at the threshold.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from jaxad import xla
from jaxad.data import padded_batches
from jaxad.train import AGADState, reconstruct
from jaxad.validation import check_state_images

MAP_BATCH = 256
SIGMA_AT_256 = 4.0

_reconstruct = xla.jit(reconstruct, static_argnames="use_batch_statistics")


def smoothing_sigma(side: int) -> float:
    """The Gaussian's sigma, in pixels, for maps of ``side`` x ``side``: 4 at 256."""
    return SIGMA_AT_256 * side / 256


def raw_error_maps(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """(N, H, W): each pixel's root mean square over channels of ``images - reconstructions``."""
    diff = np.asarray(images, np.float32) - np.asarray(reconstructions, np.float32)
    return np.sqrt(np.mean(diff * diff, axis=-1))


def smooth(maps: np.ndarray) -> np.ndarray:
    """Each (H, W) map of ``maps`` smoothed with a Gaussian of ``smoothing_sigma(H)`` pixels."""
    maps = np.asarray(maps, np.float32)
    sigma = smoothing_sigma(maps.shape[1])
    return np.stack([ndimage.gaussian_filter(m, sigma, mode="nearest") for m in maps]) if len(maps) else maps


def reconstructions(state: AGADState, images: np.ndarray, batch_size: int = MAP_BATCH) -> np.ndarray:
    """G(x) of every image, in order, with running statistics (as ``jaxad.score`` scores: an
    image's reconstruction does not depend on the other images in its batch)."""
    check_state_images(state, images)
    images = np.asarray(images, np.float32)
    if not len(images):
        return images
    batches, mask = padded_batches(images, batch_size)
    return np.concatenate([np.asarray(_reconstruct(state, b)) for b in batches])[mask.reshape(-1)]


def error_maps(state: AGADState, images: np.ndarray, batch_size: int = MAP_BATCH) -> np.ndarray:
    """Smoothed anomaly maps (N, H, W) of ``images`` under the model ``state`` scores with."""
    return smooth(raw_error_maps(images, reconstructions(state, images, batch_size)))


def threshold_level(maps: np.ndarray, threshold: float, channels: int) -> np.ndarray:
    """``maps`` divided by the per-pixel error of an image at ``threshold``, ``threshold /
    sqrt(channels * H * W)``: 1 where a pixel fails as much as a whole image at the threshold
    would, evenly; above 1 where it fails more."""
    maps = np.asarray(maps, np.float32)
    per_pixel = threshold / np.sqrt(channels * maps.shape[-2] * maps.shape[-1])
    return maps / max(per_pixel, 1e-12)
