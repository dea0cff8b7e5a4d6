"""``speed.bench`` runs end to end (tiny nets, one repetition; no timing is checked), and so does
its --formulations table.

The fast formulations it measures are tested equal to the plain ones in test_layers.py.
"""

import json
from types import SimpleNamespace

import jax
import pytest

from jaxad.config import ExperimentConfig
from jaxad.models import layers
from speed import bench

pytestmark = pytest.mark.long  # every measurement, tiny nets: each step it times compiles


def test_a_quick_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--backbones", "naive", "--channels", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert "partial" not in saved and not list(tmp_path.glob("*.tmp"))
    assert saved["machine"]["devices"] and saved["machine"]["matmul_peak_flops"]["flops_per_s"] > 0
    (row,) = result["rows"]
    assert row["jax_train"]["finite"] and row["jax_train"]["images_per_s"] > 0
    assert row["jax_score"]["images_per_s"] > 0 and row["jax_score"]["latency_ms"] > 0
    assert row["step_flops"] > 0 and row["jax_train"]["xla_flops"] > 0
    assert {r["impl"] for r in result["upsample_impls"]} >= {bench.DEFAULT_UPSAMPLE, "matmul"}
    clip = result["default_clip"]  # the default step's cost beside the paper's plain Adam
    default_factor = ExperimentConfig().train.g_grad_clip_factor
    assert default_factor is not None and clip["factor"] == default_factor
    assert clip["plain_adam"]["finite"] and clip["default_clip"]["finite"]
    assert saved["default_clip"]["overhead"] == pytest.approx(
        clip["default_clip"]["median_s"] / clip["plain_adam"]["median_s"] - 1)
    assert [r["k"] for r in result["vmap"]["rows"]] == [2]
    assert result["vmap"]["rows"][0]["vmap_images_per_s"] > 0
    if "torch" in row:  # the PyTorch reference is optional
        # ...and runs on the device jaxad runs on: here the CPU (the GPU when jax runs on one)
        expected = "cuda" if jax.default_backend() == "gpu" else "cpu"
        assert saved["machine"]["torch_device"] == expected
        assert row["torch"]["g_params"] == row["g_params"]
        assert row["torch"]["train"]["finite"]
        counted = row["torch"].get("flop_counter_per_image")
        if counted:  # the analytic count is the work PyTorch's counter sees
            assert counted == pytest.approx(row["model_flops_per_image"]["step"], rel=0.02)


def test_a_run_cut_short_keeps_the_rows_it_finished(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"

    def time_limit(*args, **kwargs):  # e.g. `timeout` on a lent GPU, after the main rows
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "vmap_models", time_limit)
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--quick", "--backbones", "naive", "--channels", "1", "--no-torch", "--no-impls",
                    "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["partial"] and [r["backbone"] for r in saved["rows"]] == ["naive"]
    assert saved["rows"][0]["jax_train"]["images_per_s"] > 0


def test_the_reference_runs_where_jaxad_runs_and_waits_for_a_gpu():
    synced = []
    torch = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: True, synchronize=synced.append))
    # auto: the GPU only when jaxad itself runs on one, so both are timed on the same chip
    assert bench.torch_device(torch, "auto") == ("cuda" if jax.default_backend() == "gpu" else "cpu")
    assert bench.torch_device(torch, "cuda:1") == "cuda:1"
    # a CUDA timing waits for the queued kernels; a CPU one has nothing to wait for
    assert bench.torch_sync(torch, "cuda")("out") == "out" and synced == ["cuda"]
    assert bench.torch_sync(torch, "cpu")("out") == "out" and synced == ["cuda"]


def test_formulations_are_timed_on_this_backend_and_printed(capsys):
    result = bench.main(["--formulations", "--quick", "--backbones", "naive", "--channels", "1", "--reps", "1"])
    out = capsys.readouterr().out
    default = result["machine"]["default_formulations"]
    assert result["machine"]["platform"] == jax.default_backend()
    assert default == layers.default_formulation_name(jax.default_backend())
    # Every layer case, each with every formulation, one of them marked as the default's choice.
    cases = bench.layer_cases(8, 0.0625)
    assert len(result["layers"]) == sum(len(bench.layer_variants(kind)) for _, kind, _, _ in cases)
    for name, kind, _, _ in cases:
        rows = [r for r in result["layers"] if r["layer"] == name]
        assert sum(r["default"] for r in rows) == 1 and all(r["median_ms"] > 0 for r in rows)
        assert name in out
    assert {r["formulation"] for r in result["layers"]} == {*layers.FORMULATIONS, *layers.UPSAMPLE_IMPLS}
    assert [(r["formulations"], r["default"]) for r in result["steps"]] == [
        (name, name == default) for name in layers.FORMULATIONS]
    assert all(r["finite"] for r in result["steps"])
    assert "train step (G then D" in out and f"default_formulations picks on this backend ('{default}')" in out
