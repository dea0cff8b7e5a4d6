"""A small folder data set made offline from sklearn's digits: clean digits are normal, digits
with a drawn scratch or spot are anomalies, each with its mask.

    write_demo_folder("runs/images_demo/data")   # then: jaxad-run --dataset folder --data-dir ...

The layout is the folder layout (``jaxad.data.folder``): ``normal/`` and ``normal_test/``
(digits of every class, from the fixed train and test halves of ``read_digits``),
``abnormal/scratch/`` and ``abnormal/spot/``, their masks in ``ground_truth/``, and
``abnormal_train/scratch/``: a few scratched training digits, so that the run trains at
gamma > 0 and its per-defect AUROCs show a seen defect type (scratch) beside an unseen one (spot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxad.data.digits import read_digits

DEMO_SIDE = 32
DEFECTS = ("scratch", "spot")


def digit_images(images: np.ndarray, side: int = DEMO_SIDE) -> list[np.ndarray]:
    """sklearn's 8x8 digits (0..16) as uint8 images of ``side`` x ``side`` (bilinear)."""
    from PIL import Image

    return [np.asarray(Image.fromarray((d * (255 / 16)).astype(np.uint8)).resize((side, side), Image.BILINEAR))
            for d in images]


def draw_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with a defect of ``kind`` drawn in, and its mask (255 where drawn).

    scratch: a thin bright line across part of the image; spot: a grey disc.
    """
    from PIL import Image, ImageDraw

    side = image.shape[0]
    picture, mask = Image.fromarray(image), Image.new("L", (side, side), 0)
    if kind == "scratch":
        start = rng.uniform(2, side - 2, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.4, 0.7) * side
        end = np.clip(start + length * np.array([np.cos(angle), np.sin(angle)]), 1, side - 2)
        line = [tuple(start), tuple(end)]
        ImageDraw.Draw(picture).line(line, fill=255, width=2)
        ImageDraw.Draw(mask).line(line, fill=255, width=2)
    elif kind == "spot":
        x, y = rng.uniform(6, side - 6, 2)
        r = rng.uniform(2.5, 4.5)
        box = [x - r, y - r, x + r, y + r]
        ImageDraw.Draw(picture).ellipse(box, fill=int(rng.integers(110, 170)))
        ImageDraw.Draw(mask).ellipse(box, fill=255)
    else:
        raise ValueError(f"defect kind is one of {DEFECTS}, got {kind!r}")
    return np.asarray(picture), np.asarray(mask)


def write_demo_folder(root: str | Path, normals: int = 600, normal_tests: int = 100, per_defect: int = 50,
                      training_anomalies: int = 30, seed: int = 0) -> Path:
    """Write the demo data set under ``root`` (see the module docstring) as PNG files; returns ``root``.

    Args:
        root: the folder to write (created; files of an earlier demo are overwritten).
        normals: clean training digits in ``normal/``.
        normal_tests: clean test digits in ``normal_test/``.
        per_defect: test anomalies of each defect type in ``abnormal/TYPE/``.
        training_anomalies: scratched training digits in ``abnormal_train/scratch/``.
        seed: draws the digits and the defects.
    """
    from PIL import Image

    root = Path(root)
    (train, _), (test, _) = read_digits()
    rng = np.random.default_rng(seed)
    train_order, test_order = rng.permutation(len(train)), rng.permutation(len(test))
    needed = (normals + training_anomalies, normal_tests + per_defect * len(DEFECTS))
    if needed[0] > len(train) or needed[1] > len(test):
        raise ValueError(f"the digits' halves hold {len(train)} training and {len(test)} test images; "
                         f"asked for {needed[0]} and {needed[1]}")
    train_images = digit_images(train[train_order[:needed[0]]])
    test_images = digit_images(test[test_order[:needed[1]]])

    def save(path: Path, pixels: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)

    for i, image in enumerate(train_images[:normals]):
        save(root / "normal" / f"{i:04d}.png", image)
    for i, image in enumerate(train_images[normals:]):
        save(root / "abnormal_train" / "scratch" / f"{i:04d}.png", draw_defect(image, "scratch", rng)[0])
    for i, image in enumerate(test_images[:normal_tests]):
        save(root / "normal_test" / f"{i:04d}.png", image)
    for k, kind in enumerate(DEFECTS):
        start = normal_tests + k * per_defect
        for i, image in enumerate(test_images[start:start + per_defect]):
            picture, mask = draw_defect(image, kind, rng)
            save(root / "abnormal" / kind / f"{i:04d}.png", picture)
            save(root / "ground_truth" / kind / f"{i:04d}_mask.png", mask)
    return root
