"""Spotscape's cost: seconds per epoch and peak memory per slice size, and what the sparse/factorised step saves.

Part 1: synthetic slices (``simulate_tissue``, 300 genes) of about 4K, 15K and
100K spots. Each size runs in a fresh child process, so the printed peak
resident memory is that run's alone: build the graph, train ``--epochs``
epochs with the adapter's defaults (one slice trains full batch), and read the
embedding. Sizes above the several-slice limit (16,000 spots) also run on the
mini-batch path (batches of 4,096 seed spots and their 2-hop neighbourhoods),
which several slices that large, or one slice past 200,000 spots, would take.

Part 2 (with ``STBENCH_DATA``): DLPFC 151673 as the domain task hands it over
(3,639 spots x 3,000 HVGs), seconds per epoch side by side in one process:

* ``ours``: the adapter (sparse CSR first layer, reconstruction and telescope
  losses from factorised products);
* ``dense``: the same model and losses computed the direct way, as the
  official code does (dense input, the spots x genes decoding, the n x n S and
  its transpose).

Part 3 (``--crossover``): the first layer's product x @ W and its gradient,
CSR against dense, at densities from 2 % to 67 % (4,000 spots x 3,000 genes,
256 hidden): the figures behind ``spotscape.DENSE_ABOVE``.

The official code's own figure on this kind of machine (about 1.5 s per epoch
on 151673 with 3,851 genes, 2 cores) is quoted in issue 5; it cannot be run
here (its data loader needs files we do not have).

    python scripts/bench_spotscape.py [--sizes 4000 15000 100000] [--epochs 3] [--no-dlpfc] [--threads N] [--crossover]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def synthetic_slice(n_spots: int):
    from stbench.datasets.synthetic import simulate_tissue
    from stbench.datasets.preprocessing import log_normalize

    a = simulate_tissue(n_spots=n_spots, n_genes=300, n_slices=1, seed=0)
    return log_normalize(a.X), np.asarray(a.obsm["spatial"], float)


def trainer_for(X, xy, dense: bool = False):
    from stbench.methods.spotscape import PROFILES, Trainer, spotscape

    params = {**spotscape.params, **PROFILES["fast"]}
    trainer = (DenseTrainer if dense else Trainer)(X, xy, np.zeros(X.shape[0], int), params, 7, 1e-4, 0, "cpu")
    return trainer


def seconds_per_epoch(trainer, epochs: int) -> float:
    trainer.fit(1, 10**6)  # warm-up epoch (allocations, first-call overheads) is not timed
    t0 = time.perf_counter()
    trainer.fit(epochs, 10**6)
    return (time.perf_counter() - t0) / epochs


def child(n: int, epochs: int, mini_batches: bool) -> None:
    if mini_batches:  # as a slice past ONE_SLICE_FULL_BATCH_MAX (or several slices past full_batch_max) trains
        import stbench.methods.spotscape as spotscape_module

        spotscape_module.ONE_SLICE_FULL_BATCH_MAX = 0
    t0 = time.perf_counter()
    X, xy = synthetic_slice(n)
    trainer = trainer_for(X, xy)
    setup = time.perf_counter() - t0
    per_epoch = seconds_per_epoch(trainer, epochs)
    t0 = time.perf_counter()
    z = trainer.embed()
    report = {"n": X.shape[0], "genes": X.shape[1], "full_batch": trainer.full_batch, "setup_s": setup,
              "s_per_epoch": per_epoch, "embed_s": time.perf_counter() - t0, "finite": bool(np.isfinite(z).all()),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print("RESULT " + json.dumps(report))


class _DenseBatch:
    """The direct computation: a dense copy of x, multiplied as it is."""

    def __init__(self, X, device):
        import torch

        self.dense = torch.as_tensor(np.asarray(X.todense()), dtype=torch.float32, device=device)

    def times(self, w):
        return self.dense @ w


def _dense_trainer_class():
    import torch.nn.functional as F

    from stbench.methods.spotscape import Trainer, scale_matching_loss, similarity

    class Dense(Trainer):
        def __init__(self, X, *args, **kwargs):
            super().__init__(X, *args, **kwargs)
            self.batch_all = _DenseBatch(self.X, self.device)

        def step_loss(self, seeds, with_prototypes, epoch):
            assert seeds is None, "the dense reference is full batch only"
            z1, z2 = self.view(None), self.view(None)
            x = self.batch_all.dense
            s = similarity(z1, z2)
            terms = {"reconstruction": 0.5 * (F.mse_loss(self.model.decoder(z1), x) +
                                              F.mse_loss(self.model.decoder(z2), x)),
                     "telescope": F.mse_loss(s, s.T)}
            if self.several:
                terms["scale_matching"] = scale_matching_loss(z1, z2, self.codes, int(self.p["sim_k"]))
            terms["total"] = 0.1 * terms["reconstruction"] + terms["telescope"] + terms.get("scale_matching", 0)
            return terms

    return Dense


def DenseTrainer(*args, **kwargs):
    return _dense_trainer_class()(*args, **kwargs)


def crossover(repeats: int = 5) -> None:
    import scipy.sparse as sp
    import torch

    from stbench.methods._graphs import sparse_times_dense, torch_sparse
    from stbench.methods.spotscape import DENSE_ABOVE

    n, g, hidden = 4000, 3000, 256
    print(f"\nFirst layer x @ W plus its gradient, {n} x {g} -> {hidden}, ms per call "
          f"(spotscape stores x dense above {DENSE_ABOVE:.0%} non-zero)\n")
    print("| non-zero | CSR ms | dense ms | CSR / dense |\n|---|---|---|---|")
    for density in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.67):
        X = sp.random(n, g, density=density, format="csr", dtype=np.float32, random_state=0)
        x, xt, dense = torch_sparse(X, "cpu"), torch_sparse(X.T, "cpu"), torch.as_tensor(X.toarray())
        w = torch.randn(g, hidden, requires_grad=True)
        ms = []
        for product in (lambda w_: sparse_times_dense(x, xt, w_), lambda w_: dense @ w_):
            product(w).sum().backward()  # warm-up
            t0 = time.perf_counter()
            for _ in range(repeats):
                product(w).sum().backward()
            ms.append((time.perf_counter() - t0) / repeats * 1e3)
        print(f"| {density:.0%} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[0] / ms[1]:.2f} |", flush=True)


def in_child(n: int, epochs: int, threads: int | None, mini_batches: bool = False) -> dict:
    extra = (["--threads", str(threads)] if threads else []) + (["--mini-batches"] if mini_batches else [])
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--epochs", str(epochs)] + extra,
                         capture_output=True, text=True, env=os.environ)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise RuntimeError(f"child for n={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[4000, 15000, 100000])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--no-dlpfc", action="store_true")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    p.add_argument("--crossover", action="store_true", help="also time the first layer CSR vs dense by density")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mini-batches", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child is not None:
        return child(args.child, args.epochs, args.mini_batches)

    from stbench.methods.spotscape import spotscape

    print(f"spotscape on CPU, {torch.get_num_threads()} threads; each size in its own process\n")
    print("| spots | genes | mode | s / epoch | embedding s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        # above the several-slice limit, the mini-batch path too, side by side with the full batch
        for mini_batches in (False, True) if n > spotscape.params["full_batch_max"] else (False,):
            r = in_child(n, args.epochs, args.threads, mini_batches)
            mode = "full batch" if r["full_batch"] else "mini-batches of 4,096 seeds"
            print(f"| {r['n']} | {r['genes']} | {mode} | {r['s_per_epoch']:.2f} | {r['embed_s']:.1f} | "
                  f"{r['peak_rss_mb']:.0f} |", flush=True)
    if args.crossover:
        crossover()
    if args.no_dlpfc or not os.environ.get("STBENCH_DATA"):
        return
    from stbench.datasets.loading import load_dataset
    from stbench.tasks import get_task

    a = get_task("domain_identification").make_problem(load_dataset("dlpfc"), "151673", "whole_slice", 0).inputs.adata
    print(f"\nDLPFC 151673 ({a.n_obs} spots x {a.n_vars} genes), seconds per epoch, same process\n")
    ours = seconds_per_epoch(trainer_for(a.X, a.obsm["spatial"]), args.epochs)
    dense = seconds_per_epoch(trainer_for(a.X, a.obsm["spatial"], dense=True), args.epochs)
    print("| variant | s / epoch |\n|---|---|")
    print(f"| ours (sparse, factorised losses) | {ours:.3f} |\n| dense (direct computation) | {dense:.3f} |")
    print(f"\ndense / ours = {dense / ours:.2f}x")


if __name__ == "__main__":
    main()
