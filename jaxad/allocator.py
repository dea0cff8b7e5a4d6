"""glibc malloc settings under which XLA:CPU runs jaxad's steps faster, applied at start-up.

XLA:CPU allocates every execution's output and temporary buffers afresh. glibc serves blocks
above 32 MiB with ``mmap`` and unmaps them when they are freed, so each train step faults
all of its buffer pages in again, 4 KiB at a time (measured: 16,385 page faults per call of
a jitted ``x * 2`` on 64 MiB, which then ran at 7 GB/s against 54 GB/s in place). Keeping
freed memory in the process (one arena, no mmap, no trimming) removes that: after the first
steps nothing is faulted in again. The naive train step at batch 256 went from 1.01 to
0.79-0.82 s on a 2-core CPU, batch scoring 1.4x faster (docs/performance.md).

These are ``GLIBC_TUNABLES``, read once when a process starts, so a running program cannot
take them up: ``restart_with_fast_malloc()`` re-executes the running script with them set.
The runner, the scoring script and ``speed.bench`` call it under ``if __name__ == "__main__"``;
research code can do the same, or start Python with the variable set. The price is that
memory freed during training stays with the process until it exits, and fragments: the
U-Nets' runs keep glibc's defaults (``BOUNDED_MEMORY_BACKBONES``). Set
``JAXAD_DEFAULT_MALLOC=1`` to keep glibc's defaults for every program, or set
``GLIBC_TUNABLES`` yourself to take these settings for a U-Net on a machine with memory to
spare.

Only a process that will compute on the CPU restarts: on a GPU or TPU the step's buffers
live in device memory, and the restart would cost start-up time for nothing measured. The
backend is guessed without starting one (``will_run_on_cpu``), so the restart comes before
any work.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pkgutil
import platform
import sys
from collections.abc import Iterable, Mapping

FAST_MALLOC_TUNABLES: dict[str, str] = {
    "glibc.malloc.arena_max": "1",          # XLA's threads share the main (brk) heap ...
    "glibc.malloc.mmap_max": "0",           # ... which serves large blocks too
    "glibc.malloc.trim_threshold": str(2 ** 40),  # and freed memory is not handed back
}
OPT_OUT_VARIABLE = "JAXAD_DEFAULT_MALLOC"
# Memory the settings keep also fragments. A UNet++ run under them grew to 24.3 GB in its
# third epoch and was killed on a 24 GB host, where under glibc's defaults it peaks at 7.1 GB;
# the defaults cost UNet++ 31 against 36 training images/s and U-Net nothing measured (88
# against 91), so the U-Nets keep them (docs/performance.md, malloc settings).
BOUNDED_MEMORY_BACKBONES: frozenset[str] = frozenset({"unet", "unetpp"})


def accelerator_plugins() -> list[str]:
    """The JAX accelerator backends installed here, found as JAX finds them but not loaded:
    modules of the ``jax_plugins`` namespace package (e.g. ``xla_cuda12`` of
    ``jax-cuda12-plugin``), ``jax_plugins`` entry points, and ``libtpu`` (TPUs)."""
    found = []
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        found += [name for _, name, _ in pkgutil.iter_modules(spec.submodule_search_locations)]
    found += [entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")]
    if importlib.util.find_spec("libtpu") is not None:
        found.append("libtpu")
    return sorted(set(found))


def will_run_on_cpu(environ: Mapping[str, str] | None = None, plugins: Iterable[str] | None = None) -> bool:
    """Whether JAX's default backend will be the CPU, decided without initialising a backend.

    ``JAX_PLATFORMS`` (or the older ``JAX_PLATFORM_NAME``) decides when set: its first
    platform. Otherwise JAX prefers an accelerator whose plugin is installed
    (``accelerator_plugins()``, or ``plugins``); with none, it runs on the CPU. A plugin
    installed on a machine without its device counts as an accelerator: that process then
    runs on the CPU without the restart (slower, never wrong).
    """
    environ = os.environ if environ is None else environ
    platforms = environ.get("JAX_PLATFORMS") or environ.get("JAX_PLATFORM_NAME") or ""
    first = platforms.split(",")[0].strip().lower()
    if first:
        return first == "cpu"
    return not list(accelerator_plugins() if plugins is None else plugins)


def tuned_environ(environ: Mapping[str, str]) -> dict[str, str] | None:
    """``environ`` with ``FAST_MALLOC_TUNABLES`` added to ``GLIBC_TUNABLES``, or None when
    there is nothing to add (every key is already set, possibly to the user's own value)."""
    current = environ.get("GLIBC_TUNABLES", "")
    present = {item.split("=", 1)[0] for item in current.split(":") if item}
    missing = [f"{key}={value}" for key, value in FAST_MALLOC_TUNABLES.items() if key not in present]
    if not missing:
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(([current] if current else []) + missing)}


def restart_with_fast_malloc(backbone: str | None = None) -> None:
    """Re-execute this Python program with ``FAST_MALLOC_TUNABLES``, once.

    Does nothing off Linux/glibc, when the tunables are already set, when
    ``JAXAD_DEFAULT_MALLOC=1``, when JAX will not run on the CPU (``will_run_on_cpu``), or
    when the program trains one of ``BOUNDED_MEMORY_BACKBONES``. Call it first thing under
    ``if __name__ == "__main__":``: the process is replaced, so nothing done before the call
    survives.

    Args:
        backbone: the generator the program trains, where it knows (the runner reads it from
            its command line); None for programs that train none or several.
    """
    if (backbone in BOUNDED_MEMORY_BACKBONES or sys.platform != "linux" or platform.libc_ver()[0] != "glibc"
            or os.environ.get(OPT_OUT_VARIABLE, "") not in ("", "0") or not will_run_on_cpu()):
        return
    environ = tuned_environ(os.environ)
    if environ is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
