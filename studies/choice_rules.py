"""The reported curve of runs that recorded both generators' test AUROC, under three rules
for which generator reports each epoch.

    python -m studies.choice_rules results/synthetic_anomalies/fashion_mnist_naive_cutpaste_gamma05

Runs made with ``--test-both-generators`` record, every epoch, each generator's training
evidence and test AUROC, so the per-epoch choice can be replayed under a rule other than the
one the run used:

- ``separation``: ``jaxad.selection`` on all the evidence, training anomalies' separation
  (``train_auroc``) first, then the normals' score: the rule of a run with drawn anomalies;
- ``normals``: the same on the normals' score alone, the rule at gamma 0;
- ``average``: the averaged generator every epoch (``--no-pick-generator``).

Per run and rule it prints the final epoch's AUROC, the label-free selected epoch's (the same
rule over epochs), the lowest reported epoch after epoch 3, and which generator reported each
epoch (a = average, l = live). No test label enters any rule; the test AUROC is only read out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxad.analysis import GENERATORS, recorded_evidence
from jaxad.commands import refuse_non_benchmarks
from jaxad.selection import choose_scoring_generator, select_epoch

RULES = ("separation", "normals", "average")


def evidence(record: dict, generator: str, rule: str) -> dict[str, float]:
    """A generator's training evidence in an epoch's record, as ``rule`` reads it."""
    recorded = recorded_evidence(record)[generator]
    return recorded if rule == "separation" else {"train_normal_score": recorded["train_normal_score"]}


def replay(history: list[dict], rule: str) -> tuple[list[float], list[str], int]:
    """(each epoch's reported test AUROC, the generator that reported it, the selected epoch)
    of a history recorded with both generators' test AUROC, under ``rule``."""
    chosen = []
    for record in history:
        candidates = {g: evidence(record, g, rule) for g in GENERATORS}
        chosen.append("average" if rule == "average" else choose_scoring_generator(candidates, pick=True))
    aurocs = [record[f"auroc_{g}_generator"] for record, g in zip(history, chosen)]
    selected = select_epoch([evidence(record, g, rule) for record, g in zip(history, chosen)])
    return aurocs, chosen, selected


def table(out_dirs: list[Path]) -> str:
    """One markdown row per (run, rule) of the runs under ``out_dirs`` that recorded both
    generators' test AUROC."""
    lines = ["| setting | run | rule | final | selected (epoch) | lowest after 3 | generator per epoch |",
             "|---|---|---|---|---|---|---|"]
    for out in out_dirs:
        for path in sorted(out.glob("runs/*/*/*/history.json")):
            history = json.loads(path.read_text())
            if not all(f"auroc_{g}_generator" in r for r in history for g in GENERATORS):
                continue
            run = "/".join(path.parts[-4:-1])
            for rule in RULES:
                aurocs, chosen, selected = replay(history, rule)
                lowest = f"{min(aurocs[3:]):.1f}" if len(aurocs) > 3 else "—"
                lines.append(f"| {out.name} | {run} | {rule} | {aurocs[-1]:.1f} | {aurocs[selected - 1]:.1f} "
                             f"({selected}) | {lowest} | {''.join(g[0] for g in chosen)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table for the output directories ``argv`` names; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dirs", nargs="+", type=Path, help="benchmark output directories (jaxad-run --out)")
    args = parser.parse_args(argv)
    if refuse_non_benchmarks(args.out_dirs):
        return 2
    print(table(args.out_dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
