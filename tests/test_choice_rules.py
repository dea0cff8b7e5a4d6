"""The per-epoch choice replayed under three rules (studies/choice_rules.py)."""

import json

import pytest

from studies import choice_rules

pytestmark = pytest.mark.long  # a study script


def both(average, live, average_score, live_score, average_apart, live_apart):
    """An epoch recorded with both generators' test AUROC and training evidence."""
    return {"auroc_average_generator": average, "auroc_live_generator": live,
            "train_normal_score_average_generator": average_score, "train_normal_score_live_generator": live_score,
            "train_auroc_average_generator": average_apart, "train_auroc_live_generator": live_apart}


HISTORY = [both(80.0, 70.0, 9.0, 10.0, 90.0, 91.0),   # live tells the anomalies apart better, normals worse
           both(85.0, 84.0, 8.0, 7.0, 95.0, 94.0),    # live reconstructs normals better, separates worse
           both(90.0, 60.0, 7.0, 8.0, 96.0, 97.0),
           both(91.0, 89.0, 6.0, 6.5, 96.0, 98.0)]


def test_each_rule_reads_its_own_evidence():
    assert choice_rules.replay(HISTORY, "separation") == ([70.0, 85.0, 60.0, 89.0], ["live", "average", "live", "live"], 4)
    assert choice_rules.replay(HISTORY, "normals") == ([80.0, 84.0, 90.0, 91.0], ["average", "live", "average", "average"], 4)
    assert choice_rules.replay(HISTORY, "average") == ([80.0, 85.0, 90.0, 91.0], ["average"] * 4, 4)


def test_the_table_has_a_row_per_run_and_rule_and_skips_runs_without_both_test_aurocs(tmp_path):
    (tmp_path / "benchmark.json").write_text("{}")
    for run, history in (("class2", HISTORY), ("class3", [{"auroc": 90.0}])):
        path = tmp_path / "runs" / "gamma0.05" / run / "seed0"
        path.mkdir(parents=True)
        (path / "history.json").write_text(json.dumps(history))
    rows = choice_rules.table([tmp_path]).splitlines()[2:]
    assert [row.split(" | ")[2] for row in rows] == ["separation", "normals", "average"]
    assert rows[0].endswith("| 89.0 | 89.0 (4) | 89.0 | lall |")
    assert choice_rules.main([str(tmp_path / "runs")]) == 2
