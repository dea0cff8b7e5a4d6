"""Two settings' per-epoch curves side by side, read as the defaults report them."""

import pytest

from studies import compare_curves
from test_ablation_table import write_run
from test_analysis import epoch

pytestmark = pytest.mark.long  # a study script


def test_each_setting_draws_its_reported_and_live_curves(tmp_path):
    defaults, clipped = tmp_path / "defaults", tmp_path / "clip3"
    # The live G falls at epoch 2 and its error on training normals jumps: the average reports.
    write_run(defaults, 2, 0, [epoch(90.0, 91.0, 7.0, 6.0), epoch(89.0, 30.0, 7.0, 20.0), epoch(92.0, 93.0, 7.0, 6.0)])
    write_run(clipped, 2, 0, [epoch(90.0, 91.0, 7.0, 6.0), epoch(91.0, 92.0, 7.0, 6.5), epoch(92.0, 93.0, 7.0, 6.0)])
    write_run(clipped, 3, 0, [epoch(95.0, 96.0, 7.0, 8.0)] * 3)
    assert compare_curves.curves([defaults], seed=0) == {2: ([91.0, 89.0, 93.0], [91.0, 30.0, 93.0])}
    assert set(compare_curves.curves([clipped], seed=0)) == {2, 3}
    assert compare_curves.curves([clipped], seed=1) == {}

    out = tmp_path / "curves.png"
    assert compare_curves.main([str(defaults), "--vs", str(clipped), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_directory_that_is_not_a_benchmark_is_refused(tmp_path, capsys):
    assert compare_curves.main([str(tmp_path), "--vs", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a benchmark output directory" in capsys.readouterr().err
