"""Training and prediction time of s2s_st (shared model over the gene panel) on one HER2ST section.

Builds the real ``spatial_imputation / lattice2x`` problem (the task's
preprocessing: 3,000 HVGs on the observed spots), then times, in this process,
rasterisation, training (the ``fast`` profile's steps, or ``--steps``) and
whole-slide prediction of every gene, on the CPU and, when one is present, on
the GPU.

    STBENCH_DATA=../shared/data python scripts/bench_s2s.py [--section F1] [--steps 300] [--profile fast]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stbench.datasets.loading import load_dataset
from stbench.methods.s2s_st import GENE_SCALE, PROFILES, _network, predict, rasterize, train
from stbench.tasks import get_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", default="F1")
    p.add_argument("--profile", default="fast", choices=sorted(PROFILES))
    p.add_argument("--steps", type=int)
    args = p.parse_args()
    profile = dict(PROFILES[args.profile])
    steps = args.steps or profile["steps"]
    problem = get_task("spatial_imputation").make_problem(load_dataset("her2st"), args.section, "lattice2x", 0)
    obs, query = problem.inputs.observed, problem.inputs.query
    X = np.asarray(obs.X.todense() if hasattr(obs.X, "todense") else obs.X, dtype=np.float32)
    t0 = time.perf_counter()
    raster, observed, _ = rasterize(np.asarray(obs.obsm["grid"]), np.asarray(query.obsm["grid"]), X)
    raster = raster / GENE_SCALE
    t_raster = time.perf_counter() - t0
    print(f"HER2ST {args.section}: {obs.n_obs} observed + {query.n_obs} held-out spots, {obs.n_vars} genes, "
          f"raster {tuple(raster.shape)} (rasterise {t_raster:.2f} s); profile {args.profile}, {steps} steps")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        torch.manual_seed(0)
        net = _network(profile, 3).to(device)
        n_params = sum(x.numel() for x in net.parameters())
        t0 = time.perf_counter()
        train(net, raster, observed, steps, profile["batch"], profile["lr"], True,
              np.random.default_rng(0), size=profile["crop"])
        if device == "cuda":
            torch.cuda.synchronize()
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        predict(net, raster, observed)
        t_pred = time.perf_counter() - t0
        print(f"{device} ({torch.get_num_threads()} threads): {n_params} parameters; train {t_train:.1f} s "
              f"({1000 * t_train / steps:.0f} ms/step), predict all {obs.n_vars} genes {t_pred:.1f} s")


if __name__ == "__main__":
    main()
