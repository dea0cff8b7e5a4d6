"""One markdown table for an ablation study: one row per (setting, class, seed) run.

    python -m studies.ablation_table results/ablations/auxiliary_ema [more output dirs ...]

Reads every ``runs/gamma*/class*/seed*/history.json`` under each benchmark output directory
(finished or not) and prints, per run: epochs done, final AUROC, test-selected AUROC (best
epoch on the test split: optimistic), the number of epochs after epoch 3 below 80 and below
50, the final and best test-batch-statistics AUROC when recorded (``--paper-protocol``: over the
test split as given, and laid out normals first as GANomaly's loaders do), the
averaged and the live generator's final AUROC and the live one's epochs below 50 when the run kept an
EMA ("final" is the generator the run scored with: the average, or with ``pick_generator`` the
one it chose), and the
final ``g_contextual_adversarial`` (L1 between G(x_hat) and x_hat; 2 is the most possible).
Where a run recorded both generators' training evidence (``train_normal_score``, and at gamma
> 0 ``train_auroc``; ``jaxad.selection``), two more columns give the label-free choice between
them: at each epoch, the generator with the better evidence (``jaxad.analysis.label_free_choice``).
Where a run recorded it, three more give the label-free selected epoch (``RunResult.selected_epoch``:
the best evidence over epochs and generators, ``jaxad.analysis.label_free_selection``): its AUROC, the
epoch, and the epochs after 3 at which a run stopped there would have reported below 50.
Where the choice could be made, its lowest epoch after epoch 3 and its largest fall from one
epoch to the next after epoch 3 (what a reader of the reported curve sees), and the live G's
lowest epoch after 3.
Where a run clipped G's gradient at a multiple of its running norm (``--g-grad-clip-factor``),
the last column gives the share of its steps that were clipped. Epochs count from 1. Below
the runs, a summary per (setting, class): mean and seed-to-seed SD of the final AUROC.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxad.analysis import average_generator_auroc, label_free_choice, label_free_selection
from jaxad.runs import BATCH_STATISTICS_AUROCS

COLUMNS = ("setting", "class", "seed", "epochs", "final", "test-selected", "<80 after 3", "<50 after 3",
           "final (batch stats)", "best (batch stats)", "final (normals first)", "best (normals first)",
           "average G final", "live G final", "live G <50 after 3",
           "final L1(G(x_hat), x_hat)", "chosen G final", "chosen G <50 after 3", "chosen G min after 3",
           "chosen G largest drop after 3", "live G min after 3", "selected", "selected epoch",
           "selected <50 after 3", "G steps clipped (%)")


# The columns of --paper-protocol's records: the test split as given, and laid out normals
# first as the lineage's loaders do (docs/fidelity-study.md, 4.2).
_BATCH_STATISTICS_LABELS = dict(zip(BATCH_STATISTICS_AUROCS, ("batch stats", "normals first")))

# One run's figures by column, unrounded (None: not recorded).
Row = dict[str, str | int | float | None]


def _low(values: list[float], bound: float) -> int:
    return sum(v < bound for v in values[3:])


def lowest_after_3(values: list[float]) -> float | None:
    """The lowest AUROC from epoch 4 on (None for a run of 3 epochs or fewer)."""
    return min(values[3:], default=None)


def largest_drop_after_3(values: list[float]) -> float | None:
    """The largest fall of AUROC into an epoch from epoch 4 on, from the epoch before it
    (negative when every such epoch rose; None for a run of 3 epochs or fewer)."""
    return max((before - after for before, after in zip(values[2:], values[3:])), default=None)


def run_row(setting: str, history_file: Path) -> Row:
    """The figures of one run's ``history.json``, by column (None: not recorded); ``table`` rounds
    them for print, ``summary`` averages them unrounded."""
    history = json.loads(history_file.read_text())
    auroc = [h["auroc"] for h in history]
    live = [h["auroc_live_generator"] for h in history if "auroc_live_generator" in h]
    average = [average_generator_auroc(h) for h in history] if live else []
    chosen = label_free_choice(history)
    selected, selected_epochs = label_free_selection(history)
    seed_dir, class_dir = history_file.parent, history_file.parent.parent
    row = {
        "setting": setting, "class": class_dir.name.removeprefix("class"),
        "seed": seed_dir.name.removeprefix("seed"), "epochs": len(history),
        "final": auroc[-1], "test-selected": max(auroc),
        "<80 after 3": _low(auroc, 80), "<50 after 3": _low(auroc, 50),
        "average G final": average[-1] if average else None,
        "live G final": live[-1] if live else None,
        "live G <50 after 3": _low(live, 50) if live else None,
        "final L1(G(x_hat), x_hat)": history[-1]["g_contextual_adversarial"],
        "chosen G final": chosen[-1] if chosen else None,
        "chosen G <50 after 3": _low(chosen, 50) if chosen else None,
        "chosen G min after 3": lowest_after_3(chosen),
        "chosen G largest drop after 3": largest_drop_after_3(chosen),
        "live G min after 3": lowest_after_3(live),
        "selected": selected[-1] if selected else None,
        "selected epoch": selected_epochs[-1] if selected else None,
        "selected <50 after 3": _low(selected, 50) if selected else None,
        # Each epoch records its mean of the step's 0/1; epochs have equal numbers of steps.
        "G steps clipped (%)": (100 * sum(h["g_clipped"] for h in history) / len(history)
                                if all("g_clipped" in h for h in history) else None),
    }
    for key, label in _BATCH_STATISTICS_LABELS.items():
        recorded = [h[key] for h in history if key in h]
        row[f"final ({label})"] = recorded[-1] if recorded else None
        row[f"best ({label})"] = max(recorded) if recorded else None
    return row


def _cell(column: str, value: str | int | float | None) -> str:
    """A figure as the table prints it: AUROCs and shares to 0.1, the L1 to 0.01."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if column == "final L1(G(x_hat), x_hat)" else f"{value:.1f}"
    return str(value)


def _mean_sd(values: list[float]) -> str:
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {sd:.1f}"


def summary(rows: list[Row]) -> str:
    """Per (setting, class): seeds, and mean ± SD (among seeds) of each final-AUROC column,
    from the runs' unrounded figures."""
    columns = ("final", "average G final", "live G final", "chosen G final", "selected")
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["class"]), []).append(row)
    lines = ["| setting | class | seeds | " + " | ".join(columns) + " |", "|" + "---|" * (3 + len(columns))]
    for (setting, cls), group in groups.items():
        cells = [_mean_sd([r[c] for r in group]) if all(r[c] is not None for r in group) else ""
                 for c in columns]
        lines.append(f"| {setting} | {cls} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(out_dirs: list[Path]) -> str:
    rows = [run_row(d.name, f) for d in out_dirs
            for f in sorted(d.glob("runs/gamma*/class*/seed*/history.json"))]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n\n" + summary(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dirs", nargs="+", type=Path, help="benchmark output directories (--out of run.py)")
    args = p.parse_args(argv)
    missing = [d for d in args.out_dirs if not d.is_dir()]
    if missing:
        print(f"error: not a directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    print(table(args.out_dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
