"""Configuration as frozen dataclasses: model, losses, optimisation, data, protocol.

Every field has the paper's value (or SPEC's marked choice) as its default, so
``ExperimentConfig()`` is the paper's setting on the embedded ``digits`` data. Each field's
default and help text are stated here once: the command line (``jaxad/cli.py``) is generated
from these fields, a ``Literal`` type becoming the flag's choices.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Literal, Sequence

# How the generator's pseudo-anomaly pass G(x_hat) is batch-normalised (see ModelConfig).
PseudoAnomalyBN = Literal["auxiliary", "shared", "shared_no_update", "normal_batch"]
PSEUDO_ANOMALY_BN: tuple[str, ...] = typing.get_args(PseudoAnomalyBN)
Source = Literal["auto", "raw", "tfds"]
ReconPair = Literal["input", "pseudo"]
AdversarialTarget = Literal[0, 1]
AnomalyBN = Literal["own", "joint"]


def _field(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with the help text its command-line flag shows (``jaxad.cli``).

    ``flag="lr"`` spells the flag ``--lr`` instead of one made from the field's name.
    """
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _check_choice(name: str, value: Any, choices: Any) -> None:
    """Refuse ``value`` unless it is one of ``choices`` (a ``Literal`` type)."""
    allowed = typing.get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The networks. ``width`` scales every channel count; 1.0 is the paper's nets.

    ``pseudo_anomaly_bn``: how the generator's pass G(x_hat) is batch-normalised (paper section
    6.2). It lives here because it decides G's parameters: ``"auxiliary"`` is the paper's
    AdvProp (G carries a second set of BatchNorm layers, own scale, bias and running
    statistics, used only by that pass); ``"shared"`` the paper's base configuration (the same
    BatchNorm layers, the pass's own batch statistics, which also enter the running
    statistics); ``"shared_no_update"`` the same without touching the running statistics;
    ``"normal_batch"`` normalises x_hat with the statistics of the normal batch it was made
    from and updates nothing, so G can tell a pseudo-anomaly from a normal image only by its
    content, never by batch statistics.
    """

    backbone: str = _field("naive", "the generator, one of jaxad.models.BACKBONES")
    channels: int = _field(1, "image channels, 1 or 3 (the runner takes the dataset's)")
    image_size: int = _field(32, "image side the nets take; images are resized to it")
    width: float = _field(1.0, "channel width factor (1 = the paper's nets)")
    latent_dim: int = _field(100, "size of the naive generator's latent code")
    pseudo_anomaly_bn: PseudoAnomalyBN = _field(
        "auxiliary", "how G(G(x)) is batch-normalised: auxiliary = AdvProp; shared = the same BN, its own "
                     "statistics; shared_no_update = that without updating running statistics; "
                     "normal_batch = with the normal batch's statistics")

    @property
    def advprop(self) -> bool:
        """Whether G carries AdvProp's auxiliary BatchNorm layers (its own scale, bias, statistics)."""
        return self.pseudo_anomaly_bn == "auxiliary"

    def __post_init__(self) -> None:
        # Deferred: jaxad.models holds the backbone registry and imports this module.
        from jaxad.models import BACKBONES

        _check_choice("pseudo_anomaly_bn", self.pseudo_anomaly_bn, PseudoAnomalyBN)
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {tuple(BACKBONES)}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")
        problem = BACKBONES[self.backbone].image_size_problem(self.image_size)
        if problem:
            raise ValueError(f"the {self.backbone} backbone {problem}, got {self.image_size}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss weights (the paper's) and the choices SPEC marks.

    ``w_adcon = 0`` is the paper's "without contextual adversarial information" ablation.
    ``anomaly_recon_pair``: which pair the anomaly branch's reconstruction term is taken on:
    ``"input"`` (x, G(x)), SPEC's default, or ``"pseudo"`` (G(x), G(G(x))), Algorithm 1's print.
    ``anomaly_adversarial_target``: the label t in the anomaly branch's adversarial term
    ``w_adv / (bce(D(G(x_a)), t) + eps)``. 1 (default): the normal branch's adversarial error,
    maximised, so G pushes D to call its reconstruction of an anomaly fake, as D is itself
    trained to. 0, as Algorithm 1 prints it: G pushes D to call it real, and the term diverges
    as D grows certain it is fake (BUILD_NOTES.md, finding 11).
    """

    w_adv: float = _field(1.0, "weight of the adversarial term")
    w_con: float = _field(50.0, "weight of the reconstruction term")
    w_adcon: float = _field(15.0, "weight of the contextual adversarial term (0 = the ablation "
                                  "without contextual adversarial information)")
    w_lat: float = _field(5.0, "weight of the latent (feature-matching) term")
    eps: float = _field(1e-8, "guard in the anomaly branch's reciprocals, w / (error + eps)")
    anomaly_recon_pair: ReconPair = _field(
        "input", "the anomaly branch's reconstruction pair: input = (x, G(x)), pseudo = (G(x), G(G(x)))")
    anomaly_adversarial_target: AdversarialTarget = _field(
        1, "the label t in the anomaly branch's w_adv / (bce(D(G(x_a)), t) + eps): 1 the normal branch's error "
           "maximised (G pushes D to call G(x_a) fake), 0 as Algorithm 1 prints it (G pushes D to call it real; "
           "diverges as D grows certain)")

    def __post_init__(self) -> None:
        _check_choice("anomaly_recon_pair", self.anomaly_recon_pair, ReconPair)
        _check_choice("anomaly_adversarial_target", self.anomaly_adversarial_target, AdversarialTarget)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, Freeze-BN (paper section 6.2; AdvProp is ``ModelConfig.pseudo_anomaly_bn``), stabilisers.

    ``freeze_bn``: true anomalies are normalised with running statistics and never update them.
    Off by default, as in the paper's base configuration (SPEC section 1): on, a fresh net's
    running statistics shrink D's features of anomalies to near zero, the latent reciprocal
    starts in the tens of thousands, and Adam's second moment keeps G frozen (BUILD_NOTES.md,
    findings 10 and 11).
    ``anomalies_update_statistics``: with ``anomaly_bn = "own"``, anomalies are normalised with
    their own batch statistics; on, those also enter G's running statistics, which scoring uses. Off by
    default: G learns to fail on anomalies, their statistics drift from the normals', and
    mixed in (over half the running statistics at BatchNorm momentum 0.9) they made G fail on
    normals at test time (BUILD_NOTES.md, finding 12). Training is the same either way: every
    training pass normalises with batch statistics.
    ``anomaly_bn`` (without Freeze-BN): ``"joint"`` (default) passes each mixed batch through G
    and D once, as a loop over the paper's mixed batches does, so BatchNorm cannot tell either
    network which images are the anomalies and G must fail on them by their content; the
    joint statistics enter G's running statistics, at the anomalies' share of the batch,
    which is what training normalised with. ``"own"`` passes the anomaly sub-batch apart from
    the normals, normalised with its own batch statistics: G then learned to fail on
    anomalies through that batch-level cue, which scoring never sees (BUILD_NOTES.md, finding
    14). ``anomalies_update_statistics`` applies to ``"own"``.
    ``detach_pseudo``: no gradient flows into x_hat through the pass G(x_hat).
    ``g_grad_clip_factor``: G's gradient is scaled down to this multiple of the running mean
    of its recent global norms when larger (``jaxad.clipping.clip_by_running_norm``); D's is
    not touched. A fall of G starts with one step whose gradient is several times the usual
    norm (BUILD_NOTES.md, finding 16); a multiple of the running norm needs no threshold read
    off a run. The default 3 is the fidelity study's (finding 20): in the MNIST runs made with
    it no reported epoch after epoch 3 fell below 80; ``None`` is the paper's plain Adam.
    ``g_update_rms_clip``: each of G's parameter arrays moves at most this RMS times the
    learning rate in one step (``optax.clip_by_block_rms`` after Adam: Adafactor's update
    clipping, Shazeer & Stern 2018, section 6). Adam bounds a coordinate's step only by
    ``(1 - beta1) / sqrt(1 - beta2)`` learning rates, 15.8 at GANomaly's betas, when a gradient
    jumps above the history of its second moment; a fall of G is such a step, several times
    longer than its own term needs (BUILD_NOTES.md, findings 16 and 18).
    ``ema_decay`` > 0 keeps an exponential moving average of G's parameters and statistics
    (with the usual warm-up, ``min(decay, (1 + t) / (10 + t))``) and scores with it; ``fit``
    recomputes its BatchNorm statistics before each scoring (``jaxad.ema``). The default 0.99
    is the fidelity study's (BUILD_NOTES.md): it removes the epochs where the live G collapses
    from the reported number. 0 scores with G's live weights, as the paper does.
    ``pick_generator`` (with an EMA): after each epoch, score with whichever of the averaged
    and the live generator reconstructs the training normals better (the lower mean score on
    up to 1,024 of them; with training anomalies, the better separation of those normals from
    them first: ``jaxad.selection``); each epoch's history records which (``scoring_generator``)
    and both AUROCs, and ``load_run`` returns the one chosen. A collapse of either shows as a
    jump of its error on normals, and the choice needs no test label (BUILD_NOTES.md, fidelity study).
    """

    learning_rate: float = _field(2e-4, "Adam's learning rate", flag="lr")
    beta1: float = _field(0.5, "Adam's beta1")
    beta2: float = _field(0.999, "Adam's beta2")
    grad_clip_norm: float | None = _field(
        None, "clip each network's gradient to this global norm before Adam (not in the paper; "
              "a guard against the anomaly terms' reciprocal spikes at gamma > 0)")
    g_grad_clip_factor: float | None = _field(
        3.0, "clip G's gradient to this multiple of its running global norm before Adam (not in the paper; "
             "bounds the one oversized update that starts a fall, BUILD_NOTES findings 16 and 20)")
    g_update_rms_clip: float | None = _field(
        None, "clip each of G's parameter arrays' Adam update to this RMS, in units of the learning rate "
              "(Adafactor's update clipping; not in the paper; BUILD_NOTES finding 19)")
    batch_size: int = _field(256, "training batch size")
    epochs: int = _field(15, "training epochs")
    d_reset_threshold: float = _field(1e-5, "re-initialise D when its loss falls below this")
    min_anomalies_per_batch: int = _field(
        32, "with gamma > 0, anomalies in every batch at least (the paper's 32 of 256; lower it for "
            "small batches, e.g. 4 for a batch of 32)")
    freeze_bn: bool = _field(False, "normalise true anomalies with running statistics, never updating them "
                                    "(off by default, as the paper's base configuration; BUILD_NOTES finding 11)")
    anomalies_update_statistics: bool = _field(
        False, "with --anomaly-bn own, let the anomalies' own batch statistics enter G's running statistics, "
               "which scoring uses (off: those describe the normals; BUILD_NOTES finding 12)")
    anomaly_bn: AnomalyBN = _field(
        "joint", "without Freeze-BN, how anomalies are batch-normalised in G and D: joint = one pass over "
                 "normals and anomalies together; own = a sub-batch of their own (BUILD_NOTES finding 14)")
    detach_pseudo: bool = _field(False, "no gradient into G(x) through G(G(x))")
    ema_decay: float = _field(0.99, "score with an EMA of G's weights at this decay, its BatchNorm statistics "
                                    "recomputed on the training normals (0 = score with G itself)")
    pick_generator: bool = _field(
        True, "with an EMA, score each epoch with the averaged or the live G, whichever has the lower mean "
              "score on the training normals (at gamma > 0, first the one that tells them better from the "
              "training anomalies; no test label is used)")

    def __post_init__(self) -> None:
        _check_choice("anomaly_bn", self.anomaly_bn, AnomalyBN)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be positive (or None: no clipping), got {self.grad_clip_norm}")
        if self.g_grad_clip_factor is not None and not self.g_grad_clip_factor > 1:
            raise ValueError(f"g_grad_clip_factor must be above 1 (or None: no clipping), got {self.g_grad_clip_factor}")
        if self.g_update_rms_clip is not None and not self.g_update_rms_clip > 0:
            raise ValueError(f"g_update_rms_clip must be positive (or None: no clipping), got {self.g_update_rms_clip}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data, which normal class, how many injected anomalies.

    ``gamma = a / (n + a)``: the fraction of the training set that is anomalous.
    ``anomaly_classes``: draw the injected anomalies from these classes only (Deep SAD's
    protocol); ``None`` draws from every class but the normal one.
    ``source``: ``"auto"`` reads raw files from ``data_dir`` when they are there, else TFDS.
    ``category``: which of a dataset's categories (MVTec AD's ``bottle``, ...); None for the others.
    """

    dataset: str = _field("digits", "the dataset, one of jaxad.data.DATASETS")
    normal_class: int = _field(0, "the class trained on as normal")
    gamma: float = _field(0.0, "fraction of the training set that is anomalous, in [0, 1)")
    anomaly_classes: tuple[int, ...] | None = _field(
        None, "draw injected anomalies from these classes only (default: all others)")
    data_dir: str | None = _field(
        None, "raw dataset files (or a TFDS data_dir); for folder: a root holding normal/ and optionally "
              "normal_test/, abnormal/, abnormal_train/ and ground_truth/; for mvtec: MVTec AD's root")
    category: str | None = _field(None, "for mvtec: the category under data_dir (bottle, cable, ...)")
    source: Source = _field("auto", "auto = the raw files in data_dir when there, else TFDS")
    image_size: int = _field(32, "image side the data is resized to (the model's, ModelConfig.image_size)")

    def __post_init__(self) -> None:
        # Deferred: the data layer holds the dataset registry and the gamma rule.
        from jaxad.data import DATASETS
        from jaxad.data.split import check_gamma

        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {tuple(DATASETS)}")
        from jaxad.data.sources import check_category

        check_gamma(self.gamma)
        _check_choice("source", self.source, Source)
        check_category(self.dataset, self.category)


# Fields added after run directories were first written, with the value that describes what
# the versions without them did (not today's default): a run directory that lacks one was
# made that way, and resuming it with another value is refused as another configuration.
ADDED_LATER: dict[str, dict[str, Any]] = {
    # ExperimentConfig's own fields. Runs made before it stored no threshold: its default, which
    # their unfinished runs store when resumed.
    "": {"threshold_quantile": 0.99},
    "data": {"category": None},
    "loss": {"anomaly_adversarial_target": 0},
    "train": {"detach_pseudo": False, "ema_decay": 0.0, "pick_generator": False, "grad_clip_norm": None,
              "g_grad_clip_factor": None, "g_update_rms_clip": None,
              "anomalies_update_statistics": True, "anomaly_bn": "own"},
}


# Fields only the anomaly branch reads: with gamma = 0 there are no anomalies and they cannot
# change a run, so a run or benchmark made with other values of them is the same one (a
# default changed for gamma > 0 does not stop a gamma-0 benchmark from resuming).
ANOMALY_ONLY_FIELDS = ("train.freeze_bn", "train.anomalies_update_statistics", "train.anomaly_bn",
                       "train.min_anomalies_per_batch",
                       "loss.anomaly_recon_pair",
                       "loss.anomaly_adversarial_target", "data.anomaly_classes")


# Where the data was read from is not what it is: the split's fingerprint (data.json) checks
# the data itself, so the same files reached by another path resume the same run.
LOCATION_FIELDS = ("data.data_dir",)


def without_inert_fields(d: dict[str, Any], gammas: Sequence[float]) -> dict[str, Any]:
    """A section-keyed config dict without the fields that cannot make another run:
    ``LOCATION_FIELDS``, and ``ANOMALY_ONLY_FIELDS`` when every gamma in ``gammas`` is 0. What
    decides whether a run directory or benchmark holds the run asked for."""
    inert = LOCATION_FIELDS + (ANOMALY_ONLY_FIELDS if not any(g > 0 for g in gammas) else ())
    d = {key: dict(value) if isinstance(value, dict) else value for key, value in d.items()}
    for dotted in inert:
        section, name = dotted.split(".")
        if isinstance(d.get(section), dict):
            d[section].pop(name, None)
    return d


def upgrade_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict (``ExperimentConfig.to_dict()``, or a section-keyed part of one) as this
    version lays it out: what earlier versions wrote in ``config.json`` and ``benchmark.json``
    moved to where the field now lives, and fields they predate given the value that
    describes them (``ADDED_LATER``). The input is not changed."""
    d = {**ADDED_LATER[""], **d, "model": dict(d.get("model", {})), "train": dict(d.get("train", {}))}
    for section, fields in ADDED_LATER.items():
        if section:
            d[section] = {**fields, **d.get(section, {})}
    model, train = d["model"], d["train"]
    # The switch moved to ModelConfig (it decides G's parameters); before, it was TrainConfig.advprop.
    if "pseudo_anomaly_bn" in train:
        model["pseudo_anomaly_bn"] = train.pop("pseudo_anomaly_bn")
    if "advprop" in train:
        model["pseudo_anomaly_bn"] = "auxiliary" if train.pop("advprop") else "shared"
    return d


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One run: (dataset, backbone, normal class, gamma, seed)."""

    # Factories: no config is built (nor validated) while this module is imported.
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    seed: int = _field(0, "the run's seed (initialisation, sampler, anomaly draw)")
    paper_protocol: bool = _field(
        False, "also score with test-batch BatchNorm statistics, as GANomaly's code does: over the "
               "test split as given, and laid out normals first as its loaders do")
    threshold_quantile: float = _field(
        0.99, "the run's label-free decision threshold: this quantile of its final model's scores on its "
              "training normals (an image scoring at or above it is called anomalous)")

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold_quantile <= 1.0:
            raise ValueError(f"threshold_quantile must lie in (0, 1], got {self.threshold_quantile}")
        if self.model.image_size != self.data.image_size:
            raise ValueError(
                f"ModelConfig.image_size {self.model.image_size} and DataConfig.image_size "
                f"{self.data.image_size} differ: the nets take the images the data is resized to; "
                f"set both to one side (run.py --image-size sets both)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        d = upgrade_config_dict(d)
        data, model, train = dict(d["data"]), d["model"], d["train"]
        if data.get("anomaly_classes") is not None:
            data["anomaly_classes"] = tuple(data["anomaly_classes"])
        return cls(
            model=ModelConfig(**model),
            loss=LossConfig(**d["loss"]),
            train=TrainConfig(**train),
            data=DataConfig(**data),
            seed=d["seed"],
            paper_protocol=d["paper_protocol"],
            threshold_quantile=d["threshold_quantile"],
        )

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """``cfg.replace(seed=1, **{"train.epochs": 2})``: dotted names reach sub-configs."""
        top, nested = {}, {}
        for key, value in changes.items():
            if "." in key:
                section, field = key.split(".", 1)
                nested.setdefault(section, {})[field] = value
            else:
                top[key] = value
        for section, fields in nested.items():
            top[section] = dataclasses.replace(getattr(self, section), **fields)
        return dataclasses.replace(self, **top)
