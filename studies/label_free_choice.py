"""The label-free choice of generator (``TrainConfig.pick_generator``), applied afterwards to
finished runs that kept an EMA but did not record it (run before the choice existed).

    python -m studies.label_free_choice results/mnist_naive [more benchmark output dirs ...]

For each run's final checkpoint: the mean score of up to 1,024 training normals under the
averaged and under the live generator (with the training anomalies' AUROC, what ``fit`` now
records each epoch and the choice reads first, ``jaxad.selection``), which of the two
the choice takes, and both generators' final AUROC from the run's history. Needs the data the
runs were trained on (``--data-dir DIR`` if it moved; default: where each run read it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jaxad import load_run
from jaxad.data import load_split
from jaxad.runs import scoring_candidates, training_evidence
from jaxad.selection import choose_scoring_generator


def run_row(run_dir: Path, data_dir: str | None) -> dict[str, str]:
    state, cfg = load_run(run_dir)
    history = json.loads((run_dir / "history.json").read_text())
    final = history[-1]
    data = cfg.data if data_dir is None else cfg.replace(**{"data.data_dir": data_dir}).data
    split = load_split(data, seed=cfg.seed)
    evidence = training_evidence(scoring_candidates(state), split)
    chosen = choose_scoring_generator(evidence, pick=True)
    normal_scores = {name: e["train_normal_score"] for name, e in evidence.items()}
    aurocs = {"average": final.get("auroc_average_generator", final["auroc"]),
              "live": final.get("auroc_live_generator", final["auroc"])}
    return {"run": str(run_dir), "epoch": str(len(history)),
            "normal score average": f"{normal_scores.get('average', float('nan')):.2f}",
            "normal score live": f"{normal_scores['live']:.2f}", "chosen": chosen,
            "AUROC average": f"{aurocs['average']:.1f}", "AUROC live": f"{aurocs['live']:.1f}",
            "AUROC chosen": f"{aurocs[chosen]:.1f}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dirs", nargs="+", type=Path, help="benchmark output directories (--out of run.py)")
    p.add_argument("--data-dir", help="the raw dataset files, if not where the runs read them")
    args = p.parse_args(argv)
    rows = [run_row(f.parent, args.data_dir) for d in args.out_dirs
            for f in sorted(d.glob("runs/gamma*/class*/seed*/result.json"))]
    if not rows:
        print("error: no finished run under the directories given", file=sys.stderr)
        return 2
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")
    chosen = [float(r["AUROC chosen"]) for r in rows]
    average = [float(r["AUROC average"]) for r in rows]
    live = [float(r["AUROC live"]) for r in rows]
    print(f"\nmean final AUROC over {len(rows)} runs: average {np.mean(average):.1f}, live {np.mean(live):.1f}, "
          f"chosen {np.mean(chosen):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
