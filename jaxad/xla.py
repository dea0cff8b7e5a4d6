"""``jit`` with the XLA compiler options jaxad's steps run fastest with on each backend.

On XLA:CPU, YNNPACK's convolution kernels compute these nets' weight gradients slowly (a
convolution whose window is the whole map); leaving convolutions to XLA's Eigen kernels and
giving only dots and reductions to YNNPACK made the naive train step 1.2x and the U-Net step
1.3x faster on a 2-core CPU (docs/performance.md, Start-up and compiler options). The option
is set per jit, not as a process-wide flag, so it touches nothing else in the user's program.
Other backends compile with no options.

Programs that run once (a network's initialisation) are compiled on CPU with XLA's
optimisation passes off: they gain nothing from them, and the passes are most of their compile
time (naive net, G and D: 2.6 s instead of 13; UNet++ 12 s instead of 27; the same section).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


# What JAX's own ``jax_disable_most_optimizations`` sets, here for one jit.
CPU_RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_once_options(backend: str | None = None) -> dict[str, Any] | None:
    """The options jaxad compiles run-once programs (initialisation) with on ``backend``:
    optimisation passes off on CPU, where they dominate the compile; none elsewhere."""
    return dict(CPU_RUN_ONCE_OPTIONS) if (backend or jax.default_backend()) == "cpu" else None


@functools.cache
def compiler_options(backend: str | None = None) -> dict[str, str] | None:
    """The options jaxad compiles its steps with on ``backend`` (default: JAX's default).

    ``None`` off CPU, and on an XLA that does not know the option (it is experimental): the
    option is tried once on a trivial function, so a jax without it runs unoptimised
    instead of failing.
    """
    if (backend or jax.default_backend()) != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(1.0).compile()
    except jax.errors.JaxRuntimeError:
        return None
    return dict(CPU_COMPILER_OPTIONS)


def jit(fun: Callable, *, run_once: bool = False, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fun, **jit_kwargs)`` compiled with ``compiler_options()``, or with
    ``run_once_options()`` for a program that runs once and should compile fast.

    The backend is looked up at the first call, not here, so that importing jaxad starts no
    backend (users may still choose platforms or device counts after import).
    """

    @functools.cache
    def jitted() -> Callable:
        options = run_once_options() if run_once else compiler_options()
        return jax.jit(fun, compiler_options=options, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return jitted()(*args, **kwargs)

    call.jitted = jitted  # e.g. jit(f).jitted().lower(...) for cost analysis
    return call
