"""The ablation table (studies/ablation_table.py): one row per run from its history, and a
summary per class over seeds."""

import json
from pathlib import Path

import pytest

from studies import ablation_table
from test_analysis import epoch

pytestmark = pytest.mark.long  # a study script


def write_run(out: Path, normal_class: int, seed: int, history: list[dict]) -> None:
    run = out / "runs" / "gamma0" / f"class{normal_class}" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "history.json").write_text(json.dumps(history))


def test_table_has_a_row_per_run_and_a_seed_summary_per_class(tmp_path):
    out = tmp_path / "ema_3seeds"
    for seed, (final, live) in enumerate([(90.0, 80.0), (80.0, 99.0)]):
        low_epochs = [epoch(95.0, 40.0, 7.0, 20.0)] * 4  # the live G falls below 50 after epoch 3
        write_run(out, 2, seed, low_epochs + [epoch(final, live, 7.0 + 2 * seed, 8.0)])
    text = ablation_table.table([out])
    rows = [line for line in text.splitlines() if line.startswith("| ema_3seeds | 2 |")]
    assert len(rows) == 3  # two runs, one summary line
    seed0 = rows[0].split(" | ")
    columns = dict(zip(ablation_table.COLUMNS, [c.strip("| ") for c in seed0]))
    assert (columns["final"], columns["live G final"], columns["live G <50 after 3"]) == ("90.0", "80.0", "1")
    assert (columns["chosen G final"], columns["chosen G <50 after 3"]) == ("90.0", "0")
    # The reported curve 95, 95, 95, 95, 90: lowest from epoch 4 on 90.0, the fall into epoch 5 5.0.
    assert (columns["chosen G min after 3"], columns["chosen G largest drop after 3"]) == ("90.0", "5.0")
    assert columns["live G min after 3"] == "40.0"
    # Seed 1: the live G reconstructs normals better at the end (8.0 < 9.0), so the choice is its 99.0.
    assert "99.0" == dict(zip(ablation_table.COLUMNS, [c.strip("| ") for c in rows[1].split(" | ")]))[
        "chosen G final"]
    # The label-free selected epoch: the lowest training-normal score over epochs and generators;
    # seed 0 ties at 7.0 (epochs 1-5): the first, epoch 1's average G (95.0).
    assert (columns["selected"], columns["selected epoch"], columns["selected <50 after 3"]) == ("95.0", "1", "0")
    assert columns["G steps clipped (%)"] == ""  # these runs did not clip
    # Summary: mean ± SD among seeds of the final AUROC (85.0 ± 7.1; here the average's), the
    # average's, the live G's, the choice's, the selected epoch's.
    assert rows[2] == "| ema_3seeds | 2 | 2 | 85.0 ± 7.1 | 85.0 ± 7.1 | 89.5 ± 13.4 | 94.5 ± 6.4 | 95.0 ± 0.0 |"


def test_the_curve_is_read_from_epoch_4_on():
    # Epochs 1-3 are warm-up: a fall into epoch 3 does not count, one into epoch 4 does.
    assert ablation_table.lowest_after_3([10.0, 90.0, 40.0, 85.0, 95.0]) == 85.0
    assert ablation_table.largest_drop_after_3([10.0, 90.0, 40.0, 85.0, 95.0]) == -10.0  # rose into 4 and 5
    assert ablation_table.largest_drop_after_3([90.0, 90.0, 90.0, 60.0, 95.0]) == 30.0
    assert ablation_table.lowest_after_3([90.0, 90.0, 90.0]) is None


def test_paper_protocol_runs_show_both_test_batch_layouts(tmp_path):
    # --paper-protocol records batch-statistics AUROC over the test split as given and laid out
    # normals first (the lineage's loaders); the table gives the final and best of each.
    out = tmp_path / "shared_gamma0"
    layouts = [(88.0, 97.0), (91.0, 99.5), (90.0, 98.0)]
    write_run(out, 3, 0, [epoch(90.0, 90.0, 7.0, 7.0, auroc_batch_statistics=given,
                                auroc_batch_statistics_normal_first=first) for given, first in layouts])
    row = next(line for line in ablation_table.table([out]).splitlines() if line.startswith("| shared_gamma0 | 3 | 0 |"))
    columns = dict(zip(ablation_table.COLUMNS, [c.strip("| ") for c in row.split(" | ")]))
    assert (columns["final (batch stats)"], columns["best (batch stats)"]) == ("90.0", "91.0")
    assert (columns["final (normals first)"], columns["best (normals first)"]) == ("98.0", "99.5")


def test_runs_that_clipped_g_report_the_share_of_steps_clipped(tmp_path):
    out = tmp_path / "clip3"
    write_run(out, 2, 0, [epoch(90.0, 80.0, 7.0, 9.0, g_clipped=0.1), epoch(91.0, 85.0, 7.0, 9.0, g_clipped=0.0)])
    row = next(line for line in ablation_table.table([out]).splitlines() if line.startswith("| clip3 | 2 | 0 |"))
    columns = dict(zip(ablation_table.COLUMNS, [c.strip("| ") for c in row.split(" | ")]))
    assert columns["G steps clipped (%)"] == "5.0"


def test_the_summary_averages_the_runs_unrounded(tmp_path):
    # Finals 90.04, 90.04, 90.14 print as 90.0, 90.0, 90.1; their mean is 90.07, which the
    # printed figures would have made 90.03.
    out = tmp_path / "clip3"
    for seed, final in enumerate([90.04, 90.04, 90.14]):
        write_run(out, 5, seed, [epoch(final, 80.0, 7.0, 9.0)])
    lines = ablation_table.table([out]).splitlines()
    assert [line.split(" | ")[4] for line in lines if line.startswith("| clip3 | 5 | ") and "±" not in line] == [
        "90.0", "90.0", "90.1"]
    assert next(line for line in lines if "±" in line).startswith("| clip3 | 5 | 3 | 90.1 ± 0.1 |")
