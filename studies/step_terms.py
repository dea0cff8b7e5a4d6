"""Step by step: each training step's loss terms, to see what happens inside an epoch.

From the start of a run (any run.py flags; the first class, gamma and seed they name):

    python -m studies.step_terms OUT.json --dataset mnist --data-dir DIR \\
        --gammas 0.05 --classes 2 --epochs 4 [any run.py flag, e.g. --freeze-bn]

From a saved epoch of a run directory, replaying the next epochs (e.g. the epoch a run fell):

    python -m studies.step_terms OUT.json --run RUN_DIR --after-epoch 11 --epochs 2 [--gradients] [--anatomy]
        [--line-search STEP]  # after that step: the errors along G's update, at fractions of it
        [--clip-g-norm C]   # a counterfactual: the same epochs with G's gradient clipped
        [--clip-g-factor K] # ... clipped at K times its running norm (--g-grad-clip-factor)
        [--clip-g-update-factor K]  # ... G's update (after Adam) clipped at K times its running norm
        [--g-optimizer FIELD=VALUE ...]  # ... G's optimiser built with these TrainConfig fields changed

With ``--gradients`` it also prints, per step, the norm of the gradient each loss weight's terms
send to G's parameters (the others set to 0), the whole loss's (with ``--g-grad-clip-factor``,
beside the running norm it is clipped against) and the size of G's update relative to its
parameters: which term drives a step that breaks G. With ``--anatomy`` (either form), per step,
what the contextual adversarial term meets (``pseudo_pass_anatomy``: how close G(x_hat) comes to
x_hat, image by image; how saturated G's tanh is there; whether the term's gradient works against
the reconstruction term's; how much of it passes through x_hat) and, after each epoch, where in G
its largest gradient acts, parameter array by parameter array. ``--line-search STEP`` evaluates
both training errors along the update G took at that step, at fractions of it: a step that
breaks G by its length helps up to some fraction and hurts beyond; one that breaks it by its
direction hurts from the start.

It runs the compiled step ``fit`` runs, on the batches and keys ``fit`` draws
(``jaxad.runs.epoch_inputs``), so it retraces the run bit for bit on the machine that made it.
Per step it prints the normal branch (L1(x, x_hat), L1(G(x_hat), x_hat), the adversarial and
latent errors, D's loss, D's mean output on x and on x_hat) and, at gamma > 0, each anomaly
error, its reciprocal term ``w / (error + eps)`` and that term's sensitivity
``w / (error + eps)^2``: its gradient goes as ``w / error^2``, so one step with a small error
can outweigh hundreds of ordinary ones in Adam's second moment. After each epoch: the live
generator's test AUROC (running statistics) and its mean score on training normals. Every
step metric goes to OUT.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxad import ExperimentConfig, create_train_state, score
from jaxad.allocator import restart_with_fast_malloc
from jaxad.clipping import RunningNormClipState, clip_by_running_norm, running_norm
from jaxad.commands.run import build_spec, parse_args
from jaxad.data import OneClassSplit, gather_batch, load_split
from jaxad.files import write_text_atomic
from jaxad.losses import contextual_adversarial_loss, contextual_loss
from jaxad.metrics import auroc
from jaxad.runs import NORMAL_ERROR_IMAGES, epoch_inputs, jitted_train_step, load_training_state
from jaxad.train import AGADState, generator_loss, generator_passes, live_generator, make_optimizers

ANOMALY_ERRORS = {"adversarial": "w_adv", "reconstruction": "w_adcon", "latent": "w_lat"}
NORMAL_TERMS = {"normal L1": "g_contextual", "L1(G(x_hat), x_hat)": "g_contextual_adversarial",
                "adversarial": "g_adversarial", "latent": "g_latent", "D loss": "d_loss",
                "D(x)": "d_real", "D(x_hat)": "d_fake"}


LOSS_WEIGHTS = ("w_adv", "w_con", "w_adcon", "w_lat")


def term_gradient(state: AGADState, batch: dict, weight: str | None, detach_pseudo: bool | None = None):
    """The gradient G's loss sends to G's parameters with only ``weight`` kept (``None``: the
    whole loss, what the optimiser is given); ``detach_pseudo`` overrides the run's setting."""
    loss = state.settings.loss
    if weight is not None:
        loss = dataclasses.replace(loss, **{w: getattr(loss, w) if w == weight else 0.0 for w in LOSS_WEIGHTS})
    settings = dataclasses.replace(state.settings, loss=loss)
    if detach_pseudo is not None:
        settings = dataclasses.replace(settings, detach_pseudo=detach_pseudo)
    alone = state.replace(settings=settings)
    return jax.grad(lambda p: generator_loss(p, alone, batch)[0])(state.g_params)


@functools.partial(jax.jit, static_argnames="weight")
def term_gradient_norm(state: AGADState, batch: dict, weight: str | None) -> jax.Array:
    """The norm of :func:`term_gradient`."""
    return optax.tree.norm(term_gradient(state, batch, weight))


CLOSE = 1.0  # L1(G(x_hat), x_hat) under half its range: G no longer fails on that image


@jax.jit
def pseudo_pass_anatomy(state: AGADState, batch: dict) -> dict[str, jax.Array]:
    """What the contextual adversarial term meets in this batch, before the step: the smallest
    per-image L1(G(x_hat), x_hat) and how many images are under ``CLOSE``; the mean slope of G's
    tanh on G(x_hat) (1 - G(x_hat)^2: 0 when saturated); the cosine between the term's gradient
    and the reconstruction term's (negative: to first order, following the term undoes the
    reconstruction of normals); the term's gradient norm with x_hat detached (only the pass
    G(x_hat)); and its norm per parameter array (where in G it acts)."""
    passes = generator_passes(state.generator, state.g_params, state.g_batch_stats, batch, state.settings)
    per_image = jnp.abs(passes.x_hat - passes.x_hat2).mean(axis=(1, 2, 3))
    adcon = term_gradient(state, batch, "w_adcon")
    con = term_gradient(state, batch, "w_con")
    return {"pseudo_l1_min": per_image.min(), "pseudo_close": jnp.sum(per_image < CLOSE),
            "pseudo_tanh_slope": jnp.mean(1.0 - passes.x_hat2 ** 2),
            "cos_adcon_con": optax.tree.vdot(adcon, con) / (optax.tree.norm(adcon) * optax.tree.norm(con)),
            "g_grad_w_adcon_detached": optax.tree.norm(term_gradient(state, batch, "w_adcon", detach_pseudo=True)),
            "g_grad_w_adcon_layers": {jax.tree_util.keystr(path): jnp.linalg.norm(leaf)
                                      for path, leaf in jax.tree_util.tree_flatten_with_path(adcon)[0]}}


@jax.jit
def relative_change(new, old) -> jax.Array:
    return optax.tree.norm(jax.tree.map(jnp.subtract, new, old)) / optax.tree.norm(old)


def step_line(step: int, metrics: dict[str, np.ndarray], cfg: ExperimentConfig) -> str:
    """One step's normal-branch terms and, with anomalies, their errors, reciprocal terms and
    sensitivities."""
    parts = [f"{label} {float(metrics[name][step]):.3g}" for label, name in NORMAL_TERMS.items()]
    if "g_update" in metrics:
        parts += [f"|grad {w}| {float(metrics[f'g_grad_{w}'][step]):.3g}" for w in LOSS_WEIGHTS]
        parts.append(f"|grad| {float(metrics['g_grad'][step]):.3g}")
        if "g_grad_running_norm" in metrics and np.isfinite(metrics["g_grad_running_norm"][step]):
            parts.append(f"(running {float(metrics['g_grad_running_norm'][step]):.3g})")
        parts.append(f"|update|/|G| {float(metrics['g_update'][step]):.3g}")
    if "pseudo_l1_min" in metrics:
        parts += [f"per-image L1(G(x_hat), x_hat) min {float(metrics['pseudo_l1_min'][step]):.3g}",
                  f"under {CLOSE:g}: {int(metrics['pseudo_close'][step])}",
                  f"tanh slope {float(metrics['pseudo_tanh_slope'][step]):.3g}",
                  f"cos(w_adcon, w_con) {float(metrics['cos_adcon_con'][step]):+.2f}",
                  f"|grad w_adcon| x_hat detached {float(metrics['g_grad_w_adcon_detached'][step]):.3g}"]
    if "g_clipped" in metrics and metrics["g_clipped"][step] > 0:
        parts.append("G's step clipped")  # its gradient, or with --clip-g-update-factor alone its update
    if cfg.data.gamma > 0:
        for error, weight_name in ANOMALY_ERRORS.items():
            value = float(metrics[f"g_anomaly_{error}"][step])
            weight = getattr(cfg.loss, weight_name)
            parts.append(f"anomaly {error} {value:.3g} (term {weight / (value + cfg.loss.eps):.3g}, "
                         f"d {weight / (value + cfg.loss.eps) ** 2:.3g})")
    return f"  step {step:3d}  " + "  ".join(parts)


LINE_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


@jax.jit
def training_errors(state: AGADState, g_params, batch: dict) -> tuple[jax.Array, jax.Array]:
    """L1(x, x_hat) and L1(G(x_hat), x_hat) on ``batch`` as the loss sees them, with ``g_params``
    (and the state's running statistics, which training-mode BatchNorm does not read)."""
    passes = generator_passes(state.generator, g_params, state.g_batch_stats, batch, state.settings)
    return contextual_loss(batch["normal"], passes.x_hat), contextual_adversarial_loss(passes.x_hat, passes.x_hat2)


def line_search(state: AGADState, before, batches: list[dict]) -> list[dict]:
    """Along the update G just took (from ``before`` to ``state.g_params``): both errors at each
    fraction t of it, on each of ``batches``. Did the step's length or its direction do the harm?
    (A harmful direction hurts from small t on; a step too long helps up to some t, then hurts.)"""
    update = jax.tree.map(jnp.subtract, state.g_params, before)
    rows = []
    for t in LINE_FRACTIONS:
        params = jax.tree.map(lambda p, u: p + t * u, before, update)
        errors = [jax.device_get(training_errors(state, params, batch)) for batch in batches]
        rows.append({"t": t, "normal_l1": [float(e[0]) for e in errors], "pseudo_l1": [float(e[1]) for e in errors]})
    return rows


def line_table(step: int, rows: list[dict]) -> str:
    """:func:`line_search`'s rows, one per fraction t."""
    lines = [f"  along step {step}'s update of G, at fraction t (batches: this step's, then the next's):"]
    lines += [f"    t {r['t']:4.2f}  normal L1 " + " ".join(f"{v:.3f}" for v in r["normal_l1"])
              + "  L1(G(x_hat), x_hat) " + " ".join(f"{v:.3f}" for v in r["pseudo_l1"]) for r in rows]
    return "\n".join(lines)


def replay(state: AGADState, cfg: ExperimentConfig, split: OneClassSplit, epochs: range,
           gradients: bool = False, anatomy: bool = False, line_search_step: int | None = None) -> Iterator[dict]:
    """Train ``state`` through ``epochs`` (0-based indices) as ``fit`` does; print each step and
    yield, after each epoch, the live generator's test AUROC and training-normal score and every
    step metric (with ``gradients``, also each weight's gradient norm and G's relative update;
    with ``anatomy``, :func:`pseudo_pass_anatomy`; with ``line_search_step``, :func:`line_search`
    on that step of the first epoch)."""
    normal_images, anomaly_images = jnp.asarray(split.train_normal), jnp.asarray(split.train_anomaly)
    for index in epochs:
        normal_index, anomaly_index, keys = epoch_inputs(cfg, split, index)

        def batch_at(step: int) -> dict:
            normal, anomaly = gather_batch(normal_images, anomaly_images, normal_index[step], anomaly_index[step])
            return {"normal": normal, "anomaly": anomaly}

        step_metrics, searched = [], None
        for i in range(len(normal_index)):
            extra = {}
            # Everything below that reads the state does so before the step, which donates it.
            searching = index == epochs[0] and i == line_search_step
            if searching:
                batches = [batch_at(j) for j in (i, i + 1) if j < len(normal_index)]
            if gradients or searching:  # G as it was before this step's update
                before = jax.tree.map(jnp.copy, state.g_params)
            if gradients or anatomy:
                batch = batch_at(i)
            if anatomy:
                extra.update(pseudo_pass_anatomy(state, batch))
            if gradients:
                extra.update({f"g_grad_{w}": term_gradient_norm(state, batch, w) for w in LOSS_WEIGHTS})
                extra["g_grad"] = term_gradient_norm(state, batch, None)
                clips = optax.tree_utils.tree_get_all_with_path(state.g_opt_state, "RunningNormClipState")
                if clips:  # what this step's gradient is clipped against (the first clip: the gradient's)
                    extra["g_grad_running_norm"] = running_norm(clips[0][1])
            state, m = jitted_train_step(state, normal_images, anomaly_images, normal_index[i], anomaly_index[i],
                                         keys[i])
            if gradients:
                extra["g_update"] = relative_change(state.g_params, before)
            if searching:
                searched = line_search(state, before, batches)
            step_metrics.append({**m, **extra})
        metrics = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(step_metrics))
        print(f"epoch {index + 1}:")
        for i in range(len(normal_index)):
            print(step_line(i, metrics, cfg))
        if anatomy:
            print(layer_table(metrics["g_grad_w_adcon_layers"]))
        if searched is not None:
            print(line_table(line_search_step, searched))
        live = live_generator(state)
        test_auroc = auroc(split.test_labels, score(live, split.test_images))
        normal_score = float(np.mean(score(live, split.train_normal[:NORMAL_ERROR_IMAGES])))
        print(f"  live generator: test AUROC {test_auroc:.2f}, mean score on training normals {normal_score:.3g}",
              flush=True)
        yield {"epoch": index + 1, "auroc_live_generator": test_auroc,
               "train_normal_score_live_generator": normal_score,
               "steps": jax.tree.map(lambda values: values.tolist(), metrics),
               **({"line_search": {"step": line_search_step, "rows": searched}} if searched is not None else {})}


def layer_table(layers: dict[str, np.ndarray], largest: int = 2) -> str:
    """The contextual adversarial term's gradient norm per parameter array, at the ``largest``
    steps of the epoch by the term's whole gradient (in step order), beside the epoch's median."""
    total = np.sqrt(sum(np.square(norms) for norms in layers.values()))
    steps = sorted(np.argsort(total)[::-1][:largest].tolist())
    header = " ".join(f"step {s} ({total[s]:.3g})" for s in steps)
    lines = [f"  w_adcon's gradient per parameter array, largest steps: {header} / epoch median"]
    lines += [f"    {name:60s} " + " ".join(f"{norms[s]:9.3g}" for s in steps) + f" / {np.median(norms):.3g}"
              for name, norms in layers.items()]
    return "\n".join(lines)


def from_run_arguments(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m studies.step_terms OUT.json", description="replay epochs of a saved run")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a run directory (runs/gamma*/class*/seed*)")
    p.add_argument("--after-epoch", required=True, type=int, help="the saved epoch to start from (counting from 1)")
    p.add_argument("--epochs", type=int, default=1, help="how many epochs to replay after it (default 1)")
    p.add_argument("--gradients", action="store_true",
                   help="also each loss weight's gradient norm on G and G's relative update, per step")
    p.add_argument("--anatomy", action="store_true",
                   help="also what the contextual adversarial term meets, per step: the per-image L1(G(x_hat), "
                        "x_hat), G's tanh slope on G(x_hat), the term's gradient against the reconstruction term's, "
                        "with x_hat detached, and per parameter array")
    p.add_argument("--line-search", type=int, metavar="STEP",
                   help="after step STEP (from 0) of the first replayed epoch: both training errors at fractions "
                        "of the update G took there, on that step's batch and the next (was it too long, or "
                        "the wrong way?)")
    p.add_argument("--clip-g-norm", type=float, metavar="C",
                   help="a counterfactual: replay with G's gradient clipped to global norm C before Adam")
    p.add_argument("--clip-g-factor", type=float, metavar="K",
                   help="a counterfactual: replay with G's gradient clipped to K times its running global norm "
                        "(as --g-grad-clip-factor trains; the running norm starts afresh at the saved epoch)")
    p.add_argument("--clip-g-update-factor", type=float, metavar="K",
                   help="a counterfactual: replay with G's update (after Adam) clipped to K times its running norm, "
                        "bounding how far G moves in one step whatever Adam's momentum adds up")
    p.add_argument("--g-optimizer", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="a counterfactual: replay with G's optimiser built as the run's TrainConfig with these "
                        "fields changed (e.g. beta2=0.9, g_update_rms_clip=1); Adam's moments and the running "
                        "norm carry on as saved; a new beta1 or beta2 also changes Adam's bias correction at once, "
                        "which lengthens the first steps after the switch: compare those from the start instead")
    return p.parse_args(argv)


CARRIED_OPTIMIZER_STATES = (optax.ScaleByAdamState, RunningNormClipState)


def with_generator_optimizer(state: AGADState, cfg: ExperimentConfig, changes: dict[str, object]) -> AGADState:
    """``state`` whose G optimiser is the one ``cfg`` with ``changes`` to its TrainConfig
    builds; the saved Adam moments and running norms carry over into it, in order."""
    g_tx, _ = make_optimizers(cfg.replace(**{f"train.{name}": value for name, value in changes.items()}))
    is_carried = lambda node: isinstance(node, CARRIED_OPTIMIZER_STATES)  # noqa: E731
    saved_nodes = jax.tree.leaves(state.g_opt_state, is_leaf=is_carried)
    saved = {kind: [n for n in saved_nodes if type(n) is kind] for kind in CARRIED_OPTIMIZER_STATES}
    new_nodes, treedef = jax.tree.flatten(g_tx.init(state.g_params), is_leaf=is_carried)
    carried = [saved[type(n)].pop(0) if is_carried(n) and saved[type(n)] else n for n in new_nodes]
    return state.replace(g_tx=g_tx, g_opt_state=jax.tree.unflatten(treedef, carried))


def parse_changes(assignments: list[str]) -> dict[str, object]:
    """``["beta2=0.9", "g_update_rms_clip=1"]`` -> ``{"beta2": 0.9, "g_update_rms_clip": 1.0}``
    (a number, ``None``, ``true``/``false``, or else the text)."""
    changes = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep:
            raise SystemExit(f"--g-optimizer takes FIELD=VALUE, got {assignment!r}")
        try:
            changes[name] = json.loads({"None": "null"}.get(text, text))
        except json.JSONDecodeError:
            changes[name] = text
        if isinstance(changes[name], int) and not isinstance(changes[name], bool):
            changes[name] = float(changes[name])
    return changes


def with_generator_update_clipped(state: AGADState, clip: optax.GradientTransformation) -> AGADState:
    """``state`` whose G update, as its optimiser makes it, then passes through ``clip``."""
    return state.replace(g_tx=optax.chain(state.g_tx, clip),
                         g_opt_state=(state.g_opt_state, clip.init(state.g_params)))


def with_generator_gradient_clipped(state: AGADState, clip: optax.GradientTransformation) -> AGADState:
    """``state`` whose G update first passes G's gradient through ``clip``; Adam's moments carry
    on as saved (D's optimiser is left as it is)."""
    return state.replace(g_tx=optax.chain(clip, state.g_tx),
                         g_opt_state=(clip.init(state.g_params), state.g_opt_state))


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    out, flags = Path(argv[0]), argv[1:]
    if "--run" in flags:
        args = from_run_arguments(flags)
        gradients, anatomy, line_search_step = args.gradients, args.anatomy, args.line_search
        state, cfg, _, epoch = load_training_state(args.run, args.after_epoch)
        if args.clip_g_norm is not None:
            state = with_generator_gradient_clipped(state, optax.clip_by_global_norm(args.clip_g_norm))
        if args.clip_g_factor is not None:
            state = with_generator_gradient_clipped(state, clip_by_running_norm(args.clip_g_factor))
        if args.clip_g_update_factor is not None:
            state = with_generator_update_clipped(state, clip_by_running_norm(args.clip_g_update_factor))
        if args.g_optimizer:
            changes = parse_changes(args.g_optimizer)
            if {"beta1", "beta2"} & set(changes):
                print("note: a new beta changes Adam's bias correction 1 - beta^t at once; the first steps after "
                      "the switch are longer than the setting makes them from the start", file=sys.stderr)
            state = with_generator_optimizer(state, cfg, changes)
        epochs = range(epoch, epoch + args.epochs)
    else:  # run.py's flags, and --gradients
        gradients, anatomy, line_search_step = "--gradients" in flags, "--anatomy" in flags, None
        spec = build_spec(parse_args([f for f in flags if f not in ("--gradients", "--anatomy")]))
        cfg = spec.base.replace(seed=spec.seeds[0],
                                **{"data.normal_class": spec.classes[0], "data.gamma": spec.gammas[0]})
        state, epochs = create_train_state(cfg, jax.random.key(cfg.seed)), range(cfg.train.epochs)
    records = []
    for record in replay(state, cfg, load_split(cfg.data, seed=cfg.seed), epochs, gradients, anatomy,
                         line_search_step):
        records.append(record)  # written after each epoch: an interrupted replay keeps what it did
        write_text_atomic(out, json.dumps({"config": json.loads(cfg.to_json()), "epochs": records}))
    return 0


if __name__ == "__main__":
    restart_with_fast_malloc()
    raise SystemExit(main(sys.argv[1:]))
