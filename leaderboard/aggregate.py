"""From the results table to leaderboard numbers: pure functions, no I/O.

Data flow::

    results table (one row per cell, benchmark/store.py:SCHEMA)
      --long_scores-->   one row per (cell, registered metric): raw value
      --scale-->         + scaled: negative control = 0, positive control = 1,
                           per (task, split, dataset, metric); failed cells count as 0
      --seed_summary-->  mean over a dataset's instances per seed, then mean ± sd over seeds
      --coverage-->      per (task, method): cells recorded (ok or failed) of the task's cells
      --task_ranking-->  per task: mean scaled primary metric over (split, dataset); only
                           methods that cover every cell are ranked, the others are incomplete
      --overall_ranking-> only among methods complete on every task shown: mean of the clipped
                           task scores, then rank
      --rank_stability--> bootstrap over datasets and seeds: how often each rank holds

Why these choices (Open Problems' experience, anchors.md §1a): scaling between
the controls makes metrics and datasets comparable; mean-then-rank keeps a
method's margin (rank-then-mean throws it away); controls are shown but not
ranked; a failed cell is a zero, not a silently missing value, so a method
cannot gain by crashing on hard datasets. A cell never run (not selected, or
skipped because the method does not apply) is worse than a zero for a ranking:
a method run only on its easiest dataset would outrank one run on all of
them. So a method is ranked on a task only when it covers the same cells as
every other ranked method; otherwise it is *incomplete*, shown below the
ranking with its coverage and partial score. No ranking crosses tasks unless
every method in it solves every task shown (none of Open Problems, OGB or
benchopt ranks across tasks). Clipping to [0, 1] happens only in that
cross-task aggregate, so a method better than the positive control on one
dataset cannot buy its way up overall, while the per-task tables stay honest.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

# Only the results schema is imported: the leaderboard app must start fast and must not
# import adapters (it never executes anything submitted), nor the tasks' scientific stack.
from stbench.benchmark.store import FAILED, SCHEMA

CELL = ["task", "split", "dataset", "instance", "method", "seed"]


def declared_metrics(catalog: dict | None) -> dict[str, list[str]]:
    """task -> its declared metrics, primary first, from the catalog's task declarations
    (written by the runner from each task's one ``metrics`` list); {} for an older catalog."""
    tasks = (catalog or {}).get("tasks", {})
    return {t: [m["name"] for m in d.get("metrics", [])] for t, d in tasks.items()}


def metric_info(catalog: dict | None) -> dict[str, dict]:
    """metric -> its declaration (direction, range, one-line formula) from the catalog."""
    return {m["name"]: m for d in (catalog or {}).get("tasks", {}).values() for m in d.get("metrics", [])}


def metric_columns(table: pd.DataFrame, declared: dict[str, list[str]] | None = None) -> list[str]:
    """The score columns: the declared metrics of the table's tasks that it holds; without
    declarations (an older results folder), every numeric column the schema does not name."""
    if declared:
        names = [m for t in table["task"].unique() for m in declared.get(t, [])]
        return [m for m in dict.fromkeys(names) if m in table.columns]
    return [c for c in table.columns if c not in SCHEMA and pd.api.types.is_numeric_dtype(table[c])]


def primary_metrics(table: pd.DataFrame) -> dict[str, str]:
    """task -> its primary metric, as recorded with its cells."""
    rec = table[table["primary_metric"].astype(str) != ""]
    return rec.groupby("task")["primary_metric"].first().to_dict()


def long_scores(table: pd.DataFrame, declared: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per (cell, metric) with its raw value; failed cells get one NaN row
    per metric their task reports, so that they are counted rather than dropped.
    With ``declared`` (task -> metrics) only a task's declared metrics are kept."""
    metrics = metric_columns(table, declared)
    if "unranked" not in table:  # a table from before the column existed: everything ranked
        table = table.assign(unranked="")
    done = table[table["status"].isin(("ok",) + FAILED)]
    long = done.melt(id_vars=CELL + ["status", "method_kind", "uses_truth", "uses_true_k", "primary_metric",
                                     "unranked"],
                     value_vars=metrics, var_name="metric", value_name="raw")
    # keep the metrics each task actually reports (those with a value on some ok cell)
    reported = long[long["status"] == "ok"].dropna(subset=["raw"])[["task", "metric"]].drop_duplicates()
    if declared:
        reported = reported[[m in declared.get(t, [m]) for t, m in zip(reported["task"], reported["metric"])]]
    long = long.merge(reported, on=["task", "metric"])
    return long[(long["status"] != "ok") | long["raw"].notna()].reset_index(drop=True)


def scale(long: pd.DataFrame) -> pd.DataFrame:
    """Add ``scaled`` = (raw − negative control) / (positive control − negative control).

    The controls' means are taken per (task, split, dataset, metric) over
    instances and seeds. The formula needs no direction: for an error metric
    the negative control is high and the positive control low, so a better
    method still scores higher. Where the controls tie (or one is missing) the
    scaled value is NaN. Failed cells get scaled 0.
    """
    key = ["task", "split", "dataset", "metric"]
    ok = long[long["status"] == "ok"]
    neg = ok[ok["method"] == "negative_control"].groupby(key)["raw"].mean().rename("neg")
    pos = ok[ok["method"] == "positive_control"].groupby(key)["raw"].mean().rename("pos")
    out = long.join(neg, on=key).join(pos, on=key)
    span = out["pos"] - out["neg"]
    out["scaled"] = np.where(span.abs() > 1e-12, (out["raw"] - out["neg"]) / span.where(span != 0), np.nan)
    out.loc[out["status"] != "ok", "scaled"] = 0.0
    return out.drop(columns=["neg", "pos"])


def seed_summary(scaled: pd.DataFrame, value: str = "scaled") -> pd.DataFrame:
    """Mean ± sd over seeds of the per-seed mean over a dataset's instances."""
    per_seed = scaled.groupby(["task", "split", "dataset", "method", "metric", "seed"])[value].mean()
    g = per_seed.groupby(["task", "split", "dataset", "method", "metric"])
    return pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n_seeds": g.size()}).reset_index()


def _primary(scaled: pd.DataFrame) -> pd.DataFrame:
    """The ranked cells' primary metric: a (task, split, dataset) its task marks unranked is
    shown in the tables but counts in no score, rank or stability estimate."""
    prim = scaled["task"].map(scaled.groupby("task")["primary_metric"].agg(lambda p: p[p != ""].iloc[0]))
    return scaled[(scaled["metric"] == prim) & (scaled["unranked"].astype(str) == "")]


def task_scores(scaled: pd.DataFrame, clip: bool = False) -> pd.DataFrame:
    """Per (task, method): mean over (split, dataset) of the seed-averaged scaled primary metric."""
    prim = _primary(scaled).copy()
    if clip:
        prim["scaled"] = prim["scaled"].clip(0, 1)
    per_ds = prim.groupby(["task", "split", "dataset", "method", "seed"])["scaled"].mean() \
        .groupby(["task", "split", "dataset", "method"]).mean()
    return per_ds.groupby(["task", "method"]).mean().rename("score").reset_index()


def last_line(text) -> str:
    """The last non-blank line of an error (a traceback's: the exception), for one-line reasons."""
    return next((ln.strip() for ln in reversed(str(text or "").strip().splitlines()) if ln.strip()), "")


def method_info(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: kind, flags, its cells by outcome, and how many of its cells ran with no
    sandbox in force (``sandbox`` = none: a kernel without Landlock), which the board shows."""
    sandbox = table["sandbox"].astype(str) if "sandbox" in table else pd.Series("recorded", index=table.index)
    unsandboxed = table.assign(_none=table["status"].isin(("ok",) + FAILED) & sandbox.isin(("", "none")))
    info = unsandboxed.groupby("method").agg(kind=("method_kind", "first"), uses_truth=("uses_truth", "any"),
                                             uses_true_k=("uses_true_k", "any"), cells=("status", "size"),
                                             failed=("status", lambda s: int(s.isin(FAILED).sum())),
                                             skipped=("status", lambda s: int((s == "skipped").sum())),
                                             unsandboxed=("_none", "sum"))
    info["unsandboxed"] = info["unsandboxed"].astype(int)
    return info


UNIT = ["split", "dataset", "instance", "seed"]  # one cell of a task, method aside


def coverage(table: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method): ``cells`` recorded (ok or failed) of the task's ranked cells and
    ``of`` = how many the task has in this table, ``complete`` when none is missing.

    A task's cells are every (split, dataset, instance, seed) any method has a record for
    in the table (the current selection), less the splits the task marks unranked. The
    controls run in every invocation, so this is the grid that was asked for. A skipped
    cell (the method does not apply there) is not covered: its method is incomplete there.
    """
    if "unranked" not in table:
        table = table.assign(unranked="")
    ranked = table[table["unranked"].astype(str) == ""]
    units = ranked.drop_duplicates(["task"] + UNIT).groupby("task").size().rename("of")
    done = ranked[ranked["status"].isin(("ok",) + FAILED)].drop_duplicates(["task", "method"] + UNIT)
    cells = done.groupby(["task", "method"]).size().rename("cells")
    pairs = table[["task", "method"]].drop_duplicates().set_index(["task", "method"])
    out = pairs.join(cells).join(units, on="task").fillna({"cells": 0, "of": 0})
    out[["cells", "of"]] = out[["cells", "of"]].astype(int)
    out["complete"] = (out["cells"] == out["of"]) & (out["of"] > 0)
    return out.reset_index()


def task_ranking(table: pd.DataFrame, scaled: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (task, method): score (mean scaled primary metric), coverage, rank, failed cells, flags.

    Only complete non-control methods get a rank; an incomplete method keeps its partial
    score (over the cells it covers) but no rank, and sorts below every ranked method.
    ``scaled`` (``scale(long_scores(table))``) may be passed in when the caller has it already.
    """
    scores = task_scores(scale(long_scores(table)) if scaled is None else scaled)
    cov = coverage(table)
    scores = cov.merge(scores, on=["task", "method"], how="left")
    kinds = table.groupby("method")["method_kind"].first()
    rankable = scores[scores["complete"] & ~scores["method"].map(kinds).eq("control")]
    scores["rank"] = rankable.groupby("task")["score"].rank(ascending=False, method="min")
    failed = table[table["status"].isin(FAILED)].groupby(["task", "method"]).size().rename("failed")
    scores = scores.join(failed, on=["task", "method"]).fillna({"failed": 0})
    scores["failed"] = scores["failed"].astype(int)
    scores = scores.join(method_info(table)[["kind", "uses_truth", "uses_true_k"]], on="method")
    scores["_order"] = np.select([scores["rank"].notna(), scores["kind"] != "control"], [0, 1], 2)
    scores = scores.sort_values(["task", "_order", "rank", "score"], ascending=[True, True, True, False])
    return scores.drop(columns="_order").reset_index(drop=True)


def overall_ranking(table: pd.DataFrame, scaled: pd.DataFrame | None = None,
                    ranking: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: the number of tasks it is complete on and, only for methods complete on
    every task in the table (and only when there are two or more), the mean of its clipped
    task scores and a rank. Ranking methods that solve different tasks against each other
    would compare, say, an alignment method with a denoiser: no score is given then.
    ``ranking`` (``task_ranking(table, scaled)``) may be passed in when the caller has it."""
    scaled = scale(long_scores(table)) if scaled is None else scaled
    ranking = task_ranking(table, scaled) if ranking is None else ranking
    per_task = task_scores(scaled, clip=True)
    n_tasks = table["task"].nunique()
    complete = ranking[ranking["complete"]].groupby("method").size().rename("tasks")
    out = method_info(table).join(complete).fillna({"tasks": 0})
    out["tasks"] = out["tasks"].astype(int)
    everywhere = out.index[(out["tasks"] == n_tasks)] if n_tasks > 1 else pd.Index([])
    mean = per_task[per_task["method"].isin(everywhere)].groupby("method")["score"].mean()
    out["score"] = mean.reindex(out.index)
    ranked = out["score"].notna() & (out["kind"] != "control")
    out["rank"] = out["score"].where(ranked).rank(ascending=False, method="min")
    return out.reset_index().sort_values(["rank", "score"], ascending=[True, False]).reset_index(drop=True)


def rank_stability(table: pd.DataFrame, n_boot: int = 200, seed: int = 0,
                   scaled: pd.DataFrame | None = None, ranking: pd.DataFrame | None = None) -> pd.DataFrame:
    """How stable each task's ranks are: resample datasets (within each split) and, for each
    drawn dataset, seeds with replacement; recompute the task's ranking each time.

    Returns per (task, ranked method) its observed rank, the share of resamples that
    give it that same rank, and the 2.5–97.5 % range of its ranks. Only ranked
    (complete) methods take part, so every resample compares the same cells. Vectorised:
    each (task, split) is a (dataset, seed, method) array indexed by all resamples at
    once, so 200 resamples of a 10,000-cell table take milliseconds.
    """
    scaled = scale(long_scores(table)) if scaled is None else scaled
    observed = (task_ranking(table, scaled) if ranking is None else ranking).dropna(subset=["rank"])
    prim = _primary(scaled)
    # one value per (task, split, dataset, method, seed): the unit resampled
    unit = prim.groupby(["task", "split", "dataset", "method", "seed"])["scaled"].mean().reset_index()
    rng = np.random.default_rng(seed)
    out = []
    for task, ranks_seen in observed.groupby("task", sort=True):
        methods = np.sort(ranks_seen["method"].unique())
        sub_task = unit[(unit["task"] == task) & unit["method"].isin(methods)]
        seeds = np.sort(sub_task["seed"].unique())
        total = np.zeros((n_boot, len(methods)))
        n_parts = 0
        for _, sub in sub_task.groupby("split", sort=True):
            datasets = np.sort(sub["dataset"].unique())
            values = np.full((len(datasets), len(seeds), len(methods)), np.nan)
            values[np.searchsorted(datasets, sub["dataset"]), np.searchsorted(seeds, sub["seed"]),
                   np.searchsorted(methods, sub["method"])] = sub["scaled"].to_numpy()
            d_idx = rng.integers(0, len(datasets), (n_boot, len(datasets), 1))
            s_idx = rng.integers(0, len(seeds), (n_boot, len(datasets), len(seeds)))
            draw = values[d_idx, s_idx]  # (boot, dataset draw, seed draw, method)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a dataset without this seed: all-NaN
                total += np.nanmean(np.nanmean(draw, axis=2), axis=1)
            n_parts += 1
        ranks = pd.DataFrame(-total / max(n_parts, 1), columns=methods).rank(axis=1, method="min")
        for m, r in zip(ranks_seen["method"], ranks_seen["rank"]):
            out.append({"task": task, "method": m, "rank": r, "same_rank_share": (ranks[m] == r).mean(),
                        "rank_lo": ranks[m].quantile(0.025), "rank_hi": ranks[m].quantile(0.975)})
    cols = ["task", "method", "rank", "same_rank_share", "rank_lo", "rank_hi"]
    return pd.DataFrame(out, columns=cols).sort_values(["task", "rank"]).reset_index(drop=True)


def task_score_by_seed(scaled: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method): the task score's mean and sd over seeds (for error bars)."""
    prim = _primary(scaled)
    per_seed = prim.groupby(["task", "split", "dataset", "method", "seed"])["scaled"].mean() \
        .groupby(["task", "method", "seed"]).mean()
    g = per_seed.groupby(["task", "method"])
    return pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1).fillna(0.0), "n_seeds": g.size()}).reset_index()


def ran_on(devices: pd.Series) -> str:
    """"gpu" when any of these cells ran on CUDA, else "cpu" (the CPU/GPU filter and plots)."""
    return "gpu" if (devices == "cuda").any() else "cpu"


def cost_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method): mean method time and peak memory over its ok cells (absolute, and above
    the child's memory at start: every child starts with the harness's ~330 MB, which hides the
    difference between light methods), and the device it ran on."""
    ok = table[table["status"] == "ok"]
    ok = ok.assign(rss_above_start_mb=(ok["peak_rss_mb"] - ok["rss_start_mb"]).clip(lower=0)
                   if "rss_start_mb" in ok else np.nan)
    return ok.groupby(["task", "method"]).agg(
        time_method_s=("time_method_s", "mean"), wall_time_s=("wall_time_s", "mean"),
        peak_rss_mb=("peak_rss_mb", "mean"), rss_above_start_mb=("rss_above_start_mb", "mean"),
        peak_gpu_mb=("peak_gpu_mb", "mean"), device=("device", ran_on)).reset_index()


def pareto_front(points: pd.DataFrame, cost: str, score: str) -> pd.Series:
    """True for the points no other point beats on both axes (lower cost, higher score)."""
    order = points.sort_values([cost, score], ascending=[True, False])
    best, front = -np.inf, pd.Series(False, index=points.index)
    for idx, value in order[score].items():
        if value > best:
            front[idx], best = True, value
    return front
