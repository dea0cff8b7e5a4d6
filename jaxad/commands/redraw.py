"""Draw a benchmark's pictures again from its saved runs (jaxad-redraw).

    jaxad-redraw results/ablations/clip3_gamma0 [more output dirs ...]

Redraws auroc_per_epoch.png (from each finished run's history.json), score_boxes.png and
roc.png (from the first seed's and gamma's scores.npz) in each benchmark output directory
(``jaxad-run --out``); its tables and runs are left as they are. The per-run pictures
(reconstructions.png, score_extremes.png) need the run's final checkpoint or the test
images, which an output directory merged without checkpoints does not hold: ``jaxad-run``
with the benchmark's command and ``--resume`` draws the ones a finished run lacks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxad.commands import exit_with, refuse_non_benchmarks
from jaxad.grid import redraw_pictures

PROG = "jaxad-redraw"


def main(argv: list[str] | None = None) -> int:
    """Redraw the pictures of the output directories ``argv`` names; the exit status (2: one
    of them is not a benchmark output directory, and nothing was drawn)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dirs", nargs="+", type=Path, help="benchmark output directories (jaxad-run --out)")
    args = parser.parse_args(argv)
    if refuse_non_benchmarks(args.out_dirs):
        return 2
    for out_dir in args.out_dirs:
        drawn = redraw_pictures(out_dir)
        print(f"{out_dir}: {', '.join(drawn) if drawn else 'no finished run, nothing drawn'}")
    return 0


def console() -> None:
    """The ``jaxad-redraw`` console script."""
    exit_with(main())
