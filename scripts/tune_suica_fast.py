"""How the ``fast`` profiles of suica, ffn, siren and stage were chosen: on a validation split
carved from the *observed* spots of one problem, never its held-out spots.

Builds ``spatial_imputation / random20`` (seed 0) on DLPFC 151673, keeps only
what a method sees (the observed spots), holds out a seeded 20 % of them as
validation, fits each candidate schedule on the other 80 % and prints the
validation cosine (per spot, the task's primary metric), MAE and wall time.
The test split's truth is never read.

    STBENCH_DATA=../shared/data python scripts/tune_suica_fast.py [--methods suica ffn siren stage]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stbench.datasets.loading import load_dataset
from stbench.methods import RunContext, get_method
from stbench.tasks import get_task
from stbench.tasks.metrics.expression import cosine, mae
from stbench.tasks.spatial_imputation import SpatialImputationInput

CANDIDATES = {
    "suica": [{"gae_epochs": 60, "inr_epochs": 600, "finetune_epochs": f} for f in (0, 10, 30, 100)],
    "ffn": [{"lr": 1e-3, "epochs": 300, "sigma": s} for s in (1.0, 3.0, 10.0)],
    "siren": [{"lr": 1e-4, "epochs": e} for e in (300, 600)],
    "stage": [{"epochs": e} for e in (100, 300)],
}


def validation_problem(dataset: str, instance: str, seed: int = 0):
    """The observed spots of the real problem, split 80/20 into fit and validation (seeded)."""
    problem = get_task("spatial_imputation").make_problem(load_dataset(dataset), instance, "random20", seed)
    obs = problem.inputs.observed
    rng = np.random.default_rng(1234)
    val = np.zeros(obs.n_obs, bool)
    val[rng.choice(obs.n_obs, size=obs.n_obs // 5, replace=False)] = True
    fit, query = obs[~val].copy(), obs[val].copy()
    truth = np.asarray(query.X)
    return SpatialImputationInput(fit, query, "random20"), truth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(CANDIDATES))
    p.add_argument("--dataset", default="dlpfc")
    p.add_argument("--instance", default="151673")
    args = p.parse_args()
    inputs, truth = validation_problem(args.dataset, args.instance)
    print(f"{args.dataset} {args.instance}: fit {inputs.observed.n_obs} / validate {inputs.query.n_obs} "
          f"observed spots, {inputs.observed.n_vars} genes; cpu, {torch.get_num_threads()} threads")
    for name in args.methods:
        m = get_method(name)
        for cand in CANDIDATES[name]:
            params = {**m.params, **cand}  # any key of a profile can be overridden per run
            ctx = RunContext(seed=0, device="cpu", scratch_dir=None, params=params, task="spatial_imputation",
                             split="random20")
            torch.manual_seed(0)
            t0 = time.perf_counter()
            pred = m.run("spatial_imputation", inputs, ctx)
            wall = time.perf_counter() - t0
            print(f"{name:6s} {cand}: val cosine {cosine(truth, pred):.4f}  MAE {mae(truth, pred):.4f}  "
                  f"{wall:.0f} s", flush=True)


if __name__ == "__main__":
    main()
