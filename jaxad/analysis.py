"""Finished runs' histories read as the label-free choices read them (``jaxad.selection``).

A run with an averaged generator records each epoch's training evidence of both generators.
These functions apply ``choose_scoring_generator`` and ``select_epoch`` to such records
afterwards, so that a study's table or curve shows what the defaults report: also for runs
that recorded both generators' evidence but scored with the average (made before the choice
was a default), whose records hold the average's under the plain names.

    history = read_json(run_dir / "history.json")
    reported = label_free_choice(history)               # per epoch, the chosen generator's AUROC
    aurocs, epochs = label_free_selection(history)      # per epoch e, the selection over 1..e
"""

from __future__ import annotations

from typing import Any

from jaxad.selection import EVIDENCE, choose_scoring_generator, select_epoch

GENERATORS = ("average", "live")


def recorded_evidence(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Both generators' training evidence in an epoch's record that holds both.

    Args:
        record: one epoch of a ``history.json``.

    Returns:
        ``{"average": {...}, "live": {...}}``, each the ``EVIDENCE`` fields recorded for it
        (the average's under the plain names in runs that scored with it).
    """
    evidence = {}
    for name in GENERATORS:
        fallback = record if name == "average" else {}
        evidence[name] = {key: record.get(f"{key}_{name}_generator", fallback.get(key)) for key in EVIDENCE}
        evidence[name] = {key: value for key, value in evidence[name].items() if value is not None}
    return evidence


def chosen_generator(record: dict[str, Any]) -> str:
    """The generator the label-free choice (``pick_generator``) takes in an epoch's record that
    holds both generators' evidence: ``"average"`` or ``"live"``."""
    return choose_scoring_generator(recorded_evidence(record), pick=True)


def average_generator_auroc(record: dict[str, Any]) -> float:
    """The averaged generator's test AUROC in an epoch's record (runs that scored with it
    record it as ``auroc``)."""
    return record.get("auroc_average_generator", record["auroc"])


def _chosen(record: dict[str, Any]) -> tuple[dict[str, float], float]:
    """(training evidence, test AUROC) of the generator ``chosen_generator`` takes."""
    generator = chosen_generator(record)
    auroc = average_generator_auroc(record) if generator == "average" else record["auroc_live_generator"]
    return recorded_evidence(record)[generator], auroc


def label_free_choice(history: list[dict[str, Any]]) -> list[float]:
    """Per epoch, the test AUROC of the generator the label-free choice takes.

    Args:
        history: a run's ``history.json``.

    Returns:
        One AUROC per epoch; empty when the run did not record both generators.
    """
    keys = ("train_normal_score", "train_normal_score_live_generator", "auroc_live_generator")
    if not all(k in h for h in history for k in keys):
        return []
    return [_chosen(h)[1] for h in history]


def label_free_selection(history: list[dict[str, Any]]) -> tuple[list[float], list[int]]:
    """Per epoch e, what a run stopped after e reports as its label-free selected model.

    ``select_epoch`` over epochs 1..e, each epoch scored by the generator the label-free
    choice takes in it (as with ``pick_generator``).

    Args:
        history: a run's ``history.json``.

    Returns:
        ``(aurocs, epochs)``: the selected model's test AUROC and its epoch (counting from 1),
        one each per epoch; two empty lists when the run recorded no training-normal score.
    """
    if not all("train_normal_score" in h for h in history):
        return [], []
    scored = [_chosen(h) if "train_normal_score_live_generator" in h else (h, h["auroc"]) for h in history]
    epochs = [select_epoch([evidence for evidence, _ in scored[:e]]) for e in range(1, len(scored) + 1)]
    return [scored[e - 1][1] for e in epochs], epochs
