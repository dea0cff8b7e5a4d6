"""What does a trained AGAD generator fail on? A probe of the contextual adversarial term.

    python -m studies.probe_pseudo_anomaly RUN_DIR [RUN_DIR ...] [--epoch N] [--live-generator]

G is trained to reconstruct normal images x and to FAIL on its own reconstructions x_hat.
If it learnt "fail on what is not a normal digit", its failure would follow content: large
on x_hat and on anomalies, small on normals. If it learnt a low-level cue that tells a
generated image from a real one, its failure follows that cue instead, and vanishes on real
anomalies. This prints, per run, the mean L1 error of the scoring generator (running
statistics, as test images are scored) on:

    normal x              test images of the normal class
    anomaly x             test images of the other classes
    x_hat = G(normal)     its own reconstructions (what the training term maximises)
    normal + noise        normals with N(0, 0.02) pixel noise, clipped to [-1, 1]
    normal, background up normals with every pixel at -1 lifted to -0.98 (1% of the range)
    x_hat, background snapped  x_hat with every pixel below -0.95 set to exactly -1, as in
                          real images (tanh never reaches -1)
    x_hat, blurred        x_hat through the same blur (removes pixel-level patterns such as
                          transposed convolutions' checkerboard)
    normal, blurred       normals through a 3x3 binomial blur ([1, 2, 1] / 4 each way): as
                          soft as a reconstruction, the same digit

and the AUROC of the anomaly score on the test split. The perturbations leave the digit a
person sees unchanged.
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from jaxad.allocator import restart_with_fast_malloc
from jaxad.data import load_split, padded_batches
from jaxad.runs import load_run, recalibrated, score
from jaxad.metrics import auroc
from jaxad.train import live_generator, reconstruct

_reconstruct = jax.jit(reconstruct, static_argnames="use_batch_statistics")


def mean_l1(state, images: np.ndarray, batch_size: int = 256) -> tuple[float, np.ndarray]:
    """Mean L1 error of G on ``images`` and the reconstructions themselves (in order)."""
    batches, mask = padded_batches(images, batch_size)
    recon = np.concatenate([np.asarray(_reconstruct(state, b)) for b in batches])[mask.reshape(-1)]
    return float(np.abs(images - recon).mean()), recon


def blur(images: np.ndarray) -> np.ndarray:
    """A 3x3 binomial blur of NHWC images (edges repeated)."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    rows = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
    return ((rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:]) / 4).astype(np.float32)


def probe(run_dir: str, epoch: int | None, count: int, seed: int = 0, live: bool = False) -> dict[str, float]:
    state, cfg = load_run(run_dir, epoch)
    split = load_split(cfg.data, seed=cfg.seed)
    # Checkpoints written before fit recalibrated the average hold statistics of the live G.
    state = live_generator(state) if live else recalibrated(state, cfg, split)
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.test_labels)
    normal = split.test_images[labels == 0][:count]
    anomaly = split.test_images[labels == 1][:count]
    normal_error, x_hat = mean_l1(state, normal)
    row = {"normal x": normal_error, "anomaly x": mean_l1(state, anomaly)[0]}
    row["x_hat = G(normal)"] = mean_l1(state, x_hat)[0]
    row["x_hat, background snapped"] = mean_l1(state, np.where(x_hat < -0.95, -1.0, x_hat).astype(np.float32))[0]
    noisy = np.clip(normal + rng.normal(0, 0.02, normal.shape).astype(np.float32), -1, 1)
    row["normal + noise"] = mean_l1(state, noisy)[0]
    row["normal, background up"] = mean_l1(state, np.where(normal <= -1, -0.98, normal).astype(np.float32))[0]
    row["x_hat, blurred"] = mean_l1(state, blur(x_hat))[0]
    row["normal, blurred"] = mean_l1(state, blur(normal))[0]
    row["AUROC %"] = auroc(labels, score(state, split.test_images))
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--epoch", type=int, help="checkpoint epoch (default: the last)")
    p.add_argument("--live-generator", action="store_true",
                   help="probe G's live weights rather than the scoring generator (the EMA of runs with "
                        "--ema-decay, unless --pick-generator chose the live G at that epoch)")
    p.add_argument("--count", type=int, default=1000, help="test images per group (default %(default)s)")
    args = p.parse_args(argv)
    rows = {d: probe(d, args.epoch, args.count, live=args.live_generator) for d in args.run_dirs}
    names = list(next(iter(rows.values())))
    print("| run | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for d, row in rows.items():
        print(f"| {d} | " + " | ".join(f"{row[n]:.3f}" if n != "AUROC %" else f"{row[n]:.1f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    restart_with_fast_malloc()
    sys.exit(main())
