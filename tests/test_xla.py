"""jaxad compiles its steps with per-jit XLA options on CPU, and with none elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad import xla


def test_cpu_steps_compile_with_the_cpu_options_and_other_backends_with_none():
    assert xla.compiler_options("cpu") == xla.CPU_COMPILER_OPTIONS
    assert xla.compiler_options("gpu") is None


def test_run_once_programs_compile_without_optimisation_passes_on_cpu_only(monkeypatch):
    assert xla.run_once_options("cpu") == {"xla_backend_optimization_level": 0,
                                           "xla_llvm_disable_expensive_passes": True}
    assert xla.run_once_options("gpu") is None
    init = xla.jit(lambda key: jax.random.normal(key, (4, 4)), run_once=True)
    np.testing.assert_allclose(init(jax.random.key(0)), jax.random.normal(jax.random.key(0), (4, 4)), rtol=1e-6)
    if jax.default_backend() == "cpu":  # the options do reach the compiler: an unknown one fails
        monkeypatch.setattr(xla, "CPU_RUN_ONCE_OPTIONS", {"xla_cpu_no_such_option": "1"})
        with pytest.raises(jax.errors.JaxRuntimeError):
            xla.jit(lambda key: jax.random.normal(key, (4, 4)), run_once=True)(jax.random.key(0))


def test_an_xla_without_the_option_compiles_without_it(monkeypatch):
    monkeypatch.setattr(xla, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "1"})
    xla.compiler_options.cache_clear()
    try:
        assert xla.compiler_options("cpu") is None
    finally:
        xla.compiler_options.cache_clear()


def test_jit_computes_what_jax_jit_does_and_compiles_once():
    def f(x, scale=2.0):
        return jnp.tanh(x) * scale

    fast = xla.jit(f, static_argnames="scale")
    x = jax.random.normal(jax.random.key(0), (8, 8))
    np.testing.assert_allclose(fast(x, scale=3.0), jax.jit(f, static_argnames="scale")(x, scale=3.0), rtol=1e-6)
    assert fast.jitted() is fast.jitted()  # one jitted function, one cache of compiled steps
    assert fast.__name__ == "f"
