"""Score new images with a trained run and decide each (jaxad-score, or python experiments/score.py).

    jaxad-score --run runs/mnist_naive/runs/gamma0/class3/seed0 --images my_images/ --out scored/

--images is a folder of image files (any format pillow reads; resized to the model's side) or
a .npy array already preprocessed as the models take it ((N, H, W, C) float32 in [-1, 1]).
Writes scores.csv: file, score (||x - G(x)||_2), normalized_score (score / threshold: 1.0 at
the threshold) and is_anomalous (score at or above the threshold). The threshold is the run's
label-free one (a quantile of its training normals' scores), or --threshold. With --maps,
error_maps/<name>.png shows x, G(x) and the smoothed error map over x, on the threshold's scale.
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
from jaxad.detection import Detections, decide, run_threshold, unfinished_note
from jaxad.files import save_figure_atomic, write_text_atomic
from jaxad.maps import raw_error_maps, reconstructions, smooth, threshold_level
from jaxad.report import pyplot, show_image
from jaxad.loop import score
from jaxad.rundir import load_run
from jaxad.train import AGADState
from jaxad.validation import check_images

MAP_LEVEL_MAX = 2.0  # heat maps are drawn from 0 to twice the threshold's per-pixel level


def read_inputs(path: Path, image_size: int, channels: int) -> tuple[list[str], np.ndarray]:
    """The names and images at ``path``: a folder of image files, or a ``.npy`` array as stored."""
    if path.suffix == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"--images {path} does not exist")
        try:
            images = np.load(path)  # as stored: check_images then refuses uint8 pixels, not rescaled ones
        except (OSError, EOFError, ValueError) as err:
            raise ValueError(f"--images {path} is not a readable .npy array ({err or type(err).__name__})") from None
        if np.ndim(images) == 0 or len(images) == 0:
            raise ValueError(f"--images {path} holds no images (shape {np.shape(images)})")
        return [f"{path.name}[{i}]" for i in range(len(images))], images
    paths, images = load_images(path, image_size, channels)
    return [str(p.relative_to(path)) for p in paths], images


def save_error_map(path: Path, image: np.ndarray, reconstruction: np.ndarray, level: np.ndarray,
                   normalized: float, anomalous: bool) -> None:
    """A PNG of x, G(x) and x overlaid with its error map on the threshold's scale (``level``:
    1 is the per-pixel error of an image at the threshold), titled with the decision."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.4))
    show_image(axes[0], image)
    show_image(axes[1], reconstruction)
    show_image(axes[2], image)
    shown = axes[2].imshow(level, cmap="jet", alpha=0.5, vmin=0, vmax=MAP_LEVEL_MAX)
    fig.colorbar(shown, ax=axes[2], fraction=0.046, label="error / threshold level")
    verdict = "ANOMALOUS" if anomalous else "normal"
    for ax, title in zip(axes, ("x", "G(x)", f"{verdict}: {normalized:.2f} x threshold")):
        ax.set_title(title, fontsize=8, color="tab:red" if anomalous and ax is axes[2] else "black")
        ax.axis("off")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=80)
    plt.close(fig)


def check_output_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, before any work."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder (it is created if missing) for scores.csv "
                         f"and error_maps/")


def main(argv: list[str] | None = None) -> int:
    """Score the images ``argv`` names; the exit status (2 when refused)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory (holding config.json and checkpoints/)")
    p.add_argument("--images", required=True, help="a folder of images or a .npy array")
    p.add_argument("--out", required=True, help="where to write scores.csv (and error_maps/)")
    p.add_argument("--maps", action=argparse.BooleanOptionalAction, default=False,
                   help="also draw error_maps/<name>.png: x, G(x) and the smoothed error map over x (default: off)")
    p.add_argument("--threshold", type=float,
                   help="call an image anomalous when its score is at or above this (default: the run's "
                   "label-free threshold, a quantile of its training normals' scores)")
    p.add_argument("--epoch", type=lambda text: text if text in ("best", "selected") else int(text),
                   help="score with the checkpoint of this epoch, 'selected' (the label-free selected "
                   "epoch's: lowest error on training normals) or 'best' (the test-selected epoch's); "
                   "default: the last")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        check_output_folder(out)
        state, cfg = load_run(args.run, args.epoch)
        names, images = read_inputs(Path(args.images), cfg.model.image_size, cfg.model.channels)
        check_images(images, cfg.model)
        images = np.asarray(images, np.float32)
        note = unfinished_note(args.run)
        if note:
            print(f"warning: {note}", file=sys.stderr)
        threshold = ((args.threshold, "given (--threshold)") if args.threshold is not None
                     else run_threshold(args.run, state, cfg, args.epoch))
        found = decide(score(state, images), *threshold)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        write_scores(out, state, names, images, found, maps=args.maps)
    except KeyboardInterrupt:
        print(f"interrupted; each file in {out} is whole (written atomically): run the same command for "
              f"the rest", file=sys.stderr)
        return INTERRUPTED
    return 0


def scores_table(names: list[str], found: Detections) -> str:
    """``scores.csv``'s text: file, score, normalized_score, is_anomalous (0 or 1)."""
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["file", "score", "normalized_score", "is_anomalous"])
    writer.writerows((name, f"{s:.6f}", f"{n:.6f}", int(a))
                     for name, s, n, a in zip(names, found.scores, found.normalized_scores, found.is_anomalous))
    return table.getvalue()


def write_scores(out: Path, state: AGADState, names: list[str], images: np.ndarray, found: Detections,
                 maps: bool = False) -> None:
    """Write ``out/scores.csv`` and, with ``maps``, ``out/error_maps/<name>.png``."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "scores.csv", scores_table(names, found))
    print(f"scored {len(names)} images: {int(found.is_anomalous.sum())} anomalous at threshold "
          f"{found.threshold:.6g}, {found.threshold_source} -> {out / 'scores.csv'}")
    if maps:
        (out / "error_maps").mkdir(exist_ok=True)
        rebuilt = reconstructions(state, images)
        levels = threshold_level(smooth(raw_error_maps(images, rebuilt)), found.threshold, images.shape[-1])
        for i, name in enumerate(names):
            stem = Path(name).with_suffix("").as_posix().replace("/", "_").replace("[", "_").replace("]", "")
            save_error_map(out / "error_maps" / f"{stem}.png", images[i], rebuilt[i], levels[i],
                           float(found.normalized_scores[i]), bool(found.is_anomalous[i]))


def console() -> None:
    """The ``jaxad-score`` console script."""
    restart_with_fast_malloc()  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    exit_with(main())
