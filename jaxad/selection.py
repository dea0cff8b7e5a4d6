"""The label-free choices a run makes, by one rule: which generator scores an epoch (the
averaged or the live one) and which epoch is the selected model.

Both read only the run's training data, never a test label. Each candidate is described by
its epoch record's training evidence:

- ``train_normal_score``: its mean score (||x - G(x)||_2) on training normals. A collapse of
  G, which stops reconstructing normals, shows as a jump of it.
- ``train_auroc`` (runs with gamma > 0 only): the AUROC (%) with which its scores tell those
  training normals from the run's own training anomalies, the labelled anomalies the method
  is shown. The other fall, where G learns to reconstruct anomalies while its error on normals
  is at its lowest (docs/fidelity-study.md, 6.4), lowers it and leaves the normal score low.

The better candidate has the higher ``train_auroc`` (when recorded), then the lower
``train_normal_score``. A record without ``train_auroc`` (gamma 0, a run written before it
was recorded, or a run whose anomalies are synthetic: ``jaxad.loop.training_evidence``)
ranks by the normal score alone, below any record that has one.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

EVIDENCE = ("train_normal_score", "train_auroc")  # the record fields label_free_key reads


def label_free_key(record: Mapping[str, float]) -> tuple[float, float]:
    """How good a candidate is by its training evidence (higher is better): (training AUROC
    normals vs anomalies, or -inf when not recorded; minus the mean training-normal score)."""
    return record.get("train_auroc", -math.inf), -record["train_normal_score"]


def choose_scoring_generator(candidates: Mapping[str, Mapping[str, float]], pick: bool) -> str:
    """Which generator scores an epoch, given each candidate's training evidence: the average
    when there is one, unless ``pick`` and the live generator is better by ``label_free_key``
    (a tie keeps the average)."""
    if "average" not in candidates:
        return "live"
    better = label_free_key(candidates["live"]) > label_free_key(candidates["average"])
    return "live" if pick and better else "average"


def select_epoch(records: Sequence[Mapping[str, float]]) -> int:
    """The label-free selected epoch (counting from 1) among epochs with these records (each
    the scoring generator's training evidence): the best by ``label_free_key``, the earliest
    on a tie."""
    if not records:
        raise ValueError("select_epoch needs at least one epoch's record")
    return max(range(len(records)), key=lambda i: (label_free_key(records[i]), -i)) + 1
