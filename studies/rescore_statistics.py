"""Rescore a saved epoch of a run with G's running statistics recomputed in each way training
could have left them, to isolate what they do to scoring (only the statistics change, not
the weights).

With anomalies in training (gamma > 0): as the step's passes settle with each training batch
passed whole (``anomaly_bn`` joint, the default; docs/fidelity-study.md, 6.5); with the
anomalies as a sub-batch of their own whose statistics are mixed in (what runs did before
``anomalies_update_statistics`` was off by default); and with the normal passes alone
(``own`` with ``anomalies_update_statistics`` off; docs/fidelity-study.md, 6.3).

At gamma 0: as the run's own passes settle ("as trained"), and from the normal pass alone
("normals only"). They differ for runs made with ``--pseudo-anomaly-bn shared``, whose
pseudo-anomaly pass G(x_hat) also updates the running statistics: "normals only" is then
the ``shared_no_update`` variant, which trains identically (every training pass normalises
with its own batch statistics) and differs only in what scoring normalises with.

    python -m studies.rescore_statistics RUN_DIR [RUN_DIR ...] --epoch 15 \\
        --data-dir DIR    # DIR: the raw dataset files, if not where the run read them

Prints, per run and generator (live, and the average when the run kept one), the test AUROC
with the statistics saved in the checkpoint, with each recomputed set, and with each test
batch's own statistics ("test batches", the lineage's test-time BatchNorm: no fixed statistics
at all). A generator that scores well only in the last column has weights whose output hangs
on its normalisation statistics (docs/fidelity-study.md, 5.1).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from jaxad import load_run, score
from jaxad.data import batch_composition, load_split
from jaxad.ema import recalibrate_ema_statistics
from jaxad.metrics import auroc
from jaxad.train import AGADState, StepSettings

# How each recomputed set is made: (anomaly_bn, anomalies_update_statistics), without Freeze-BN.
RECOMPUTED = {"joint": ("joint", False), "mixed": ("own", True), "normals only": ("own", False)}


def recomputed_settings(settings: StepSettings, with_anomalies: bool) -> dict[str, StepSettings]:
    """{name: the step settings whose passes make that set of running statistics}. At gamma 0
    only a "shared" pseudo-anomaly pass adds to the normal pass's statistics."""
    if with_anomalies:
        return {name: dataclasses.replace(settings, freeze_bn=False, anomaly_bn=anomaly_bn,
                                          anomalies_update_statistics=update)
                for name, (anomaly_bn, update) in RECOMPUTED.items()}
    normals_only = "shared_no_update" if settings.pseudo_anomaly_bn == "shared" else settings.pseudo_anomaly_bn
    return {"as trained": settings, "normals only": dataclasses.replace(settings, pseudo_anomaly_bn=normals_only)}


def as_average(state: AGADState) -> AGADState:
    """``state`` with its scoring generator (live or average) also in the average's place, so
    that ``jaxad.ema`` can recompute its statistics."""
    params = state.g_params if state.g_ema_params is None else state.g_ema_params
    stats = state.g_batch_stats if state.g_ema_batch_stats is None else state.g_ema_batch_stats
    return state.replace(g_ema_params=params, g_ema_batch_stats=stats)


def rescored(run_dir: Path, epoch: int | str | None, data_dir: str | None) -> dict[str, dict[str, float]]:
    """{generator: {statistics: test AUROC}} for one saved epoch of a run ("saved", then each
    set ``recomputed_settings`` names)."""
    _, cfg = load_run(run_dir, epoch)
    data = cfg.data if data_dir is None else cfg.replace(**{"data.data_dir": data_dir}).data
    split = load_split(data, seed=cfg.seed)
    with_anomalies = len(split.train_anomaly) > 0
    normals, anomalies = batch_composition(cfg.train.batch_size, cfg.data.gamma, cfg.train.min_anomalies_per_batch)
    generators = ("live", "average") if cfg.train.ema_decay > 0 else ("live",)
    table = {}
    for generator in generators:
        state = as_average(load_run(run_dir, epoch, generator=generator)[0])
        row = {"saved": auroc(split.test_labels, score(state, split.test_images))}
        for name, settings in recomputed_settings(state.settings, with_anomalies).items():
            recomputed = recalibrate_ema_statistics(state.replace(settings=settings), split.train_normal, normals,
                                                    anomaly_images=split.train_anomaly, anomalies_per_batch=anomalies)
            row[name] = auroc(split.test_labels, score(recomputed, split.test_images))
        row["test batches"] = auroc(split.test_labels, score(state, split.test_images, use_batch_statistics=True))
        table[generator] = row
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories (runs/gamma*/class*/seed*)")
    p.add_argument("--epoch", default=None, help="an epoch number, 'best' or 'selected' (default: the last saved)")
    p.add_argument("--data-dir", default=None, help="where the run's data lies now (default: as it was run)")
    args = p.parse_args(argv)
    epoch = int(args.epoch) if args.epoch and args.epoch.isdigit() else args.epoch
    header = None
    for run_dir in args.run_dirs:
        for generator, row in rescored(run_dir, epoch, args.data_dir).items():
            if tuple(row) != header:  # gamma 0 and gamma > 0 runs recompute different sets
                header = tuple(row)
                print("| run | generator | " + " | ".join(header) + " |")
                print("|---|---|" + "---|" * len(header))
            print(f"| {run_dir} | {generator} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
