"""Step by step: what the anomaly branch's reciprocals do to the generator at gamma > 0.

    python experiments/step_terms.py OUT.json --dataset mnist --data-dir ../shared/datasets/mnist \\
        --gammas 0.05 --classes 2 --epochs 4 [any run.py flag, e.g. --no-freeze-bn]

The generator's anomaly loss is ``w_adv / (bce + eps) + w_adcon / (L1 + eps) + w_lat / (L2 +
eps)``; its gradient goes as ``w / error^2``, so one step with a small error can outweigh
hundreds of ordinary ones in Adam's second moment. This replays the steps ``fit`` takes for
the first (class, gamma) and seed the flags name (the same batches and keys: ``epoch_inputs``)
and prints, per step, each error, its term ``w / (error + eps)`` and that term's sensitivity
``w / (error + eps)^2``, D's loss, and the normal reconstruction error; after each epoch, the
live generator's test AUROC (running statistics). Every step metric goes to OUT.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

from jaxad import create_train_state, indexed_train_step, score
from jaxad.allocator import restart_with_fast_malloc
from jaxad.commands.run import build_spec, parse_args
from jaxad.data import load_split
from jaxad.metrics import auroc
from jaxad.runs import epoch_inputs
from jaxad.train import live_generator

ERRORS = {"adversarial": "w_adv", "reconstruction": "w_adcon", "latent": "w_lat"}


def step_line(step: int, metrics: dict[str, np.ndarray], cfg) -> str:
    """One step's anomaly errors, their reciprocal terms and sensitivities, D's loss, normal L1."""
    parts = []
    for error, weight_name in ERRORS.items():
        value = float(metrics[f"g_anomaly_{error}"][step])
        weight = getattr(cfg.loss, weight_name)
        parts.append(f"{error} {value:.3g} (term {weight / (value + cfg.loss.eps):.3g}, "
                     f"d {weight / (value + cfg.loss.eps) ** 2:.3g})")
    return (f"  step {step:3d}  anomaly loss {float(metrics['g_anomaly_loss'][step]):10.4g}  " + "  ".join(parts)
            + f"  D loss {float(metrics['d_loss'][step]):.3g}  normal L1 {float(metrics['g_contextual'][step]):.3g}")


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    out, args = Path(argv[0]), parse_args(argv[1:])
    spec = build_spec(args)
    cfg = spec.base.replace(seed=spec.seeds[0], **{"data.normal_class": spec.classes[0], "data.gamma": spec.gammas[0]})
    if cfg.data.gamma == 0:
        print("error: give --gammas above 0: with no anomalies there is no anomaly branch", file=sys.stderr)
        return 2
    split = load_split(cfg.data, seed=cfg.seed)
    step = jax.jit(indexed_train_step, donate_argnums=(0,))
    state = create_train_state(cfg, jax.random.key(cfg.seed))
    normal_images, anomaly_images = jax.numpy.asarray(split.train_normal), jax.numpy.asarray(split.train_anomaly)
    epochs = []
    for index in range(cfg.train.epochs):
        normal_index, anomaly_index, keys = epoch_inputs(cfg, split, index)
        step_metrics = []
        for i in range(len(normal_index)):
            state, m = step(state, normal_images, anomaly_images, normal_index[i], anomaly_index[i], keys[i])
            step_metrics.append(m)
        metrics = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(step_metrics))
        print(f"epoch {index + 1}:")
        for i in range(len(normal_index)):
            print(step_line(i, metrics, cfg))
        test_auroc = auroc(split.test_labels, score(live_generator(state), split.test_images))
        print(f"  live generator's test AUROC {test_auroc:.2f}", flush=True)
        epochs.append({"epoch": index + 1, "auroc_live_generator": test_auroc,
                       "steps": {name: values.tolist() for name, values in metrics.items()}})
        out.write_text(json.dumps({"config": json.loads(cfg.to_json()), "epochs": epochs}))
    return 0


if __name__ == "__main__":
    restart_with_fast_malloc()
    raise SystemExit(main(sys.argv[1:]))
