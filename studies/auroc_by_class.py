"""AUROC of a finished run's final scores, normals against each anomaly class alone.

    python -m studies.auroc_by_class RUN_DIR [RUN_DIR ...]

Reads each run's ``scores.npz`` (the final epoch's test scores, with every test image's class)
and ``config.json``, and prints one markdown row per run: the AUROC over all anomalies, then per
anomaly class. Classes the run drew no training anomalies from (``--anomaly-classes`` left them
out; at gamma 0, all of them) are marked "unseen": whether a model that learned to fail on its
training anomalies also fails on other kinds of anomaly is what those columns say.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxad.metrics import auroc, auroc_by_anomaly_class


def run_row(run_dir: Path) -> tuple[dict[int, float], float, set[int]]:
    """(AUROC per anomaly class, AUROC over all, the classes training anomalies came from)."""
    with np.load(run_dir / "scores.npz") as z:
        labels, scores, classes = z["labels"], z["scores"], z["classes"]
    data = json.loads((run_dir / "config.json").read_text())["data"]
    anomaly_classes = set(np.unique(classes[labels == 1]).tolist())
    if data["gamma"] == 0:
        seen = set()
    elif data.get("anomaly_classes") is None:
        seen = anomaly_classes
    else:
        seen = set(data["anomaly_classes"])
    return auroc_by_anomaly_class(labels, scores, classes), auroc(labels, scores), seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    unfinished = [str(run_dir) for run_dir in args.run_dirs if not (run_dir / "scores.npz").exists()]
    if unfinished:  # scores.npz is written when a run ends well: one still training, or failed, has none
        parser.error("no scores.npz (not a finished run, or its training failed): " + ", ".join(unfinished))
    rows = [(run_dir, *run_row(run_dir)) for run_dir in args.run_dirs]
    columns = sorted({c for _, per_class, _, _ in rows for c in per_class})
    print("| run | all | " + " | ".join(str(c) for c in columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for run_dir, per_class, overall, seen in rows:
        cells = [f"{per_class[c]:.1f}" + ("" if c in seen else " (unseen)") if c in per_class else "—"
                 for c in columns]
        print(f"| {run_dir} | {overall:.1f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
