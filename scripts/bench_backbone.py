"""Backbone timings (a benchmark script, not a test: it prints figures, asserts nothing).

1. The time of all spatial-imputation metrics together (expression metrics,
   SSIM per gene on the rasterised slice, imputation ARI with its reference)
   for a 4,000-spot x 3,000-gene prediction, with the share of each part.
2. The whole default run (``stbench run`` with no arguments: every task,
   every control and baseline, synthetic tissue, seed 0) broken into data,
   split, method and scoring.

Usage: python scripts/bench_backbone.py [--skip-default-run]
"""

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def bench_metrics() -> None:
    from stbench.datasets.loading import Dataset, _normalise
    from stbench.datasets.registry import get_dataset_spec
    from stbench.datasets.synthetic import content_sha256, simulate_tissue
    from stbench.tasks import get_task
    from stbench.tasks.metrics.expression import expression_scores
    from stbench.tasks.metrics.image import ssim

    # 20,000 spots: the 20 % held out by random20 is a 4,000-spot prediction
    adata = simulate_tissue(n_spots=20_000, n_genes=3000, n_slices=1, seed=0)
    ds = Dataset(get_dataset_spec("synthetic"), _normalise(adata), content_sha256(adata))
    task = get_task("spatial_imputation")
    t0 = time.perf_counter()
    problem = task.make_problem(ds, "slice0", "random20", 0)
    t_problem = time.perf_counter() - t0
    truth = problem.solution
    rng = np.random.default_rng(0)
    pred = np.clip(truth + rng.normal(0, 0.3, truth.shape), 0, None)
    print(f"prediction: {truth.shape[0]} held-out spots x {truth.shape[1]} genes "
          f"(slice of {ds.adata.n_obs} spots; problem built in {t_problem:.2f} s)")

    t0 = time.perf_counter()
    expression_scores(truth, pred)
    t_expr = time.perf_counter() - t0
    s = problem.scoring
    full = s["expr"].copy()
    full[s["held"]] = pred
    t0 = time.perf_counter()
    ssim(s["expr"], full, s["pixel"], s["shape"])
    t_ssim = time.perf_counter() - t0
    problem.scoring.pop("imputation_ari_reference", None)
    t0 = time.perf_counter()
    scores = task.checked_scores(problem, pred)
    t_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    task.score(problem, pred)
    t_cached = time.perf_counter() - t0
    print(f"all spatial-imputation metrics together: {t_all:.2f} s "
          f"({len(scores)} values; {t_cached:.2f} s for the next method, the reference ARI being cached)")
    print(f"  of which expression metrics {t_expr:.2f} s, SSIM over {truth.shape[1]} genes {t_ssim:.2f} s, "
          f"imputation ARI + reference {t_all - t_expr - t_ssim:.2f} s")


def bench_default_run() -> None:
    import tempfile

    from stbench.benchmark.runner import run_benchmark

    t0 = time.perf_counter()
    report = run_benchmark(progress=False, results_dir=tempfile.mkdtemp(prefix="stbench-bench-"))
    total = time.perf_counter() - t0
    t = report.timings
    print(f"default run: {len(report.results)} cells, "
          f"{report.results['status'].value_counts().to_dict()} in {total:.1f} s")
    for phase in ("startup", "data", "split", "method", "scoring", "harness"):
        print(f"  {phase:8s} {t[phase]:7.1f} s  ({100 * t[phase] / total:4.1f} %)")
    print(f"  other    {total - sum(t.values()):7.1f} s  (planning, store start and export)")
    slow = report.results.sort_values("wall_time_s", ascending=False).head(5)
    print("  slowest cells:\n" + slow[["task", "split", "instance", "method", "wall_time_s"]]
          .to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-default-run", action="store_true")
    args = ap.parse_args()
    bench_metrics()
    if not args.skip_default_run:
        bench_default_run()
