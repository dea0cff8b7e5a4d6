"""Train AGAD models, score images, save and load runs: the API for research code.

``jaxad.fit`` is the function; this module is ``jaxad.runs`` (so ``import jaxad.runs`` and
``mock.patch("jaxad.runs.X")`` reach the module, never a function of the same name).

    from jaxad import ExperimentConfig, fit, score, load_run
    result = fit(ExperimentConfig(), run_dir="runs/digits-0")   # digits, normal class 0
    print(result.final_auroc, result.best_auroc)                 # final epoch; test-selected best
    print(result.selected_auroc)                                 # the label-free selected epoch
    scores = score(result.state, images)                         # ||x - G(x)||_2 per image
    state, config = load_run("runs/digits-0")                    # the saved final model
    state, config = load_run("runs/digits-0", epoch="selected")  # the label-free selected epoch's
    state, config = load_run("runs/digits-0", epoch="best")      # the test-selected epoch's

One run = (dataset, backbone, normal class, gamma, seed) in its own directory:
``config.json``, ``data.json`` (a fingerprint of the split it trains on), ``checkpoints/``
(orbax, saved every epoch; the latest ``keep_checkpoints`` epochs, 2 by default, the
test-selected one and the label-free selected one are kept: ``load_run(run_dir, epoch="best")``,
``epoch="selected"``), ``history.json`` (per-epoch losses and AUROC), ``scores.npz`` (raw
test scores, labels and classes) and ``result.json``, written last, which marks the run
complete. ``fit_many`` trains the seeds of one class and
gamma at once, each into its own run directory. Both run one epoch loop; a layout says how it
holds its models: one under jit, one replicated over devices under pmap, or K stacked under vmap.

Epochs count from 1 everywhere: the progress bar, error messages, ``history.json``'s
``"epoch"``, ``result.json``'s ``"best_epoch"``, ``RunResult.best_epoch`` and the tables. The
checkpoint saved after epoch e is step e (``checkpoints/e``), so ``load_run(run_dir, epoch=e)``
is the model as it was after epoch e. The batch sampler and the step keys are drawn from the
0-based index e - 1. Run directories whose epochs count from 0 (``CHANGELOG.md``) still load
and resume: their history's records are renumbered from 1 when the run resumes, and their
checkpoint steps keep their 0-based names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import time
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxad import checkpoint, compat, locks, parallel, xla
from jaxad.config import ExperimentConfig, without_inert_fields
from jaxad.data import OneClassSplit, batch_composition, epoch_indices, load_split, padded_batches
from jaxad.ema import recalibrate_ema_statistics
from jaxad.evaluation import evaluate_run
from jaxad.files import read_json, write_bytes_atomic, write_json_atomic
from jaxad.metrics import auroc, auroc_if_defined
from jaxad.selection import choose_scoring_generator, select_epoch
from jaxad.train import AGADState, create_train_state, indexed_train_step, live_generator, score_step
from jaxad.validation import check_finite, check_split, check_state_images

# The compiled step fit runs for one model on one device: a script that calls it with the
# inputs of ``epoch_inputs`` replays a run's steps bit for bit (a plain ``jax.jit`` compiles
# with other options, so it rounds differently).
jitted_train_step = xla.jit(indexed_train_step, donate_argnums=(0,))
_train_step_many = xla.jit(jax.vmap(indexed_train_step, in_axes=(0, None, 0, 0, 0, 0)), donate_argnums=(0,))
_score_step = xla.jit(score_step, static_argnames="use_batch_statistics")
SCORE_BATCH = 256
# Step metrics whose extreme over an epoch's steps its record keeps beside their mean: a spike
# of the anomaly loss is one step, and which reciprocal made it shows as the smallest of its
# error (``w / (error + eps)``); the smallest D loss is what the D reset compares.
EPOCH_EXTREMES: dict[str, tuple[str, Callable[[np.ndarray], Any]]] = {
    "g_anomaly_loss": ("max", np.max),
    "g_anomaly_adversarial": ("min", np.min),
    "g_anomaly_reconstruction": ("min", np.min),
    "g_anomaly_latent": ("min", np.min),
    "d_loss": ("min", np.min),
}
# What --paper-protocol adds to each epoch's record (``batch_statistics_aurocs``).
BATCH_STATISTICS_AUROCS = ("auroc_batch_statistics", "auroc_batch_statistics_normal_first")


class ConfigMismatchError(ValueError):
    """A run directory that holds a run of another configuration."""


class DataMismatchError(ValueError):
    """A run directory that holds a run trained on other data."""


FINGERPRINTED = ("train_normal", "train_anomaly", "test_images", "test_labels")


@dataclasses.dataclass
class RunResult:
    """What one run leaves: its config, per-epoch history, final test scores and model."""

    config: ExperimentConfig
    history: list[dict[str, float]]
    test_scores: np.ndarray
    test_labels: np.ndarray
    test_classes: np.ndarray
    state: AGADState
    evaluation: dict[str, Any] = dataclasses.field(default_factory=dict)  # jaxad.evaluation.evaluate_run's

    @property
    def final_auroc(self) -> float | None:
        """AUROC (%) of the final epoch: the honest headline figure (None: the test split holds
        one kind of image only)."""
        return self.history[-1]["auroc"]

    @property
    def selected_epoch(self) -> int | None:
        """The label-free selected epoch (counting from 1, the first on a tie): the best by its
        scoring generator's training evidence (``jaxad.selection``: at gamma > 0 how well it
        tells training normals from training anomalies, then its error on training normals).
        No test label enters it. None for a history that does not record the evidence."""
        if not self.history or not all("train_normal_score" in h for h in self.history):
            return None
        return select_epoch(self.history)

    @property
    def selected_auroc(self) -> float | None:
        """AUROC (%) of the label-free selected epoch: honest, as no test label chose it."""
        epoch = self.selected_epoch
        return None if epoch is None else self.history[epoch - 1]["auroc"]

    @property
    def best_epoch(self) -> int | None:
        """The epoch (counting from 1) of highest test AUROC, the first on a tie (selected on the
        test split); None without an AUROC."""
        aurocs = [h["auroc"] for h in self.history]
        return None if None in aurocs else int(np.argmax(aurocs)) + 1

    @property
    def best_auroc(self) -> float | None:
        """Test-selected best-epoch AUROC (%): how GANomaly's code reports; not an honest figure."""
        return None if self.best_epoch is None else self.history[self.best_epoch - 1]["auroc"]


def score(state: AGADState, images: np.ndarray, batch_size: int = SCORE_BATCH,
          use_batch_statistics: bool = False) -> np.ndarray:
    """Anomaly scores ``||x - G(x)||_2`` of every image, in order (none dropped).

    With running statistics (the default) the last batch is padded and masked. With
    ``use_batch_statistics`` (GANomaly's test-time BatchNorm) each batch is scored as it is,
    since padding would change the statistics.

    Args:
        state: a trained state (``fit``'s ``RunResult.state``, or ``load_run``'s); it scores
            with its scoring generator, the average when it keeps one.
        images: float32 NHWC in [-1, 1], the model's side and channels.
        batch_size: images per compiled call.
        use_batch_statistics: normalise each batch with its own statistics instead of the
            running ones.

    Returns:
        One score per image, a float32 array of shape (N,); higher is more anomalous. No
        images give no scores.

    Raises:
        ValueError: images of the wrong dtype, range, shape or channels, or with NaN or inf.
        FloatingPointError: scores that are not finite: the model diverged (``fit`` stops
            such a run as it does one whose loss is not finite).
    """
    check_state_images(state, images)
    images = np.asarray(images, np.float32)
    if len(images) == 0:
        return np.zeros(0, np.float32)
    if use_batch_statistics:
        scores = np.concatenate([np.asarray(_score_step(state, images[i:i + batch_size], True))
                                 for i in range(0, len(images), batch_size)])
    else:
        batches, mask = padded_batches(images, batch_size)
        scores = np.concatenate([np.asarray(_score_step(state, b)) for b in batches])[mask.reshape(-1)]
    if not np.all(np.isfinite(scores)):
        # Caught where they arise, as a non-finite loss is: an AUROC of them would be meaningless.
        raise FloatingPointError(f"the scores of {int(np.sum(~np.isfinite(scores)))} of {len(scores)} images are "
                                 f"not finite (NaN or inf): the model has diverged; lower the learning rate or "
                                 f"the loss weights")
    return scores


def normal_first(labels: np.ndarray) -> np.ndarray:
    """The order GANomaly's and Skip-GANomaly's loaders give a one-class test split: every
    normal (label 0), then every anomaly, each in its given order, loaded unshuffled."""
    return np.concatenate([np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)])


def batch_statistics_aurocs(state: AGADState, images: np.ndarray, labels: np.ndarray,
                            batch_size: int = SCORE_BATCH) -> dict[str, float]:
    """AUROC (%) with test-batch BatchNorm statistics, as the GANomaly lineage scores
    (``ExperimentConfig.paper_protocol``): ``auroc_batch_statistics`` over the test split in
    its given order, ``auroc_batch_statistics_normal_first`` over it laid out as that
    lineage's loaders lay it out (``normal_first``), where nearly every batch holds one kind
    of image, so the layout itself passes the label to the statistics (docs/fidelity-study.md,
    4.2)."""
    order = normal_first(labels)
    return {"auroc_batch_statistics": auroc(labels, score(state, images, batch_size, use_batch_statistics=True)),
            "auroc_batch_statistics_normal_first": auroc(
                labels[order], score(state, images[order], batch_size, use_batch_statistics=True))}


def array_fingerprint(array: np.ndarray) -> str:
    """A short hash of an array's dtype, shape and values."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str} {array.shape}".encode())
    digest.update(array.data if array.size else b"")
    return digest.hexdigest()[:16]


def split_fingerprint(split: OneClassSplit) -> dict[str, str]:
    """What a run directory's ``data.json`` records: a fingerprint of each array of the split.

        split_fingerprint(load_split(cfg.data))  # {"train_normal": "3f2a...", "test_images": ...}
    """
    return {name: array_fingerprint(getattr(split, name)) for name in FINGERPRINTED}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"train.epochs: 1 in the run directory, 2 now"`` for each field that differs."""
    saved, current = _flat(saved), _flat(current)
    return [f"{key}: {saved.get(key, '(absent)')} in the run directory, {current.get(key, '(absent)')} now"
            for key in sorted(saved.keys() | current.keys()) if saved.get(key) != current.get(key)]


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The configuration in ``run_dir/config.json``; a file that does not describe one (an
    unknown field, a value of the wrong type, damaged JSON) raises ``ValueError`` naming it."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a jaxad run directory (no config.json)")
    try:
        saved = read_json(path)
    except ValueError as err:  # not "delete it": nothing else says which configuration trained the run
        raise ValueError(f"{path} is damaged, not valid JSON ({err.__cause__}); restore it from a copy: it "
                         f"alone says which configuration trained the run") from err
    try:
        return ExperimentConfig.from_dict(saved)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a configuration jaxad can read: {err}; restore it from a copy, "
                         f"or correct it") from err


def run_config_differences(run_dir: Path, cfg: ExperimentConfig) -> list[str]:
    """How the run in ``run_dir`` (its ``config.json``, in any earlier layout) differs from ``cfg``,
    field by field; empty when it is ``cfg``'s run (fields that cannot change it are left out).
    A ``config.json`` that ``read_run_config`` refuses raises its ``ValueError``."""
    read_run_config(run_dir)
    saved = compat.upgrade_config_dict(read_json(run_dir / "config.json"))
    current = json.loads(cfg.to_json())
    return config_differences(without_inert_fields(saved, [saved["data"]["gamma"]]),
                              without_inert_fields(current, [current["data"]["gamma"]]))


def check_run_data(run_dir: Path, fingerprint: dict[str, str]) -> None:
    """Raise ``DataMismatchError`` unless the run in ``run_dir`` was made on the split whose
    ``split_fingerprint`` is ``fingerprint`` (its ``data.json``; a run that predates it
    passes, ``compat.predates_data_fingerprint``)."""
    if compat.predates_data_fingerprint(run_dir):
        return
    saved = read_json(run_dir / "data.json", dict)
    differ = [name for name in FINGERPRINTED if saved.get(name) != fingerprint[name]]
    if differ:
        raise DataMismatchError(
            f"{run_dir} holds a run trained on other data ({', '.join(differ)} differ from its "
            f"data.json): its model and history are not this data's; choose another run_dir, "
            f"or delete it to train on this data")


def _check_run_dir(run_dir: Path, cfg: ExperimentConfig, split: OneClassSplit) -> None:
    """Refuse a run directory of another configuration or other data; record both in a new one."""
    config_file, data_file = run_dir / "config.json", run_dir / "data.json"
    fingerprint = split_fingerprint(split)
    if config_file.exists():
        differences = run_config_differences(run_dir, cfg)
        if differences:
            raise ConfigMismatchError(
                f"{run_dir} holds a run of another configuration ({'; '.join(differences)}); "
                f"choose another run_dir or delete it")
        if not compat.predates_data_fingerprint(run_dir):
            check_run_data(run_dir, fingerprint)
            return
    else:
        checkpoints = run_dir / "checkpoints"
        if checkpoints.is_dir() and any(step.name.isdigit() for step in checkpoints.iterdir()):
            raise ConfigMismatchError(
                f"{run_dir} holds checkpoints but no config.json, so nothing says which configuration trained "
                f"them; restore its config.json from a copy, or choose another run_dir (or delete {run_dir})")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_file, json.loads(cfg.to_json()))
    write_json_atomic(data_file, fingerprint)  # a run that predated data.json records it now


@contextlib.contextmanager
def _writing(run_dirs: Sequence[str | Path | None]) -> Iterator[None]:
    """Hold the lock (``jaxad.locks``) of each run directory for the block: one writer per run
    directory, so two processes never train into one (each would overwrite the other's files)."""
    if any(isinstance(d, str) and not d.strip() for d in run_dirs):  # Path("") would be the current directory
        raise ValueError("run_dir is an empty path; give a directory, or None to train without one")
    named = [Path(d) for d in run_dirs if d is not None]
    resolved = [d.resolve() for d in named]
    twice = sorted({str(d) for d, r in zip(named, resolved) if resolved.count(r) > 1})
    if twice:
        raise ValueError(f"run_dirs name {', '.join(twice)} more than once; give each run its own directory")
    with contextlib.ExitStack() as stack:
        for run_dir in named:
            stack.enter_context(locks.locked(
                run_dir, f"another process (or fit call) is training the run in {run_dir}; wait for it to "
                         f"finish (or stop it), or choose another run_dir"))
        yield


def _open_run(run_dir: str | Path | None, cfg: ExperimentConfig, split: OneClassSplit, state: AGADState,
              keep_checkpoints: int | None = checkpoint.KEEP_RECENT):
    """(manager, state, history, epochs done): restored from the run's last checkpoint."""
    if run_dir is None:
        return None, state, [], 0
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, cfg, split)
    manager = checkpoint.checkpoint_manager(run_dir / "checkpoints", keep_checkpoints)
    if manager.latest_step() is None:
        return manager, state, [], 0
    arrays, saved, _ = checkpoint.restore_latest_intact(manager, state.arrays())
    history = compat.numbered_from_one(saved["epochs"])
    return manager, state.replace(**arrays), history, len(history)


NORMAL_ERROR_IMAGES = 1024  # training normals scored each epoch for train_normal_score


def scoring_candidates(state: AGADState) -> dict[str, AGADState]:
    """The generators a run can score with: ``"live"`` (G itself) and, when the run keeps an
    EMA of G, ``"average"`` (scored with the statistics ``jaxad.ema`` recomputes)."""
    if state.g_ema_params is None:
        return {"live": state}
    return {"average": state, "live": live_generator(state)}


def training_evidence(candidates: dict[str, AGADState], split: OneClassSplit) -> dict[str, dict[str, float]]:
    """Each candidate's training evidence, what the label-free choices read (``jaxad.selection``):
    its mean score on the first ``NORMAL_ERROR_IMAGES`` training normals (``train_normal_score``)
    and, when the run has training anomalies, its mean score on them (``train_anomaly_score``)
    and the AUROC with which its scores tell the two apart (``train_auroc``)."""
    normals, anomalies = split.train_normal[:NORMAL_ERROR_IMAGES], split.train_anomaly
    evidence = {}
    for name, candidate in candidates.items():
        normal_scores = score(candidate, normals)
        evidence[name] = {"train_normal_score": float(np.mean(normal_scores))}
        if len(anomalies):
            anomaly_scores = score(candidate, anomalies)
            labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))]
            evidence[name]["train_anomaly_score"] = float(np.mean(anomaly_scores))
            evidence[name]["train_auroc"] = auroc(labels, np.r_[normal_scores, anomaly_scores])
    return evidence


def as_scored(state: AGADState, record: dict[str, Any] | None) -> AGADState:
    """``state`` (a checkpoint's, both generators in it) as the generator its epoch's history
    ``record`` says scored."""
    return live_generator(state) if record and record.get("scoring_generator") == "live" else state


def recalibrated(state: AGADState, cfg: ExperimentConfig, split: OneClassSplit) -> AGADState:
    """``state`` as ``fit`` scores and checkpoints it: the averaged generator's statistics
    recomputed (``jaxad.ema``) on the training images, in batches composed as the step's are."""
    normals_per_batch, anomalies_per_batch = batch_composition(
        cfg.train.batch_size, cfg.data.gamma, cfg.train.min_anomalies_per_batch)
    return recalibrate_ema_statistics(state, split.train_normal, normals_per_batch,
                                      anomaly_images=split.train_anomaly, anomalies_per_batch=anomalies_per_batch)


def _epoch_record(metrics: dict[str, np.ndarray], state: AGADState, split: OneClassSplit,
                  cfg: ExperimentConfig, epoch: int) -> tuple[dict[str, Any], AGADState, np.ndarray]:
    """One epoch's history entry, the generator that scores it and its test scores.

    The entry: the mean of every step metric (and the extremes ``EPOCH_EXTREMES`` names), D
    resets, the test AUROC of the scoring generator (also with test-batch statistics when
    asked: ``batch_statistics_aurocs``) and its training evidence (``training_evidence``); with
    an EMA, also each candidate's evidence, which scored, and the scoring generator's AUROC
    under its name (every candidate's with ``ExperimentConfig.test_both_generators``). The
    test split is scored once, by the generator that reports the epoch: the choice reads only
    training evidence, so the other generator's test scores would change nothing reported."""
    record: dict[str, Any] = {name: float(np.mean(v)) for name, v in metrics.items() if name != "d_reset"}
    record["d_resets"] = float(np.sum(metrics["d_reset"]))
    for name, (suffix, extreme) in EPOCH_EXTREMES.items():
        if name in metrics:
            record[f"{name}_{suffix}"] = float(extreme(metrics[name]))
    candidates = scoring_candidates(state)
    evidence = training_evidence(candidates, split)
    chosen = choose_scoring_generator(evidence, cfg.train.pick_generator)
    test_scores = score(candidates[chosen], split.test_images)
    record["auroc"] = auroc_if_defined(split.test_labels, test_scores)
    if cfg.paper_protocol and record["auroc"] is not None:
        record.update(batch_statistics_aurocs(candidates[chosen], split.test_images, split.test_labels))
    record.update(evidence[chosen])
    if len(candidates) > 1:
        record["scoring_generator"] = chosen
        tested = candidates if cfg.test_both_generators else (chosen,)
        for name in candidates:
            if name in tested:
                record[f"auroc_{name}_generator"] = (
                    record["auroc"] if name == chosen
                    else auroc_if_defined(split.test_labels, score(candidates[name], split.test_images)))
            record.update({f"{key}_{name}_generator": value for key, value in evidence[name].items()})
    record["epoch"] = epoch
    return record, candidates[chosen], test_scores


def _anomaly_images(split: OneClassSplit) -> np.ndarray:
    return split.train_anomaly if len(split.train_anomaly) else split.train_normal[:0]


def _finish(run_dir, cfg: ExperimentConfig, split: OneClassSplit, state: AGADState,
            history: list[dict[str, float]], final_scores: np.ndarray | None = None) -> RunResult:
    # The scores final_auroc is computed from (running statistics): --paper-protocol's batch-statistics
    # figures are recorded beside it, not saved in its place. A run resumed after its last epoch
    # brings none: its final state scores them again.
    if final_scores is None:
        final_scores = score(state, split.test_images)
    evaluation = evaluate_run(state, split, final_scores, score(state, split.train_normal), cfg.threshold_quantile)
    result = RunResult(cfg, history, final_scores, np.asarray(split.test_labels),
                       np.asarray(split.test_classes), state, evaluation)
    if run_dir is not None:
        _write_run(Path(run_dir), result)
    return result


def _close(managers) -> None:
    for manager in managers:
        if manager is not None:
            checkpoint.close(manager)


_EpochInputs = tuple[np.ndarray, np.ndarray, jax.Array]  # per step: normal indices, anomaly indices, key


def epoch_inputs(cfg: ExperimentConfig, split: OneClassSplit, index: int) -> _EpochInputs:
    """What ``fit`` feeds the train step in the epoch of 0-based ``index`` (the epoch's number
    - 1): (steps, Bn) normal and (steps, Ba) anomaly indices, (steps,) keys. A script that
    calls ``jitted_train_step`` with these replays a run's steps exactly."""
    t = cfg.train
    normal_index, anomaly_index = epoch_indices(len(split.train_normal), len(split.train_anomaly), t.batch_size,
                                                cfg.data.gamma, cfg.seed, index, t.min_anomalies_per_batch)
    # Keys per (seed, epoch), so a resumed run draws exactly what an uninterrupted one does.
    epoch_key = jax.random.fold_in(jax.random.key(cfg.seed), 1_000_003 + index)
    return normal_index, anomaly_index, jax.random.split(epoch_key, len(normal_index))


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How the epoch loop holds its models."""

    step: Callable                                             # the jitted train step
    place: Callable[[list[AGADState]], AGADState]              # the models' states, as the step takes them
    step_inputs: Callable[[list[_EpochInputs]], _EpochInputs]  # their epoch inputs, likewise
    model: Callable[[Any, int], Any]                           # model k's part of the state or of step metrics


def _one_model_layout(n_devices: int) -> _Layout:
    """One model: under jit, or replicated over ``n_devices`` under pmap with each batch split."""
    if n_devices == 1:
        return _Layout(jitted_train_step, itemgetter(0), itemgetter(0), lambda tree, k: tree)

    def shard(inputs: list[_EpochInputs]) -> _EpochInputs:
        normal_index, anomaly_index, keys = inputs[0]
        return (parallel.shard_batch_indices(normal_index, n_devices),
                parallel.shard_batch_indices(anomaly_index, n_devices), keys)

    # The devices hold identical copies of the model and of the (cross-device mean) metrics.
    return _Layout(parallel.pmap_train_step(), lambda states: parallel.replicate(states[0], n_devices),
                   shard, lambda tree, k: parallel.unreplicate(tree))


def _stack_states(states: list[AGADState]) -> AGADState:
    return states[0].replace(**jax.tree.map(lambda *xs: jnp.stack(xs), *[s.arrays() for s in states]))


def _stack_inputs(inputs: list[_EpochInputs]) -> _EpochInputs:
    normal_index, anomaly_index, keys = zip(*inputs)
    return np.stack(normal_index, 1), np.stack(anomaly_index, 1), jnp.stack(keys, 1)  # (steps, K, ...)


def _model(tree: Any, k: int) -> Any:
    return jax.tree.map(lambda x: x[k], tree)


# K models on a leading axis of the state, the anomaly images, the indices and the keys.
_MODELS_AT_ONCE = _Layout(_train_step_many, _stack_states, _stack_inputs, _model)


def _fit_models(layout: _Layout, cfgs: list[ExperimentConfig], splits: list[OneClassSplit],
                fresh_states: list[AGADState], run_dirs: list[str | Path | None],
                anomaly_images: np.ndarray, desc: str, progress: bool,
                on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                keep_checkpoints: int | None = checkpoint.KEEP_RECENT) -> list[RunResult]:
    """The epoch loop of ``fit`` and ``fit_many``: resume each run, train the models ``layout``
    holds, and after every epoch check the losses, then score, checkpoint and record each model.
    ``anomaly_images`` come as ``layout.step`` takes them. Returns one result per model."""
    checkpoint.check_keep_recent(keep_checkpoints)
    managers, states, histories, epochs_done = zip(*[_open_run(d, c, split, s, keep_checkpoints) for c, split, s, d
                                                     in zip(cfgs, splits, fresh_states, run_dirs)])
    if len(set(epochs_done)) != 1:
        _close(managers)
        raise ValueError("fit_many resumes only runs stopped at the same epoch; use fit for each")
    epochs_done, epochs = epochs_done[0], cfgs[0].train.epochs
    state = layout.place(states)
    scored = [as_scored(s, h[-1] if h else None) for s, h in zip(states, histories)]  # as last scored
    final_scores: list[np.ndarray | None] = [None] * len(cfgs)  # the last epoch's test scores, once trained
    normal_images, anomaly_images = jnp.asarray(splits[0].train_normal), jnp.asarray(anomaly_images)
    bar = tqdm(range(epochs_done + 1, epochs + 1), initial=epochs_done, total=epochs, disable=not progress,
               desc=desc, leave=False)
    try:
        for epoch in bar:  # counting from 1
            started = time.perf_counter()
            normal_index, anomaly_index, keys = layout.step_inputs(
                [epoch_inputs(c, s, epoch - 1) for c, s in zip(cfgs, splits)])
            new_state, step_metrics = state, []
            for i in range(len(normal_index)):
                # Dispatch is asynchronous: the host queues steps while the device works.
                new_state, m = layout.step(new_state, normal_images, anomaly_images, normal_index[i],
                                           anomaly_index[i], keys[i])
                step_metrics.append(m)
            step_metrics = jax.device_get(step_metrics)
            metrics = [jax.tree.map(lambda *xs: np.stack(xs), *[layout.model(m, k) for m in step_metrics])
                       for k in range(len(cfgs))]  # per model: each metric over the steps
            for model_metrics in metrics:
                check_finite(model_metrics, f"epoch {epoch}: loss ")
            state = new_state
            train_seconds = time.perf_counter() - started  # the steps (device_get waited for them)
            for k, (cfg, split, manager, history) in enumerate(zip(cfgs, splits, managers, histories)):
                evaluation_started = time.perf_counter()
                model_state = recalibrated(layout.model(state, k), cfg, split)
                record, scored[k], final_scores[k] = _epoch_record(metrics[k], model_state, split, cfg, epoch)
                record.update(epoch_seconds(train_seconds, time.perf_counter() - evaluation_started))
                history.append(record)
                if manager is not None:
                    checkpoint.save(manager, epoch, model_state.arrays(), {"epochs": history})
                    write_json_atomic(Path(run_dirs[k]) / "history.json", history)
                if on_epoch is not None:
                    on_epoch(epoch, record)
            bar.set_postfix(progress_postfix([h[-1] for h in histories]))
    finally:
        _close(managers)
        bar.close()
    return [_finish(d, c, s, scored[k], h, final_scores[k])
            for k, (c, s, d, h) in enumerate(zip(cfgs, splits, run_dirs, histories))]


def epoch_seconds(train_seconds: float, evaluation_seconds: float) -> dict[str, float]:
    """What an epoch's record says of its time: ``train_seconds`` (the train steps),
    ``eval_seconds`` (what follows them: the averaged generator's statistics, the training
    evidence, the test scoring; the checkpoint is written in the background) and their sum,
    ``seconds``.

    Args:
        train_seconds: wall time of the epoch's train steps (shared by models trained at once).
        evaluation_seconds: wall time of this model's evaluation after them.

    Returns:
        The three fields of the record.
    """
    return {"train_seconds": train_seconds, "eval_seconds": evaluation_seconds,
            "seconds": train_seconds + evaluation_seconds}


def progress_postfix(records: list[dict[str, float]]) -> dict[str, str]:
    """The progress bar's figures after an epoch, units in their names: each model's AUROC in
    percent, the epoch's seconds of training and of evaluation (every model's) and, for one
    model, its mean D and G losses.

        progress_postfix([{"auroc": 97.25, "d_loss": 1.44, "g_loss": 40.2,
                           "train_seconds": 40.3, "eval_seconds": 8.6}])
        # {"AUROC %": "97.2", "train/eval s": "40/9", "D loss": "1.44", "G loss": "40.2"}

    Args:
        records: the latest history record of each model trained.

    Returns:
        The postfix, name to printed value.
    """
    postfix = {"AUROC %": "/".join("—" if r["auroc"] is None else f"{r['auroc']:.1f}" for r in records)}
    if all("train_seconds" in r for r in records):
        evaluation = sum(r["eval_seconds"] for r in records)
        postfix["train/eval s"] = f"{records[0]['train_seconds']:.0f}/{evaluation:.0f}"
    if len(records) == 1:
        postfix.update({"D loss": f"{records[0]['d_loss']:.3g}", "G loss": f"{records[0]['g_loss']:.3g}"})
    return postfix


def fit(cfg: ExperimentConfig, split: OneClassSplit | None = None, *, run_dir: str | Path | None = None,
        devices: int = 1, progress: bool = True,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        keep_checkpoints: int | None = checkpoint.KEEP_RECENT) -> RunResult:
    """Train AGAD for ``cfg.train.epochs`` epochs and score the test split after each.

    Args:
        cfg: the run's configuration.
        split: the data; default ``load_split(cfg.data, seed=cfg.seed)``. Your own arrays go
            in a ``OneClassSplit`` (float32 NHWC in [-1, 1], test labels 0/1).
        run_dir: where to checkpoint every epoch and write the run's files. An interrupted
            run resumes from its last checkpoint there, giving the same numbers as an
            uninterrupted one. None trains in memory.
        devices: > 1 trains data-parallel under pmap; 0 takes all local devices.
        progress: show a progress bar.
        on_epoch: called after each epoch as ``on_epoch(epoch, record)``, the epoch counting
            from 1, with its history record.
        keep_checkpoints: the latest epochs whose checkpoints are kept (None: all), beside the
            test-selected and the label-free selected one.

    Returns:
        The ``RunResult``: the trained state, the history, the final test scores, and the
        final, label-free selected and test-selected figures.

    Raises:
        ConfigMismatchError: ``run_dir`` holds a run of another configuration.
        DataMismatchError: ``run_dir`` holds a run trained on other data (``data.json``).
        DirectoryLockedError: another process (or ``fit`` call) is training in ``run_dir``:
            a run directory has one writer at a time (``jaxad.locks``).
        FloatingPointError: a loss or the test scores turned NaN or inf; the last good
            checkpoint is kept.
        ValueError: images or labels that would give a wrong number, or a split that does
            not fit ``cfg`` (no training normals; training anomalies at gamma 0, or none at
            gamma > 0; no test images), all before ``run_dir`` is written
            (docs/errors.md); a ``config.json`` there that is not a configuration.
        OSError: ``run_dir`` cannot be written (no space, read-only, no permission), naming
            the path.
        TypeError: ``split`` is not a ``OneClassSplit`` (e.g. a path meant for ``run_dir``).
    """
    if split is not None and not isinstance(split, OneClassSplit):
        raise TypeError(f"fit's second argument is a OneClassSplit, got {type(split).__name__} {split!r:.60}; "
                        f"pass a run directory as run_dir=..., e.g. fit(cfg, run_dir='runs/x')")
    split = split if split is not None else load_split(cfg.data, seed=cfg.seed)
    check_split(cfg, split)
    n_devices = parallel.check_device_count(devices)
    axis_name = parallel.AXIS if n_devices > 1 else None
    state = create_train_state(cfg, jax.random.key(cfg.seed), axis_name=axis_name)
    desc = (f"{cfg.data.dataset}/{cfg.model.backbone} class {cfg.data.normal_class} "
            f"gamma {cfg.data.gamma} seed {cfg.seed}")
    with _writing([run_dir]):
        return _fit_models(_one_model_layout(n_devices), [cfg], [split], [state], [run_dir],
                           _anomaly_images(split), desc, progress, on_epoch, keep_checkpoints)[0]


def fit_many(cfgs: Sequence[ExperimentConfig], splits: Sequence[OneClassSplit], *,
             run_dirs: Sequence[str | Path | None] | None = None, progress: bool = True,
             keep_checkpoints: int | None = checkpoint.KEEP_RECENT) -> list[RunResult]:
    """Train K models at once: ``train_step`` vmapped over a leading model axis.

    Each model gets exactly the batches, keys and checkpoints ``fit`` would give it, so the
    results agree with K separate ``fit`` calls to float tolerance. Small nets leave most of
    a GPU idle: this fills it.

    Args:
        cfgs: K configurations that differ only in their seed (e.g. the 3 seeds of one normal
            class and gamma).
        splits: one per configuration, sharing the normal training images and the number of
            anomalies.
        run_dirs: one per configuration (None: train in memory), as ``fit``'s ``run_dir``.
        progress: show a progress bar.
        keep_checkpoints: as ``fit``'s.

    Returns:
        One ``RunResult`` per configuration, in order.

    Raises:
        ValueError: configurations that differ in more than the seed, splits of other normal
            images or anomaly counts, or one run directory named twice; and as ``fit``.
        DirectoryLockedError, FloatingPointError, OSError: as ``fit``.
    """
    cfgs, splits = list(cfgs), list(splits)
    run_dirs = list(run_dirs) if run_dirs is not None else [None] * len(cfgs)
    if not (len(cfgs) == len(splits) == len(run_dirs)) or not cfgs:
        raise ValueError("fit_many needs one split and one run_dir per config")
    if any(c.replace(seed=0) != cfgs[0].replace(seed=0) for c in cfgs):
        raise ValueError("fit_many trains configurations that differ only in their seed")
    if any(not np.array_equal(s.train_normal, splits[0].train_normal) or
           s.train_anomaly.shape != splits[0].train_anomaly.shape for s in splits):
        raise ValueError("fit_many needs splits of the same normal images and anomaly count")
    for cfg, split in zip(cfgs, splits):
        check_split(cfg, split)
    states = [create_train_state(c, jax.random.key(c.seed)) for c in cfgs]
    anomaly_images = np.stack([_anomaly_images(s) for s in splits])
    cfg = cfgs[0]
    with _writing(run_dirs):
        return _fit_models(_MODELS_AT_ONCE, cfgs, splits, states, run_dirs, anomaly_images,
                           f"{len(cfgs)} models: class {cfg.data.normal_class} gamma {cfg.data.gamma}", progress,
                           keep_checkpoints=keep_checkpoints)


def save_final_scores(run_dir: Path, scores: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> None:
    """Write a run's ``scores.npz`` (final test scores, labels, classes) atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, scores=scores, labels=labels, classes=classes)
    write_bytes_atomic(run_dir / "scores.npz", buffer.getvalue())


def _write_run(run_dir: Path, result: RunResult) -> None:
    save_final_scores(run_dir, result.test_scores, result.test_labels, result.test_classes)
    # The checkpoints of the final, the test-selected and the label-free selected epoch (kept by
    # the preservation policy; absent in run directories whose checkpoint steps counted from 0).
    checkpoints = {name: f"checkpoints/{epoch}" for name, epoch in
                   (("final", len(result.history)), ("test_selected", result.best_epoch),
                    ("selected", result.selected_epoch))
                   if epoch is not None and (run_dir / "checkpoints" / str(epoch)).is_dir()}
    batch_statistics = {}  # --paper-protocol's figures: the final epoch's, the best on the test split
    for name in BATCH_STATISTICS_AUROCS:
        batch_statistics[f"final_{name}"] = result.history[-1].get(name)
        batch_statistics[f"best_{name}"] = max((h[name] for h in result.history if name in h), default=None)
    write_json_atomic(run_dir / "result.json", {
        "status": "complete",
        "final_auroc": result.final_auroc,
        "selected_auroc": result.selected_auroc,
        "selected_epoch": result.selected_epoch,
        "best_auroc": result.best_auroc,
        "best_epoch": result.best_epoch,
        compat.EPOCHS_COUNT_FROM: 1,
        "checkpoints": checkpoints,
        "epochs": len(result.history),
        "d_resets": sum(h["d_resets"] for h in result.history),
        **batch_statistics,
        **result.evaluation,
    })


def load_run(run_dir: str | Path, epoch: int | str | None = None,
             generator: str | None = None) -> tuple[AGADState, ExperimentConfig]:
    """The trained model of a run directory, as it scored.

    Args:
        run_dir: a run directory (holding ``config.json`` and ``checkpoints/``).
        epoch: None for the last checkpoint; an epoch number (counting from 1); ``"best"``,
            the test-selected epoch's; or ``"selected"``, the label-free selected epoch's
            (``RunResult.selected_epoch``).
        generator: None for the generator that scored that epoch (``pick_generator``);
            ``"live"`` for G's own weights, or ``"average"`` for the EMA.

    Returns:
        ``(state, cfg)``: the state, ready for ``score``, and the run's configuration.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory.
        CheckpointError: that epoch's checkpoint was not kept, or cannot be read, or holds
            another model than ``config.json`` describes; the message lists the epochs kept.
            (A checkpoint that a run training there removes while it is read is looked up
            again.)
        ValueError: ``generator="average"`` for a run that kept no EMA, or a ``config.json``
            that is not a configuration (an unknown field, a value of the wrong type).
    """
    if generator not in (None, "live", "average"):
        raise ValueError(f"generator is 'live', 'average' or None (the one that scored), got {generator!r}")
    state, cfg, history, restored_epoch = load_training_state(run_dir, epoch)
    # The generator that scored that epoch (pick_generator), as its history entry says.
    records = [r for r in history if r.get("epoch") == restored_epoch]
    record = records[-1] if records else None
    if generator is not None:
        if generator == "average" and cfg.train.ema_decay == 0:
            raise ValueError(f"{run_dir} kept no averaged generator (ema_decay 0); its generator is 'live'")
        record = {"scoring_generator": generator}
    return as_scored(state, record), cfg


def load_training_state(run_dir: str | Path, epoch: int | str | None = None
                        ) -> tuple[AGADState, ExperimentConfig, list[dict[str, Any]], int]:
    """A run's saved training state, as ``fit`` resumes from it (G, D, their optimiser states,
    the EMA), with its configuration, its history up to that checkpoint and the epoch restored
    (counting from 1). ``epoch`` as in ``load_run``. Training it on with the batches and keys of
    ``epoch_inputs`` replays the run's next epochs."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    state = create_train_state(cfg, jax.random.key(cfg.seed))
    manager = checkpoint.checkpoint_manager(run_dir / "checkpoints", read_only=True)
    try:
        arrays, saved, restored_epoch = checkpoint.restore(manager, state.arrays(), epoch)
    finally:
        manager.close()
    # Each checkpoint saves the history as it stood at its epoch.
    return state.replace(**arrays), cfg, compat.numbered_from_one(saved.get("epochs", [])), restored_epoch


def is_complete(run_dir: str | Path) -> bool:
    """Whether a run directory holds a finished run (its ``result.json`` was written)."""
    path = Path(run_dir) / "result.json"
    return path.exists() and read_json(path, dict).get("status") in ("complete", "failed")

