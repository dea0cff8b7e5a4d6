"""AGAD on a folder of images, offline, in one command (jaxad-images-demo, or
python experiments/images_demo.py).

    jaxad-images-demo                      # writes runs/images_demo/{data,run,scored}

Writes a small data set in the folder layout from sklearn's digits (clean digits normal;
digits with a drawn scratch or spot anomalous, with masks; a few scratched digits as training
anomalies: jaxad/data/demo_images.py), trains two runs on it with the runner, at gamma 0
(normals only) and at gamma = a / (n + a) (every training anomaly), prints their table, then
scores the test anomalies with the gamma > 0 run (jaxad-score --maps). Each step is a command
you can run on your own folder.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from jaxad.allocator import restart_with_fast_malloc
from jaxad.commands import exit_with
from jaxad.commands import run as run_command
from jaxad.commands import score as score_command
from jaxad.data.demo_images import DEMO_SIDE, write_demo_folder
from jaxad.data.sources import gamma_of

# Small and fast, as the digits demo of jaxad-run: a few minutes on a laptop's CPU.
DEMO_FLAGS = ("--image-size", str(DEMO_SIDE), "--width", "0.25", "--batch-size", "32", "--epochs", "8",
              "--min-anomalies-per-batch", "4", "--seeds", "1")


def main(argv: list[str] | None = None) -> int:
    """Write the demo data, train on it, score its anomalies; the runner's exit status."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/images_demo", help="where to write data/, run/ and scored/ "
                   "(default %(default)s, ignored by git)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    data = write_demo_folder(out / "data")
    print(f"wrote the demo data set to {data}: normal/, normal_test/, abnormal/{{scratch,spot}}/, "
          f"abnormal_train/scratch/, ground_truth/")
    gamma = gamma_of("folder", data)
    train = ["--dataset", "folder", "--data-dir", str(data), "--gammas", "0", repr(gamma), *DEMO_FLAGS,
             "--out", str(out / "run"), "--resume"]
    if args.no_progress:
        train.append("--no-progress")
    print(f"\n$ jaxad-run {shlex.join(train)}")
    status = run_command.main(train, prog="jaxad-run")
    if status != 0:
        return status
    run_dir = out / "run" / "runs" / f"gamma{gamma:g}" / "class0" / "seed0"
    score = ["--run", str(run_dir), "--images", str(data / "abnormal"), "--out", str(out / "scored"), "--maps"]
    print(f"\n$ jaxad-score {shlex.join(score)}")
    status = score_command.main(score)
    if status == 0:
        print(f"per-image decisions: {out / 'scored' / 'scores.csv'}; heat maps: {out / 'scored' / 'error_maps'}/")
    return status


def console() -> None:
    """The ``jaxad-images-demo`` console script."""
    restart_with_fast_malloc()  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    exit_with(main(sys.argv[1:]))
