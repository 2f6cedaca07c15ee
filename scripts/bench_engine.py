"""Harness overhead of the engine, per task: what isolation and recording cost per cell.

For every executed cell the record holds (all measured by the runner)
    wall_time_s     child start -> output checked, scored, plotted and recorded
    time_startup_s  child start -> ready: fork, namespaces, sandbox, loading the method
    time_method_s   input handed over -> the child's "done" (reading the input, the method,
                    writing the output)
    time_score_s    the task's scoring (in the runner, which holds the truth)
so harness = wall - method - scoring (fork from the warm fork server, the sandbox,
reading the output back, the spatial plot, the MLflow record) and the overhead
ratio = harness / (wall - scoring), i.e. the issue's (cell wall time - method
time) / cell wall time with the task's own scoring left out of both. Per problem,
the input view is written once (not per cell): that is printed apart. Records
from before ``time_startup_s`` (older commits) print it blank.

    python scripts/bench_engine.py                      # the default suite (synthetic)
    STBENCH_DATA=../shared/data python scripts/bench_engine.py --real   # + DLPFC cells whose methods run >= 10 s
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from stbench.benchmark.runner import run_benchmark


def overhead_table(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["status"] == "ok"].copy()
    df["harness_s"] = df["wall_time_s"] - df["time_method_s"] - df["time_score_s"].fillna(0)
    df["overhead"] = df["harness_s"] / (df["wall_time_s"] - df["time_score_s"].fillna(0))
    return df


def report(name: str, rep, total: float) -> pd.DataFrame:
    df = overhead_table(rep.results)
    t = rep.timings
    print(f"\n== {name}: {len(rep.results)} cells ({rep.executed} executed) in {total:.1f} s; fork server start "
          f"{t['startup']:.1f} s (once, in parallel with data loading); problems built and written {t['split']:.1f} s")
    if "time_startup_s" in df and df["time_startup_s"].notna().any():
        print(f"fork to ready per cell (sandbox + loading the method): median {df['time_startup_s'].median():.3f} s, "
              f"mean {df['time_startup_s'].mean():.3f} s, max {df['time_startup_s'].max():.3f} s")
    print(f"harness per cell: median {df['harness_s'].median():.3f} s, mean {df['harness_s'].mean():.3f} s")
    per_task = df.groupby("task").agg(cells=("method", "size"), method_s=("time_method_s", "mean"),
                                      harness_s=("harness_s", "mean"), harness_max_s=("harness_s", "max"),
                                      overhead=("overhead", "mean"))
    print(per_task.to_string(float_format=lambda v: f"{v:.3f}"))
    long = df[df["time_method_s"] >= 10]
    if len(long):
        print(f"cells whose method ran >= 10 s: {len(long)}; overhead ratio mean {long['overhead'].mean():.2%}, "
              f"max {long['overhead'].max():.2%}")
        print(long[["task", "dataset", "instance", "method", "time_method_s", "harness_s", "overhead"]]
              .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", action="store_true", help="also DLPFC 151673 cells with methods of >= 10 s")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rep = run_benchmark(progress=False, results_dir=tempfile.mkdtemp(prefix="stbench-bench-"))
    report("default suite (synthetic, controls + baselines)", rep, time.perf_counter() - t0)
    if args.real:
        t0 = time.perf_counter()
        rep = run_benchmark(tasks=["gene_imputation", "denoising", "multislice_integration"], datasets=["dlpfc"],
                            splits=["dropout30", "gaussian", "all_slices"],
                            methods=["low_rank_completion", "pca_reconstruction", "harmony", "unintegrated_pca"],
                            progress=False, results_dir=tempfile.mkdtemp(prefix="stbench-bench-"))
        report("DLPFC (real data, heavier baselines)", rep, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
