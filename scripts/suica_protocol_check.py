"""Does SUICA's ordering (SUICA > STAGE > FFN > SIREN on cosine) depend on the data scale?

The board scores ``spatial_imputation`` on log1p(normalize_total 1e4) of 3,000
HVGs. SUICA's own pipeline (seed-methods notes §1d) keeps the counts on a
*linear* scale: genes with fewer than 3 counts dropped, genes with any count
above 200 dropped ("overly high"), ``normalize_total(target_sum=200)``, no log,
no HVG selection. Its fine-tuning loss (MSE on non-zeros + L1 + Dice) was
designed for that sparse, zero-inflated scale.

This script takes the board's own held-out spots (``random20``, same seed, so
the same split hash) and re-runs the adapters on SUICA's scale: the gene
filters are fitted on the observed spots only, the per-spot normalisation
needs nothing from other spots, and the held-out truth is only read to score.
It prints, for each method, the per-spot cosine / Pearson / Spearman and MAE /
MSE on the held-out spots, on that scale. It is an analysis, not a tuning
loop: the profiles stay as chosen by ``tune_suica_fast.py``; the
``suica:finetune_epochs=...`` rows show what the paper's longer decoder
fine-tuning does on its own scale.

    STBENCH_DATA=../shared/data python scripts/suica_protocol_check.py \
        [--dataset dlpfc --instance 151673 --seed 0] [--methods ...]
"""

from __future__ import annotations

import argparse
import time

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp
import torch

from stbench.datasets.loading import load_dataset
from stbench.leaderboard.compare import parse_variant
from stbench.methods import RunContext, get_method
from stbench.tasks import get_task
from stbench.tasks.base import make_view
from stbench.tasks.metrics.expression import expression_scores
from stbench.tasks.spatial_imputation import SpatialImputationInput

SUICA_TARGET_SUM = 200  # SUICA's scripts/filter_and_normalize.py
SUICA_MAX_COUNT = 200  # genes with any count above this are dropped there
SUICA_MIN_COUNTS = 3

DEFAULT_METHODS = ["global_mean", "knn_interpolation", "suica", "suica:finetune_epochs=100", "stage", "ffn",
                   "siren"]


def suica_scale_problem(dataset_name: str, instance: str, seed: int):
    """The board's random20 split of one slice, expressed on SUICA's linear scale."""
    dataset = load_dataset(dataset_name)
    task = get_task("spatial_imputation")
    held_idx = task.make_split(dataset, instance, "random20", seed)["heldout"]
    adata = dataset.slice(instance)
    counts = sp.csr_matrix(adata.X, dtype=np.float32)
    held = np.zeros(adata.n_obs, bool)
    held[held_idx] = True
    visible = counts[~held]
    # gene filters see the observed spots only
    keep = (np.asarray(visible.sum(axis=0)).ravel() >= SUICA_MIN_COUNTS) & \
           (np.asarray(visible.max(axis=0).toarray()).ravel() <= SUICA_MAX_COUNT)
    tmp = ad.AnnData(X=counts[:, keep])
    sc.pp.normalize_total(tmp, target_sum=SUICA_TARGET_SUM)  # per spot: no information crosses spots
    expr = np.asarray(tmp.X.toarray(), dtype=np.float32)
    names, xy = adata.obs_names.to_numpy(), adata.obsm["spatial"]
    observed = make_view(names[~held], xy[~held], None, instance, X=expr[~held],
                         var=adata.var.iloc[np.flatnonzero(keep)][[]])
    query = make_view(names[held], xy[held], None, instance)
    return SpatialImputationInput(observed, query, "random20"), expr[held]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="dlpfc")
    p.add_argument("--instance", default="151673")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    args = p.parse_args()
    inputs, truth = suica_scale_problem(args.dataset, args.instance, args.seed)
    print(f"{args.dataset} {args.instance} random20 seed {args.seed} on SUICA's scale (total {SUICA_TARGET_SUM}, "
          f"no log): {inputs.observed.n_obs} observed / {inputs.query.n_obs} held-out spots, "
          f"{inputs.observed.n_vars} genes, {100 * (truth > 0).mean():.1f} % non-zero")
    print("| method | cosine | Pearson | Spearman | MAE | MSE | s |\n|---|---|---|---|---|---|---|")
    for spec in args.methods:
        name, overrides = parse_variant(spec)
        m = get_method(name)
        ctx = RunContext(seed=args.seed, device="cuda" if torch.cuda.is_available() else "cpu", scratch_dir=None,
                         params={**m.params, **overrides}, task="spatial_imputation", split="random20")
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        pred = m.run("spatial_imputation", inputs, ctx)
        wall = time.perf_counter() - t0
        s = expression_scores(truth, pred)
        print(f"| {spec} | {s['cosine']:.3f} | {s['pearson']:.3f} | {s['spearman']:.3f} | {s['mae']:.4f} | "
              f"{s['mse']:.4f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
