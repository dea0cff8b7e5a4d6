"""Per-epoch AUROC of two or more benchmark settings side by side, one panel per normal class.

    python -m studies.compare_curves results/ablations/mnist_naive_3seeds results/ablations/ema_3seeds \
        --vs results/ablations/clip3_gamma0 --seed 0 --out clip3_curves.png

Each ``--vs`` group (the first positional group is the reference) is one or more benchmark
output directories read as one setting, so a table split over directories reads whole. Per
class and setting the plot draws the reported curve as the defaults report it (the per-epoch
label-free choice of generator, ``jaxad.analysis.label_free_choice``; the recorded ``auroc``
where a run kept one generator) as a solid line, and the live generator's as a dotted one.
Falls show where people would rather look than read: the reported curve of one setting
dropping for single epochs while the other's holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxad.analysis import label_free_choice
from jaxad.files import save_figure_atomic
from jaxad.report import pyplot


def curves(out_dirs: list[Path], seed: int, gamma: str = "0") -> dict[int, tuple[list[float], list[float]]]:
    """Normal class -> (reported curve, live G curve) of seed ``seed`` at ``gamma`` in ``out_dirs``
    (the live curve empty where the run kept one generator)."""
    found: dict[int, tuple[list[float], list[float]]] = {}
    for out_dir in out_dirs:
        for history_file in sorted(out_dir.glob(f"runs/gamma{gamma}/class*/seed{seed}/history.json")):
            history = json.loads(history_file.read_text())
            normal_class = int(history_file.parent.parent.name.removeprefix("class"))
            reported = label_free_choice(history) or [h["auroc"] for h in history]
            live = [h["auroc_live_generator"] for h in history if "auroc_live_generator" in h]
            found[normal_class] = (reported, live)
    return found


def plot(settings: dict[str, dict[int, tuple[list[float], list[float]]]], path: Path, title: str) -> None:
    """One panel per class found in any setting; a colour per setting."""
    plt = pyplot()
    classes = sorted({c for by_class in settings.values() for c in by_class})
    columns = min(5, len(classes))
    rows = -(-len(classes) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, normal_class in zip(axes.flat, classes):
        for colour, (name, by_class) in zip(colours, settings.items()):
            if normal_class not in by_class:
                continue
            reported, live = by_class[normal_class]
            ax.plot(np.arange(1, len(reported) + 1), reported, color=colour, marker=".", label=name)
            if live:
                ax.plot(np.arange(1, len(live) + 1), live, color=colour, linestyle=":", alpha=0.7,
                        label=f"{name}, live G")
        ax.axhline(50, color="grey", linewidth=0.5)
        ax.set(title=f"class {normal_class}", ylim=(0, 100), xlabel="epoch")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    axes[0][0].set_ylabel("test AUROC (%)")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", nargs="+", type=Path, help="output directories of the first setting")
    parser.add_argument("--vs", nargs="+", type=Path, action="append", required=True,
                        help="output directories of another setting (repeat for more)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gamma", default="0", help="as in the run directories' names (0, 0.05, ...)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    groups = [args.reference, *args.vs]
    for directory in (d for group in groups for d in group):
        if not (directory / "runs").is_dir():
            print(f"error: {directory} is not a benchmark output directory (no runs/ in it)", file=sys.stderr)
            return 2
    settings = {" + ".join(d.name for d in group): curves(group, args.seed, args.gamma) for group in groups}
    if not any(settings.values()):
        print(f"error: no run of seed {args.seed} at gamma {args.gamma} in those directories", file=sys.stderr)
        return 2
    plot(settings, args.out, f"seed {args.seed}, gamma {args.gamma}: solid the reported curve, dotted the live G")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
