"""How much the GANomaly lineage's test-time protocol moves AUROC, on finished runs.

    python -m studies.batch_layout OUT_DIR [more benchmark output dirs ...]

GANomaly and Skip-GANomaly score test images in training-mode BatchNorm (each batch
normalised by its own statistics) and build their one-class test set as the normal test
images followed by the anomalies, loaded without shuffling: most batches then hold one kind
of image only. jaxad's ``--paper-protocol`` records both layouts every epoch (runs made
before 2026-12-02 recorded the first only). This script scores each kept checkpoint of
finished runs three ways, so the part of a published figure that comes from the layout can be
measured on runs made without it:

- ``running``: running BatchNorm statistics (jaxad's honest scoring);
- ``batch, mixed``: batch statistics, the test split in its given order;
- ``batch, normal first``: batch statistics, normals first then anomalies (GANomaly's layout).

No run is changed. Needs the data the runs were trained on (``--data-dir`` if it moved).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxad import ExperimentConfig, load_run
from jaxad.checkpoint import CheckpointError
from jaxad.data import load_split
from jaxad.files import write_text_atomic
from jaxad.metrics import auroc
from jaxad.analysis import chosen_generator
from jaxad.runs import as_scored, batch_statistics_aurocs, score

LAYOUTS = ("running", "batch, mixed", "batch, normal first")


def layout_aurocs(state, images: np.ndarray, labels: np.ndarray, batch_size: int) -> dict[str, float]:
    """AUROC (%) of one model under each test-time layout."""
    batch = batch_statistics_aurocs(state, images, labels, batch_size)
    return {"running": auroc(labels, score(state, images, batch_size)),
            "batch, mixed": batch["auroc_batch_statistics"],
            "batch, normal first": batch["auroc_batch_statistics_normal_first"]}


def scoring_generator(state, history: list[dict], epoch: int):
    """The generator that scores ``epoch`` under the label-free choice (``pick_generator``):
    as the history records it (``load_run`` has applied that) or, for runs from before the
    choice was recorded, as it follows from the two generators' recorded training evidence."""
    record = history[epoch - 1]
    if "scoring_generator" in record or "train_normal_score_live_generator" not in record:
        return state
    return as_scored(state, {"scoring_generator": chosen_generator(record)})


def run_rows(run_dir: Path, data_dir: str | None, batch_size: int, kept: list[str]) -> list[dict[str, str]]:
    """One row per kept checkpoint (``final``, ``selected``, ``best``) of one run."""
    result = json.loads((run_dir / "result.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    cfg = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    data = cfg.data if data_dir is None else cfg.replace(**{"data.data_dir": data_dir}).data
    try:
        split = load_split(data, seed=cfg.seed)
    except FileNotFoundError as err:  # the data moved since the run (committed configs say DIR)
        raise FileNotFoundError(f"{err}; give the runs' data with --data-dir") from None
    rows = []
    for which in kept:
        epoch = {"final": None, "selected": "selected", "best": "best"}[which]
        try:
            state, _ = load_run(run_dir, epoch=epoch)
        except CheckpointError as error:  # runs from before a checkpoint was kept
            print(f"skipped: {error}", file=sys.stderr)
            continue
        epoch_number = result["epochs"] if which == "final" else result[f"{which}_epoch"]
        state = scoring_generator(state, history, epoch_number)
        aurocs = layout_aurocs(state, split.test_images, split.test_labels, batch_size)
        row = {"run": str(run_dir), "class": str(cfg.data.normal_class), "seed": str(cfg.seed),
               "checkpoint": which, "epoch": str(epoch_number)}
        row.update({name: f"{value:.2f}" for name, value in aurocs.items()})
        rows.append(row)
        print(" | ".join(row.values()), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dirs", nargs="+", type=Path, help="benchmark output directories (--out of run.py)")
    p.add_argument("--data-dir", help="the raw dataset files, if not where the runs read them")
    p.add_argument("--batch-size", type=int, default=256, help="test batch size (the paper's 256)")
    p.add_argument("--checkpoints", nargs="+", default=["final", "selected", "best"],
                   choices=["final", "selected", "best"], help="which kept checkpoints to score")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    run_dirs = [f.parent for d in args.out_dirs for f in sorted(d.glob("runs/gamma*/class*/seed*/result.json"))]
    if not run_dirs:
        print("error: no finished run under the directories given", file=sys.stderr)
        return 2
    try:
        rows = [row for run_dir in run_dirs for row in run_rows(run_dir, args.data_dir, args.batch_size, args.checkpoints)]
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=1))
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")
    print()
    for which in args.checkpoints:
        chosen = [r for r in rows if r["checkpoint"] == which]
        if not chosen:
            continue
        means = ", ".join(f"{name} {np.mean([float(r[name]) for r in chosen]):.1f}" for name in LAYOUTS)
        print(f"{which} ({len(chosen)} runs), mean AUROC: {means}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
