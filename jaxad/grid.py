"""The paper's one-class protocol as a grid: every (normal class, gamma, seed) of one dataset and backbone.

The library behind the runner (``experiments/run.py``, ``jaxad-run``). Named for the grid so
that it is not confused with ``speed/bench.py``, which times the train step against a
PyTorch reference (this module was ``jaxad/benchmark.py``).

    spec = BenchmarkSpec(base=ExperimentConfig(...), classes=range(10), gammas=(0.0,), seeds=(0, 1, 2))
    rows = run_benchmark(spec, "runs/mnist_naive", resume=True)

The output directory holds ``benchmark.json`` (what is being run), ``runs/gamma*/class*/seed*/``
(one run directory each, see ``jaxad.rundir``), and after every run ``results.json``,
``results.csv``, ``results.md`` and the plots (with ``tensorboard``, ``tensorboard/gamma*/class*/seed*/``
holds each run's event files). A finished run is never run again (pictures it
lacks, if it was stopped before they were drawn, are drawn on resume); an unfinished one restarts
from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxad import checkpoint, compat, locks, parallel, report
from jaxad.config import ExperimentConfig, without_inert_fields
from jaxad.data import (DATASETS, Dataset, OneClassSplit, batch_composition, check_one_class_split, load_dataset,
                        split_of_config)
from jaxad.files import read_json, write_json_atomic, write_text_atomic
from jaxad.checkpoint import CheckpointError
from jaxad.loop import fit, fit_many
from jaxad.rundir import (ConfigMismatchError, check_run_data, is_complete, load_run, load_training_state,
                          run_config_differences, split_fingerprint)
from jaxad.metrics import roc
from jaxad.tensorboard import EpochWriter, check_installed
from jaxad.train import AGADState, reconstruct


GRID_AXES = ("classes", "gammas", "seeds")  # what a benchmark runs over, beside its base


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    """A grid of runs sharing one base configuration."""

    base: ExperimentConfig
    classes: tuple[int, ...]
    gammas: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        for name in GRID_AXES:
            values = tuple(getattr(self, name))
            if not values:
                raise ValueError(f"a benchmark needs at least one of {name}, got none")
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"{name} {list(values)} name {', '.join(map(str, twice))} more than once; "
                                 f"give each once")
        train = self.base.train
        for gamma in self.gammas:  # refused here, before any work: gamma itself, then room for normals
            self.base.replace(**{"data.gamma": gamma})
            batch_composition(train.batch_size, gamma, train.min_anomalies_per_batch)

    def identity(self) -> dict[str, Any]:
        base = self.base.to_dict()
        for key in ("normal_class", "gamma"):
            base["data"].pop(key)
        base.pop("seed")
        return {"base": base, "classes": list(self.classes), "gammas": list(self.gammas),
                "seeds": list(self.seeds)}

    def runs(self) -> list[ExperimentConfig]:
        return [self.base.replace(seed=s, **{"data.normal_class": c, "data.gamma": g})
                for g in self.gammas for c in self.classes for s in self.seeds]


def run_dir_of(out_dir: Path, cfg: ExperimentConfig, part: str = "runs") -> Path:
    """Where run ``cfg`` of the benchmark in ``out_dir`` lies: under ``runs/``, or under ``part``
    (``tensorboard/``: its event files)."""
    return out_dir / part / f"gamma{cfg.data.gamma:g}" / f"class{cfg.data.normal_class}" / f"seed{cfg.seed}"


class BenchmarkMismatchError(ValueError):
    """An output directory that holds a different benchmark. ``fields``: ``(dotted field,
    value there, value asked)`` where the two base configurations differ."""

    def __init__(self, message: str, fields: Sequence[tuple[str, Any, Any]] = ()) -> None:
        super().__init__(message)
        self.fields = list(fields)


def locked(out_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``out_dir``'s lock (``jaxad.locks``) for the block, or raise ``DirectoryLockedError``.

    The kernel releases the lock when its process ends, even on ``kill -9``: a stale lock
    file never blocks a later run.
    """
    return locks.locked(out_dir, f"another process is running the benchmark in {out_dir}; wait for it "
                                 f"to finish (or stop it), or choose another --out directory")


def finished_runs(spec: BenchmarkSpec, out_dir: Path) -> int:
    """How many of the benchmark's runs are finished (complete or failed) under ``out_dir``."""
    return sum(is_complete(run_dir_of(out_dir, cfg)) for cfg in spec.runs())


def _check_out_dir(spec: BenchmarkSpec, out_dir: Path, resume: bool) -> tuple[bool, bool]:
    """``(finished, to_mark)``: whether ``out_dir`` holds this benchmark, finished, and whether its
    ``benchmark.json`` is to be written (``mark_out_dir``) once everything else is checked. Writes
    nothing: a refused command leaves nothing behind that blocks the corrected one.

    A benchmark grows on ``resume``: ``spec`` may add classes, gammas or seeds to the one in
    ``out_dir`` (same base configuration); its finished runs are kept and ``benchmark.json``
    rewritten to ``spec``."""
    marker = out_dir / "benchmark.json"
    if not marker.exists():
        return False, True
    identity = json.loads(json.dumps(spec.identity()))
    saved = read_json(marker, dict)
    if isinstance(saved.get("base"), dict):  # written by an earlier version's config layout
        saved["base"] = compat.upgrade_config_dict(saved["base"])
    before, now = _comparable(saved, saved.get("gammas")), _comparable(identity, identity["gammas"])
    to_mark = False
    if before != now:
        added = _added_by(saved, identity)
        if added is None:
            differs = sorted(k for k in now if before.get(k) != now[k])
            fields = _field_differences(before.get("base"), now["base"])
            listed = "".join(f"\n  {name}: {held} there, {asked} asked" for name, held, asked in fields)
            raise BenchmarkMismatchError(
                f"{out_dir} holds a different benchmark (differs in: {', '.join(differs)}); "
                f"choose another --out directory{', or ask for its configuration:' if fields else ''}{listed}",
                fields)
        if added and not resume:
            raise FileExistsError(
                f"{out_dir} holds a smaller benchmark: this one adds "
                f"{'; '.join(f'{axis} {values}' for axis, values in added.items())}; pass --resume to "
                f"extend it (its finished runs are kept) or choose another --out directory")
        to_mark = resume  # grown, or its grid only reordered: from now on the new grid
    done, planned = finished_runs(spec, out_dir), len(spec.runs())
    if done == planned:
        return True, to_mark
    if not resume:
        raise FileExistsError(f"{out_dir} already holds this benchmark, unfinished ({done} of {planned} runs "
                              f"done): pass --resume to continue it (finished runs are kept) or choose "
                              f"another --out directory")
    return False, to_mark


def mark_out_dir(spec: BenchmarkSpec, out_dir: Path) -> None:
    """Write ``out_dir/benchmark.json``: what the benchmark there runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "benchmark.json", spec.identity())


def check_benchmark_data(spec: BenchmarkSpec, dataset: Dataset) -> None:
    """Refuse a benchmark that ``dataset`` cannot split for every class and gamma (a class out of
    range, too few images for gamma's anomalies), before any of its runs is written."""
    for gamma in spec.gammas:
        for normal_class in spec.classes:
            check_one_class_split(dataset, normal_class, gamma, spec.base.data.anomaly_classes,
                                  spec.base.data.synthetic_anomalies)


def _comparable(marked: dict[str, Any], gammas: Any) -> dict[str, Any]:
    """``marked`` (a ``BenchmarkSpec.identity()``) without the fields that cannot change any of
    its runs at ``gammas``: where the data lies; at gamma 0 throughout, the anomaly branch's."""
    if not isinstance(marked.get("base"), dict) or not isinstance(gammas, list):
        return marked
    return {**marked, "base": without_inert_fields(marked["base"], gammas)}


def _field_differences(held: Any, asked: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted field, held value, asked value)`` for every field where two saved configurations
    differ: a default changed since a benchmark began shows as its field, not as "base"."""
    if not (isinstance(held, dict) and isinstance(asked, dict)):
        return [] if held == asked else [(prefix.rstrip(".") or "base", held, asked)]
    return [d for key in sorted(set(held) | set(asked))
            for d in _field_differences(held.get(key), asked.get(key), f"{prefix}{key}.")]


def _added_by(saved: dict[str, Any], identity: dict[str, Any]) -> dict[str, list] | None:
    """What the benchmark ``identity`` adds to ``saved``, axis by axis ({} when it only reorders
    them), or None when it is not ``saved`` grown: another base, or a grid axis value dropped.
    The bases are compared at ``saved``'s gammas: the runs that already exist."""
    if set(saved) != set(identity) or not all(isinstance(saved[axis], list) for axis in GRID_AXES):
        return None
    if _comparable(saved, saved["gammas"])["base"] != _comparable(identity, saved["gammas"])["base"]:
        return None
    if any(not set(saved[axis]) <= set(identity[axis]) for axis in GRID_AXES):
        return None
    added = {axis: [v for v in identity[axis] if v not in saved[axis]] for axis in GRID_AXES}
    return {axis: values for axis, values in added.items() if values}


def _row(cfg: ExperimentConfig, run_dir: Path, out_dir: Path) -> dict[str, Any]:
    result = compat.result_counting_from_one(read_json(run_dir / "result.json", dict))
    return {"dataset": cfg.data.dataset, "backbone": cfg.model.backbone,
            "normal_class": cfg.data.normal_class, "gamma": cfg.data.gamma, "seed": cfg.seed,
            "run_dir": str(run_dir.relative_to(out_dir)), **result}


RUN_PICTURES = ("reconstructions.png", "score_extremes.png")  # drawn in each finished run's directory


def _save_reconstructions(state, split, run_dir: Path, count: int = 8) -> None:
    normal = split.test_images[split.test_labels == 0][:count]
    anomalous = split.test_images[split.test_labels == 1][:count]
    report.plot_reconstructions(normal, np.asarray(reconstruct(state, normal)), anomalous,
                                np.asarray(reconstruct(state, anomalous)), run_dir / "reconstructions.png")


def draw_run_pictures(run_dir: Path, split: OneClassSplit, scores: np.ndarray, labels: np.ndarray,
                      state: AGADState | None = None) -> None:
    """A finished run's pictures: ``score_extremes.png`` from its final test scores and, given
    its final model ``state``, ``reconstructions.png``."""
    if state is not None:
        _save_reconstructions(state, split, run_dir)
    report.plot_score_extremes(split.test_images, scores, labels, run_dir / "score_extremes.png")


def missing_pictures(run_dir: Path) -> list[str]:
    """The pictures a complete run's directory lacks (none for an unfinished or failed run)."""
    marker = run_dir / "result.json"
    if not marker.exists() or read_json(marker, dict).get("status") != "complete":
        return []
    return [name for name in RUN_PICTURES if not (run_dir / name).exists()]


def redraw_missing_pictures(run_dir: Path, split: OneClassSplit) -> list[str]:
    """Draw the pictures a complete run lacks (it was stopped after ``result.json``, its
    completion marker, was written and before they were): score extremes from ``scores.npz``,
    reconstructions from its final checkpoint. Returns the names drawn; a run copied without
    checkpoints (``--merge-without-checkpoints``) gets no reconstructions, and says so; one
    whose ``scores.npz`` cannot be read gets none (``_final_scores`` warns). A run
    made on other data than ``split`` raises ``DataMismatchError`` (``rundir.check_run_data``)."""
    missing = missing_pictures(run_dir)
    if not missing:
        return []
    check_run_data(run_dir, split_fingerprint(split))
    result = read_json(run_dir / "result.json", dict)
    saved = _final_scores(run_dir)
    if saved is None:  # its warning says how to score the run, and draw its pictures, again
        return []
    scores, labels = saved
    state = None
    final = result.get("checkpoints", {}).get("final")
    if "reconstructions.png" in missing:
        if final is not None and (run_dir / final).is_dir():
            state, _ = load_run(run_dir, epoch=int(Path(final).name))
        else:
            tqdm.write(f"{run_dir} lacks reconstructions.png and keeps no final checkpoint to draw it from")
            missing.remove("reconstructions.png")
    if missing:
        draw_run_pictures(run_dir, split, scores, labels, state)
    return missing


class _Interrupted(KeyboardInterrupt):
    pass


def _raise_interrupt(signum, frame):
    raise _Interrupted(f"signal {signum}")


def finished_history(run_dir: Path) -> list[dict[str, Any]] | None:
    """A finished run's ``history.json``. One missing or damaged is written afresh from the history
    its final checkpoint saved (the same records), with a warning; None, with a warning, when
    no checkpoint is left to hold it (a run merged without checkpoints)."""
    path = run_dir / "history.json"
    try:
        return read_json(path, list)
    except FileNotFoundError:
        problem = "is missing"
    except ValueError:
        problem = "is damaged"
    try:
        _, _, history, epoch = load_training_state(run_dir)
    except (FileNotFoundError, ValueError, CheckpointError):
        warnings.warn(f"{path} {problem} and no checkpoint of the run holds its history: the run is left out of "
                      f"auroc_per_epoch.png", stacklevel=2)
        return None
    write_json_atomic(path, history)
    warnings.warn(f"{path} {problem}: written afresh from the history its checkpoint of epoch {epoch} saved",
                  stacklevel=2)
    return history


def _final_scores(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A finished run's final test scores and labels from ``scores.npz``; None, with a warning
    saying how to have them again, when the file is missing or damaged."""
    path = run_dir / "scores.npz"
    try:
        with np.load(path) as saved:
            return saved["scores"], saved["labels"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"{path} cannot be read ({type(err).__name__}: {err}); the run is left out of score_boxes.png "
                      f"and roc.png. To score it again from its final checkpoint, delete {run_dir / 'result.json'} "
                      f"and run the benchmark with --resume", stacklevel=2)
        return None


BENCHMARK_PICTURES = ("auroc_per_epoch.png", "score_boxes.png", "roc.png")  # drawn in the output directory


def _collect(spec: BenchmarkSpec, out_dir: Path) -> tuple[list[dict[str, Any]], dict, dict, dict]:
    """The finished runs under ``out_dir``: their table rows, and what the benchmark's pictures
    draw (histories by (gamma, class); the first seed's and gamma's final scores and ROC curves
    by class)."""
    rows, histories, boxes, curves = [], {}, {}, {}
    for cfg in spec.runs():
        run_dir = run_dir_of(out_dir, cfg)
        if not is_complete(run_dir):
            continue
        row = _row(cfg, run_dir, out_dir)
        rows.append(row)
        if row["status"] != "complete" or row["final_auroc"] is None:  # failed, or no test anomaly to plot
            continue
        history = finished_history(run_dir)
        if history is not None:
            histories.setdefault((cfg.data.gamma, cfg.data.normal_class), []).append(history)
        if cfg.seed == spec.seeds[0] and cfg.data.gamma == spec.gammas[0]:
            saved = _final_scores(run_dir)
            if saved is not None:
                boxes[cfg.data.normal_class] = saved
                fpr, tpr = roc(saved[1], saved[0])
                curves[cfg.data.normal_class] = (fpr, tpr, row["final_auroc"])
    return rows, histories, boxes, curves


def _draw(out_dir: Path, histories: dict, boxes: dict, curves: dict) -> list[str]:
    """Draw the benchmark's pictures that have something to show; returns their names."""
    drawn = []
    if histories:
        report.plot_auroc_per_epoch(histories, out_dir / "auroc_per_epoch.png")
        drawn.append("auroc_per_epoch.png")
    if boxes:
        report.plot_score_boxes(boxes, out_dir / "score_boxes.png")
        report.plot_roc_curves(curves, out_dir / "roc.png")
        drawn += ["score_boxes.png", "roc.png"]
    return drawn


def write_reports(spec: BenchmarkSpec, out_dir: Path, command: str | None = None,
                  num_classes: int | None = None) -> list[dict[str, Any]]:
    """Collect every finished run under ``out_dir`` into results.{json,csv,md} and the plots."""
    rows, histories, boxes, curves = _collect(spec, out_dir)
    base = spec.base
    num_classes = num_classes or len(spec.classes)
    summary = report.summarise(rows) if rows else {}
    write_json_atomic(out_dir / "results.json", {
        "benchmark": spec.identity(), "command": command, "runs": rows,
        "summary": {f"{g:g}": s for g, s in summary.items()}})
    write_text_atomic(out_dir / "results.csv", report.csv_text(rows))
    if rows:
        write_text_atomic(out_dir / "results.md", report.markdown_tables(
            rows, base.data.dataset, base.model.backbone, num_classes, len(spec.seeds), command,
            base.data.synthetic_anomalies))
    _draw(out_dir, histories, boxes, curves)
    return rows


def read_spec(out_dir: str | Path) -> BenchmarkSpec:
    """The benchmark an output directory holds, as its ``benchmark.json`` describes it (in this
    version's config layout or an earlier one).

    Args:
        out_dir: a benchmark output directory (``jaxad-run --out``).

    Returns:
        The ``BenchmarkSpec`` its runs were made by.

    Raises:
        FileNotFoundError: ``out_dir`` holds no ``benchmark.json``.
        ValueError: a ``benchmark.json`` that does not describe a benchmark.
    """
    marker = Path(out_dir) / "benchmark.json"
    if not marker.exists():
        raise FileNotFoundError(f"{out_dir} is not a benchmark output directory (no benchmark.json)")
    saved = read_json(marker, dict)
    try:
        classes, gammas, seeds = (tuple(saved[axis]) for axis in GRID_AXES)
        base = {**saved["base"], "seed": seeds[0],
                "data": {**saved["base"]["data"], "normal_class": classes[0], "gamma": gammas[0]}}
        return BenchmarkSpec(ExperimentConfig.from_dict(base), classes, gammas, seeds)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(f"{marker} does not describe a benchmark ({type(err).__name__}: {err})") from None


def redraw_pictures(out_dir: str | Path) -> list[str]:
    """Draw a benchmark's pictures again (``BENCHMARK_PICTURES``) from its runs' ``history.json``
    and ``scores.npz``, leaving its tables and runs as they are.

    Args:
        out_dir: a benchmark output directory.

    Returns:
        The names of the pictures drawn (none when no run has finished).

    Raises:
        FileNotFoundError, ValueError: as ``read_spec``.
    """
    out_dir = Path(out_dir)
    _, histories, boxes, curves = _collect(read_spec(out_dir), out_dir)
    return _draw(out_dir, histories, boxes, curves)


def merge_runs(spec: BenchmarkSpec, out_dir: str | Path, sources: Sequence[str | Path], *,
               checkpoints: bool = True, command: str | None = None) -> list[Path]:
    """Copy the finished runs of ``spec`` found in other output directories into ``out_dir``.

    For a benchmark split over machines (``--classes 0 1 2`` on one, ``3 4 5`` on another, or
    seeds apart): each source is an output directory laid out as ``out_dir`` is; any benchmark
    may have made it. A run is taken from the first source that holds it finished (complete
    before failed), after its ``config.json`` is checked to be the run ``spec`` plans
    (``ConfigMismatchError`` names the fields that differ). Runs ``out_dir`` holds finished are
    kept; an unfinished one there is replaced. ``checkpoints=False`` leaves the checkpoints
    behind (scoring with a copied run's model then needs its source). Nothing is trained; the
    reports are rewritten (``command``: the line ``results.md`` gives to reproduce). Returns the
    run directories copied, in ``out_dir``.
    """
    out_dir, sources = Path(out_dir), [Path(s) for s in sources]
    for source in sources:
        if not (source / "runs").is_dir():
            raise FileNotFoundError(f"{source} is not a benchmark output directory (it has no runs/)")
        if source.resolve() == out_dir.resolve():
            raise ValueError(f"{source} is the output directory itself; name the directories to copy from")
    copied = []
    with locked(out_dir):
        _, to_mark = _check_out_dir(spec, out_dir, resume=True)
        plan = []  # every run checked before any is copied: a refused merge leaves nothing behind
        for cfg in spec.runs():
            target = run_dir_of(out_dir, cfg)
            if is_complete(target):
                continue
            found = [run_dir_of(s, cfg) for s in sources if is_complete(run_dir_of(s, cfg))]
            if not found:
                continue
            run = min(found, key=lambda r: read_json(r / "result.json")["status"] != "complete")
            differences = run_config_differences(run, cfg)
            if differences:
                raise ConfigMismatchError(f"{run} holds a run of another configuration than this benchmark's "
                                          f"({'; '.join(differences)}); nothing was copied")
            plan.append((run, target))
        if to_mark:
            mark_out_dir(spec, out_dir)
        for run, target in plan:
            # Copied beside the target, then renamed: an interrupted merge leaves no half-copied run.
            staging = target.with_name(target.name + ".merging")
            shutil.rmtree(staging, ignore_errors=True)
            try:
                shutil.copytree(run, staging, ignore=None if checkpoints else shutil.ignore_patterns("checkpoints"))
            except BaseException:  # a full disk, an interrupt: no half copy is left behind
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
            copied.append(target)
        dataset = DATASETS[spec.base.data.dataset]
        write_reports(spec, out_dir, command, dataset.protocol_classes)
    return copied


def _groups(spec: BenchmarkSpec, models_at_once: bool) -> list[list[ExperimentConfig]]:
    """Runs to train together: the seeds of one (gamma, class) when ``models_at_once``."""
    if not models_at_once:
        return [[cfg] for cfg in spec.runs()]
    groups: dict[tuple[float, int], list[ExperimentConfig]] = {}
    for cfg in spec.runs():
        groups.setdefault((cfg.data.gamma, cfg.data.normal_class), []).append(cfg)
    return list(groups.values())


def run_benchmark(spec: BenchmarkSpec, out_dir: str | Path, *, resume: bool = False, devices: int = 1,
                  models_at_once: bool = False, command: str | None = None,
                  progress: bool = True, keep_checkpoints: int | None = checkpoint.KEEP_RECENT,
                  tensorboard: bool = False) -> list[dict[str, Any]]:
    """Run every (class, gamma, seed) of ``spec`` not yet finished under ``out_dir``; return the rows.

    ``models_at_once`` trains the seeds of each (class, gamma) together, the step vmapped over
    a model axis (``jaxad.loop.fit_many``); otherwise runs go one by one, data-parallel over
    ``devices``. A run whose loss turns NaN is stopped with a message (its last good
    checkpoint kept, its result.json marked failed) and the benchmark goes on. SIGTERM and
    Ctrl-C stop cleanly: checkpoints are flushed and ``resume=True`` continues where it stopped;
    it also grows a benchmark, ``spec`` adding classes, gammas or seeds to the one in ``out_dir``.
    Without ``resume``, an ``out_dir`` holding this benchmark finished is reported as such and its
    rows returned, nothing trained or rewritten (``resume=True`` rewrites its reports). Each run
    keeps the checkpoints of its latest ``keep_checkpoints`` epochs (None: all) and of its
    test-selected epoch.
    """
    out_dir = Path(out_dir)
    checkpoint.check_keep_recent(keep_checkpoints)
    parallel.check_device_count(devices)
    if tensorboard:
        if models_at_once:
            raise ValueError("TensorBoard logging writes each run's epochs as fit reports them, one run at a "
                             "time: leave out --models-at-once or --tensorboard")
        check_installed()
    with locked(out_dir):
        return _run_benchmark(spec, out_dir, resume, devices, models_at_once, command, progress,
                              keep_checkpoints, tensorboard)


def classes_in_protocol(dataset: Dataset) -> int:
    """How many normal classes the full one-class protocol runs: every class of a labelled
    dataset; one for a folder dataset (its normal images; abnormal/ only tests)."""
    info = DATASETS.get(dataset.name)
    return info.protocol_classes if info else dataset.num_classes


def _run_benchmark(spec: BenchmarkSpec, out_dir: Path, resume: bool, devices: int, models_at_once: bool,
                   command: str | None, progress: bool,
                   keep_checkpoints: int | None, tensorboard: bool = False) -> list[dict[str, Any]]:
    finished_before, to_mark = _check_out_dir(spec, out_dir, resume)
    if finished_before and not resume:
        rows = [_row(cfg, run_dir_of(out_dir, cfg), out_dir) for cfg in spec.runs()]
        failed = sum(row["status"] == "failed" for row in rows)
        tqdm.write(f"{out_dir} holds this benchmark, finished: {len(rows)} run(s)"
                   + (f", {failed} of them failed" if failed else "") + f"; nothing to train. Its table is "
                   f"{out_dir / 'results.md'}; to run it again, choose another --out directory")
        return rows
    base = spec.base
    dataset = load_dataset(base.data.dataset, base.data.data_dir, base.data.source, base.data.image_size,
                           base.data.category)
    check_benchmark_data(spec, dataset)
    if to_mark:
        mark_out_dir(spec, out_dir)

    def split_of(cfg: ExperimentConfig):
        return split_of_config(dataset, cfg.data, seed=cfg.seed)

    def finished(cfg: ExperimentConfig, split, result) -> None:
        # After result.json: a run stopped in between has its pictures redrawn on --resume.
        draw_run_pictures(run_dir_of(out_dir, cfg), split, result.test_scores, result.test_labels, result.state)
        run = f"class {cfg.data.normal_class} gamma {cfg.data.gamma:g} seed {cfg.seed}"
        threshold = f"label-free threshold {result.evaluation['threshold']:.4g}"
        if result.final_auroc is None:
            tqdm.write(f"{run}: no AUROC can be computed, the test split holds no anomalies; {threshold}")
            return
        selected = ("" if result.selected_epoch is None else
                    f"{result.selected_auroc:.2f} (label-free selected epoch {result.selected_epoch}), ")
        tqdm.write(f"{run}: AUROC {result.final_auroc:.2f} (final epoch), {selected}"
                   f"{result.best_auroc:.2f} (test-selected epoch {result.best_epoch}); {threshold}")

    def fit_one(cfg: ExperimentConfig) -> None:
        run_dir, split = run_dir_of(out_dir, cfg), split_of(cfg)
        writer = EpochWriter(run_dir_of(out_dir, cfg, "tensorboard")) if tensorboard else None
        try:
            result = fit(cfg, split, run_dir=run_dir, devices=devices, progress=progress,
                         keep_checkpoints=keep_checkpoints, on_epoch=writer)
        except FloatingPointError as err:  # a non-finite loss or score: the run diverged
            history = run_dir / "history.json"
            good = len(read_json(history, list)) if history.exists() else 0
            tqdm.write(f"run {run_dir} stopped: {err}; " + (f"its last good checkpoint, of epoch {good}, is kept"
                                                            if good else "it failed in its first epoch"))
            write_json_atomic(run_dir / "result.json", {"status": "failed", "error": str(err)})
            return
        finally:
            if writer is not None:
                writer.close()
        finished(cfg, split, result)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    groups = _groups(spec, models_at_once)
    bar = tqdm(groups, desc="runs", disable=not progress)
    try:
        for group in bar:
            for cfg in group:
                run_dir = run_dir_of(out_dir, cfg)
                if missing_pictures(run_dir):  # the split is made only for a run that lacks some
                    drawn = redraw_missing_pictures(run_dir, split_of(cfg))
                    if drawn:
                        tqdm.write(f"{run_dir}: drew {', '.join(drawn)}, missing from a finished run")
            todo = [cfg for cfg in group if not is_complete(run_dir_of(out_dir, cfg))]
            if not todo:
                continue
            bar.set_postfix(cls=todo[0].data.normal_class, gamma=todo[0].data.gamma)
            if len(todo) == 1:
                fit_one(todo[0])
            else:
                splits = [split_of(c) for c in todo]
                try:
                    results = fit_many(todo, splits, run_dirs=[run_dir_of(out_dir, c) for c in todo],
                                       progress=progress, keep_checkpoints=keep_checkpoints)
                except (FloatingPointError, ValueError) as err:
                    # One model diverged, or the runs stopped at different epochs: go one by one.
                    tqdm.write(f"training {len(todo)} models at once stopped ({err}); running them one by one")
                    for cfg in todo:
                        if not is_complete(run_dir_of(out_dir, cfg)):
                            fit_one(cfg)
                else:
                    for cfg, split, result in zip(todo, splits, results):
                        finished(cfg, split, result)
            write_reports(spec, out_dir, command, classes_in_protocol(dataset))
    except _Interrupted:
        tqdm.write("interrupted: finished runs and checkpoints are saved; continue with --resume")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    return write_reports(spec, out_dir, command, classes_in_protocol(dataset))


def device_summary() -> str:
    devices = jax.local_devices()
    return f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})"
