"""Configuration as frozen dataclasses: model, losses, optimisation, data, protocol.

Every field has the paper's value (or SPEC's marked choice) as its default, so
``ExperimentConfig()`` is the paper's setting on the embedded ``digits`` data.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

BACKBONES = ("naive", "unet", "unetpp")
# How the generator's pseudo-anomaly pass G(x_hat) is batch-normalised (see TrainConfig).
PSEUDO_ANOMALY_BN = ("auxiliary", "shared", "shared_no_update", "normal_batch")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The networks. ``width`` scales every channel count; 1.0 is the paper's nets."""

    backbone: Literal["naive", "unet", "unetpp"] = "naive"
    channels: int = 1
    image_size: int = 32
    width: float = 1.0
    latent_dim: int = 100

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {BACKBONES}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.backbone == "naive":
            side, ok = self.image_size, self.image_size >= 32
            while ok and side > 32:
                ok, side = side % 2 == 0, side // 2
            if not (ok and side == 32):
                raise ValueError(
                    f"the naive backbone takes images of side 32 * 2^k (32, 64, 128, ...), "
                    f"got {self.image_size}")
        elif self.image_size % 16 or self.image_size < 16:
            raise ValueError(
                f"the {self.backbone} backbone needs an image side divisible by 16, got {self.image_size}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss weights (the paper's) and the choices SPEC marks.

    ``w_adcon = 0`` is the paper's "without contextual adversarial information" ablation.
    ``anomaly_recon_pair``: which pair the anomaly branch's reconstruction term is taken on:
    ``"input"`` (x, G(x)), SPEC's default, or ``"pseudo"`` (G(x), G(G(x))), Algorithm 1's print.
    """

    w_adv: float = 1.0
    w_con: float = 50.0
    w_adcon: float = 15.0
    w_lat: float = 5.0
    eps: float = 1e-8
    anomaly_recon_pair: Literal["input", "pseudo"] = "input"

    def __post_init__(self) -> None:
        if self.anomaly_recon_pair not in ("input", "pseudo"):
            raise ValueError(
                f"anomaly_recon_pair must be 'input' or 'pseudo', got {self.anomaly_recon_pair!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, the BatchNorm switches of the paper's section 6.2, and stabilisers.

    ``pseudo_anomaly_bn``: how the pass G(x_hat) is batch-normalised.
    ``"auxiliary"`` is the paper's AdvProp (own scale, bias and running statistics);
    ``"shared"`` the paper's base configuration (the same BatchNorm layers, the pass's own
    batch statistics, which also enter the running statistics); ``"shared_no_update"`` the
    same without touching the running statistics; ``"normal_batch"`` normalises x_hat with
    the statistics of the normal batch it was made from and updates nothing, so G can tell
    a pseudo-anomaly from a normal image only by its content, never by batch statistics.
    ``freeze_bn``: true anomalies are normalised with running statistics and never update them.
    ``detach_pseudo``: no gradient flows into x_hat through the pass G(x_hat).
    ``ema_decay`` > 0 keeps an exponential moving average of G's parameters and statistics
    (with the usual warm-up, ``min(decay, (1 + t) / (10 + t))``) and scores with it.
    """

    learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 256
    epochs: int = 15
    d_reset_threshold: float = 1e-5
    # Every batch with gamma > 0 holds at least this many anomalies (the paper: 32 of 256).
    min_anomalies_per_batch: int = 32
    pseudo_anomaly_bn: Literal["auxiliary", "shared", "shared_no_update", "normal_batch"] = "auxiliary"
    freeze_bn: bool = True
    detach_pseudo: bool = False
    ema_decay: float = 0.0

    @property
    def advprop(self) -> bool:
        """Whether G carries AdvProp's auxiliary BatchNorm layers."""
        return self.pseudo_anomaly_bn == "auxiliary"

    def __post_init__(self) -> None:
        if self.pseudo_anomaly_bn not in PSEUDO_ANOMALY_BN:
            raise ValueError(f"pseudo_anomaly_bn must be one of {PSEUDO_ANOMALY_BN}, got {self.pseudo_anomaly_bn!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
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
    """

    dataset: str = "digits"
    normal_class: int = 0
    gamma: float = 0.0
    anomaly_classes: tuple[int, ...] | None = None
    data_dir: str | None = None
    source: Literal["auto", "raw", "tfds"] = "auto"
    image_size: int = 32

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")
        if self.source not in ("auto", "raw", "tfds"):
            raise ValueError(f"source must be 'auto', 'raw' or 'tfds', got {self.source!r}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One run: (dataset, backbone, normal class, gamma, seed)."""

    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    seed: int = 0
    # Score with each test batch's own BatchNorm statistics, as GANomaly's code does.
    paper_protocol: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        data = dict(d["data"])
        if data.get("anomaly_classes") is not None:
            data["anomaly_classes"] = tuple(data["anomaly_classes"])
        train = dict(d["train"])
        if "advprop" in train:  # run directories written before pseudo_anomaly_bn existed
            train["pseudo_anomaly_bn"] = "auxiliary" if train.pop("advprop") else "shared"
        return cls(
            model=ModelConfig(**d["model"]),
            loss=LossConfig(**d["loss"]),
            train=TrainConfig(**train),
            data=DataConfig(**data),
            seed=d["seed"],
            paper_protocol=d["paper_protocol"],
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
