"""The epoch loop: train AGAD models, score them after every epoch, and score images.

``fit`` trains one model, ``fit_many`` the seeds of one class and gamma at once; both run one
loop, ``train_and_evaluate``, in which a ``Layout`` says how the models are held: one under
jit, one replicated over devices under pmap, or K stacked under vmap. After every epoch each
model is scored on the test split by the generator the label-free choice takes
(``jaxad.selection``), checkpointed and recorded in its run directory (``jaxad.rundir``).

    from jaxad import ExperimentConfig, fit, score
    result = fit(ExperimentConfig(), run_dir="runs/digits-0")   # digits, normal class 0
    print(result.final_auroc, result.best_auroc)                 # final epoch; test-selected best
    print(result.selected_auroc)                                 # the label-free selected epoch
    scores = score(result.state, images)                         # ||x - G(x)||_2 per image

Epochs count from 1 everywhere: the progress bar, error messages, the history's ``"epoch"``
and ``RunResult.best_epoch``. The batch sampler and the step keys of epoch e are drawn from
the 0-based index e - 1 (``epoch_inputs``).
"""

from __future__ import annotations

import dataclasses
import time
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxad import checkpoint, parallel, rundir, xla
from jaxad.config import ExperimentConfig
from jaxad.data import OneClassSplit, batch_composition, epoch_indices, load_split, padded_batches
from jaxad.ema import recalibrate_ema_statistics
from jaxad.evaluation import evaluate_run
from jaxad.files import write_json_atomic
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


NORMAL_ERROR_IMAGES = 1024  # training normals scored each epoch for train_normal_score


def scoring_candidates(state: AGADState) -> dict[str, AGADState]:
    """The generators a run can score with: ``"live"`` (G itself) and, when the run keeps an
    EMA of G, ``"average"`` (scored with the statistics ``jaxad.ema`` recomputes)."""
    if state.g_ema_params is None:
        return {"live": state}
    return {"average": state, "live": live_generator(state)}


# The name under which a run with synthetic anomalies records how well a generator tells them
# from the training normals: a name ``jaxad.selection`` does not read.
SYNTHETIC_AUROC = "train_auroc_synthetic"


def training_evidence(candidates: dict[str, AGADState], split: OneClassSplit,
                      synthetic_anomalies: bool = False) -> dict[str, dict[str, float]]:
    """Each candidate's training evidence, what the label-free choices read (``jaxad.selection``).

    Args:
        candidates: the generators that may score (``scoring_candidates``).
        split: the run's split.
        synthetic_anomalies: whether its training anomalies were made from the normals
            (``DataConfig.synthetic_anomalies``). G is trained to fail on exactly those images,
            and they are not drawn from the anomalies a test holds: telling them apart measures
            the fit to the training loss, not detection. Their AUROC is then recorded as
            ``SYNTHETIC_AUROC``, and the choices read the normals' score alone, as at gamma 0.

    Returns:
        Per candidate: its mean score on the first ``NORMAL_ERROR_IMAGES`` training normals
        (``train_normal_score``) and, when the run has training anomalies, its mean score on
        them (``train_anomaly_score``) and the AUROC with which its scores tell the two apart
        (``train_auroc``, or ``SYNTHETIC_AUROC``).
    """
    normals, anomalies = split.train_normal[:NORMAL_ERROR_IMAGES], split.train_anomaly
    separation = SYNTHETIC_AUROC if synthetic_anomalies else "train_auroc"
    evidence = {}
    for name, candidate in candidates.items():
        normal_scores = score(candidate, normals)
        evidence[name] = {"train_normal_score": float(np.mean(normal_scores))}
        if len(anomalies):
            anomaly_scores = score(candidate, anomalies)
            labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))]
            evidence[name]["train_anomaly_score"] = float(np.mean(anomaly_scores))
            evidence[name][separation] = auroc(labels, np.r_[normal_scores, anomaly_scores])
    return evidence


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
    evidence = training_evidence(candidates, split, cfg.data.synthetic_anomalies != "none")
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
        rundir.write_result(Path(run_dir), result)
    return result


def _close(managers) -> None:
    for manager in managers:
        if manager is not None:
            checkpoint.close(manager)


# One epoch's inputs of the train step, per step: normal indices, anomaly indices, key.
EpochInputs = tuple[np.ndarray, np.ndarray, jax.Array]


def epoch_inputs(cfg: ExperimentConfig, split: OneClassSplit, index: int) -> EpochInputs:
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
class Layout:
    """How the epoch loop holds its models: ``one_model_layout(n_devices)`` or ``MODELS_AT_ONCE``.

    Args:
        step: the jitted train step, ``step(state, normal_images, anomaly_images,
            normal_index, anomaly_index, key) -> (state, metrics)``.
        place: the models' states, as ``step`` takes them.
        step_inputs: the models' ``EpochInputs``, as ``step`` takes them.
        model: model k's part of the state or of the step's metrics.
    """

    step: Callable
    place: Callable[[list[AGADState]], AGADState]
    step_inputs: Callable[[list[EpochInputs]], EpochInputs]
    model: Callable[[Any, int], Any]


def one_model_layout(n_devices: int) -> Layout:
    """One model: under jit, or replicated over ``n_devices`` under pmap with each batch split."""
    if n_devices == 1:
        return Layout(jitted_train_step, itemgetter(0), itemgetter(0), lambda tree, k: tree)

    def shard(inputs: list[EpochInputs]) -> EpochInputs:
        normal_index, anomaly_index, keys = inputs[0]
        return (parallel.shard_batch_indices(normal_index, n_devices),
                parallel.shard_batch_indices(anomaly_index, n_devices), keys)

    # The devices hold identical copies of the model and of the (cross-device mean) metrics.
    return Layout(parallel.pmap_train_step(), lambda states: parallel.replicate(states[0], n_devices),
                  shard, lambda tree, k: parallel.unreplicate(tree))


def _stack_states(states: list[AGADState]) -> AGADState:
    return states[0].replace(**jax.tree.map(lambda *xs: jnp.stack(xs), *[s.arrays() for s in states]))


def _stack_inputs(inputs: list[EpochInputs]) -> EpochInputs:
    normal_index, anomaly_index, keys = zip(*inputs)
    return np.stack(normal_index, 1), np.stack(anomaly_index, 1), jnp.stack(keys, 1)  # (steps, K, ...)


def _model(tree: Any, k: int) -> Any:
    return jax.tree.map(lambda x: x[k], tree)


# K models on a leading axis of the state, the anomaly images, the indices and the keys.
MODELS_AT_ONCE = Layout(_train_step_many, _stack_states, _stack_inputs, _model)


def train_and_evaluate(layout: Layout, cfgs: list[ExperimentConfig], splits: list[OneClassSplit],
                       fresh_states: list[AGADState], run_dirs: list[str | Path | None],
                       anomaly_images: np.ndarray, desc: str, progress: bool,
                       on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                       keep_checkpoints: int | None = checkpoint.KEEP_RECENT) -> list[RunResult]:
    """The epoch loop of ``fit`` and ``fit_many``.

    Resume each run from its run directory, train the models ``layout`` holds, and after every
    epoch check the losses, then score, checkpoint and record each model; at the end write
    each run's result. ``fit`` and ``fit_many`` check the inputs and hold the run directories'
    locks first.

    Args:
        layout: how the models are held (``one_model_layout``, ``MODELS_AT_ONCE``).
        cfgs: one configuration per model; they share the number of epochs.
        splits: one per model, sharing the training normals.
        fresh_states: the models' initial states (``create_train_state``), for runs that start.
        run_dirs: one per model (None: in memory).
        anomaly_images: the training anomalies, as ``layout.step`` takes them.
        desc: the progress bar's label.
        progress: show the progress bar.
        on_epoch: called after each epoch as ``on_epoch(epoch, record)`` for each model.
        keep_checkpoints: as ``fit``'s.

    Returns:
        One ``RunResult`` per model, in order.

    Raises:
        ValueError: runs that stopped at different epochs; and as ``fit``.
        FloatingPointError: a loss or the test scores turned NaN or inf.
    """
    checkpoint.check_keep_recent(keep_checkpoints)
    managers, states, histories, epochs_done = zip(*[rundir.open_run(d, c, split, s, keep_checkpoints) for c, split, s, d
                                                     in zip(cfgs, splits, fresh_states, run_dirs)])
    if len(set(epochs_done)) != 1:
        _close(managers)
        raise ValueError("fit_many resumes only runs stopped at the same epoch; use fit for each")
    epochs_done, epochs = epochs_done[0], cfgs[0].train.epochs
    state = layout.place(states)
    scored = [rundir.as_scored(s, h[-1] if h else None) for s, h in zip(states, histories)]  # as last scored
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
                try:
                    record, scored[k], final_scores[k] = _epoch_record(metrics[k], model_state, split, cfg, epoch)
                except FloatingPointError as err:  # name the epoch the scores diverged in, as a loss's does
                    raise FloatingPointError(f"epoch {epoch}: {err}") from None
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
    with rundir.writing([run_dir]):
        return train_and_evaluate(one_model_layout(n_devices), [cfg], [split], [state], [run_dir],
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
    with rundir.writing(run_dirs):
        return train_and_evaluate(MODELS_AT_ONCE, cfgs, splits, states, run_dirs, anomaly_images,
                                  f"{len(cfgs)} models: class {cfg.data.normal_class} gamma {cfg.data.gamma}",
                                  progress, keep_checkpoints=keep_checkpoints)
