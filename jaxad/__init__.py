"""jaxad: AGAD (Adversarial Generative Anomaly Detection, Shi and Zhang 2023) in JAX/Flax.

    import jaxad
    cfg = jaxad.ExperimentConfig()                  # the paper's setting on sklearn's digits
    result = jaxad.fit(cfg, run_dir="runs/demo")    # train, score the test split every epoch
    scores = jaxad.score(result.state, images)      # ||x - G(x)||_2, higher = more anomalous
    found = jaxad.detect("runs/demo", images)       # scores, normalized scores, is_anomalous
"""

from jaxad.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from jaxad.data import OneClassSplit
from jaxad.detection import Detections, detect
from jaxad.runs import RunResult, fit, fit_many, load_run, score
from jaxad.train import AGADState, create_train_state, reconstruct, indexed_train_step, score_step, train_step

__version__ = "0.1.0"

__all__ = ["AGADState", "DataConfig", "Detections", "ExperimentConfig", "LossConfig", "ModelConfig", "OneClassSplit", "RunResult",
           "TrainConfig", "create_train_state", "detect", "fit", "fit_many", "load_run", "reconstruct", "score",
           "score_step", "indexed_train_step", "train_step"]
