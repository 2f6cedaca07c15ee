"""SSIM speed: ``tasks.metrics.image.ssim_stack`` beside a plain loop over
``skimage.metrics.structural_similarity``, side by side in one process (a
benchmark script: it prints figures and asserts nothing).

Stacks: 3,000 genes x 140 x 140 (a large slice's raster), a Visium-sized raster
(DLPFC 151673's square-lattice image: 3,000 HVGs x 78 x 64 pixels) and 1,000
genes x 78 x 64. The images are log1p-like values with a third of the rows
empty (rasters have holes), the prediction a noisy copy. Each timing is the
best of ``--repeats`` runs; the largest |difference| to skimage is printed.

Usage: python scripts/bench_ssim.py [--repeats 3]
"""

import argparse
import time

import numpy as np
from skimage.metrics import structural_similarity

from stbench.tasks.metrics.image import ssim_stack


def skimage_loop(truth, pred):
    return np.array([structural_similarity(truth[g], pred[g], data_range=truth[g].max() - truth[g].min())
                     for g in range(len(truth))])


def best_of(fn, repeats, *args):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'stack (genes x H x W)':<24}{'skimage loop s':>16}{'ssim_stack s':>14}{'speed-up':>10}{'max |diff|':>12}")
    for genes, h, w in [(3000, 140, 140), (3000, 78, 64), (1000, 78, 64)]:
        truth = np.log1p(rng.gamma(0.8, 3.0, size=(genes, h, w)))
        truth[:, ::3] = 0.0
        pred = np.clip(truth + rng.normal(0, 0.4, size=truth.shape), 0, None)
        t_loop, ref = best_of(skimage_loop, args.repeats, truth, pred)
        t_ours, ours = best_of(ssim_stack, args.repeats, truth, pred)
        print(f"{f'{genes} x {h} x {w}':<24}{t_loop:>16.3f}{t_ours:>14.3f}{t_loop / t_ours:>9.2f}x"
              f"{np.nanmax(np.abs(ours - ref)):>12.1e}")


if __name__ == "__main__":
    main()
