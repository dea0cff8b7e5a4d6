"""Configuration as frozen dataclasses: model, losses, optimisation, data, protocol.

Every field has the paper's value (or the reading docs/method.md marks) as its default, so
``ExperimentConfig()`` is the paper's setting on the embedded ``digits`` data. Each field's
default and help text are stated here once: the command line (``jaxad/cli.py``) is generated
from these fields, a ``Literal`` type becoming the flag's choices.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, Sequence

from jaxad import compat

# How the generator's pseudo-anomaly pass G(x_hat) is batch-normalised (see ModelConfig).
PseudoAnomalyBN = Literal["auxiliary", "shared", "shared_no_update", "normal_batch"]
PSEUDO_ANOMALY_BN: tuple[str, ...] = typing.get_args(PseudoAnomalyBN)
Source = Literal["auto", "raw", "tfds"]
ReconPair = Literal["input", "pseudo"]
AdversarialTarget = Literal[0, 1]
AnomalyBN = Literal["own", "joint"]
ComputeDtype = Literal["float32", "bfloat16"]
SyntheticAnomalies = Literal["none", "cutpaste", "smooth_noise"]


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
    """The generator and discriminator: backbone, image shape, width.

    Args:
        backbone: the generator, a key of ``jaxad.models.BACKBONES`` (``naive``, ``unet``,
            ``unetpp``).
        channels: image channels, 1 or 3.
        image_size: the image side the nets take; it must equal ``DataConfig.image_size``.
        width: scales every channel count; 1.0 is the paper's nets.
        latent_dim: the size of the naive generator's latent code.
        pseudo_anomaly_bn: how the generator's pass G(x_hat) is batch-normalised (paper section
            6.2). ``"auxiliary"`` is AdvProp: G carries a second set of BatchNorm layers (own
            scale, bias and running statistics) used only by that pass. ``"shared"`` uses the
            same layers with the pass's own batch statistics, which also enter the running
            statistics. ``"shared_no_update"`` is the same without touching the running
            statistics. ``"normal_batch"`` normalises x_hat with the statistics of the normal
            batch it was made from and updates nothing, so G can tell a pseudo-anomaly from a
            normal image only by its content. The field lives here because it decides G's
            parameters. Why AdvProp is the default: docs/fidelity-study.md, section 3.4.
        compute_dtype: the dtype the convolutions compute in. ``"bfloat16"`` is mixed
            precision: parameters, optimiser state, BatchNorm and the losses stay float32
            (docs/performance.md, Mixed precision); it pays on GPUs, not on CPUs.

    Raises:
        ValueError: an unknown backbone or choice, or an image side the backbone cannot take.
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
    compute_dtype: ComputeDtype = _field(
        "float32", "the dtype the convolutions compute in; bfloat16 = mixed precision (parameters, "
                   "BatchNorm and losses stay float32), for GPUs")

    @property
    def advprop(self) -> bool:
        """Whether G carries AdvProp's auxiliary BatchNorm layers (its own scale, bias, statistics)."""
        return self.pseudo_anomaly_bn == "auxiliary"

    def __post_init__(self) -> None:
        # Deferred: jaxad.models holds the backbone registry and imports this module.
        from jaxad.models import BACKBONES

        _check_choice("pseudo_anomaly_bn", self.pseudo_anomaly_bn, PseudoAnomalyBN)
        _check_choice("compute_dtype", self.compute_dtype, ComputeDtype)
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {tuple(BACKBONES)}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {self.latent_dim}")
        problem = BACKBONES[self.backbone].image_size_problem(self.image_size)
        if problem:
            raise ValueError(f"the {self.backbone} backbone {problem}, got {self.image_size}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The loss weights (the paper's) and the readings of its anomaly branch (docs/method.md).

    Args:
        w_adv: weight of the adversarial term.
        w_con: weight of the reconstruction (contextual) term.
        w_adcon: weight of the contextual adversarial term, which G maximises; 0 is the
            paper's ablation without contextual adversarial information.
        w_lat: weight of the latent (feature-matching) term.
        eps: the guard in the anomaly branch's reciprocals, ``w / (error + eps)``.
        anomaly_recon_pair: the pair the anomaly branch's reconstruction term is taken on:
            ``"input"``, (x, G(x)), as the paper's Eq. 3 says; ``"pseudo"``, (G(x), G(G(x))),
            as its Algorithm 1 prints.
        anomaly_adversarial_target: the label t in the anomaly branch's adversarial term
            ``w_adv / (bce(D(G(x_a)), t) + eps)``. 1: the normal branch's adversarial error,
            maximised, so G pushes D to call its reconstruction of an anomaly fake, as D is
            itself trained to. 0, as Algorithm 1 prints it: G pushes D to call it real, and
            the term diverges as D grows certain it is fake (docs/fidelity-study.md, 6.2).

    Raises:
        ValueError: a choice outside its ``Literal``.
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
    """Optimisation, the batches, Freeze-BN, and the stabilisers jaxad adds to the paper.

    Args:
        learning_rate: Adam's learning rate, both networks (flag ``--lr``).
        beta1: Adam's beta1 (GANomaly's 0.5).
        beta2: Adam's beta2.
        grad_clip_norm: clip each network's gradient to this global norm before Adam; None
            is off. Not in the paper.
        g_grad_clip_factor: scale G's gradient down to this multiple of the running mean of
            its recent global norms, when larger (``jaxad.clipping.clip_by_running_norm``);
            D's is not touched. None is the paper's plain Adam. Not in the paper: a fall of G
            starts with one step several times too long, and a multiple of the running norm
            needs no threshold read off a run (docs/fidelity-study.md, 5.5).
        g_update_rms_clip: after Adam, move each of G's parameter arrays at most this RMS
            times the learning rate in one step (Adafactor's update clipping, Shazeer & Stern
            2018, section 6; ``optax.clip_by_block_rms``); None is off. Not in the paper.
        batch_size: the training batch size.
        epochs: training epochs; the paper gives none, and 15 is GANomaly's.
        d_reset_threshold: re-initialise D's parameters when its loss falls below this.
        min_anomalies_per_batch: with gamma > 0, every batch holds at least this many
            anomalies (the paper's 32 of 256).
        freeze_bn: normalise true anomalies with running statistics, never updating them
            (paper section 6.2). Off, as in the paper's base configuration: on, a fresh net's
            running statistics shrink D's features of anomalies to near zero and the
            anomaly reciprocals freeze G (docs/fidelity-study.md, 6.1).
        anomalies_update_statistics: with ``anomaly_bn = "own"``, let the anomalies' own
            batch statistics enter G's running statistics, which scoring uses. Off: G learns
            to fail on anomalies, their statistics drift from the normals', and mixed in they
            make G fail on normals at test time (docs/fidelity-study.md, 6.3). Training is the
            same either way, since every training pass normalises with batch statistics.
        anomaly_bn: without Freeze-BN, how anomalies are batch-normalised. ``"joint"`` passes
            each mixed batch through G and D once, as a loop over the paper's mixed batches
            does, so BatchNorm cannot tell either network which images are anomalies and G
            must fail on their content; the joint statistics enter G's running statistics.
            ``"own"`` passes the anomalies as a sub-batch of their own, normalised with their
            own statistics, which lets G fail on them through that cue alone
            (docs/fidelity-study.md, 6.5).
        detach_pseudo: no gradient flows into x_hat through the pass G(x_hat).
        ema_decay: > 0 keeps an exponential moving average of G's parameters and statistics
            (warm-up ``min(decay, (1 + t) / (10 + t))``) and scores with it; ``fit``
            recomputes its BatchNorm statistics before each scoring (``jaxad.ema``). 0 scores
            with G's own weights, as the paper does (docs/fidelity-study.md, 5.2).
        pick_generator: with an EMA, score each epoch with whichever of the averaged and the
            live generator has the better training evidence (``jaxad.selection``): at gamma >
            0 the better separation of training anomalies from training normals first, then
            the lower mean score on up to 1,024 training normals. No test label is used
            (docs/fidelity-study.md, 5.3).

    Raises:
        ValueError: a value out of its range, or a choice outside its ``Literal``.
    """

    learning_rate: float = _field(2e-4, "Adam's learning rate", flag="lr")
    beta1: float = _field(0.5, "Adam's beta1")
    beta2: float = _field(0.999, "Adam's beta2")
    grad_clip_norm: float | None = _field(
        None, "clip each network's gradient to this global norm before Adam (not in the paper; "
              "a guard against the anomaly terms' reciprocal spikes at gamma > 0)")
    g_grad_clip_factor: float | None = _field(
        3.0, "clip G's gradient to this multiple of its running global norm before Adam (not in the paper; "
             "bounds the one oversized update that starts a fall of G)")
    g_update_rms_clip: float | None = _field(
        None, "clip each of G's parameter arrays' Adam update to this RMS, in units of the learning rate "
              "(Adafactor's update clipping; not in the paper)")
    batch_size: int = _field(256, "training batch size")
    epochs: int = _field(15, "training epochs")
    d_reset_threshold: float = _field(1e-5, "re-initialise D when its loss falls below this")
    min_anomalies_per_batch: int = _field(
        32, "with gamma > 0, anomalies in every batch at least (the paper's 32 of 256; lower it for "
            "small batches, e.g. 4 for a batch of 32)")
    freeze_bn: bool = _field(False, "normalise true anomalies with running statistics, never updating them "
                                    "(off, as in the paper's base configuration)")
    anomalies_update_statistics: bool = _field(
        False, "with --anomaly-bn own, let the anomalies' own batch statistics enter G's running statistics, "
               "which scoring uses (off: those describe the normals)")
    anomaly_bn: AnomalyBN = _field(
        "joint", "without Freeze-BN, how anomalies are batch-normalised in G and D: joint = one pass over "
                 "normals and anomalies together; own = a sub-batch of their own")
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
        for name in ("beta1", "beta2"):  # Adam divides by 1 - beta ** t
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data: which dataset, which normal class, how many injected anomalies.

    Args:
        dataset: a key of ``jaxad.data.DATASETS``; ``"digits"`` is scikit-learn's, embedded.
        normal_class: the class trained on as normal; every other test class is an anomaly.
        gamma: ``a / (n + a)``, the fraction of the training set that is anomalous, in [0, 1).
        anomaly_classes: draw the injected anomalies from these classes only (Deep SAD's
            protocol); None draws from every class but the normal one.
        data_dir: the folder holding the raw dataset files, or TFDS's data directory; for
            ``"folder"``, the root of the layout in docs/own-images.md (``normal/``, and
            optionally ``abnormal/``, ``normal_test/``, ``abnormal_train/``, ``ground_truth/``);
            for ``"mvtec"``, the folder holding the categories.
        source: ``"raw"`` reads the raw files in ``data_dir``; ``"tfds"`` goes through
            TensorFlow Datasets; ``"auto"`` takes the raw files when they are there, else TFDS.
        image_size: the side the images are resized to; it must equal
            ``ModelConfig.image_size``.
        category: which of a dataset's categories (MVTec AD's ``bottle``, ...); None for the
            others.
        synthetic_anomalies: ``"none"`` draws the training anomalies from the other classes
            (the paper's protocol); ``"cutpaste"`` or ``"smooth_noise"`` makes the gamma
            fraction from the training normals instead, with no label (jaxad's extension,
            ``jaxad.data.synthetic``; docs/method.md, Beyond the paper).

    Raises:
        ValueError: an unknown dataset or source, or gamma outside [0, 1).
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
    synthetic_anomalies: SyntheticAnomalies = _field(
        "none", "none = draw the gamma fraction of training anomalies from the other classes; cutpaste or "
                "smooth_noise = make them from the training normals, no label used (jaxad's extension)")

    def __post_init__(self) -> None:
        # Deferred: the data layer holds the dataset registry and the gamma rule.
        from jaxad.data import DATASETS
        from jaxad.data.split import check_gamma

        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {tuple(DATASETS)}")
        from jaxad.data.sources import check_category

        check_gamma(self.gamma)
        _check_choice("source", self.source, Source)
        _check_choice("synthetic_anomalies", self.synthetic_anomalies, SyntheticAnomalies)
        check_category(self.dataset, self.category)


# Fields only the anomaly branch reads: with gamma = 0 there are no anomalies and they cannot
# change a run, so a run or benchmark made with other values of them is the same one (a
# default changed for gamma > 0 does not stop a gamma-0 benchmark from resuming).
ANOMALY_ONLY_FIELDS = ("train.freeze_bn", "train.anomalies_update_statistics", "train.anomaly_bn",
                       "train.min_anomalies_per_batch",
                       "loss.anomaly_recon_pair",
                       "loss.anomaly_adversarial_target", "data.anomaly_classes", "data.synthetic_anomalies")


# Where the data was read from is not what it is: the split's fingerprint (data.json) checks
# the data itself, so the same files reached by another path resume the same run.
LOCATION_FIELDS = ("data.data_dir",)

# Fields that add figures to a run's records without changing its training, its choices or
# its reported numbers: a run resumes, or a benchmark grows, with either value.
DIAGNOSTIC_FIELDS = ("test_both_generators",)


def without_inert_fields(d: dict[str, Any], gammas: Sequence[float]) -> dict[str, Any]:
    """A section-keyed config dict without the fields that cannot make another run:
    ``LOCATION_FIELDS``, ``DIAGNOSTIC_FIELDS``, and ``ANOMALY_ONLY_FIELDS`` when every gamma in
    ``gammas`` is 0. What decides whether a run directory or benchmark holds the run asked for.

    Args:
        d: a config dict as ``ExperimentConfig.to_dict()`` gives it (not changed).
        gammas: the anomaly fractions the run or benchmark trains at.

    Returns:
        A copy of ``d`` without those fields.
    """
    inert = LOCATION_FIELDS + (ANOMALY_ONLY_FIELDS if not any(g > 0 for g in gammas) else ())
    d = {key: dict(value) if isinstance(value, dict) else value for key, value in d.items()}
    for name in DIAGNOSTIC_FIELDS:
        d.pop(name, None)
    for dotted in inert:
        section, name = dotted.split(".")
        if isinstance(d.get(section), dict):
            d[section].pop(name, None)
    return d


def _json_value(name: str, value: Any, tp: Any) -> Any:
    """``value`` as read from JSON, checked against the field type ``tp`` (tuples come as lists);
    a ``ValueError`` names the field ``name`` and the type wanted."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _json_value(name, value, inner[0]) if len(inner) == 1 else value
    if origin is typing.Literal:
        if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
            raise ValueError(f"{name} must be one of {args}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        return tuple(_json_value(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
    wanted = {bool: ((bool,), "true or false"), int: ((int,), "a whole number"),
              float: ((int, float), "a number"), str: ((str,), "a string")}.get(tp)
    if wanted is not None and (not isinstance(value, wanted[0]) or (tp is not bool and isinstance(value, bool))):
        raise ValueError(f"{name} must be {wanted[1]}, got {value!r}")
    return value


def _fields_from_dict(cls: type, values: Any, section: str) -> dict[str, Any]:
    """The keyword arguments of ``cls`` that the JSON object ``values`` (config section ``section``)
    gives, each checked by ``_json_value``; an unknown field is refused."""
    prefix = f"{section}." if section else ""
    if not isinstance(values, dict):
        raise ValueError(f"{section} must be a JSON object of fields, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(prefix + u for u in unknown)} "
                         f"({cls.__name__} has {', '.join(sorted(known))})")
    return {name: _json_value(prefix + name, value, hints[name]) for name, value in values.items()}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One run's whole configuration: (dataset, backbone, normal class, gamma, seed) and the rest.

    ``ExperimentConfig()`` is the paper's setting on the embedded digits. Every field of the
    sections is a flag of ``jaxad-run`` (``jaxad.cli``).

    Args:
        model: the networks.
        loss: the loss weights and the anomaly branch's readings.
        train: optimisation and the stabilisers.
        data: the dataset, normal class and gamma.
        seed: the run's seed (initialisation, batch sampler, anomaly draw).
        paper_protocol: also score every epoch with test-batch BatchNorm statistics, as
            GANomaly's code does, over the test split as given and laid out normals first
            (docs/benchmarks.md).

    Raises:
        ValueError: the model's and the data's image sides differ.
    """

    # Factories: no config is built (nor validated) while this module is imported.
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    seed: int = _field(0, "the run's seed (initialisation, sampler, anomaly draw)")
    paper_protocol: bool = _field(
        False, "also score with test-batch BatchNorm statistics, as GANomaly's code does: over the "
               "test split as given, and laid out normals first as its loaders do")
    test_both_generators: bool = _field(
        False, "with an averaged generator, also score the test split with the generator that did not "
               "report the epoch (history's auroc_average_generator and auroc_live_generator): a diagnostic "
               "that doubles each epoch's test scoring; no choice reads it")
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
        """The config as nested dicts, one per section (what ``config.json`` holds)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """``to_dict()`` as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        """The config a ``to_dict()`` describes, in this version's layout or an earlier one.

        Args:
            d: section-keyed dicts, as ``config.json`` or ``benchmark.json`` holds them.

        Returns:
            The ``ExperimentConfig``; a dict of an earlier layout is read as ``jaxad.compat``
            says (fields it predates take the value that describes it).

        Raises:
            ValueError: a hand-edited or damaged dict: an unknown section or field, one missing,
                or a value of the wrong type (``"0.5"`` for a float); the message names it.
        """
        if not isinstance(d, dict):
            raise ValueError(f"a configuration is a JSON object of sections, got {type(d).__name__}")
        d = compat.upgrade_config_dict(d)
        sections = {"model": ModelConfig, "loss": LossConfig, "train": TrainConfig, "data": DataConfig}
        top_fields = [f.name for f in dataclasses.fields(cls) if f.name not in sections]
        unknown = sorted(set(d) - set(sections) - set(top_fields))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; a configuration holds the sections "
                             f"{', '.join(sections)} and {', '.join(top_fields)}")
        missing = sorted({"loss", "data", "seed", "paper_protocol"} - set(d))
        if missing:
            raise ValueError(f"the configuration lacks {', '.join(missing)}")
        values = {name: _fields_from_dict(section_cls, d[name], name) for name, section_cls in sections.items()}
        top = _fields_from_dict(cls, {name: d[name] for name in top_fields if name in d}, "")
        return cls(**{name: section_cls(**values[name]) for name, section_cls in sections.items()}, **top)

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """A copy with some fields changed; dotted names reach into the sections.

        Args:
            **changes: ``seed=1``, or ``**{"train.epochs": 2}`` for a section's field.

        Returns:
            The new config, checked as any config is when built.
        """
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
