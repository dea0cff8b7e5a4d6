"""Files written by earlier versions, read as this version lays them out.

Every rule that lets an older run directory or benchmark load, resume and report is here, so
that the config schema (``jaxad.config``) and the code that writes and reads runs describe the
present layout only. CHANGELOG.md says when each
layout changed.

- ``config.json`` and ``benchmark.json``: fields added since take the value that describes
  what the versions without them did (``ADDED_LATER``), and moved fields move
  (``upgrade_config_dict``).
- ``history.json`` and the history each checkpoint saves: records whose epochs counted from 0
  are renumbered from 1 (``numbered_from_one``).
- ``result.json``: a ``best_epoch`` that counted from 0 is read counting from 1
  (``result_counting_from_one``).
- ``data.json``: a run directory without one predates it; it passes the data check and
  records its data when next opened (``predates_data_fingerprint``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Fields added after run directories were first written, with the value that describes what
# the versions without them did (not today's default): a run directory that lacks one was
# made that way, and resuming it with another value is refused as another configuration.
ADDED_LATER: dict[str, dict[str, Any]] = {
    # ExperimentConfig's own fields. Runs made before it stored no threshold: its default, which
    # their unfinished runs store when resumed.
    "": {"threshold_quantile": 0.99, "test_both_generators": False},
    "model": {"compute_dtype": "float32"},
    "data": {"category": None, "synthetic_anomalies": "none"},
    "loss": {"anomaly_adversarial_target": 0},
    "train": {"detach_pseudo": False, "ema_decay": 0.0, "pick_generator": False, "grad_clip_norm": None,
              "g_grad_clip_factor": None, "g_update_rms_clip": None,
              "anomalies_update_statistics": True, "anomaly_bn": "own"},
}

# What result.json holds since best_epoch counts from 1; absent from files written before.
EPOCHS_COUNT_FROM = "epochs_count_from"


def upgrade_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict as this version lays it out.

    What earlier versions wrote in ``config.json`` and ``benchmark.json`` is moved to where
    the field now lives, and fields they predate get the value that describes them
    (``ADDED_LATER``).

    Args:
        d: ``ExperimentConfig.to_dict()`` of any version, or a section-keyed part of one (a
            benchmark's base). Not changed.

    Returns:
        A new dict in this version's layout.
    """
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


def numbered_from_one(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History records with ``"epoch"`` counting from 1.

    Args:
        history: a run's history records (``history.json``, or a checkpoint's).

    Returns:
        ``history`` itself when its epochs count from 1; a renumbered copy when they count
        from 0, as run directories of earlier versions have them.
    """
    if history and history[0].get("epoch") == 0:
        return [{**record, "epoch": record["epoch"] + 1} for record in history]
    return history


def result_counting_from_one(result: dict[str, Any]) -> dict[str, Any]:
    """A ``result.json`` with ``best_epoch`` counting from 1.

    Args:
        result: a run's ``result.json``.

    Returns:
        ``result`` itself, or for a complete run written when epochs counted from 0 (no
        ``epochs_count_from``) a copy with ``best_epoch`` + 1; the file is left as it is.
    """
    if result.get("status") == "complete" and EPOCHS_COUNT_FROM not in result:
        return {**result, "best_epoch": result["best_epoch"] + 1, EPOCHS_COUNT_FROM: 1}
    return result


def predates_data_fingerprint(run_dir: Path) -> bool:
    """Whether a run directory was written before runs recorded their data (no ``data.json``).

    Such a run is taken to be on the data it is opened with: it passes the data check, and
    records that data's fingerprint when training opens it.
    """
    return not (Path(run_dir) / "data.json").exists()
