"""Run the paper's one-class benchmark from one command (jaxad-run, or python experiments/run.py).

    jaxad-run                                     # a few-minute demo on sklearn's digits
    jaxad-run --dataset mnist --backbone naive --data-dir DIR   # DIR: the raw MNIST IDX files
    jaxad-run --dataset cifar10 --backbone unetpp --gammas 0 0.01 0.05 --source tfds --resume
    jaxad-run --dataset folder --data-dir DIR --image-size 64 --seeds 1   # your own images
    jaxad-run --dataset mvtec --data-dir DIR --category bottle --image-size 128 --seeds 1
    jaxad-run --config runs/x/runs/gamma0/class3/seed0/config.json         # repeat a run

Every (normal class, gamma, seed) is one run; results.{json,csv,md} and plots are written to
--out (default runs/<dataset>_<backbone>, which git ignores) after each run. Interrupt at any
time; --resume continues. Every field of the configs in jaxad/config.py is a flag below, with
its default there; the grid flags (--classes, --gammas, --seeds) stand for normal_class,
gamma and seed. --config starts from a run's saved config.json instead of the defaults. The
options, the data and the reported numbers: docs/benchmarks.md; why the defaults that go
beyond the paper: docs/fidelity-study.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from jaxad.allocator import restart_with_fast_malloc
from jaxad.commands import FILE_ERROR, INTERRUPTED, exit_with, os_error_line, quiet_background_write_errors
from jaxad.grid import BenchmarkMismatchError, BenchmarkSpec, device_summary, finished_runs, merge_runs, run_benchmark
from jaxad.checkpoint import KEEP_RECENT, check_keep_recent
from jaxad.cli import add_config_flags, config_changes, flag_words
from jaxad.config import ExperimentConfig
from jaxad.data import DATASETS, channels_of
from jaxad.data.sources import IMAGE_FOLDERS, gamma_of
from jaxad.files import read_json
from jaxad.models import BACKBONES

# With no --dataset: a small, fast setting on the embedded digits (a demo, not the paper's).
DEMO_DATASET = "digits"
DEMO = {"train.epochs": 30, "train.batch_size": 32, "model.width": 0.25}
SEEDS, DEMO_SEEDS = 3, 1
# Config fields the benchmark grid sets run by run (--classes, --gammas, --seeds), and --dataset.
GRID_FIELDS = ("dataset", "normal_class", "gamma", "seed")
PROG = "python experiments/run.py"


def keep_count(text: str) -> int | None:
    """``--keep-checkpoints``: a whole number >= 1, or ``all`` (None)."""
    if text == "all":
        return None
    try:
        value = int(text)
        check_keep_recent(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a whole number of epochs, at least 1, or all; got {text!r}") from None
    return value


def parser() -> argparse.ArgumentParser:
    """The runner's flags: the benchmark grid and the run's handling by hand, the configs generated."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo = ", ".join(f"{key.split('.')[1]} {value}" for key, value in DEMO.items())
    p.add_argument("--dataset", choices=tuple(DATASETS),
                   help=f"default: the {DEMO_DATASET} demo ({DEMO_SEEDS} seed, {demo})")
    p.add_argument("--classes", type=int, nargs="+", help="normal classes (default: all)")
    p.add_argument("--seeds", type=int, help=f"seeds per setting (default {SEEDS}; demo {DEMO_SEEDS})")
    p.add_argument("--gammas", type=float, nargs="+",
                   help="anomaly fractions (default 0; for image folders with abnormal_train/, a / (n + a): "
                   "every training anomaly)")
    p.add_argument("--config", metavar="FILE",
                   help="start from a saved config.json (a run's) instead of the defaults: it repeats that run; "
                   "flags given beside it change its fields")
    p.add_argument("--tensorboard", action="store_true",
                   help="write each run's epochs as TensorBoard scalars under OUT/tensorboard/ "
                   "(pip install 'jaxad[tensorboard]')")
    p.add_argument("--out", help="output directory (default runs/<dataset>_<backbone>, ignored by git)")
    p.add_argument("--resume", action="store_true",
                   help="continue the benchmark in --out, or grow it (more --seeds, --classes or --gammas)")
    p.add_argument("--keep-checkpoints", type=keep_count, default=KEEP_RECENT, metavar="N|all",
                   help="checkpoints of each run's latest N epochs to keep, beside its test-selected "
                   "and its label-free selected epoch's (default %(default)s; all = every epoch)")
    p.add_argument("--devices", type=int, default=0, help="data-parallel devices (0 = all local)")
    p.add_argument("--models-at-once", action="store_true",
                   help="train the seeds of each (class, gamma) together, vmapped in one step")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--merge-from", nargs="+", metavar="DIR",
                   help="train nothing: copy this benchmark's finished runs from these output directories "
                   "(e.g. one per machine) into --out, checking each run's config, and write the reports")
    p.add_argument("--merge-without-checkpoints", action="store_true",
                   help="with --merge-from: leave the runs' checkpoints behind (e.g. to commit the results)")
    add_config_flags(p, skip=GRID_FIELDS, choices={"backbone": tuple(BACKBONES)})
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The runner's command line, parsed (``argv`` None: ``sys.argv[1:]``)."""
    return parser().parse_args(argv)


def saved_config(path: str | Path) -> ExperimentConfig:
    """The configuration in a saved ``config.json`` (a run directory's), or an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config {path} does not exist: give a run's config.json "
                                f"(OUT/runs/gamma*/class*/seed*/config.json)")
    saved = read_json(path)
    try:
        return ExperimentConfig.from_dict(saved)
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # from_dict names the field
        raise ValueError(f"--config {path} is not a jaxad config.json ({err})") from None


def base_config(args: argparse.Namespace) -> ExperimentConfig:
    """The configuration every run of the benchmark shares: the dataclass defaults (or the
    demo's, or ``--config``'s file), the flags given, and the dataset's channels from its
    registry entry (image folders: from their files)."""
    saved = saved_config(args.config) if args.config else None
    dataset = args.dataset or (saved.data.dataset if saved else DEMO_DATASET)
    demo = DEMO if args.dataset is None and saved is None else {}
    changes = {**demo, **config_changes(args, skip=GRID_FIELDS)}
    start = saved or ExperimentConfig()
    if saved is not None and dataset != saved.data.dataset:  # its data fields describe another dataset
        start = start.replace(**{"data.data_dir": None, "data.category": None})
    data_dir = changes.get("data.data_dir", start.data.data_dir)
    category = changes.get("data.category", start.data.category)
    channels = channels_of(dataset, data_dir, category)
    if changes.setdefault("model.channels", channels) != channels:
        raise ValueError(f"--channels {changes['model.channels']} but {dataset}'s images have {channels}; "
                         f"leave --channels out to take the dataset's")
    return start.replace(**{"data.dataset": dataset, **changes})


def requested_backbone(argv: list[str] | None = None) -> str | None:
    """The generator a command line asks the runner to train, read before anything is loaded.

    Args:
        argv: the runner's arguments (None: ``sys.argv[1:]``).

    Returns:
        ``--backbone``, or that of ``--config``'s file, or the default; None when the line
        names a configuration that cannot be read (``main`` then says why).
    """
    try:
        return base_config(parse_args(argv)).model.backbone
    except (ValueError, FileNotFoundError, OSError):
        return None


def build_spec(args: argparse.Namespace) -> BenchmarkSpec:
    """The benchmark the command line asks for; a ``ValueError`` or ``FileNotFoundError`` says
    what is wrong, before any data is loaded or any work done."""
    base = base_config(args)
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds is how many seeds to run per setting, at least 1; got {args.seeds}")
    data = base.data
    if args.config:  # the saved run's grid point, unless flags name others
        saved = saved_config(args.config)
        classes = tuple(args.classes or (saved.data.normal_class,))
        gammas = tuple(args.gammas or (saved.data.gamma,))
        seeds = tuple(range(args.seeds)) if args.seeds is not None else (saved.seed,)
        return BenchmarkSpec(base, classes, gammas, seeds)
    classes = tuple(args.classes) if args.classes else tuple(range(DATASETS[data.dataset].protocol_classes))
    if data.dataset in IMAGE_FOLDERS and classes != (0,):
        raise ValueError(f"--classes {' '.join(map(str, classes))}: an image folder data set has one normal class, "
                         f"0 (its normal images); leave --classes out")
    data_gamma = gamma_of(data.dataset, data.data_dir, data.category)
    gammas = tuple(args.gammas) if args.gammas else (data_gamma,)
    if data.dataset in IMAGE_FOLDERS and any(g > 0 for g in gammas) and data_gamma == 0:
        raise ValueError(f"--gammas {' '.join(map(str, gammas))}: gamma > 0 trains on labelled anomalies, and "
                         f"{data.data_dir} has none: put them in {Path(data.data_dir or 'DIR') / 'abnormal_train'}/")
    seeds = args.seeds if args.seeds is not None else (DEMO_SEEDS if args.dataset is None else SEEDS)
    return BenchmarkSpec(base, classes, gammas, tuple(range(seeds)))


def output_dir(args: argparse.Namespace, spec: BenchmarkSpec) -> Path:
    """--out, or ``runs/<dataset>_<backbone>``: outside the committed ``results/``, and ignored by
    git (``/runs/`` in .gitignore), so the demo leaves a clone clean."""
    data = spec.base.data
    name = data.dataset if data.category is None else f"{data.dataset}_{data.category}"
    return Path(args.out or f"runs/{name}_{spec.base.model.backbone}")


def resume_command(command: str, args: argparse.Namespace) -> str:
    """The command that continues an interrupted benchmark: the same one, with ``--resume``."""
    return command if args.resume else f"{command} --resume"


def without_merge_flags(argv: list[str]) -> list[str]:
    """The command line without ``--merge-from DIR ...`` and ``--merge-without-checkpoints``: what
    makes the benchmark's runs, which its ``results.md`` gives to reproduce them."""
    kept, skipping = [], False
    for arg in argv:
        if arg.startswith("--merge-from"):
            skipping = "=" not in arg  # --merge-from=DIR takes one directory in the same word
            continue
        if skipping and not arg.startswith("-"):
            continue
        skipping = False
        if arg != "--merge-without-checkpoints":
            kept.append(arg)
    return kept


def merge(args: argparse.Namespace, spec: BenchmarkSpec, out: Path, command: str) -> int:
    """``--merge-from``: copy the finished runs in, write the reports, say what is left to train."""
    try:
        copied = merge_runs(spec, out, args.merge_from, checkpoints=not args.merge_without_checkpoints,
                            command=command)
    except OSError as err:
        if err.errno is None:  # a refusal of a path given (raised by jaxad, not the system)
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"error: {os_error_line(err)}, then run the same command again (the runs copied are whole)",
              file=sys.stderr)
        return FILE_ERROR
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    done, planned = finished_runs(spec, out), len(spec.runs())
    print(f"copied {len(copied)} run(s) into {out}; {done} of {planned} runs of the benchmark are finished")
    if done < planned:
        print(f"train the rest with: {resume_command(command, args)}")
    if (out / "results.md").exists():
        print((out / "results.md").read_text())
    return 0


def report_failures(rows: list[dict]) -> int:
    """The exit status: 0 when every run finished, 1 (naming the failed runs) when any failed."""
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        return 0
    print(f"error: {len(failed)} of {len(rows)} run(s) failed:", file=sys.stderr)
    for row in failed:
        print(f"  {row['run_dir']}: {row.get('error', 'see its result.json')}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run the benchmark ``argv`` asks for; the exit status (2 refused, 1 a run failed, 130
    interrupted). ``prog`` is how the command is spelled in results.md and the resume hint."""
    args = parse_args(argv)
    quiet_background_write_errors()
    try:
        spec = build_spec(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = output_dir(args, spec)
    if args.dataset is None and not args.config:
        print(f"No --dataset: running the demo on sklearn's {DEMO_DATASET} "
              f"({len(spec.classes)} classes, width {spec.base.model.width}, "
              f"{spec.base.train.epochs} epochs, batch {spec.base.train.batch_size}).")
    argv = list(argv if argv is not None else sys.argv[1:])
    if args.merge_without_checkpoints and not args.merge_from:
        print("error: --merge-without-checkpoints applies to --merge-from DIR ...; give both", file=sys.stderr)
        return 2
    if args.merge_from:
        return merge(args, spec, out, f"{prog} " + " ".join(shlex.quote(a) for a in without_merge_flags(argv)))
    data = spec.base.data
    if data.dataset in IMAGE_FOLDERS and not args.gammas and not args.config and spec.gammas != (0.0,):
        print(f"{data.data_dir} has training anomalies (abnormal_train/): gamma = a / (n + a) = {spec.gammas[0]:.4g}, "
              f"each run trains on all of them")
    print(f"devices: {device_summary()}; output: {out}")
    command = f"{prog} " + " ".join(shlex.quote(a) for a in argv)
    try:
        rows = run_benchmark(spec, out, resume=args.resume, devices=args.devices,
                             models_at_once=args.models_at_once, command=command.strip(),
                             progress=not args.no_progress, keep_checkpoints=args.keep_checkpoints,
                             tensorboard=args.tensorboard)
    except BenchmarkMismatchError as err:
        print(f"error: {err}", file=sys.stderr)
        words = [flag_words(name, held) for name, held, _ in err.fields]
        if words and all(w is not None for w in words):  # e.g. a default changed since it began
            print(f"to continue the benchmark there, add: {' '.join(shlex.join(w) for w in words)}",
                  file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno is None:  # a refusal of a path given (raised by jaxad, not the system)
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"error: {os_error_line(err)}, or choose another --out; then continue with: "
              f"{resume_command(command, args)} (the finished runs and the checkpoints written are kept)",
              file=sys.stderr)
        return FILE_ERROR
    except (ValueError, RuntimeError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {resume_command(command, args)}", file=sys.stderr)
        return INTERRUPTED
    if (out / "results.md").exists():
        print((out / "results.md").read_text())
    return report_failures(rows)


def console() -> None:
    """The ``jaxad-run`` console script."""
    restart_with_fast_malloc(requested_backbone())  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    exit_with(main(prog="jaxad-run"))
