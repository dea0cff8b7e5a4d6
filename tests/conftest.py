"""Suite-wide settings.

The tests build tiny networks and run them for a few steps, where XLA's optimisation passes
cost more time than they save: most of them are off (``JAX_DISABLE_MOST_OPTIMIZATIONS``,
set before jax is imported so that the subprocesses tests start inherit it). A module whose
run time dominates, real training to a quality bar, sets ``pytestmark = pytest.mark.optimized``
and compiles with every pass. ``pytest -m "not slow"`` leaves out the multi-device
subprocess checks for a quick local run; ``.ci/run`` runs everything.
"""

import os

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402  (after the environment it reads)
import pytest  # noqa: E402

FLAG = "jax_disable_most_optimizations"


def pytest_configure(config):
    config.addinivalue_line("markers", "optimized: compile with all of XLA's optimisations (run-time bound module)")
    config.addinivalue_line("markers", "slow: multi-device checks in subprocesses (minutes; .ci/run runs them)")


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
