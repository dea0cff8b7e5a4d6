"""Speed measurements: jaxad against a PyTorch reference of the same networks and step.

One run measures, for each backbone and channel count at 32x32:

* the jaxad train step (images/s at ``--batch-size``), scoring throughput (images/s at the
  same batch) and the latency of scoring one image (ms; the paper's Table 8 gives 2.67 /
  5.41 / 16.73 ms per image for naive / unet / unetpp on an NVIDIA A40);
* the same figures for a PyTorch reference (``speed/torch_reference.py``: the networks of
  docs/method.md with the AdvProp auxiliary BatchNorm, and the same G-then-D step), on the
  GPU when jaxad runs on one (``--torch-device``); torch is optional;
* the ratio jaxad / PyTorch (throughputs; for latency PyTorch ms / jaxad ms, so > 1 always
  means jaxad is faster);
* the train step's FLOP/s against the single-precision matmul peak measured in the same run.
  FLOPs are counted analytically ("model FLOPs": 2 x multiply-adds of every convolution the
  algorithm needs, forward and the backward products it really needs, zero taps of
  transposed convolutions not counted); XLA's own ``cost_analysis()['flops']`` of the compiled
  step is printed beside it (it counts the formulation XLA runs, zeros included);

and, for the naive net, the train step with each transposed-conv formulation, and with
jaxad's default clip of G's gradient against the paper's plain Adam that the rows time; and
the images/s of K models trained at once by ``jax.vmap(train_step)`` against K sequential
steps.

``--formulations`` instead times each formulation of the layers (``jaxad.models.layers``:
XLA's own ops, and the rewrites of ``jaxad.models.rewrites``) on the backend it runs on,
each layer alone and the whole train step per formulation set, and marks the ones
``default_formulations`` picks there: the check of that choice on a new backend.

Warm-up is excluded (two untimed runs: compilation, and the heap growing to the step's peak);
each figure is the median of ``--reps`` timed runs.
The machine is often shared: the load average and the process's CPU-time/wall-time ratio
are recorded beside each figure, since a contended CPU inflates wall time. Both frameworks run
in one process under the malloc settings of ``jaxad.allocator`` (the script restarts itself
with them; ``JAXAD_DEFAULT_MALLOC=1`` measures under glibc's defaults).

    python -m speed.bench --out bench.json            # full run (~15 min, 2-core CPU)
    python -m speed.bench --quick --out /tmp/b.json   # smoke run, tiny nets
    python -m speed.bench --formulations              # formulations on this backend
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import typing
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxad import xla
from jaxad.allocator import restart_with_fast_malloc, tuned_environ
from jaxad.config import ComputeDtype, ExperimentConfig, ModelConfig
from jaxad.files import write_text_atomic
from jaxad.models import build_discriminator, build_generator, count_params
from jaxad.models.layers import (DEFAULT_UPSAMPLE, FORMULATIONS, UPSAMPLE_IMPLS, ConvTranspose,
                                 default_formulation_name, scaled, upsample_module)
from jaxad.train import create_train_state, score_step, train_step

PAPER_LATENCY_MS = {"naive": 2.67, "unet": 5.41, "unetpp": 16.73}  # Table 8, one image, A40


def compiler_options(enabled: bool) -> dict[str, str] | None:
    """The library's per-jit XLA options (``jaxad.xla``), or none."""
    return xla.compiler_options() if enabled else None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return float("nan")


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------

def timed(fn: Callable[[], Any], reps: int, warmup: int = 2) -> dict[str, Any]:
    """Run ``fn`` (which must block until its result is ready) warmup + reps times.

    Returns the median, min and all wall times (s), the median CPU-time/wall ratio of this
    process (about the core count when the step runs alone and parallel; lower when another
    process competes for the cores) and the load average around the measurement.
    """
    for _ in range(warmup):
        fn()
    load_before = load()
    walls, ratios = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
        walls.append(wall)
        ratios.append((time.process_time() - c0) / wall if wall > 0 else float("nan"))
    return {"median_s": statistics.median(walls), "min_s": min(walls), "times_s": walls,
            "cpu_per_wall": round(statistics.median(ratios), 2), "load": [load_before, load()]}


def matmul_peak(sizes=(1024, 2048, 4096), reps: int = 5) -> dict[str, Any]:
    """Single-precision matmul FLOP/s of ``jnp.dot`` (the best size's median)."""
    out = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        dot = jax.jit(jnp.dot)
        t = timed(lambda: dot(a, b).block_until_ready(), reps)
        out[n] = 2 * n ** 3 / t["median_s"]
    best = max(out, key=out.get)
    return {"flops_per_s": out[best], "size": best, "by_size": {str(k): v for k, v in out.items()}}


def torch_matmul_peak(torch, device: str, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch_sync(torch, device)
    t = timed(lambda: sync(a @ b), reps)
    return 2 * n ** 3 / t["median_s"]


def torch_device(torch, requested: str) -> str:
    """The PyTorch reference's device: ``requested``, or with "auto" the GPU when jaxad runs on
    one and torch sees it (so both frameworks are timed on the same chip), else the CPU."""
    if requested != "auto":
        return requested
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_sync(torch, device: str) -> Callable[[Any], Any]:
    """A function that waits for ``device``'s queued work and returns its argument: CUDA
    kernels run asynchronously, so a timing without it measures only the launches."""
    if device.startswith("cuda"):
        def sync(value=None):
            torch.cuda.synchronize(device)
            return value
        return sync
    return lambda value=None: value


# --------------------------------------------------------------------------------------
# Analytic FLOPs
# --------------------------------------------------------------------------------------

def forward_conv_flops(module: nn.Module, variables, x: jax.Array, **kwargs) -> list[float]:
    """FLOPs per image of each convolution of one forward pass, in call order.

    Counts 2 x multiply-adds: nn.Conv as out_pixels x k*k x cin x cout (taps on padding
    included, as usual), a transposed conv as in_pixels x k*k x cin x cout (the zeros its XLA
    formulations multiply are not counted).
    """
    records: list[float] = []

    def interceptor(next_fun, args, kw, context):
        out = next_fun(*args, **kw)
        mod = context.module
        if context.method_name == "__call__" and isinstance(mod, (nn.Conv, ConvTranspose)):
            inp = args[0]
            if isinstance(mod, ConvTranspose):
                k, cin = mod.kernel_size, inp.shape[-1]
                records.append(2.0 * math.prod(inp.shape[1:3]) * k * k * cin * mod.features)
            else:
                cin = inp.shape[-1] // mod.feature_group_count
                records.append(2.0 * math.prod(out.shape[1:3]) * math.prod(mod.kernel_size) * cin
                               * mod.features)
        return out

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda v, x: module.apply(v, x, **kwargs), variables, x)
    return records


def step_model_flops(cfg: ExperimentConfig) -> dict[str, float]:
    """Model FLOPs of one train step (gamma = 0) per image.

    The step (``jaxad.train.train_step``; the PyTorch reference does the same work):
    G loss: G(x) forward, weight grads, input grads of all layers but the first (x is data);
            G(x_hat) forward, weight and input grads (it backpropagates into x_hat = G(x));
            D(x) forward to the features only, no gradient; D(x_hat) forward and input grads.
    D loss: D(x) and D(x_hat) forward, weight grads, input grads but the first layer's.
    A backward pass costs one forward for the input grads plus one for the weight grads.
    Elementwise work (BatchNorm, activations, losses, Adam) is not counted.
    """
    m = cfg.model
    x = jnp.zeros((1, m.image_size, m.image_size, m.channels), jnp.float32)
    G, D = build_generator(m), build_discriminator(m)
    g_vars = jax.eval_shape(lambda: G.init(jax.random.key(0), x, train=False))
    d_vars = jax.eval_shape(lambda: D.init(jax.random.key(0), x, train=False))
    g = forward_conv_flops(G, g_vars, x, train=False)
    d = forward_conv_flops(D, d_vars, x, train=False)
    fg, fg1, fd, fd1 = sum(g), g[0], sum(d), d[0]
    fd_features = fd - d[-1]  # without the logit conv
    g_loss = (3 * fg - fg1) + 3 * fg + fd_features + 2 * fd
    d_loss = 2 * (3 * fd - fd1)
    return {"generator_forward": fg, "discriminator_forward": fd, "step": g_loss + d_loss}


# --------------------------------------------------------------------------------------
# jaxad measurements
# --------------------------------------------------------------------------------------

def make_config(backbone: str, channels: int, width: float, batch: int,
                compute_dtype: str = "float32") -> ExperimentConfig:
    # The paper's step, as the PyTorch reference runs it: plain Adam, without jaxad's default
    # clip of G's gradient (one global norm a step; docs/fidelity-study.md, 5.5).
    model = ModelConfig(backbone=backbone, channels=channels, width=width, compute_dtype=compute_dtype)
    return ExperimentConfig(model=model) \
        .replace(**{"train.batch_size": batch, "train.g_grad_clip_factor": None})


def images(key: int, shape) -> jax.Array:
    return jax.random.uniform(jax.random.key(key), shape, jnp.float32, -1.0, 1.0)


def compiled_step(cfg: ExperimentConfig, upsample_impl: str, options: dict | None,
                  formulations: str | None = None):
    """A state, a batch and the compiled (donating) train step; plus compile time and XLA flops.

    ``formulations`` ("xla", "rewrites"; None: the backend's) rebuilds the networks with that
    formulation set (the parameters are the same for every set).
    """
    m = cfg.model
    state = create_train_state(cfg, jax.random.key(0), upsample_impl=upsample_impl)
    if formulations is not None:
        state = state.replace(
            generator=build_generator(m, upsample_impl=upsample_impl,
                                      formulations=formulations),
            discriminator=build_discriminator(m, formulations=formulations))
    batch = {"normal": images(1, (cfg.train.batch_size, m.image_size, m.image_size, m.channels))}
    key = jax.random.key(2)
    t0 = time.perf_counter()
    compiled = jax.jit(train_step, donate_argnums=0, compiler_options=options).lower(
        state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    return state, batch, key, compiled, compile_s, xla_flops


def jax_train(cfg: ExperimentConfig, reps: int, upsample_impl: str, options: dict | None,
              formulations: str | None = None) -> dict[str, Any]:
    state, batch, key, compiled, compile_s, xla_flops = compiled_step(cfg, upsample_impl, options, formulations)
    box = [state]

    def run():
        box[0], metrics = compiled(box[0], batch, key)
        jax.block_until_ready((box[0], metrics))
        return metrics

    t = timed(run, reps)
    metrics = run()
    finite = all(bool(np.isfinite(np.asarray(v))) for v in metrics.values())
    return {**t, "images_per_s": cfg.train.batch_size / t["median_s"], "compile_s": compile_s,
            "xla_flops": xla_flops, "finite": finite, "state": box[0]}


def jax_score(cfg: ExperimentConfig, state, reps: int, latency_reps: int,
              options: dict | None) -> dict[str, Any]:
    m = cfg.model
    score = jax.jit(score_step, compiler_options=options)
    x = images(3, (cfg.train.batch_size, m.image_size, m.image_size, m.channels))
    one = x[:1]
    t = timed(lambda: score(state, x).block_until_ready(), reps)
    lat = timed(lambda: score(state, one).block_until_ready(), latency_reps, warmup=2)
    return {"images_per_s": cfg.train.batch_size / t["median_s"], "batch": t,
            "latency_ms": 1e3 * lat["median_s"], "latency": lat}


def clip_cost(cfg: ExperimentConfig, reps: int, upsample_impl: str,
              options: dict | None) -> dict[str, Any]:
    """The naive step with jaxad's default clip of G's gradient against the paper's plain Adam.

    The main rows time the paper's step; a run with the defaults also takes one global
    norm of G's gradient and updates its running norm each step (docs/fidelity-study.md, 5.5).
    """
    default = ExperimentConfig().train.g_grad_clip_factor
    # Plain Adam is timed again here, not taken from the row: the two are timed back to back
    # with the same repetitions, so a load that changed during the run cannot make the difference.
    times = {}
    for name, factor in (("plain_adam", None), ("default_clip", default)):
        r = jax_train(cfg.replace(**{"train.g_grad_clip_factor": factor}), reps, upsample_impl, options)
        r.pop("state")
        times[name] = r
    overhead = times["default_clip"]["median_s"] / times["plain_adam"]["median_s"] - 1
    print(f"  naive nc={cfg.model.channels} G-gradient clip {default}x: "
          f"{times['default_clip']['median_s']:.3f} s/step against {times['plain_adam']['median_s']:.3f} "
          f"plain Adam ({100 * overhead:+.1f}%)", flush=True)
    return {"factor": default, "channels": cfg.model.channels, **times, "overhead": overhead}


def stack_states(states):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def vmap_models(cfg: ExperimentConfig, ks, reps: int, upsample_impl: str,
                options: dict | None) -> list[dict[str, Any]]:
    """images/s of K models in one vmapped step against K sequential single-model steps."""
    m, b = cfg.model, cfg.train.batch_size
    single = jax.jit(train_step, donate_argnums=0, compiler_options=options)
    vstep = jax.jit(jax.vmap(train_step), donate_argnums=0, compiler_options=options)
    rows = []
    for k in ks:
        keys = jax.random.split(jax.random.key(10), k)
        states = [create_train_state(cfg, keys[i], upsample_impl=upsample_impl) for i in range(k)]
        stacked = stack_states(states)
        batches = images(4, (k, b, m.image_size, m.image_size, m.channels))
        step_keys = jax.random.split(jax.random.key(11), k)
        vbox, sbox = [stacked], list(states)

        def run_vmap():
            vbox[0], metrics = vstep(vbox[0], {"normal": batches}, step_keys)
            jax.block_until_ready((vbox[0], metrics))

        def run_seq():
            out = []
            for i in range(k):
                sbox[i], metrics = single(sbox[i], {"normal": batches[i]}, step_keys[i])
                out.append(metrics)
            jax.block_until_ready((sbox, out))

        tv, ts = timed(run_vmap, reps), timed(run_seq, reps)
        rows.append({"k": k, "vmap_images_per_s": k * b / tv["median_s"],
                     "sequential_images_per_s": k * b / ts["median_s"],
                     "speedup": ts["median_s"] / tv["median_s"], "vmap": tv, "sequential": ts})
    return rows


# --------------------------------------------------------------------------------------
# Formulations on this backend (--formulations)
# --------------------------------------------------------------------------------------

def layer_cases(batch: int, width: float) -> list[tuple[str, str, tuple[int, ...], Callable | None]]:
    """The layers whose formulation differs between sets: (name, kind, input shape, make).

    ``kind`` is the ``Formulations`` field that computes it; ``make(module_def)`` builds the
    layer from that field's value (None for the pool, a function). Shapes are those of the
    naive net and the U-Nets at 32x32.
    """
    def c(n: int) -> int:
        return scaled(n, width)

    return [
        ("down conv k4 s2 p1, 16x16 (encoders)", "conv", (batch, 16, 16, c(64)),
         lambda conv: conv(c(128), (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False)),
        ("conv 4x4 on 4x4 (latent, logit)", "conv", (batch, 4, 4, c(256)),
         lambda conv: conv(100, (4, 4), padding="VALID", use_bias=False)),
        ("conv 3x3 on 2x2 (U-Net bottom)", "conv", (batch, 2, 2, c(256)),
         lambda conv: conv(c(512), (3, 3), padding=((1, 1), (1, 1)), use_bias=False)),
        ("up-conv k4 s1 p0, 1x1 -> 4x4 (decoder)", "upsample", (batch, 1, 1, 100),
         lambda up: up(c(256), 4, 1, 0)),
        ("up-conv k4 s2 p1, 8x8 -> 16x16 (decoder)", "upsample", (batch, 8, 8, c(128)),
         lambda up: up(c(64), 4, 2, 1)),
        ("up-conv k2 s2 p0, 16x16 -> 32x32 (U-Net)", "upsample", (batch, 16, 16, c(64)),
         lambda up: up(c(32), 2, 2, 0, use_bias=True)),
        ("max-pool 2x2, 32x32 (U-Net)", "pool", (batch, 32, 32, c(32)), None),
    ]


def layer_variants(kind: str) -> list[tuple[str, Any]]:
    """(label, field value) of every formulation of a layer kind: the sets' own, and for the
    up-convolutions every ``UPSAMPLE_IMPLS`` formulation (labelled by impl)."""
    if kind == "upsample":
        return [(impl, upsample_module(impl)) for impl in UPSAMPLE_IMPLS]
    return [(name, getattr(f, kind)) for name, f in FORMULATIONS.items()]


def time_layer(kind: str, make: Callable | None, value: Any, shape: tuple[int, ...], reps: int,
               options: dict | None) -> dict[str, Any]:
    """Median time of the layer's forward pass and both gradients (parameters and input)."""
    x = images(5, shape)
    if kind == "pool":
        params, apply = {}, lambda p, h: value(h)
    else:
        module = make(value)
        params = module.init(jax.random.key(6), x)["params"]
        apply = lambda p, h: module.apply({"params": p}, h)  # noqa: E731
    step = jax.jit(jax.value_and_grad(lambda p, h: jnp.sum(jnp.sin(apply(p, h))), argnums=(0, 1)),
                   compiler_options=options)
    return timed(lambda: jax.block_until_ready(step(params, x)), reps)


def run_formulations(args: argparse.Namespace) -> dict[str, Any]:
    """Time each formulation on this backend and print the tables (``--formulations``)."""
    backend = jax.default_backend()
    default = default_formulation_name(backend)
    options = compiler_options(not args.no_cpu_compiler_options)
    info = {"devices": [str(d) for d in jax.devices()], "platform": backend, "jax": jax.__version__,
            "default_formulations": default, "compiler_options": options, "load_start": load()}
    print(f"devices: {info['devices']}  backend: {backend}  jax {info['jax']}  "
          f"default formulations here: {default!r}  compiler options: {options}", flush=True)
    layers_rows = []
    for name, kind, shape, make in layer_cases(args.batch_size, args.width):
        chosen = getattr(FORMULATIONS[default], kind)
        for label, value in layer_variants(kind):
            t = time_layer(kind, make, value, shape, args.reps, options)
            layers_rows.append({"layer": name, "kind": kind, "formulation": label, "input": list(shape),
                                "median_ms": 1e3 * t["median_s"], "default": value == chosen, "timing": t})
            print(f"  {name}: {label} {1e3 * t['median_s']:.3f} ms", flush=True)
    steps = []
    backbones = [b for b in args.backbones.split(",") if b]
    nc = int(args.channels.split(",")[0])
    for backbone in backbones:
        cfg = make_config(backbone, nc, args.width, args.batch_size)
        reps = args.reps if backbone == "naive" else args.heavy_reps
        for name in FORMULATIONS:
            r = jax_train(cfg, reps, DEFAULT_UPSAMPLE, options, formulations=name)
            r.pop("state")
            steps.append({"backbone": backbone, "channels": nc, "formulations": name,
                          "default": name == default, **r})
            print(f"  {backbone} nc={nc} train step, {name!r} formulations: {r['median_s']:.4f} s", flush=True)
    info["load_end"] = load()
    result = {"machine": info, "args": vars(args), "layers": layers_rows, "steps": steps}
    print_formulations(result)
    write_result(args.out, result)
    return result


def write_result(path: str | None, result: dict[str, Any], quiet: bool = False) -> None:
    """The figures as JSON at ``path`` (--out), when one is given; written
    atomically, so an interrupted write leaves the previous file whole."""
    if path:
        write_text_atomic(path, json.dumps(result, indent=2, default=str))
        if not quiet:
            print(f"wrote {path}")


def print_formulations(result: dict[str, Any]) -> None:
    """The --formulations tables: each layer's formulations against XLA's own, then the steps."""
    info, a = result["machine"], result["args"]
    print(f"\nformulations on {info['platform']} {info['devices']} | jax {info['jax']} | batch "
          f"{a['batch_size']}, width {a['width']} | load {info['load_start']} -> {info['load_end']}")
    print("* = what default_formulations picks on this backend "
          f"({info['default_formulations']!r}); speed-up against XLA's own op (> 1: faster)")
    print("layer (forward + both gradients)              formulation       ms  speed-up")
    base: dict[str, float] = {}
    for r in result["layers"]:
        if r["formulation"] in ("xla", "lhs_dilation"):
            base[r["layer"]] = r["median_ms"]
    last = None
    for r in result["layers"]:
        name = r["layer"] if r["layer"] != last else ""
        last = r["layer"]
        ratio = base[r["layer"]] / r["median_ms"] if r["median_ms"] > 0 else float("nan")
        print(f"{name:45s} {r['formulation']:12s}{'*' if r['default'] else ' '} {r['median_ms']:9.3f} {ratio:8.2f}")
    if result["steps"]:
        print("\ntrain step (G then D, batch as above) by formulation set:")
        print("backbone nc  formulations    s/step     img/s")
        for r in result["steps"]:
            print(f"{r['backbone']:8s} {r['channels']:2d}  {r['formulations']:12s}{'*' if r['default'] else ' '} "
                  f"{r['median_s']:9.4f} {r['images_per_s']:9.1f}")


# --------------------------------------------------------------------------------------
# PyTorch reference
# --------------------------------------------------------------------------------------

def torch_reference():
    """``(torch, Reference, n_params)`` of ``speed.torch_reference``; ImportError without torch."""
    from speed import torch_reference as reference
    return reference.torch, reference.Reference, reference.n_params


def choose_torch_threads(torch, Reference, args) -> tuple[int, dict[int, float]]:
    """PyTorch's thread count: the available cores, unless a probe says 1 thread is faster.

    On a CPU shared with other processes PyTorch's OpenMP threads wait for each other at every
    operator (2 threads on a 2-core machine with one busy core: 2-3x slower than 1 thread).
    The probe times the naive train step with ``cores`` and with 1 thread and keeps the
    faster, so that contention never handicaps the reference. ``--torch-threads`` forces it.
    """
    if args.torch_threads:
        return args.torch_threads, {}
    n = cores()
    if n == 1 or args.torch_device != "cpu":  # on a GPU the threads only launch kernels
        return n, {}
    ref = Reference("naive", 1, args.width)
    x = torch.rand(args.batch_size, 1, 32, 32) * 2 - 1
    probe = {}
    for threads in (n, 1):
        torch.set_num_threads(threads)
        probe[threads] = timed(lambda: ref.step(x), 2)["median_s"]
    return min(probe, key=probe.get), probe


def torch_measure(torch, Reference, n_params, backbone, nc, width, batch, reps, latency_reps,
                  count_flops=False, device="cpu") -> dict[str, Any]:
    ref = Reference(backbone, nc, width, device=device)
    sync = torch_sync(torch, device)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(batch, nc, 32, 32, generator=g) * 2 - 1).to(device)
    out: dict[str, Any] = {"g_params": n_params(ref.G), "d_params": n_params(ref.D)}
    if count_flops:
        try:
            # FLOPs scale with the batch: count one step of a separate model on 4 images.
            from torch.utils.flop_counter import FlopCounterMode
            counted = Reference(backbone, nc, width, device=device)
            with FlopCounterMode(display=False) as counter:
                counted.step(x[:4])
            out["flop_counter_per_image"] = counter.get_total_flops() / 4
        except Exception as err:  # pragma: no cover - counter missing in old torch
            out["flop_counter_error"] = repr(err)
    losses = []
    t = timed(lambda: sync(losses.append(ref.step(x))), reps)
    out["train"] = {**t, "images_per_s": batch / t["median_s"],
                    "finite": all(math.isfinite(v) for pair in losses for v in pair)}
    xs = (torch.rand(batch, nc, 32, 32, generator=g) * 2 - 1).to(device)
    ts = timed(lambda: sync(ref.score(xs)), reps)
    one = xs[:1]
    tl = timed(lambda: sync(ref.score(one)), latency_reps, warmup=2)
    out["score"] = {"images_per_s": batch / ts["median_s"], "batch": ts,
                    "latency_ms": 1e3 * tl["median_s"], "latency": tl}
    return out


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", default="naive,unet,unetpp")
    p.add_argument("--channels", default="1,3")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions (median quoted)")
    p.add_argument("--heavy-reps", type=int, default=3,
                   help="timed repetitions for the unet/unetpp train and scoring steps (seconds each on CPU)")
    p.add_argument("--latency-reps", type=int, default=20)
    p.add_argument("--width", type=float, default=1.0, help="network width factor (1 = the paper's nets)")
    p.add_argument("--vmap-ks", default="1,2,4", help="model counts K for the vmapped step")
    p.add_argument("--vmap-width", type=float, default=0.25)
    p.add_argument("--vmap-batch", type=int, default=64)
    p.add_argument("--upsample-impl", default=DEFAULT_UPSAMPLE, choices=(DEFAULT_UPSAMPLE, *UPSAMPLE_IMPLS),
                   help="transposed-conv formulation of the main rows (default: the backend's)")
    p.add_argument("--compute-dtype", default="float32", choices=typing.get_args(ComputeDtype),
                   help="the dtype jaxad's convolutions compute in (ModelConfig.compute_dtype); the "
                        "PyTorch reference stays float32")
    p.add_argument("--formulations", action="store_true",
                   help="only time each formulation of the layers, and the train step per formulation "
                        "set, on this backend (marking the default's choice); nothing else")
    p.add_argument("--no-cpu-compiler-options", action="store_true",
                   help="jit without the library's per-jit XLA:CPU options (jaxad.xla)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="PyTorch threads (default: the cores, or 1 when a probe finds 1 faster)")
    p.add_argument("--torch-device", default="auto",
                   help="the PyTorch reference's device, e.g. cpu, cuda (default auto: the GPU when "
                        "jaxad runs on one and torch sees it, else the CPU)")
    p.add_argument("--no-impls", action="store_true",
                   help="skip the transposed-conv comparison and the default clip's cost")
    p.add_argument("--no-vmap", action="store_true", help="skip the many-models measurement")
    p.add_argument("--quick", action="store_true",
                   help="tiny nets (width 1/16), batch 8, 1 repetition: proves the script runs")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.batch_size, args.reps, args.heavy_reps = 0.0625, 8, 1, 1
        args.latency_reps, args.vmap_ks, args.vmap_width, args.vmap_batch = 1, "2", 0.0625, 4
    return args


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover
        pass
    return {"devices": [str(d) for d in jax.devices()], "platform": jax.default_backend(),
            "cpu": cpu, "cores": cores(), "python": platform.python_version(),
            "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "host": platform.node(), "load_start": load()}


def malloc_settings(glibc_tunables: str) -> str:
    """How the process's GLIBC_TUNABLES stand against jaxad.allocator's settings."""
    if not glibc_tunables:
        return "glibc defaults"
    return "jaxad.allocator tunables" if tuned_environ({"GLIBC_TUNABLES": glibc_tunables}) is None \
        else f"GLIBC_TUNABLES={glibc_tunables} (not all of jaxad.allocator's)"


def fmt(v, spec=".1f", none="-"):
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def main(argv=None) -> dict[str, Any]:
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.formulations:
        return run_formulations(args)
    t_start = time.perf_counter()
    backbones = [b for b in args.backbones.split(",") if b]
    channels = [int(c) for c in args.channels.split(",") if c]
    info = machine_info()
    print(f"devices: {info['devices']}  cpu: {info['cpu']}  cores: {info['cores']}  "
          f"jax {info['jax']}  load: {info['load_start']}", flush=True)
    print(f"GLIBC_TUNABLES: {info['glibc_tunables'] or '(unset: glibc defaults)'}", flush=True)

    torch_mod = Reference = n_params = None
    if not args.no_torch:
        try:
            torch_mod, Reference, n_params = torch_reference()
        except ImportError as err:
            print(f"torch not importable ({err}); skipping the PyTorch reference", flush=True)
    if torch_mod is not None:
        info["torch"] = torch_mod.__version__
        args.torch_device = torch_device(torch_mod, args.torch_device)
        info["torch_device"] = args.torch_device
        if args.torch_device.startswith("cuda"):
            # What a PyTorch user tunes a GPU run with: cuDNN picks its fastest kernels per shape.
            # TF32 convolutions are PyTorch's default, as they are XLA's for f32 on this GPU.
            torch_mod.backends.cudnn.benchmark = True
            info["torch_cuda"] = {"gpu": torch_mod.cuda.get_device_name(args.torch_device),
                                  "cudnn_benchmark": True,
                                  "cudnn_allow_tf32": torch_mod.backends.cudnn.allow_tf32,
                                  "matmul_allow_tf32": torch_mod.backends.cuda.matmul.allow_tf32}
        threads, probe = choose_torch_threads(torch_mod, Reference, args)
        torch_mod.set_num_threads(threads)
        info["torch_threads"] = torch_mod.get_num_threads()
        info["torch_thread_probe_s"] = probe
        print(f"torch threads: {info['torch_threads']} (naive train step probe, s/step by threads: "
              f"{ {k: round(v, 3) for k, v in probe.items()} })", flush=True)
    peak = matmul_peak((256, 512) if args.quick else (1024, 2048, 4096), reps=args.reps)
    info["matmul_peak_flops"] = peak
    msg = f"matmul peak (jnp.dot f32, {peak['size']}^2): {peak['flops_per_s'] / 1e9:.1f} GFLOP/s"
    if torch_mod is not None:
        size = 512 if args.quick else 2048
        info["torch_matmul_flops"] = torch_matmul_peak(torch_mod, args.torch_device, size, args.reps)
        msg += f"; torch.mm {size}^2: {info['torch_matmul_flops'] / 1e9:.1f} GFLOP/s"
    print(msg, flush=True)

    options = compiler_options(not args.no_cpu_compiler_options)
    info["jaxad_config"] = {"upsample_impl": args.upsample_impl, "compiler_options": options,
                            "compute_dtype": args.compute_dtype}
    print(f"jaxad: upsample_impl={args.upsample_impl}, compiler_options={options}, "
          f"compute_dtype={args.compute_dtype} (PyTorch: float32)", flush=True)

    rows = []
    for backbone in backbones:
        for nc in channels:
            cfg = make_config(backbone, nc, args.width, args.batch_size, args.compute_dtype)
            reps = args.reps if backbone == "naive" else args.heavy_reps
            row: dict[str, Any] = {"backbone": backbone, "channels": nc, "width": args.width,
                                   "batch": args.batch_size}
            flops = step_model_flops(cfg)
            row["model_flops_per_image"] = flops
            tr = jax_train(cfg, reps, args.upsample_impl, options)
            state = tr.pop("state")
            row["g_params"] = count_params(state.g_params)
            row["jax_train"] = tr
            row["jax_score"] = jax_score(cfg, state, reps, args.latency_reps, options)
            del state
            step_flops = flops["step"] * args.batch_size
            row["step_flops"] = step_flops
            row["jax_flops_per_s"] = step_flops / tr["median_s"]
            row["fraction_of_peak"] = row["jax_flops_per_s"] / peak["flops_per_s"]
            row["xla_flops_per_s"] = tr["xla_flops"] / tr["median_s"]
            if torch_mod is not None:
                tt = torch_measure(torch_mod, Reference, n_params, backbone, nc, args.width,
                                   args.batch_size, reps, args.latency_reps, count_flops=True,
                                   device=args.torch_device)
                row["torch"] = tt
                row["torch_flops_per_s"] = step_flops / tt["train"]["median_s"]
                row["ratio_train"] = tr["images_per_s"] / tt["train"]["images_per_s"]
                row["ratio_score"] = row["jax_score"]["images_per_s"] / tt["score"]["images_per_s"]
                row["ratio_latency"] = tt["score"]["latency_ms"] / row["jax_score"]["latency_ms"]
            rows.append(row)
            # Each finished row is saved at once: a run cut short (a time limit on a lent GPU)
            # keeps what it measured.
            write_result(args.out, {"machine": info, "args": vars(args), "rows": rows,
                                    "partial": True}, quiet=True)
            # ms with two decimals: a GPU step is a few ms.
            print(f"  {backbone:6s} nc={nc}: jaxad train {1e3 * tr['median_s']:.2f} ms/step "
                  f"({tr['images_per_s']:.0f} img/s, compile {tr['compile_s']:.0f} s, cpu/wall "
                  f"{tr['cpu_per_wall']}, load {tr['load']}), score {row['jax_score']['images_per_s']:.0f} img/s"
                  + (f"; torch train {1e3 * row['torch']['train']['median_s']:.2f} ms/step "
                     f"(cpu/wall {row['torch']['train']['cpu_per_wall']}), score "
                     f"{row['torch']['score']['images_per_s']:.0f} img/s" if "torch" in row else ""),
                  flush=True)

    impls = []
    if not args.no_impls and "naive" in backbones:
        cfg = make_config("naive", channels[0], args.width, args.batch_size)
        flops = step_model_flops(cfg)["step"] * args.batch_size
        impls_compared = UPSAMPLE_IMPLS if not args.quick else (DEFAULT_UPSAMPLE, "matmul", args.upsample_impl)
        variants = [(impl, options) for impl in dict.fromkeys(impls_compared)]
        if options:  # and the main formulation without the compiler option
            variants.append((args.upsample_impl, None))
        for impl, opts in variants:
            r = jax_train(cfg, max(1, min(args.reps, 2)), impl, opts)
            r.pop("state")
            impls.append({"impl": impl, "compiler_options": opts, "channels": channels[0], **r,
                          "model_flops_per_s": flops / r["median_s"]})
            print(f"  naive nc={channels[0]} upsample={impl} options={bool(opts)}: "
                  f"{r['median_s']:.3f} s/step", flush=True)

    clip = None
    if not args.no_impls and "naive" in backbones:
        clip = clip_cost(make_config("naive", channels[0], args.width, args.batch_size),
                         max(1, min(args.reps, 2)), args.upsample_impl, options)

    vm = []
    if not args.no_vmap:
        vcfg = make_config("naive", 1, args.vmap_width, args.vmap_batch)
        ks = [int(k) for k in args.vmap_ks.split(",") if k]
        vm = vmap_models(vcfg, ks, args.reps, args.upsample_impl, options)

    info["load_end"] = load()
    info["total_s"] = time.perf_counter() - t_start
    result = {"machine": info, "args": vars(args), "rows": rows, "upsample_impls": impls,
              "default_clip": clip,
              "vmap": {"backbone": "naive", "channels": 1, "width": args.vmap_width,
                       "batch_per_model": args.vmap_batch, "rows": vm}}
    print_tables(result)
    write_result(args.out, result)
    return result


def print_tables(result: dict[str, Any]) -> None:
    info = result["machine"]
    peak = info["matmul_peak_flops"]["flops_per_s"]
    print()
    print(f"device {info['devices']} | {info['cpu']} | {info['cores']} cores | jax {info['jax']}"
          + (f" | torch {info['torch']} on {info.get('torch_device', 'cpu')}"
             + (f" ({info['torch_cuda']['gpu']}, cudnn.benchmark)" if "torch_cuda" in info
                else f" ({info['torch_threads']} threads)") if "torch" in info else "")
          + f" | matmul peak {peak / 1e9:.1f} GFLOP/s | load {info['load_start']} -> {info['load_end']}"
          + f" | {info['total_s']:.0f} s"
          + f" | malloc: {malloc_settings(info.get('glibc_tunables', ''))}")
    a = result["args"]
    print(f"batch {a['batch_size']}, width {a['width']}, 32x32; jaxad {info['jaxad_config']}")
    print("ratio = jaxad/PyTorch throughput (latency: PyTorch ms / jaxad ms); > 1: jaxad faster; "
          "FLOPs: analytic model FLOPs (XLA cost_analysis of the compiled step in brackets)")
    head = ("backbone nc | train img/s jax  torch  ratio | score img/s jax  torch  ratio | "
            "latency ms jax torch ratio paper | step GFLOP  GFLOP/s  %peak  (XLA-counted GFLOP) | torch GFLOP/s")
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        t = r.get("torch")
        print(f"{r['backbone']:8s} {r['channels']:2d} | "
              f"{r['jax_train']['images_per_s']:10.1f} {fmt(t and t['train']['images_per_s']):>6s} "
              f"{fmt(r.get('ratio_train'), '.2f'):>5s} | "
              f"{r['jax_score']['images_per_s']:10.0f} {fmt(t and t['score']['images_per_s'], '.0f'):>6s} "
              f"{fmt(r.get('ratio_score'), '.2f'):>5s} | "
              f"{r['jax_score']['latency_ms']:9.2f} {fmt(t and t['score']['latency_ms'], '.2f'):>5s} "
              f"{fmt(r.get('ratio_latency'), '.2f'):>5s} {PAPER_LATENCY_MS[r['backbone']]:5.2f} | "
              f"{r['step_flops'] / 1e9:10.1f} {r['jax_flops_per_s'] / 1e9:8.1f} "
              f"{100 * r['fraction_of_peak']:5.1f}%  ({r['jax_train']['xla_flops'] / 1e9:.1f}) | "
              f"{fmt(r.get('torch_flops_per_s') and r['torch_flops_per_s'] / 1e9)}")
    if result["upsample_impls"]:
        print("\nnaive train step by transposed-conv formulation (and without the compiler option):")
        for r in result["upsample_impls"]:
            print(f"  {r['impl']:13s} nc={r['channels']} compiler options "
                  f"{'on ' if r['compiler_options'] else 'off'}: {r['median_s']:.3f} s/step, "
                  f"{r['images_per_s']:.1f} img/s, {r['model_flops_per_s'] / 1e9:.1f} model GFLOP/s, "
                  f"compile {r['compile_s']:.0f} s")
    clip = result.get("default_clip")
    if clip:
        print(f"\nnaive train step nc={clip['channels']}, jaxad's default G-gradient clip "
              f"({clip['factor']}x its running norm) against the paper's plain Adam: "
              f"{clip['default_clip']['median_s']:.3f} against {clip['plain_adam']['median_s']:.3f} "
              f"s/step ({100 * clip['overhead']:+.1f}%)")
    if result["vmap"]["rows"]:
        v = result["vmap"]
        print(f"\nK models at once (naive nc=1 width {v['width']}, batch {v['batch_per_model']} per model):")
        print("   K | vmap img/s | sequential img/s | vmap speedup")
        for r in v["rows"]:
            print(f"  {r['k']:2d} | {r['vmap_images_per_s']:10.1f} | {r['sequential_images_per_s']:16.1f} | "
                  f"{r['speedup']:.2f}x")
    for r in result["rows"]:
        t = r.get("torch")
        if t is None:
            continue
        ok = r["g_params"] == t["g_params"]
        fc = t.get("flop_counter_per_image")
        print(f"check {r['backbone']} nc={r['channels']}: G params jaxad {r['g_params']:,} torch "
              f"{t['g_params']:,} ({'equal' if ok else 'DIFFER'}); step FLOPs/image analytic "
              f"{r['model_flops_per_image']['step'] / 1e6:.1f} M, torch FlopCounter "
              f"{fmt(fc and fc / 1e6)} M")


if __name__ == "__main__":
    restart_with_fast_malloc()  # for jaxad and the PyTorch reference alike (JAXAD_DEFAULT_MALLOC=1: off)
    main()
