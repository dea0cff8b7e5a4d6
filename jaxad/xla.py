"""``jit`` with the XLA compiler options jaxad's steps run fastest with on each backend.

On XLA:CPU, YNNPACK's convolution kernels compute these nets' weight gradients slowly (a
convolution whose window is the whole map); leaving convolutions to XLA's Eigen kernels and
giving only dots and reductions to YNNPACK made the naive train step 1.2x and the U-Net step
1.3x faster (BUILD_NOTES, issue 6). The option is set per jit, not as a process-wide flag,
so it touches nothing else in the user's program. Other backends compile with no options.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


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


def jit(fun: Callable, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fun, **jit_kwargs)`` compiled with ``compiler_options()``.

    The backend is looked up at the first call, not here, so that importing jaxad starts no
    backend (users may still choose platforms or device counts after import).
    """

    @functools.cache
    def jitted() -> Callable:
        return jax.jit(fun, compiler_options=compiler_options(), **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return jitted()(*args, **kwargs)

    call.jitted = jitted  # e.g. jit(f).jitted().lower(...) for cost analysis
    return call
