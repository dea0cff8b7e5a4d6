"""Label-free synthetic anomalies made from the training normals: jaxad's extension, not the paper's method.

At gamma 0 AGAD's anomaly branch sees only G's own reconstructions, which teach G nothing
about content (docs/fidelity-study.md). With ``DataConfig.synthetic_anomalies`` the gamma
fraction of training anomalies is made from the normals themselves instead of drawn from
other classes, so the branch learns to fail on local damage to a normal image while no
label and no anomalous image is used:

* ``cutpaste``: a rectangle cut from one normal and pasted at a random place in another
  (CutPaste, Li et al., CVPR 2021, which pastes within one image);
* ``smooth_noise``: a normal blended, inside a blob-shaped mask, with another normal turned
  upside down (after DRAEM, Zavrtanik et al., ICCV 2021, whose masks are thresholded Perlin
  noise and whose textures come from an outside texture set; here the masks are thresholded
  smooth value noise and the textures the normals, so no outside data is needed).
"""

from __future__ import annotations

import typing

import numpy as np

from jaxad.config import SyntheticAnomalies
from jaxad.data.arrays import resize_images

# The kinds ``synthesize`` makes: ``DataConfig.synthetic_anomalies``'s choices but "none" (the
# anomalies drawn from the other classes).
SYNTHETIC_KINDS: tuple[str, ...] = tuple(kind for kind in typing.get_args(SyntheticAnomalies) if kind != "none")


def cutpaste(normals: np.ndarray, count: int, rng: np.random.Generator,
             area: tuple[float, float] = (0.02, 0.15), aspect: tuple[float, float] = (0.3, 3.3)) -> np.ndarray:
    """``count`` normals each with a rectangle of another normal pasted in.

    Args:
        normals: (n, H, W, C) training normals in [-1, 1].
        count: how many images to make.
        rng: the generator every choice is drawn from.
        area: the patch's area as a fraction of the image, drawn uniformly in this range.
        aspect: its height / width, drawn log-uniformly in this range.

    Returns:
        (count, H, W, C) images of ``normals``' dtype.
    """
    n, h, w, _ = normals.shape
    targets = rng.integers(0, n, count)
    # Another image where there is one: a patch from the image itself would sit on its own content.
    sources = (targets + rng.integers(1, n, count)) % n if n > 1 else targets
    out = normals[targets].copy()
    for i in range(count):
        patch_area = rng.uniform(*area) * h * w
        ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
        ph = int(np.clip(round(np.sqrt(patch_area * ratio)), 1, h))
        pw = int(np.clip(round(np.sqrt(patch_area / ratio)), 1, w))
        sy, sx, dy, dx = (int(rng.integers(0, side - size + 1)) for side, size in ((h, ph), (w, pw)) * 2)
        out[i, dy:dy + ph, dx:dx + pw] = normals[sources[i], sy:sy + ph, sx:sx + pw]
    return out


def smooth_noise_masks(count: int, side: int, rng: np.random.Generator,
                       cells: tuple[int, ...] = (2, 4, 8), area: tuple[float, float] = (0.1, 0.4)) -> np.ndarray:
    """``count`` blob-shaped (side, side) boolean masks: uniform noise on a coarse grid of
    ``cells`` x ``cells`` (one of ``cells`` per mask), upsampled bilinearly, thresholded at
    the quantile that leaves a fraction drawn uniformly in ``area`` inside the mask."""
    masks = np.empty((count, side, side), bool)
    grid = rng.choice(cells, count)
    for g in np.unique(grid):
        chosen = np.flatnonzero(grid == g)
        coarse = rng.uniform(size=(len(chosen), g + 1, g + 1, 1)).astype(np.float32)
        noise = resize_images(coarse, side)[..., 0].reshape(len(chosen), -1)
        inside = rng.uniform(*area, len(chosen))
        ranks = np.round((1.0 - inside) * (side * side - 1)).astype(int)
        thresholds = np.sort(noise, axis=1)[np.arange(len(chosen)), ranks]
        masks[chosen] = (noise >= thresholds[:, None]).reshape(len(chosen), side, side)
    return masks


def smooth_noise(normals: np.ndarray, count: int, rng: np.random.Generator,
                 opacity: tuple[float, float] = (0.3, 1.0)) -> np.ndarray:
    """``count`` normals each blended, inside a ``smooth_noise_masks`` mask, with another
    normal turned upside down: ``x (1 - m) + m ((1 - b) x + b t)``, ``b`` drawn in ``opacity``.

    Args:
        normals: (n, H, W, C) training normals in [-1, 1], square.
        count: how many images to make.
        rng: the generator every choice is drawn from.
        opacity: the range of the blend's weight ``b`` on the texture.

    Returns:
        (count, H, W, C) images of ``normals``' dtype.
    """
    n, side = normals.shape[0], normals.shape[1]
    targets = rng.integers(0, n, count)
    textures = normals[(targets + rng.integers(1, n, count)) % n if n > 1 else targets][:, ::-1, ::-1]
    m = smooth_noise_masks(count, side, rng)[..., None]
    b = rng.uniform(*opacity, count)[:, None, None, None]
    x = normals[targets]
    return (x * (1 - m) + m * ((1 - b) * x + b * textures)).astype(normals.dtype)


def synthesize(kind: str, normals: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` synthetic anomalies of ``kind`` made from ``normals``, drawn with ``seed``.

    Args:
        kind: one of ``SYNTHETIC_KINDS``.
        normals: (n, H, W, C) training normals in [-1, 1], n >= 1.
        count: how many to make.
        seed: the seed of every random choice (the run's).

    Returns:
        (count, H, W, C) images in [-1, 1].

    Raises:
        ValueError: an unknown kind, or no normals to make them from.
    """
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"unknown synthetic anomalies {kind!r}; one of {SYNTHETIC_KINDS}")
    if len(normals) == 0:
        raise ValueError("synthetic anomalies are made from the training normals, and there are none")
    rng = np.random.default_rng([seed, SYNTHETIC_KINDS.index(kind)])
    return (cutpaste if kind == "cutpaste" else smooth_noise)(normals, count, rng)
