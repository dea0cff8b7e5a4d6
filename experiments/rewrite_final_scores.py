"""Rewrite a finished run's final test scores (``scores.npz``, ``score_extremes.png``) from its final
checkpoint, scored as its final AUROC was: with running statistics.

    python experiments/rewrite_final_scores.py RUN_DIR [RUN_DIR ...] [--data-dir DIR]

Runs made with ``--paper-protocol`` before 59e72fe saved their final scores with test-batch
statistics instead, so ``scores.npz`` and the score plots did not match ``final_auroc``. This
rescores the final checkpoint (the generator that scored the final epoch), refuses to write
unless the scores reproduce ``result.json``'s ``final_auroc`` to 0.01 point, and rewrites the two
files. Then rerun the benchmark with ``--resume`` (or ``grid.write_reports``) for its plots.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxad import load_run, report, score
from jaxad.data import load_split
from jaxad.metrics import auroc
from jaxad.runs import save_final_scores


def rewrite(run_dir: Path, data_dir: str | None) -> float:
    """Rescore ``run_dir``'s final checkpoint and rewrite its final scores; returns the AUROC."""
    state, cfg = load_run(run_dir)
    if data_dir is not None:
        cfg = cfg.replace(**{"data.data_dir": data_dir})
    split = load_split(cfg.data, seed=cfg.seed)
    scores = score(state, split.test_images)
    value = auroc(split.test_labels, scores)
    recorded = json.loads((run_dir / "result.json").read_text())["final_auroc"]
    if abs(value - recorded) > 0.01:
        raise ValueError(f"{run_dir}: the final checkpoint scores {value:.3f}, result.json says {recorded:.3f}; "
                         f"nothing written")
    save_final_scores(run_dir, scores, split.test_labels, split.test_classes)
    report.plot_score_extremes(split.test_images, scores, split.test_labels, run_dir / "score_extremes.png")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--data-dir", help="where the dataset is now, if not where the run read it")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        print(f"{run_dir}: final AUROC {rewrite(run_dir, args.data_dir):.2f}, scores rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
