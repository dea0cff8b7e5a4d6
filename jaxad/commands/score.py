"""Score new images with a trained run (jaxad-score, or python experiments/score.py).

    jaxad-score --run runs/mnist_naive/runs/gamma0/class3/seed0 --images my_images/ --out scored/

--images is a folder of image files (any format pillow reads; resized to the model's side) or
a .npy array already preprocessed as the models take it ((N, H, W, C) float32 in [-1, 1]).
Writes scores.csv (file, score) and error_maps/<name>.png showing x, G(x) and |x - G(x)|.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from jaxad.allocator import restart_with_fast_malloc
from jaxad.checkpoint import CheckpointError
from jaxad.commands import INTERRUPTED, exit_with
from jaxad.data import load_images
from jaxad.files import save_figure_atomic, write_text_atomic
from jaxad.runs import load_run, score
from jaxad.report import pyplot, show_image
from jaxad.train import AGADState, check_images, reconstruct


def read_inputs(path: Path, image_size: int, channels: int) -> tuple[list[str], np.ndarray]:
    """The names and images at ``path``: a folder of image files, or a ``.npy`` array as stored."""
    if path.suffix == ".npy":
        images = np.load(path)  # as stored: check_images then refuses uint8 pixels, not rescaled ones
        return [f"{path.name}[{i}]" for i in range(len(images))], images
    paths, images = load_images(path, image_size, channels)
    return [str(p.relative_to(path)) for p in paths], images


def save_error_map(path: Path, image: np.ndarray, reconstruction: np.ndarray, value: float) -> None:
    """A PNG of x, G(x) and |x - G(x)| side by side, titled with the score."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(6, 2.3))
    error = np.abs(image - reconstruction).mean(axis=-1)
    show_image(axes[0], image)
    show_image(axes[1], reconstruction)
    shown = axes[2].imshow(error, cmap="inferno", vmin=0, vmax=max(float(error.max()), 1e-6))
    fig.colorbar(shown, ax=axes[2], fraction=0.046)
    for ax, title in zip(axes, ("x", "G(x)", f"|x - G(x)|, score {value:.2f}")):
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Score the images ``argv`` names; the exit status (2 when refused)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory (holding config.json and checkpoints/)")
    p.add_argument("--images", required=True, help="a folder of images or a .npy array")
    p.add_argument("--out", required=True, help="where to write scores.csv and error_maps/")
    p.add_argument("--no-maps", action="store_true", help="only the CSV")
    p.add_argument("--epoch", type=lambda text: text if text in ("best", "selected") else int(text),
                   help="score with the checkpoint of this epoch, 'selected' (the label-free selected "
                   "epoch's: lowest error on training normals) or 'best' (the test-selected epoch's); "
                   "default: the last")
    args = p.parse_args(argv)
    try:
        state, cfg = load_run(args.run, args.epoch)
        names, images = read_inputs(Path(args.images), cfg.model.image_size, cfg.model.channels)
        check_images(images, cfg.model)
        images = np.asarray(images, np.float32)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        write_scores(out, state, names, images, maps=not args.no_maps)
    except KeyboardInterrupt:
        print(f"interrupted; each file in {out} is whole (written atomically): run the same command for "
              f"the rest", file=sys.stderr)
        return INTERRUPTED
    return 0


def write_scores(out: Path, state: AGADState, names: list[str], images: np.ndarray, maps: bool = True) -> None:
    """Write ``out/scores.csv`` (file, score) and, with ``maps``, ``out/error_maps/<name>.png``."""
    # Running statistics, as the run's AUROC was scored: an image's score must not depend on
    # which other images share its batch.
    scores = score(state, images)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["file", "score"])
    writer.writerows((name, f"{value:.6f}") for name, value in zip(names, scores))
    write_text_atomic(out / "scores.csv", table.getvalue())
    if maps:
        (out / "error_maps").mkdir(exist_ok=True)
        reconstructions = np.asarray(reconstruct(state, images))
        for i, (name, value) in enumerate(zip(names, scores)):
            stem = Path(name).with_suffix("").as_posix().replace("/", "_").replace("[", "_").replace("]", "")
            save_error_map(out / "error_maps" / f"{stem}.png", images[i], reconstructions[i], float(value))
    print(f"scored {len(scores)} images -> {out / 'scores.csv'}")


def console() -> None:
    """The ``jaxad-score`` console script."""
    restart_with_fast_malloc()  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    exit_with(main())
