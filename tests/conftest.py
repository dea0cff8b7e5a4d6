"""Suite-wide settings, and the two suites.

``python -m pytest -q`` runs the default suite, what ``.ci/run`` runs (a few minutes on two
cores), in two worker processes that each take whole files (``pyproject.toml``'s ``addopts``;
``-n 0`` runs it in one). ``python -m pytest -q -m long -n 0`` runs the long tests (in one
process: the training to a quality bar failed under two workers' uneven load), marked ``long``:
the study scripts and the speed measurements (speed/) run end to end, real training to a
quality bar, the multi-device checks in subprocesses, and the end-to-end runs of the README's
example, the images demo and the runner training seeds at once, and the U-Nets' formulations
compared whole. ``pyproject.toml`` leaves them out by default (``addopts``); a ``-m`` given on
the command line replaces that.

The tests build tiny networks and run them for a few steps, where XLA's optimisation passes
cost more time than they save: most of them are off (``JAX_DISABLE_MOST_OPTIMIZATIONS``,
set before jax is imported so that the subprocesses tests start inherit it), XLA:CPU's
fusion emitters too (``XLA_FLAGS``, likewise inherited), and compiled
programs are shared through a compilation cache kept for the session. A module whose
run time dominates, real training to a quality bar, sets ``pytestmark = pytest.mark.optimized``
and compiles with every pass.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# XLA:CPU's MLIR fusion emitters take most of an unoptimised compile: off, a test's train step
# compiles 2-3x faster (BUILD_NOTES.md, Test suite). With every pass on they save nothing.
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_cpu_use_fusion_emitters=false"]))
# A compilation cache for this session only: test modules (and the processes tests start)
# compile the same tiny steps through different jit objects; the cache key holds the compile
# options, so optimised and unoptimised programs never stand in for each other.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxad-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402  (after the environment it reads)
import pytest  # noqa: E402

FLAG = "jax_disable_most_optimizations"


def pytest_configure(config):
    config.addinivalue_line("markers", "optimized: compile with all of XLA's optimisations (run-time bound module)")
    config.addinivalue_line("markers", "long: study scripts, full trainings and multi-device checks "
                                       "(minutes; run with -m long, left out of the default suite)")


@pytest.fixture(autouse=True, scope="module")
def _xla_optimisations(request):
    """Module scope, so that it is in force before the module's own expensive fixtures."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    previous = jax.config.values[FLAG]
    # The flag is not part of jit's cache key: without clearing, a step compiled unoptimised by
    # an earlier module with the same shapes would be reused, and this module's numbers would
    # depend on which modules ran before it.
    jax.clear_caches()
    jax.config.update(FLAG, False)
    try:
        yield
    finally:
        jax.clear_caches()
        jax.config.update(FLAG, previous)
