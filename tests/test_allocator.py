"""The runner scripts restart themselves under the glibc malloc settings of jaxad.allocator,
when JAX will run on the CPU and the generator is not a U-Net."""

import json
import os
import platform
import subprocess
import sys

import pytest

from jaxad import allocator
from jaxad.allocator import FAST_MALLOC_TUNABLES, OPT_OUT_VARIABLE, tuned_environ, will_run_on_cpu
from jaxad.commands.run import requested_backbone
from jaxad.config import ExperimentConfig

ALL = ":".join(f"{k}={v}" for k, v in FAST_MALLOC_TUNABLES.items())
PRINT_TUNABLES = ("import os, sys; from jaxad.allocator import restart_with_fast_malloc; "
                  "print('started', flush=True); restart_with_fast_malloc(); "
                  "print(os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:])")


def test_tunables_are_added_to_an_empty_environment():
    assert tuned_environ({"HOME": "/root"}) == {"HOME": "/root", "GLIBC_TUNABLES": ALL}


def test_the_users_own_tunables_are_kept_and_win():
    env = tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4:glibc.cpu.x86_rep_movsb_threshold=1"})
    items = env["GLIBC_TUNABLES"].split(":")
    assert items[:2] == ["glibc.malloc.arena_max=4", "glibc.cpu.x86_rep_movsb_threshold=1"]
    assert [i for i in items if i.startswith("glibc.malloc.arena_max")] == ["glibc.malloc.arena_max=4"]
    assert set(items[2:]) == {f"{k}={v}" for k, v in FAST_MALLOC_TUNABLES.items() if k != "glibc.malloc.arena_max"}


def test_nothing_to_add_means_no_restart():
    assert tuned_environ({"GLIBC_TUNABLES": ALL}) is None


@pytest.mark.parametrize("environ,plugins,cpu", [
    ({"JAX_PLATFORMS": "cpu"}, ["xla_cuda12"], True),    # the user's choice wins over a plugin
    ({"JAX_PLATFORMS": "cuda,cpu"}, [], False),          # the first platform is the default
    ({"JAX_PLATFORMS": "tpu"}, [], False),
    ({"JAX_PLATFORM_NAME": "gpu"}, [], False),
    ({}, [], True),                                      # nothing installed but the CPU
    ({"JAX_PLATFORMS": ""}, ["xla_cuda12"], False),      # JAX would pick the CUDA plugin
    ({}, ["libtpu"], False),
])
def test_the_backend_is_guessed_from_the_environment_and_the_installed_plugins(environ, plugins, cpu):
    assert will_run_on_cpu(environ, plugins) is cpu


def test_an_installed_plugin_is_found_without_being_imported(tmp_path, monkeypatch):
    # A jax_plugins namespace package holding xla_cuda12, as jax-cuda12-plugin installs it.
    (tmp_path / "jax_plugins" / "xla_cuda12").mkdir(parents=True)
    (tmp_path / "jax_plugins" / "xla_cuda12" / "__init__.py").write_text("raise RuntimeError('imported')")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "jax_plugins", raising=False)
    assert "xla_cuda12" in allocator.accelerator_plugins()
    assert will_run_on_cpu({}) is False


def run_child(extra_env, code=PRINT_TUNABLES):
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", OPT_OUT_VARIABLE, "JAX_PLATFORMS", "JAX_PLATFORM_NAME")}
    extra_env = {"JAX_PLATFORMS": "cpu", **extra_env}
    return subprocess.run([sys.executable, "-c", code, "arg1"], env={**env, **extra_env},
                          capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_script_restarts_once_with_the_tunables_and_its_arguments():
    lines = run_child({})
    # Started twice (before and after the exec), then runs on with the tunables set.
    assert lines == ["started", "started", f"{ALL} ['arg1']"]


def test_opting_out_keeps_the_defaults():
    assert run_child({OPT_OUT_VARIABLE: "1"}) == ["started", " ['arg1']"]


def test_a_script_bound_for_an_accelerator_does_not_restart():
    assert run_child({"JAX_PLATFORMS": "cuda"}) == ["started", " ['arg1']"]


def test_a_program_training_a_u_net_keeps_the_defaults():
    # The U-Nets' buffers fragment the one heap the settings keep (a UNet++ run grew past 24 GB).
    code = PRINT_TUNABLES.replace("restart_with_fast_malloc()", "restart_with_fast_malloc('unetpp')")
    assert run_child({}, code) == ["started", " ['arg1']"]


def test_the_runner_reads_the_backbone_from_its_flags_or_its_saved_config(tmp_path):
    saved = ExperimentConfig().replace(**{"model.backbone": "unet", "data.dataset": "digits"})
    (tmp_path / "config.json").write_text(json.dumps(saved.to_dict()))
    assert requested_backbone([]) == "naive"
    assert requested_backbone(["--dataset", "digits", "--backbone", "unetpp"]) == "unetpp"
    assert requested_backbone(["--config", str(tmp_path / "config.json")]) == "unet"
    assert requested_backbone(["--config", str(tmp_path / "config.json"), "--backbone", "naive"]) == "naive"
    # Unreadable: the runner's main reports it, after the (then default) restart.
    assert requested_backbone(["--config", str(tmp_path / "missing.json")]) is None
