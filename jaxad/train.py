"""AGAD's train and score steps: pure functions of explicit state.

``train_step(state, batch, key) -> (state, metrics)`` serves every backbone, every gamma
and every device count: jit, pmap or vmap it where you call it. The batch holds a normal
sub-batch and, when gamma > 0, an anomaly sub-batch; their sizes are static, so one
compiled step serves a whole run.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax import lax

from jaxad import xla
from jaxad.clipping import clip_by_running_norm
from jaxad.config import ExperimentConfig, LossConfig
from jaxad.data import gather_batch
from jaxad.losses import (AnomalyTerms, NormalTerms, adversarial_loss, bce, contextual_adversarial_loss,
                          contextual_loss, discriminator_loss, generator_anomaly_loss,
                          generator_normal_loss, l1, latent_loss, reconstruction_error)
from jaxad.models import build_discriminator, build_generator
from jaxad.models.layers import BN_MOMENTUM, DEFAULT_UPSAMPLE, UpsampleImpl
# The input checks live in jaxad.validation; these names are also jaxad.train's, as documented.
from jaxad.validation import (IMAGE_RANGE_TOLERANCE, ImageShape, check_finite, check_image_range,  # noqa: F401
                              check_images, check_state_images)

Batch = dict[str, jax.Array]  # {"normal": (Bn, H, W, C), "anomaly": (Ba, H, W, C), Ba may be 0}
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """What the step needs beyond arrays; static under jit. Built from the config by
    ``create_train_state``, where the defaults live."""

    loss: LossConfig
    pseudo_anomaly_bn: str
    freeze_bn: bool
    anomaly_bn: str
    anomalies_update_statistics: bool
    detach_pseudo: bool
    ema_decay: float
    d_reset_threshold: float
    axis_name: str | None = None


@struct.dataclass
class AGADState:
    """Everything that changes during training, plus the static networks and optimisers."""

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    d_params: Any
    d_batch_stats: Any
    g_opt_state: Any
    d_opt_state: Any
    # The generator that scores, when ``ema_decay`` > 0: an EMA of G's parameters and
    # statistics. None otherwise: G itself scores.
    g_ema_params: Any
    g_ema_batch_stats: Any
    generator: nn.Module = struct.field(pytree_node=False)
    discriminator: nn.Module = struct.field(pytree_node=False)
    g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    settings: StepSettings = struct.field(pytree_node=False)

    def arrays(self) -> dict[str, Any]:
        """The pytree of arrays that a checkpoint holds."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("pytree_node", True)}


def make_optimizers(cfg: ExperimentConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """G's and D's optimisers: Adam with the paper's learning rate and GANomaly's beta1; with
    ``grad_clip_norm``, each gradient clipped to that global norm first; with
    ``g_grad_clip_factor``, G's gradient also clipped to that multiple of its running norm; with
    ``g_update_rms_clip``, each of G's parameter arrays' update clipped to that RMS (in
    learning rates) after Adam."""
    t = cfg.train
    return (_adam(t.learning_rate, t.beta1, t.beta2, t.grad_clip_norm, t.g_grad_clip_factor, t.g_update_rms_clip),
            _adam(t.learning_rate, t.beta1, t.beta2, t.grad_clip_norm))


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float, beta1: float, beta2: float, grad_clip_norm: float | None = None,
          clip_factor: float | None = None, update_rms: float | None = None) -> optax.GradientTransformation:
    # One object per setting: the optimiser is a static part of the state, so equal
    # settings must compare equal for jit to reuse its compiled step across runs.
    clips = ([] if grad_clip_norm is None else [optax.clip_by_global_norm(grad_clip_norm)]) + \
            ([] if clip_factor is None else [clip_by_running_norm(clip_factor)])
    adam = optax.adam(learning_rate, b1=beta1, b2=beta2)
    # Adafactor's update clipping, on the update in parameter units (learning rate x RMS).
    after = [] if update_rms is None else [optax.clip_by_block_rms(update_rms * learning_rate)]
    return optax.chain(*clips, adam, *after) if clips or after else adam


def create_train_state(cfg: ExperimentConfig, key: jax.Array, axis_name: str | None = None,
                       upsample_impl: UpsampleImpl = DEFAULT_UPSAMPLE) -> AGADState:
    """Initialise G, D, their optimiser states and, with an EMA, the averaged generator.

    Args:
        cfg: the run's configuration; the networks, optimisers and step settings come from it.
        key: the PRNG key G's and D's initial weights are drawn from.
        axis_name: the device axis when the step runs under pmap or shard_map, so that
            BatchNorm statistics, gradients and the D-reset decision are shared across
            devices; None for one device, or for jit with shardings.
        upsample_impl: the transposed-convolution formulation; the default is the backend's
            (``jaxad.models.layers.default_formulations``).

    Returns:
        The ``AGADState`` at step 0, for ``train_step``.
    """
    m = cfg.model
    generator = build_generator(m, axis_name=axis_name, upsample_impl=upsample_impl)
    discriminator = build_discriminator(m, axis_name=axis_name)
    dummy = jnp.zeros((2, m.image_size, m.image_size, m.channels), jnp.float32)
    g_key, d_key = jax.random.split(key)
    # Init without the axis: there is no device axis outside pmap.
    g_vars = _init_variables(generator.clone(axis_name=None), g_key, dummy)
    d_vars = _init_variables(discriminator.clone(axis_name=None), d_key, dummy)
    g_tx, d_tx = make_optimizers(cfg)
    t = cfg.train
    settings = StepSettings(cfg.loss, m.pseudo_anomaly_bn, t.freeze_bn, t.anomaly_bn, t.anomalies_update_statistics,
                            t.detach_pseudo, t.ema_decay, t.d_reset_threshold, axis_name)
    return AGADState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_vars["params"], g_batch_stats=g_vars["batch_stats"],
        d_params=d_vars["params"], d_batch_stats=d_vars["batch_stats"],
        g_opt_state=g_tx.init(g_vars["params"]), d_opt_state=d_tx.init(d_vars["params"]),
        # Copies: the step donates the state, and one buffer cannot be donated twice.
        g_ema_params=_copy(g_vars["params"]) if t.ema_decay > 0 else None,
        g_ema_batch_stats=_copy(g_vars["batch_stats"]) if t.ema_decay > 0 else None,
        generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx, settings=settings)


def _init(module: nn.Module, key: jax.Array, dummy: jax.Array):
    return module.init(key, dummy, train=False)


# One compiled program per network (modules are static and compare by their fields) instead of
# eager init's op-by-op dispatch, compiled without optimisation passes (it runs once): in a
# fresh process on CPU, naive G and D 2.6 s against 18 s eager and 13 s fully optimised
# (docs/performance.md, Start-up and compiler options); equal to eager init within float32
# rounding.
_init_variables = xla.jit(_init, run_once=True, static_argnums=0)


def _copy(tree):
    return jax.tree.map(jnp.array, tree)


def _apply(module: nn.Module, params, stats, images: jax.Array, train: bool, **kwargs):
    """Apply a network; in train mode BatchNorm uses batch statistics and returns the new ones."""
    variables = {"params": params, "batch_stats": stats}
    if not train:
        return module.apply(variables, images, train=False, **kwargs), stats
    out, updates = module.apply(variables, images, train=True, mutable=["batch_stats"], **kwargs)
    return out, updates["batch_stats"]


def _cross_device_mean(tree, axis_name: str | None):
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def has_anomalies(batch: Batch) -> bool:
    """Whether the batch carries an anomaly sub-batch (a static fact: shapes are static)."""
    anomalies = batch.get("anomaly")
    return anomalies is not None and anomalies.shape[0] > 0


def joint_batches(batch: Batch, s: StepSettings) -> bool:
    """Whether normals and anomalies pass G and D as one batch (``TrainConfig.anomaly_bn``;
    Freeze-BN, which normalises anomalies with running statistics, comes first)."""
    return has_anomalies(batch) and s.anomaly_bn == "joint" and not s.freeze_bn


def _split(tree, count: int):
    """(the first ``count`` rows, the rest) of every array in ``tree``."""
    return jax.tree.map(lambda a: a[:count], tree), jax.tree.map(lambda a: a[count:], tree)


def _joint_apply(module: nn.Module, params, stats, first: jax.Array, second: jax.Array):
    """One training-mode pass of ``module`` over two sub-batches together, normalised with
    their common statistics: ((out on first, out on second), statistics after)."""
    out, stats = _apply(module, params, stats, jnp.concatenate([first, second]), True)
    return _split(out, first.shape[0]), stats


def _reconstruct_normal(G: nn.Module, g_params, running_stats, x: jax.Array, want_batch_stats: bool):
    """Training-mode G(x): (x_hat, updated running statistics, the batch's own statistics or None)."""
    if not want_batch_stats:
        return (*_apply(G, g_params, running_stats, x, True), None)
    # Fed zero running statistics, BatchNorm returns exactly (1 - momentum) * batch statistics.
    # (Every BatchNorm layer runs in this pass: no auxiliary layers exist outside AdvProp.)
    zeros = jax.tree.map(jnp.zeros_like, running_stats)
    x_hat, increment = _apply(G, g_params, zeros, x, True)
    updated = jax.tree.map(lambda old, inc: BN_MOMENTUM * old + inc, running_stats, increment)
    batch_stats = jax.tree.map(lambda inc: lax.stop_gradient(inc) / (1.0 - BN_MOMENTUM), increment)
    return x_hat, updated, batch_stats


def _reconstruct_pseudo(G: nn.Module, g_params, running_stats, normal_batch_stats, x_hat: jax.Array,
                        mode: str):
    """G(x_hat), the pseudo-anomaly pass, normalised as ``ModelConfig.pseudo_anomaly_bn`` says.

    Returns (G(x_hat), running statistics after the pass, whether the pass updated G's main
    running statistics)."""
    if mode == "auxiliary":   # AdvProp: auxiliary BatchNorm with its own running statistics
        return (*_apply(G, g_params, running_stats, x_hat, True, aux=True), False)
    if mode == "shared":      # the same BatchNorm; x_hat's statistics enter the running ones
        return (*_apply(G, g_params, running_stats, x_hat, True), True)
    if mode == "shared_no_update":
        return _apply(G, g_params, running_stats, x_hat, True)[0], running_stats, False
    # "normal_batch": normalised exactly as the normal batch was, so no batch-level cue
    # (x_hat's own statistics) can tell G which pass it is in.
    return _apply(G, g_params, normal_batch_stats, x_hat, False)[0], running_stats, False


class GeneratorPasses(NamedTuple):
    """Every pass a train step makes through G, and what they leave in its running statistics."""

    x_hat: jax.Array            # G(x), the normals' reconstructions
    x_hat2: jax.Array           # G(x_hat), the pseudo-anomaly pass
    xa_hat: jax.Array | None    # G(x_a), with anomalies in the batch
    xa_hat2: jax.Array | None   # G(G(x_a)), with anomaly_recon_pair "pseudo"
    batch_stats: Any            # G's running statistics after the passes
    updates: int                # how many passes updated G's main running statistics (static)


def generator_passes(G: nn.Module, g_params, running_stats, batch: Batch, s: StepSettings) -> GeneratorPasses:
    """G's passes of one train step, in order, normalised as ``s`` says: the normals, the
    pseudo-anomaly pass on their reconstructions, and with anomalies in ``batch`` the
    anomalies and, for the "pseudo" pair, their reconstructions. The anomalies go through G
    in one of three ways: with ``anomaly_bn = "joint"`` together with the normals, in each of
    those passes (one batch, one set of statistics); under Freeze-BN with running statistics;
    otherwise as a sub-batch of their own, whose statistics enter the running ones only with
    ``anomalies_update_statistics``: by default those (what scoring uses) describe the normal
    passes alone. Shared by the step and by ``jaxad.ema``, which recomputes the running
    statistics these passes would give the averaged generator."""
    x = batch["normal"]
    joint = joint_batches(batch, s)
    pseudo_pair = has_anomalies(batch) and s.loss.anomaly_recon_pair == "pseudo"
    x_in = jnp.concatenate([x, batch["anomaly"]]) if joint else x
    out, stats, normal_batch_stats = _reconstruct_normal(
        G, g_params, running_stats, x_in, want_batch_stats=s.pseudo_anomaly_bn == "normal_batch")
    x_hat, xa_hat = _split(out, x.shape[0]) if joint else (out, None)
    # The reconstruction is a pseudo-anomaly that G must fail to reconstruct.
    pseudo = lax.stop_gradient(x_hat) if s.detach_pseudo else x_hat
    if joint and pseudo_pair:
        pseudo = jnp.concatenate([pseudo, xa_hat])
    out2, stats, pseudo_updates = _reconstruct_pseudo(G, g_params, stats, normal_batch_stats, pseudo,
                                                      s.pseudo_anomaly_bn)
    x_hat2, xa_hat2 = _split(out2, x.shape[0]) if joint and pseudo_pair else (out2, None)
    updates = 1 + pseudo_updates
    if has_anomalies(batch) and not joint:
        # Freeze-BN: true anomalies are normalised with running statistics and never update them.
        train_on_anomalies = not s.freeze_bn
        # Otherwise their own batch statistics, kept out of the running ones unless asked: G
        # learns to fail on anomalies, so their statistics drift from the normals' and, mixed
        # in, make G fail on normals at test time (docs/fidelity-study.md, 6.3).
        keep = train_on_anomalies and s.anomalies_update_statistics
        xa_hat, anomaly_stats = _apply(G, g_params, stats, batch["anomaly"], train_on_anomalies)
        stats, updates = (anomaly_stats, updates + 1) if keep else (stats, updates)
        if pseudo_pair:
            auxiliary = s.pseudo_anomaly_bn == "auxiliary"
            xa_hat2, anomaly_stats = _apply(G, g_params, stats, xa_hat, train_on_anomalies, aux=auxiliary)
            stats, updates = (anomaly_stats, updates + (not auxiliary)) if keep else (stats, updates)
    return GeneratorPasses(x_hat, x_hat2, xa_hat, xa_hat2, stats, int(updates))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _shared_pass(module: nn.Module, params, stats, images: jax.Array):
    """One training-mode pass of D read by both losses: ``((out for G's loss, out for D's loss),
    running statistics after)``. The forward runs once; G's loss differentiates its copy with
    respect to the images alone, D's loss its copy (and the statistics, which only D's loss
    reads) with respect to the parameters and the statistics before, as two separate passes
    of the step's two halves would (the parts of each backward pass that are not needed are
    dropped by XLA)."""
    out, stats = _apply(module, params, stats, images, True)
    return (out, out), stats


def _shared_pass_forward(module: nn.Module, params, stats, images: jax.Array):
    (out, new_stats), pullback = jax.vjp(lambda p, s, x: _apply(module, p, s, x, True), params, stats, images)
    return ((out, out), new_stats), pullback


def _shared_pass_backward(module: nn.Module, pullback, cotangents):
    (to_generator, to_discriminator), to_stats = cotangents
    _, _, images_cotangent = pullback((to_generator, jax.tree.map(jnp.zeros_like, to_stats)))
    params_cotangent, stats_cotangent, _ = pullback((to_discriminator, to_stats))
    return params_cotangent, stats_cotangent, images_cotangent


_shared_pass.defvjp(_shared_pass_forward, _shared_pass_backward)


class DiscriminatorPasses(NamedTuple):
    """D's outputs a train step's two losses read, each ``(logits, features)``."""

    real: Any                   # D(x), as G's loss reads it (features)
    fake: Any                   # D(G(x)), as G's loss reads it (logits and features)
    anomaly: Any                # D(x_a), as G's loss reads it (features); None without anomalies
    anomaly_fake: Any           # D(G(x_a)) (G's loss only); None without anomalies
    real_logits: jax.Array      # D(x), D(sg(G(x))) and D(x_a) as D's loss reads them: with
    fake_logits: jax.Array      # gradients to D's parameters only
    anomaly_logits: jax.Array | None
    batch_stats: Any            # D's running statistics after D's loss's passes


def discriminator_passes(D: nn.Module, d_params, running_stats, batch: Batch, g: GeneratorPasses,
                         s: StepSettings) -> DiscriminatorPasses:
    """D's passes of one train step, each normalised as its loss has it, run once where both
    losses see the same pass: G's loss takes D's outputs with gradients to G only (D's
    parameters held), D's loss with gradients to D only (G's output held), in the order D's
    loss updates the running statistics: the normals, the reconstructions, the anomalies.

    Args:
        D: the discriminator.
        d_params: D's parameters before the step.
        running_stats: D's running statistics before the step.
        batch: the step's batch.
        g: G's passes on it (``generator_passes``).
        s: the step's settings.

    Returns:
        The outputs both losses read and D's statistics after the step.
    """
    x, held = batch["normal"], lax.stop_gradient(d_params)
    anomaly = anomaly_fake = anomaly_logits = None
    if joint_batches(batch, s):
        # D's loss normalises its reconstructions alone, G's loss with G's anomaly outputs.
        (both_for_g, both_for_d), stats = _shared_pass(D, d_params, running_stats,
                                                       jnp.concatenate([x, batch["anomaly"]]))
        real, anomaly = _split(both_for_g, x.shape[0])
        (real_logits, _), (anomaly_logits, _) = _split(both_for_d, x.shape[0])
        (fake, anomaly_fake), _ = _joint_apply(D, held, running_stats, g.x_hat, g.xa_hat)
        (fake_logits, _), stats = _apply(D, d_params, stats, lax.stop_gradient(g.x_hat), True)
        return DiscriminatorPasses(real, fake, anomaly, anomaly_fake, real_logits, fake_logits, anomaly_logits, stats)
    (real, (real_logits, _)), stats = _shared_pass(D, d_params, running_stats, x)
    (fake, (fake_logits, _)), stats = _shared_pass(D, d_params, stats, g.x_hat)
    if has_anomalies(batch):
        xa = batch["anomaly"]
        if s.freeze_bn:  # anomalies with running statistics: G's loss reads them before D's passes
            anomaly, _ = _apply(D, held, running_stats, xa, False)
            anomaly_fake, _ = _apply(D, held, running_stats, g.xa_hat, False)
            (anomaly_logits, _), stats = _apply(D, d_params, stats, xa, False)
        else:
            (anomaly, (anomaly_logits, _)), stats = _shared_pass(D, d_params, stats, xa)
            anomaly_fake, _ = _apply(D, held, running_stats, g.xa_hat, True)
    return DiscriminatorPasses(real, fake, anomaly, anomaly_fake, real_logits, fake_logits, anomaly_logits, stats)


class StepLosses(NamedTuple):
    """What ``step_losses`` returns beside the two losses."""

    g_batch_stats: Any
    d_batch_stats: Any
    g_metrics: Metrics
    d_metrics: Metrics


def step_losses(g_params, d_params, state: AGADState, batch: Batch) -> tuple[jax.Array, jax.Array, StepLosses]:
    """G's and D's losses of one train step, as the step differentiates them.

    G's loss (the weighted normal terms, plus the anomaly branch's reciprocals with anomalies in
    ``batch``) depends on D's outputs but sends no gradient to D's parameters; D's loss (real,
    reconstructions, anomalies) sees G's reconstructions as fixed images. So the gradient of
    their sum with respect to ``(g_params, d_params)`` is each network's gradient of its own
    loss, from one forward pass of each network (``discriminator_passes``).

    Args:
        g_params: G's parameters.
        d_params: D's parameters.
        state: the state before the step (running statistics and settings).
        batch: the step's batch.

    Returns:
        ``(G's loss, D's loss, StepLosses)``, the losses cross-device means under pmap/shard_map.
    """
    s, G, D = state.settings, state.generator, state.discriminator
    x = batch["normal"]
    g = generator_passes(G, g_params, state.g_batch_stats, batch, s)
    d = discriminator_passes(D, d_params, state.d_batch_stats, batch, g, s)
    (fake_logits, fake_features), (_, real_features) = d.fake, d.real
    normal = NormalTerms(adversarial_loss(fake_logits), contextual_loss(x, g.x_hat),
                         contextual_adversarial_loss(g.x_hat, g.x_hat2),
                         latent_loss(real_features, fake_features))
    g_loss = generator_normal_loss(normal, s.loss)
    g_metrics = {"g_adversarial": normal.adversarial, "g_contextual": normal.contextual,
                 "g_contextual_adversarial": normal.contextual_adversarial,
                 "g_latent": normal.latent, "g_normal_loss": g_loss}
    if has_anomalies(batch):
        xa = batch["anomaly"]
        recon = l1(xa, g.xa_hat) if s.loss.anomaly_recon_pair == "input" else l1(g.xa_hat, g.xa_hat2)
        (anomaly_fake_logits, anomaly_fake_features), (_, anomaly_features) = d.anomaly_fake, d.anomaly
        terms = AnomalyTerms(bce(anomaly_fake_logits, float(s.loss.anomaly_adversarial_target)), recon,
                             latent_loss(anomaly_features, anomaly_fake_features))
        # Reciprocals of errors averaged over the global anomaly batch, on every device count.
        terms = AnomalyTerms(*_cross_device_mean(tuple(terms), s.axis_name))
        anomaly_loss = generator_anomaly_loss(terms, s.loss)
        g_loss = g_loss + anomaly_loss
        g_metrics.update({"g_anomaly_adversarial": terms.adversarial,
                          "g_anomaly_reconstruction": terms.reconstruction,
                          "g_anomaly_latent": terms.latent, "g_anomaly_loss": anomaly_loss})
    g_metrics["g_loss"] = g_loss
    d_loss = discriminator_loss(d.real_logits, d.fake_logits, d.anomaly_logits)
    d_metrics = {"d_real": jax.nn.sigmoid(d.real_logits).mean(), "d_fake": jax.nn.sigmoid(d.fake_logits).mean(),
                 "d_loss": d_loss}
    if d.anomaly_logits is not None:
        d_metrics["d_anomaly"] = jax.nn.sigmoid(d.anomaly_logits).mean()
    # Differentiate the global-batch losses: see train_step on why these pmeans are needed.
    return (_cross_device_mean(g_loss, s.axis_name), _cross_device_mean(d_loss, s.axis_name),
            StepLosses(g.batch_stats, d.batch_stats, g_metrics, d_metrics))


def generator_loss(g_params, state: AGADState, batch: Batch) -> tuple[jax.Array, tuple[Any, jax.Array, Metrics]]:
    """G's loss on ``batch`` as ``train_step`` differentiates it, with the weights of
    ``state.settings.loss`` (for analyses of G's gradient alone).

    Args:
        g_params: G's parameters.
        state: the state before the step (D's parameters, running statistics, settings).
        batch: the step's batch.

    Returns:
        ``(loss, (G's new running statistics, metrics))``.
    """
    g_loss, _, aux = step_losses(g_params, state.d_params, state, batch)
    return g_loss, (aux.g_batch_stats, aux.g_metrics)


def _summed_losses(params, state: AGADState, batch: Batch):
    g_loss, d_loss, aux = step_losses(*params, state, batch)
    return g_loss + d_loss, (d_loss, aux)


def train_step(state: AGADState, batch: Batch, key: jax.Array) -> tuple[AGADState, Metrics]:
    """One AGAD step: update G on the weighted losses and D on its loss, both from the state
    before the step; reset D if its loss collapsed.

    Pure: jit, pmap or vmap it where you call it.

    Args:
        state: the training state (``create_train_state``); donate it under jit.
        batch: ``{"normal": (Bn, H, W, C), "anomaly": (Ba, H, W, C)}``, float32 in [-1, 1];
            ``Ba`` may be 0. The sizes are static, so one compiled step serves a whole run.
        key: used only to re-initialise D; under pmap pass the same key to every device.

    Returns:
        ``(state, metrics)``: the new state, and the step's metrics (every loss term, D's mean
        outputs on real, fake and anomalous images, ``d_reset`` = 1.0 when D was
        re-initialised, and ``g_clipped`` with G's gradient clip).
    """
    s = state.settings
    (_, (d_loss, aux)), (g_grads, d_grads) = jax.value_and_grad(_summed_losses, has_aux=True)(
        (state.g_params, state.d_params), state, batch)
    # The losses are cross-device means, and the gradients then the global-batch gradient
    # under pmap and under shard_map alike. Under shard_map (varying-axes checking) the
    # replicated parameters' gradient is summed over devices by the transpose, so a local
    # loss would give the sum (2x on 2 devices) and this pmean is the identity. Under pmap
    # (no such tracking) each device gets its own part and this pmean combines them.
    g_grads, d_grads = _cross_device_mean((g_grads, d_grads), s.axis_name)
    g_stats, d_stats, g_metrics, d_metrics = aux
    g_updates, g_opt_state = state.g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    d_updates, d_opt_state = state.d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    # GANomaly's reset: a collapsed D gives G no signal; start D afresh (Adam state is kept).
    # Decided on the cross-device mean loss (d_loss is one) so every device takes the same branch.
    reset = d_loss < s.d_reset_threshold
    d_params = lax.cond(
        reset,
        lambda: state.discriminator.clone(axis_name=None).init(key, batch["normal"][:1], train=False)["params"],
        lambda: d_params)

    metrics = {**g_metrics, **d_metrics, "d_reset": reset.astype(jnp.float32)}
    clips = optax.tree_utils.tree_get_all_with_path(g_opt_state, "clipped")
    if clips:  # with g_grad_clip_factor (first in G's chain): its epoch mean is the share clipped
        metrics["g_clipped"] = clips[0][1]
    metrics = _cross_device_mean(metrics, s.axis_name)
    ema_params, ema_stats = _ema_update(state, g_params, g_stats)
    new_state = state.replace(step=state.step + 1, g_params=g_params, g_batch_stats=g_stats,
                              d_params=d_params, d_batch_stats=d_stats,
                              g_opt_state=g_opt_state, d_opt_state=d_opt_state,
                              g_ema_params=ema_params, g_ema_batch_stats=ema_stats)
    return new_state, metrics


def _ema_update(state: AGADState, g_params, g_stats):
    """The EMA generator after this step (with warm-up); None when no average is kept."""
    decay = state.settings.ema_decay
    if decay == 0.0:
        return None, None
    t = state.step.astype(jnp.float32)
    decay = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
    return (optax.incremental_update(g_params, state.g_ema_params, 1.0 - decay),
            optax.incremental_update(g_stats, state.g_ema_batch_stats, 1.0 - decay))


def indexed_train_step(state: AGADState, normal_images: jax.Array, anomaly_images: jax.Array,
                       normal_index: jax.Array, anomaly_index: jax.Array,
                       key: jax.Array) -> tuple[AGADState, Metrics]:
    """``train_step`` on a batch gathered on the device from the resident training images.

    ``normal_index`` (Bn,) and ``anomaly_index`` (Ba,) index ``normal_images`` and
    ``anomaly_images``, so only indices cross from the host each step. (An epoch as one
    ``lax.scan`` of this was measured 12x slower per step on XLA:CPU.)
    """
    normal, anomaly = gather_batch(normal_images, anomaly_images, normal_index, anomaly_index)
    return train_step(state, {"normal": normal, "anomaly": anomaly}, key)


def reconstruct(state: AGADState, images: jax.Array, use_batch_statistics: bool = False) -> jax.Array:
    """G(x), by the scoring generator (the EMA of G when ``ema_decay`` > 0). With
    ``use_batch_statistics`` BatchNorm normalises with the batch's own statistics (what
    GANomaly's code does at test time, ``ExperimentConfig.paper_protocol``); by default it
    uses the running statistics learnt in training."""
    G = state.generator.clone(axis_name=None)
    params, stats = ((state.g_params, state.g_batch_stats) if state.g_ema_params is None
                     else (state.g_ema_params, state.g_ema_batch_stats))
    out, _ = _apply(G, params, stats, images, use_batch_statistics)
    return out


def live_generator(state: AGADState) -> AGADState:
    """``state`` with G's live parameters and statistics as its scoring generator (no EMA)."""
    return state.replace(g_ema_params=None, g_ema_batch_stats=None)


def score_step(state: AGADState, images: jax.Array, use_batch_statistics: bool = False) -> jax.Array:
    """Anomaly scores ``||x - G(x)||_2`` per image (higher = more anomalous).

    Pure and jittable. Called on concrete arrays it first runs ``check_state_images`` (shape,
    float [-1, 1], no NaN), so a wrong input gives a sentence, not a Flax traceback or a
    plausible score. Under ``jit``/``vmap`` the images are tracers whose values cannot be
    read, so nothing is checked there: check before you jit, or call ``jaxad.score``, the
    checked entry point that jits this step for you.

    Args:
        state: the state to score with; its scoring generator is the EMA when it keeps one.
        images: (N, H, W, C) float32 in [-1, 1], the model's side and channels.
        use_batch_statistics: normalise with the batch's own BatchNorm statistics (GANomaly's
            test-time behaviour) instead of the running ones.

    Returns:
        The scores, shape (N,).

    Raises:
        ValueError: on concrete images of the wrong dtype, range, shape or channels, or with
            NaN or inf.
    """
    if not isinstance(images, jax.core.Tracer):
        check_state_images(state, images)
    return reconstruction_error(images, reconstruct(state, images, use_batch_statistics))
