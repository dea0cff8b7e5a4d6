"""Run the paper's one-class benchmark from one command.

    python experiments/run.py                                   # a few-minute demo on sklearn's digits
    python experiments/run.py --dataset mnist --backbone naive --data-dir ../shared/datasets/mnist
    python experiments/run.py --dataset cifar10 --backbone unetpp --gammas 0 0.01 0.05 --resume

Every (normal class, gamma, seed) is one run; results.{json,csv,md} and plots are written to
--out (default runs/<dataset>_<backbone>, which git ignores) after each run. Interrupt at any
time; --resume continues.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from jaxad.allocator import restart_with_fast_malloc
from jaxad.benchmark import BenchmarkSpec, device_summary, run_benchmark
from jaxad.checkpoint import KEEP_RECENT, check_keep_recent
from jaxad.config import PSEUDO_ANOMALY_BN, DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from jaxad.data import DATASETS, batch_composition

# With no --dataset: a small, fast setting on the embedded digits (a demo, not the paper's).
DEMO = dict(dataset="digits", seeds=1, epochs=30, batch_size=32, width=0.25)
CHANNELS = {"mnist": 1, "fashion_mnist": 1, "digits": 1, "cifar10": 3, "cifar100": 3}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "digits": 10, "cifar10": 10, "cifar100": 20, "folder": 1}


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=[d for d in DATASETS], help="default: the digits demo")
    p.add_argument("--backbone", choices=["naive", "unet", "unetpp"], default="naive")
    p.add_argument("--classes", type=int, nargs="+", help="normal classes (default: all)")
    p.add_argument("--seeds", type=int, help="seeds per setting (default 3; demo 1)")
    p.add_argument("--gammas", type=float, nargs="+", default=[0.0], help="anomaly fractions (default 0)")
    p.add_argument("--anomaly-classes", type=int, nargs="+",
                   help="draw injected anomalies from these classes only (default: all others)")
    p.add_argument("--epochs", type=int, help="default 15 (demo 30)")
    p.add_argument("--batch-size", type=int, help="default 256 (demo 32)")
    p.add_argument("--min-anomalies-per-batch", type=int, default=TrainConfig.min_anomalies_per_batch,
                   help="with gamma > 0, anomalies in every batch at least (default %(default)s, the paper's "
                   "32 of 256; lower it for small batches, e.g. 4 for a batch of 32)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--w-adv", type=float, default=1.0)
    p.add_argument("--w-con", type=float, default=50.0)
    p.add_argument("--w-adcon", type=float, default=15.0, help="0 = the ablation without contextual "
                   "adversarial information")
    p.add_argument("--w-lat", type=float, default=5.0)
    p.add_argument("--anomaly-recon-pair", choices=["input", "pseudo"], default="input")
    p.add_argument("--pseudo-anomaly-bn", choices=list(PSEUDO_ANOMALY_BN), default=TrainConfig.pseudo_anomaly_bn,
                   help="how G(G(x)) is batch-normalised: auxiliary = AdvProp; shared = the same BN, "
                   "its own statistics; shared_no_update = that without updating running statistics; "
                   "normal_batch = with the normal batch's statistics (default: %(default)s)")
    p.add_argument("--detach-pseudo", action="store_true", help="no gradient into G(x) through G(G(x))")
    p.add_argument("--ema-decay", type=float, default=TrainConfig.ema_decay,
                   help="score with an EMA of G's weights at this decay (0 = off; default %(default)s)")
    p.add_argument("--no-freeze-bn", action="store_true", help="let true anomalies update BN statistics")
    p.add_argument("--paper-protocol", action="store_true",
                   help="also score with test-batch BatchNorm statistics, as GANomaly's code does")
    p.add_argument("--width", type=float, help="channel width factor (default 1 = the paper's nets)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--data-dir", help="raw dataset files (or a TFDS data_dir); for folder: a root "
                   "holding normal/, abnormal/ and optionally normal_test/")
    p.add_argument("--source", choices=["auto", "raw", "tfds"], default="auto")
    p.add_argument("--out", help="output directory (default runs/<dataset>_<backbone>, ignored by git)")
    p.add_argument("--resume", action="store_true", help="continue the benchmark in --out")
    p.add_argument("--keep-checkpoints", type=keep_count, default=KEEP_RECENT, metavar="N|all",
                   help="checkpoints of each run's latest N epochs to keep, beside its test-selected "
                   "epoch's (default %(default)s; all = every epoch)")
    p.add_argument("--devices", type=int, default=0, help="data-parallel devices (0 = all local)")
    p.add_argument("--models-at-once", action="store_true",
                   help="train the seeds of each (class, gamma) together, vmapped in one step")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def build_spec(args: argparse.Namespace) -> BenchmarkSpec:
    demo = args.dataset is None
    dataset = args.dataset or DEMO["dataset"]
    pick = lambda value, demo_value, default: value if value is not None else (demo_value if demo else default)
    channels = CHANNELS.get(dataset)
    if dataset == "folder":
        from jaxad.data import load_dataset
        channels = load_dataset("folder", args.data_dir, image_size=args.image_size).train_images.shape[-1]
    base = ExperimentConfig(
        model=ModelConfig(args.backbone, channels, args.image_size, pick(args.width, DEMO["width"], 1.0)),
        loss=LossConfig(args.w_adv, args.w_con, args.w_adcon, args.w_lat,
                        anomaly_recon_pair=args.anomaly_recon_pair),
        train=TrainConfig(learning_rate=args.lr, batch_size=pick(args.batch_size, DEMO["batch_size"], 256),
                          epochs=pick(args.epochs, DEMO["epochs"], 15),
                          min_anomalies_per_batch=args.min_anomalies_per_batch,
                          pseudo_anomaly_bn=args.pseudo_anomaly_bn, freeze_bn=not args.no_freeze_bn,
                          detach_pseudo=args.detach_pseudo, ema_decay=args.ema_decay),
        data=DataConfig(dataset, anomaly_classes=tuple(args.anomaly_classes) if args.anomaly_classes else None,
                        data_dir=args.data_dir, source=args.source, image_size=args.image_size),
        paper_protocol=args.paper_protocol)
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds is how many seeds to run per setting, at least 1; got {args.seeds}")
    classes = tuple(args.classes) if args.classes else tuple(range(NUM_CLASSES[dataset]))
    for gamma in args.gammas:
        DataConfig(gamma=gamma)  # refuses gamma outside [0, 1) before any work
        batch_composition(base.train.batch_size, gamma, base.train.min_anomalies_per_batch)  # room for normals
    return BenchmarkSpec(base, classes, tuple(args.gammas),
                         tuple(range(pick(args.seeds, DEMO["seeds"], 3))))


def output_dir(args: argparse.Namespace, spec: BenchmarkSpec) -> Path:
    """--out, or ``runs/<dataset>_<backbone>``: outside the committed ``results/``, and ignored by
    git (``/runs/`` in .gitignore), so the demo leaves a clone clean."""
    return Path(args.out or f"runs/{spec.base.data.dataset}_{spec.base.model.backbone}")


def resume_command(command: str, args: argparse.Namespace) -> str:
    """The command that continues an interrupted benchmark: the same one, with ``--resume``."""
    return command if args.resume else f"{command} --resume"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec = build_spec(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = output_dir(args, spec)
    if args.dataset is None:
        print("No --dataset: running the demo on sklearn's digits "
              f"({len(spec.classes)} classes, width {spec.base.model.width}, "
              f"{spec.base.train.epochs} epochs, batch {spec.base.train.batch_size}).")
    print(f"devices: {device_summary()}; output: {out}")
    command = "python experiments/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        rows = run_benchmark(spec, out, resume=args.resume, devices=args.devices,
                             models_at_once=args.models_at_once, data_dir=args.data_dir,
                             command=command.strip(), progress=not args.no_progress,
                             keep_checkpoints=args.keep_checkpoints)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {resume_command(command, args)}", file=sys.stderr)
        return 130
    if (out / "results.md").exists():
        print((out / "results.md").read_text())
    return report_failures(rows)


def report_failures(rows: list[dict]) -> int:
    """The exit status: 0 when every run finished, 1 (naming the failed runs) when any failed."""
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        return 0
    print(f"error: {len(failed)} of {len(rows)} run(s) failed:", file=sys.stderr)
    for row in failed:
        print(f"  {row['run_dir']}: {row.get('error', 'see its result.json')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    restart_with_fast_malloc()  # glibc settings XLA:CPU runs faster with (jaxad/allocator.py)
    sys.exit(main())
