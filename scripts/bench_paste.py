"""PASTE's cost per slice size, and whether its solver moves on DLPFC.

Part 1 (always): synthetic pairs of about 3K, 10K and 15K spots per slice
(``simulate_tissue``, the task's random rigid move). Each size runs ``paste``
with its defaults in a fresh child process, so the printed peak resident
memory is that run's alone. Above ``max_spots`` (4,000) the solver works on a
seeded subsample; the table says so.

Part 2 (with ``STBENCH_DATA``): DLPFC 151673 -> 151674 (seed 0), the issue's
trap. ``official-like`` keeps raw pixel distances and cost and starts from
the uniform product plan, as paste-bio's ``pairwise_align`` does; ``version 1``
divided distances by their median and the cost by its median; ``ours`` is the
adapter's default (distances in spot pitches, start from the expression-only OT
plan). For each: Frank-Wolfe steps, the share of plan mass that moved away from
the start, LTARI by argmax pi and by nearest neighbour.

``--select`` instead prints the grid PASTE's default scale was chosen on:
synthetic tissues outside the board (``simulate_tissue`` seeds 7 and 8, 1,600
spots, full overlap), never a board dataset.

    python scripts/bench_paste.py [--sizes 3000 10000 15000] [--no-dlpfc] [--select]
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


SELECTION_SEEDS = (7, 8)
SELECTION_GRID = [("median", 0.1), ("median", 0.5), ("median", 0.9), ("pitch", 0.1), ("pitch", 0.5), ("none", 0.1)]


def synthetic_problem(n_spots: int, seed: int = 11):
    from stbench.datasets.loading import Dataset, _normalise
    from stbench.datasets.registry import get_dataset_spec
    from stbench.datasets.synthetic import content_sha256, simulate_tissue
    from stbench.tasks import get_task

    adata = simulate_tissue(n_spots=n_spots, n_genes=200, n_slices=2, seed=seed)
    ds = Dataset(get_dataset_spec("synthetic"), _normalise(adata), content_sha256(adata))
    return get_task("alignment").make_problem(ds, "slice0>slice1", "rigid", 0)


def dlpfc_problem():
    from stbench.datasets.loading import load_dataset
    from stbench.tasks import get_task

    return get_task("alignment").make_problem(load_dataset("dlpfc"), "151673>151674", "rigid", 0)


def run_once(problem, overrides: dict) -> dict:
    """Run paste's alignment through the adapter's own code path and score it."""
    from stbench.methods import METHODS, RunContext
    from stbench.methods._fgw import align
    from stbench.tasks import get_task

    task, m = get_task("alignment"), METHODS["paste"]
    ctx = RunContext(0, "cpu", None, {**m.params, **overrides}, "alignment", "rigid")
    report: dict = {}
    t0 = time.perf_counter()
    out = align(problem.inputs, ctx, overlap=None, report=report)
    report["seconds"] = time.perf_counter() - t0
    scores = task.score(problem, task.check_output(problem, out))
    report.update({k: v for k, v in scores.items() if isinstance(v, float)})
    report["n_query"], report["n_reference"] = problem.inputs.query.n_obs, problem.inputs.reference.n_obs
    return report


def child(args) -> None:
    problem = synthetic_problem(args.child) if args.child > 0 else dlpfc_problem()
    overrides = json.loads(args.overrides)
    report = run_once(problem, overrides)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(report))


def in_child(n: int, overrides: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(n), "--overrides", json.dumps(overrides)],
                         capture_output=True, text=True, env=os.environ)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise RuntimeError(f"child for n={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[3000, 10000, 15000])
    p.add_argument("--no-dlpfc", action="store_true")
    p.add_argument("--select", action="store_true", help="print the default-selection grid and stop")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        return child(args)
    if args.select:
        return select()
    import torch  # only for the thread count printed with the figures

    print(f"paste on CPU, {torch.get_num_threads()} threads; each size in its own process\n")
    print("| spots (query x reference) | solver spots | FW steps | seconds | peak RSS MB | coord RMSE um | LTARI |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        r = in_child(n, {})
        print(f"| {r['n_query']} x {r['n_reference']} | {r['subsampled'][0]} x {r['subsampled'][1]} | "
              f"{r['fw_steps']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r.get('coord_rmse', np.nan):.1f} | "
              f"{r['ltari']:.3f} |", flush=True)
    if args.no_dlpfc or not os.environ.get("STBENCH_DATA"):
        return
    print("\nDLPFC 151673 -> 151674, seed 0\n")
    print("| variant | FW steps | mass moved from start | loss start -> end | LTARI (argmax pi) | LTARI (NN) | s |")
    print("|---|---|---|---|---|---|---|")
    for label, overrides in [("official-like: raw scale, product start", {"rescale": "none", "init": "product"}),
                             ("version 1: median scale, cost / median", {"rescale": "median"}),
                             ("ours: spot-pitch units, expression start", {})]:
        r = in_child(0, overrides)
        print(f"| {label} | {r['fw_steps']} | {r['mass_moved']:.3f} | {r['loss_start']:.4g} -> {r['loss_end']:.4g} | "
              f"{r['ltari']:.3f} | {r['ltari_nn']:.3f} | {r['seconds']:.0f} |", flush=True)


def select() -> None:
    """The grid the default (rescale, alpha) was chosen on; board datasets are never read."""
    print("| tissue seed | rescale | alpha | FW steps | LTARI (argmax pi) | LTARI (NN) | coord RMSE um |")
    print("|---|---|---|---|---|---|---|")
    for seed in SELECTION_SEEDS:
        problem = synthetic_problem(1600, seed)
        for rescale, alpha in SELECTION_GRID:
            r = run_once(problem, {"rescale": rescale, "alpha": alpha})
            print(f"| {seed} | {rescale} | {alpha} | {r['fw_steps']} | {r['ltari']:.3f} | {r['ltari_nn']:.3f} | "
                  f"{r['coord_rmse']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
