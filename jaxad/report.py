"""Benchmark tables in the paper's format, with the paper's figures beside ours, and plots.

Rows are one run each: (dataset, backbone, normal class, gamma, seed) with the final-epoch
AUROC (the headline), the test-selected best epoch's AUROC (labelled as such) and the
per-epoch history. Tables average seeds per class, then give the mean over classes and the
standard deviation among classes (SD), as the paper's Tables 2 and 9 do.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from jaxad.files import save_figure_atomic

# Paper, Table 9 (gamma = 0): per-class AUROC %, then (avg, SD among classes).
PAPER_TABLE9: dict[str, dict[str, tuple[list[float], float, float]]] = {
    "mnist": {
        "naive": ([100., 100., 99.0, 98.6, 99.5, 97.2, 99.6, 99.8, 95.8, 99.2], 99.1, 0.86),
        "unet": ([76.0, 58.6, 81.3, 93.3, 41.9, 46.8, 98.9, 45.2, 89.1, 42.8], 67.4, 21.6),
        "unetpp": ([95.5, 100., 85.4, 78.5, 91.4, 92.5, 73.6, 90.2, 89.6, 89.4], 89.4, 7.46),
    },
    "fashion_mnist": {
        "naive": ([98.2, 100., 99.1, 99.7, 99.0, 100., 97.7, 100., 99.1, 100.], 99.2, 0.75),
        "unet": ([95.5, 99.8, 99.6, 97.1, 99.9, 99.9, 93.2, 100., 99.4, 99.0], 98.3, 2.21),
        "unetpp": ([99.9, 100., 100., 99.4, 100., 100., 100., 100., 100., 100.], 99.9, 0.18),
    },
    "cifar10": {
        "naive": ([79.9, 59.1, 64.9, 60.1, 68.9, 69.8, 88.2, 61.3, 83.0, 74.3], 71.0, 9.63),
        "unet": ([99.9, 88.3, 89.8, 94.1, 99.3, 87.7, 99.8, 73.8, 99.9, 92.3], 92.5, 7.81),
        "unetpp": ([99.9, 99.5, 98.8, 98.4, 99.7, 94.7, 100., 93.2, 99.9, 98.8], 98.3, 2.26),
    },
    "cifar100": {"naive": ([], 71.6, 8.87), "unet": ([], 92.8, 11.5), "unetpp": ([], 96.3, 8.88)},
}

# Paper, Table 2: (avg AUROC, SD among classes) by gamma, for the paper's main backbones
# (naive on MNIST, UNet++ on the others).
PAPER_TABLE2: dict[str, dict[float, tuple[float, float]]] = {
    "mnist": {0.0: (99.1, 0.86), 0.01: (99.4, 0.85), 0.05: (99.9, 0.29), 0.10: (100., 0.04), 0.20: (100., 0.02)},
    "fashion_mnist": {0.0: (99.9, 0.18), 0.01: (100., 0.0), 0.05: (100., 0.0), 0.10: (100., 0.0), 0.20: (100., 0.0)},
    "cifar10": {0.0: (98.3, 2.26), 0.01: (98.6, 1.27), 0.05: (99.8, 0.25), 0.10: (99.9, 0.03), 0.20: (100., 0.0)},
}
PAPER_SEEDS = 3
PAPER_MAIN_BACKBONE = {"mnist": "naive", "fashion_mnist": "unetpp", "cifar10": "unetpp", "cifar100": "unetpp"}

CSV_FIELDS = ("dataset", "backbone", "normal_class", "gamma", "seed", "status", "final_auroc",
              "selected_auroc", "selected_epoch", "best_auroc", "best_epoch", "aupr", "f1_max", "pixel_auroc",
              "aupro", "threshold", "epochs", "d_resets",
              "final_auroc_batch_statistics", "best_auroc_batch_statistics",
              "final_auroc_batch_statistics_normal_first", "best_auroc_batch_statistics_normal_first", "run_dir")


def paper_class_auroc(dataset: str, backbone: str, gamma: float, normal_class: int) -> float | None:
    """The paper's per-class AUROC for this setting, where it publishes one (Table 9, gamma 0)."""
    if gamma != 0.0:
        return None
    per_class = PAPER_TABLE9.get(dataset, {}).get(backbone, ([], 0, 0))[0]
    return per_class[normal_class] if normal_class < len(per_class) else None


def paper_summary(dataset: str, backbone: str, gamma: float) -> tuple[float, float] | None:
    """The paper's (avg, SD) for this setting: Table 9 at gamma 0, Table 2 for its main backbones."""
    if gamma == 0.0 and backbone in PAPER_TABLE9.get(dataset, {}):
        _, avg, sd = PAPER_TABLE9[dataset][backbone]
        return avg, sd
    if PAPER_MAIN_BACKBONE.get(dataset) == backbone:
        return PAPER_TABLE2.get(dataset, {}).get(gamma)
    return None


def paper_summary_of_classes(dataset: str, backbone: str, gamma: float,
                             classes: Sequence[int]) -> tuple[float, float] | None:
    """The paper's (avg, SD among classes) over ``classes`` alone, from its per-class figures.

    Args:
        dataset: the benchmark's dataset.
        backbone: its generator.
        gamma: its anomaly fraction.
        classes: the normal classes a table shows.

    Returns:
        The mean and population SD of the paper's figures for those classes; None where the
        paper publishes no per-class figure for one of them (gamma > 0, CIFAR-100).
    """
    figures = [paper_class_auroc(dataset, backbone, gamma, c) for c in classes]
    if not figures or any(f is None for f in figures):
        return None
    return float(np.mean(figures)), float(np.std(figures))


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


# The final epoch's figures beside AUROC (jaxad.evaluation), averaged over seeds like it.
FINAL_FIGURES = {"aupr": "AUPR", "f1_max": "F1-max", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO"}


def _seed_mean(done: Sequence[dict[str, Any]], key: str) -> float | None:
    """The mean of ``key`` over finished runs; None when any lacks it (undefined, or written before)."""
    values = [r.get(key) for r in done]
    return float(np.mean(values)) if values and all(v is not None for v in values) else None


def summarise(rows: Sequence[dict[str, Any]]) -> dict[float, dict[str, Any]]:
    """Per gamma: per-class means over seeds (final, label-free selected and test-selected best,
    and the final epoch's ``FINAL_FIGURES``), avg and SD among classes. A figure a run lacks
    (runs written before it was recorded; an AUROC with no test anomaly) is None."""
    out: dict[float, dict[str, Any]] = {}
    by_gamma: dict[float, list[dict]] = defaultdict(list)
    for row in rows:
        by_gamma[float(row["gamma"])].append(row)
    for gamma, group in sorted(by_gamma.items()):
        per_class: dict[int, dict[str, Any]] = {}
        classes = sorted({int(r["normal_class"]) for r in group})
        for c in classes:
            done = [r for r in group if int(r["normal_class"]) == c and r["status"] == "complete"]
            per_class[c] = {
                "final": _seed_mean(done, "final_auroc"),
                "best": _seed_mean(done, "best_auroc"),
                "selected": _seed_mean(done, "selected_auroc"),
                **{key: _seed_mean(done, key) for key in FINAL_FIGURES},
                "seeds": len(done),
                "failed": sum(1 for r in group if int(r["normal_class"]) == c and r["status"] == "failed"),
            }
        finals = [v["final"] for v in per_class.values() if v["final"] is not None]
        bests = [v["best"] for v in per_class.values() if v["best"] is not None]
        selected = [v["selected"] for v in per_class.values() if v["selected"] is not None]
        out[gamma] = {
            "per_class": per_class,
            "avg_final": float(np.mean(finals)) if finals else None,
            "sd_final": float(np.std(finals)) if finals else None,
            "avg_selected": float(np.mean(selected)) if selected and len(selected) == len(finals) else None,
            "sd_selected": float(np.std(selected)) if selected and len(selected) == len(finals) else None,
            "avg_best": float(np.mean(bests)) if bests else None,
            "sd_best": float(np.std(bests)) if bests else None,
        }
    return out


def markdown_tables(rows: Sequence[dict[str, Any]], dataset: str, backbone: str, num_classes: int,
                    seeds_planned: int, command: str | None = None, synthetic_anomalies: str = "none") -> str:
    """``results.md``: one table per gamma (classes as columns) and a by-gamma table (Table 2).

    With ``synthetic_anomalies`` other than "none" the training anomalies were made from the
    normals: each gamma's heading says so, and no paper figure stands beside them (the paper's
    gamma > 0 draws real anomalies)."""
    summary = summarise(rows)
    synthetic = synthetic_anomalies != "none"

    def paper_summary_here(gamma: float):
        return None if synthetic and gamma > 0 else paper_summary(dataset, backbone, gamma)

    def paper_avg_sd(gamma: float, classes: list[int]):
        # (the paper's (avg, SD) over the table's classes, its stated (avg, SD) over all of them
        # when the table shows only some); None without a paper figure. Over some classes the
        # first is None where the paper prints no per-class figure (gamma > 0).
        stated = paper_summary_here(gamma)
        if stated is None:
            return None
        if len(classes) >= num_classes:
            return stated, None
        return paper_summary_of_classes(dataset, backbone, gamma, classes), stated

    lines = [f"# AGAD on {dataset}, {backbone} generator", ""]
    if command:
        lines += ["Reproduce with:", "", f"    {command}", ""]
    # Runs made before the label-free selection was recorded have none: their tables leave it out.
    any_selected = any(s["avg_selected"] is not None for s in summary.values())
    lines += ["AUROC (%). **ours (final)** is the final epoch's AUROC, the honest figure. "
              + ("**ours (label-free selected)** is each run's epoch of lowest error on training normals "
                 "(at gamma > 0 with anomalies drawn from other classes, of best separation of training "
                 "normals from them first): "
                 "honest too, as no test label chose it. " if any_selected else "")
              + "**ours (test-selected)** picks each run's best epoch on the test split, as GANomaly's "
              "code reports: it is optimistic and shown only to compare with published figures.", ""]
    partial_gammas = set()
    for gamma, s in summary.items():
        classes = sorted(s["per_class"])
        seeds = sorted({v["seeds"] for v in s["per_class"].values()})
        partial = []
        if len(classes) < num_classes:
            partial.append(f"{len(classes)} of {num_classes} classes")
        if seeds != [seeds_planned]:
            partial.append(f"seeds per class {'/'.join(map(str, seeds))} of {seeds_planned}")
        if seeds_planned < PAPER_SEEDS and dataset in PAPER_TABLE9:  # the paper's datasets only
            partial.append(f"{seeds_planned} seed(s) per class, the paper averages {PAPER_SEEDS}")
        if partial:
            partial_gammas.add(gamma)
        made = (f", synthetic anomalies ({synthetic_anomalies}): no real anomaly in training"
                if synthetic and gamma > 0 else "")
        lines.append(f"## gamma = {gamma:g}{made}" + (f" (PARTIAL: {', '.join(partial)})" if partial else ""))
        lines.append("")
        lines.append("| | " + " | ".join(str(c) for c in classes) + " | avg | SD |")
        lines.append("|---" * (len(classes) + 3) + "|")
        lines.append("| ours (final) | " + " | ".join(_fmt(s["per_class"][c]["final"]) for c in classes)
                     + f" | {_fmt(s['avg_final'])} | {_fmt(s['sd_final'], 2)} |")
        if any(s["per_class"][c]["selected"] is not None for c in classes):
            lines.append("| ours (label-free selected) | "
                         + " | ".join(_fmt(s["per_class"][c]["selected"]) for c in classes)
                         + f" | {_fmt(s['avg_selected'])} | {_fmt(s['sd_selected'], 2)} |")
        lines.append("| ours (test-selected) | " + " | ".join(_fmt(s["per_class"][c]["best"]) for c in classes)
                     + f" | {_fmt(s['avg_best'])} | {_fmt(s['sd_best'], 2)} |")
        paper = paper_avg_sd(gamma, classes)
        if paper is not None:
            same, stated = paper
            cells = [_fmt(paper_class_auroc(dataset, backbone, gamma, c)) for c in classes]
            avg, sd = _fmt(same and same[0]), _fmt(same and same[1], 2)
            if stated:
                avg, sd = f"{avg} (all {num_classes}: {_fmt(stated[0])})", f"{sd} (all {num_classes}: {_fmt(stated[1], 2)})"
            lines.append("| paper | " + " | ".join(cells) + f" | {avg} | {sd} |")
        figures = [key for key in FINAL_FIGURES if any(s["per_class"][c][key] is not None for c in classes)]
        if figures:
            lines += ["", "Final epoch, beside AUROC (%; pixel figures of the smoothed error maps |x - G(x)|):", "",
                      "| | " + " | ".join(str(c) for c in classes) + " |", "|---" * (len(classes) + 1) + "|"]
            lines += ["| " + FINAL_FIGURES[key] + " | " + " | ".join(_fmt(s["per_class"][c][key]) for c in classes)
                      + " |" for key in figures]
        if all(s["per_class"][c]["final"] is None and s["per_class"][c]["seeds"] for c in classes):
            lines += ["", "No AUROC can be computed: the test split holds no anomalies (a folder without "
                      "abnormal/). The runs were trained and scored; each run's label-free threshold is in "
                      "its result.json and results.json."]
        failed = sum(v["failed"] for v in s["per_class"].values())
        if failed:
            lines.append("")
            lines.append(f"{failed} run(s) failed (a non-finite loss or score); see their result.json.")
        lines.append("")
    if len(summary) > 1 or any(paper_summary_here(g) for g in summary):
        lines += ["## By gamma (avg +- SD among classes; paper Table 2)", "",
                  "| gamma | ours (final) | " + ("ours (label-free selected) | " if any_selected else "")
                  + "ours (test-selected) | paper |",
                  "|---" * (5 if any_selected else 4) + "|"]
        for gamma, s in summary.items():
            paper = paper_avg_sd(gamma, sorted(s["per_class"]))
            label = f"{gamma:g}" + (" (PARTIAL)" if gamma in partial_gammas else "")
            selected = (f"{_fmt(s['avg_selected'])} +- {_fmt(s['sd_selected'], 2)} | "
                        if s["avg_selected"] is not None else "— | ") if any_selected else ""
            lines.append(f"| {label} | {_fmt(s['avg_final'])} +- {_fmt(s['sd_final'], 2)} | {selected}"
                         f"{_fmt(s['avg_best'])} +- {_fmt(s['sd_best'], 2)} | "
                         + (_paper_by_gamma(*paper, num_classes) if paper else "—") + " |")
        lines.append("")
    return "\n".join(lines)


def _paper_by_gamma(same: tuple[float, float] | None, stated: tuple[float, float] | None, num_classes: int) -> str:
    text = f"{_fmt(same[0])} +- {_fmt(same[1], 2)}" if same else "—"
    return text + (f" (all {num_classes}: {_fmt(stated[0])} +- {_fmt(stated[1], 2)})" if stated else "")


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """``results.csv``: one row per run."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k) for k in CSV_FIELDS})
    return buffer.getvalue()


# ---- plots -------------------------------------------------------------------------------------

def pyplot() -> ModuleType:
    """matplotlib.pyplot on the non-interactive Agg backend (plots go to files; no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_auroc_per_epoch(histories: dict[tuple[float, int], list[list[dict]]], path: Path) -> None:
    """AUROC per epoch per normal class, mean over seeds, one panel per gamma (paper Fig. 6)."""
    plt = pyplot()
    gammas = sorted({g for g, _ in histories})
    fig, axes = plt.subplots(1, len(gammas), figsize=(5 * len(gammas), 4), squeeze=False)
    for ax, gamma in zip(axes[0], gammas):
        for (g, c), runs in sorted(histories.items()):
            if g != gamma or not runs:
                continue
            length = min(len(h) for h in runs)
            curve = np.mean([[e["auroc"] for e in h[:length]] for h in runs], axis=0)
            ax.plot(np.arange(1, length + 1), curve, marker=".", label=f"class {c}")
        ax.set(title=f"gamma = {gamma:g}", xlabel="epoch", ylabel="test AUROC (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def plot_score_boxes(scores: dict[int, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Scores of normal vs anomalous test images per normal class (paper Fig. 4)."""
    plt = pyplot()
    classes = sorted(scores)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(classes)), 4))
    data, positions, colours = [], [], []
    for i, c in enumerate(classes):
        s, labels = scores[c]
        data += [s[labels == 0], s[labels == 1]]
        positions += [3 * i, 3 * i + 1]
        colours += ["tab:blue", "tab:red"]
    boxes = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True, showfliers=False)
    for patch, colour in zip(boxes["boxes"], colours):
        patch.set_facecolor(colour)
        patch.set_alpha(0.5)
    ax.set_xticks([3 * i + 0.5 for i in range(len(classes))], [str(c) for c in classes])
    ax.set(xlabel="normal class", ylabel="anomaly score ||x - G(x)||_2",
           title="test scores: normal (blue) vs anomalous (red)")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def plot_roc_curves(curves: dict[int, tuple[np.ndarray, np.ndarray, float]], path: Path) -> None:
    """ROC curve per normal class (one seed)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for c, (fpr, tpr, area) in sorted(curves.items()):
        ax.plot(fpr, tpr, label=f"class {c}: {area:.1f}")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (AUROC %)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def plot_reconstructions(normal: np.ndarray, normal_rec: np.ndarray, anomalous: np.ndarray,
                         anomalous_rec: np.ndarray, path: Path) -> None:
    """Inputs beside reconstructions, normal and anomalous test images (paper Fig. 2)."""
    plt = pyplot()
    rows = [("normal", normal), ("G(normal)", normal_rec), ("anomalous", anomalous),
            ("G(anomalous)", anomalous_rec)]
    n = max(len(normal), len(anomalous))
    fig, axes = plt.subplots(4, n, figsize=(1.1 * n, 4.6), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for i in range(n):
            ax = axes[r][i]
            ax.axis("off")
            if i < len(images):
                show_image(ax, images[i])
        axes[r][0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def score_extremes(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``count`` highest scores (most anomalous first) and the ``count`` lowest
    (most normal first). Ties keep the data order, so the choice is reproducible."""
    scores = np.asarray(scores)
    return np.argsort(-scores, kind="stable")[:count], np.argsort(scores, kind="stable")[:count]


def plot_score_extremes(images: np.ndarray, scores: np.ndarray, labels: np.ndarray, path: Path,
                        count: int = 8) -> None:
    """Test images at the ends of the score ranking, each titled with its score and marked A
    (a true anomaly) or N (normal). Rows: the most and the least anomalous overall, then the
    worst errors: the normals scored highest (false alarms) and the anomalies scored lowest
    (misses)."""
    plt = pyplot()
    scores, labels = np.asarray(scores), np.asarray(labels)
    most, least = score_extremes(scores, count)
    normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    rows = [("most anomalous", most), ("least anomalous", least),
            ("normals, highest", normal[score_extremes(scores[normal], count)[0]]),
            ("anomalies, lowest", anomalous[score_extremes(scores[anomalous], count)[1]])]
    fig, axes = plt.subplots(len(rows), count, figsize=(1.1 * count, 1.45 * len(rows)), squeeze=False)
    for r, (name, chosen) in enumerate(rows):
        for i in range(count):
            ax = axes[r][i]
            ax.axis("off")
            if i < len(chosen):
                j = chosen[i]
                show_image(ax, images[j])
                ax.set_title(f"{'A' if labels[j] else 'N'} {scores[j]:.3g}", fontsize=7,
                             color="tab:red" if labels[j] else "tab:blue")
        axes[r][0].annotate(name, xy=(0, 0.5), xycoords="axes fraction", xytext=(-4, 0),
                            textcoords="offset points", ha="right", va="center", rotation=90, fontsize=6)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def show_image(ax, image: np.ndarray, cmap: str = "gray") -> None:
    """Draw a [-1, 1] NHWC image (or a single-channel map) on a matplotlib axis."""
    image = np.clip((np.asarray(image) + 1.0) / 2.0, 0.0, 1.0)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap=cmap, vmin=0, vmax=1)
