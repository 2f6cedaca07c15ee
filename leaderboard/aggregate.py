"""From the results table to leaderboard numbers: pure functions, no I/O.

Data flow::

    results table (one row per cell, benchmark/store.py:SCHEMA)
      --long_scores-->   one row per (cell, registered metric): raw value
      --scale-->         + scaled: negative control = 0, positive control = 1,
                           per (task, split, dataset, metric); failed cells count as 0
      --seed_summary-->  mean over a dataset's instances per seed, then mean ± sd over seeds
      --task_ranking-->  per task: mean scaled primary metric over (split, dataset), then rank
      --overall_ranking-> mean over tasks of the clipped task scores, then rank
      --rank_stability--> bootstrap over datasets and seeds: how often each rank holds

Why these choices (Open Problems' experience, anchors.md §1a): scaling between
the controls makes metrics and datasets comparable; mean-then-rank keeps a
method's margin (rank-then-mean throws it away); controls are shown but not
ranked; a failed cell is a zero, not a silently missing value, so a method
cannot gain by crashing on hard datasets. Clipping to [0, 1] happens only in
the overall aggregate, so a method better than the positive control on one
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


def _rank(scores: pd.DataFrame, by: list[str], kinds: pd.Series) -> pd.Series:
    ranked = scores[~scores["method"].map(kinds).eq("control")]
    return ranked.groupby(by)["score"].rank(ascending=False, method="min")


def method_info(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: kind, flags, and its cells by outcome."""
    info = table.groupby("method").agg(kind=("method_kind", "first"), uses_truth=("uses_truth", "any"),
                                       uses_true_k=("uses_true_k", "any"), cells=("status", "size"),
                                       failed=("status", lambda s: int(s.isin(FAILED).sum())),
                                       skipped=("status", lambda s: int((s == "skipped").sum())))
    return info


def task_ranking(table: pd.DataFrame, scaled: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per task: score (mean scaled primary metric), rank (controls unranked), failed cells, flags.

    ``scaled`` (``scale(long_scores(table))``) may be passed in when the caller has it already.
    """
    scores = task_scores(scale(long_scores(table)) if scaled is None else scaled)
    kinds = table.groupby("method")["method_kind"].first()
    scores["rank"] = _rank(scores, ["task"], kinds)
    failed = table[table["status"].isin(FAILED)].groupby(["task", "method"]).size().rename("failed")
    scores = scores.join(failed, on=["task", "method"]).fillna({"failed": 0})
    scores["failed"] = scores["failed"].astype(int)
    scores = scores.join(method_info(table)[["kind", "uses_truth", "uses_true_k"]], on="method")
    return scores.sort_values(["task", "rank", "score"], ascending=[True, True, False]).reset_index(drop=True)


def overall_ranking(table: pd.DataFrame, scaled: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: mean over the tasks it solves of its clipped task score, then rank."""
    per_task = task_scores(scale(long_scores(table)) if scaled is None else scaled, clip=True)
    overall = per_task.groupby("method")["score"].agg(score="mean", tasks="size").reset_index()
    kinds = table.groupby("method")["method_kind"].first()
    overall["rank"] = _rank(overall.assign(all=1), ["all"], kinds)
    # every method appears, also one with nothing scored (all skipped): its counts say why
    overall = method_info(table).join(overall.set_index("method")).reset_index()
    return overall.sort_values(["rank", "score"], ascending=[True, False]).reset_index(drop=True)


def rank_stability(table: pd.DataFrame, n_boot: int = 200, seed: int = 0,
                   scaled: pd.DataFrame | None = None) -> pd.DataFrame:
    """How stable the overall ranks are: resample datasets (within each task and split) and,
    for each drawn dataset, seeds with replacement; recompute the overall ranking each time.

    Returns per ranked method its observed rank, the share of resamples that
    give it that same rank, and the 2.5–97.5 % range of its ranks. Vectorised:
    each (task, split) is a (dataset, seed, method) array indexed by all
    resamples at once, so 200 resamples of a 10,000-cell table take milliseconds.
    """
    scaled = scale(long_scores(table)) if scaled is None else scaled
    prim = _primary(scaled).copy()
    prim["scaled"] = prim["scaled"].clip(0, 1)
    # one value per (task, split, dataset, method, seed): the unit resampled
    unit = prim.groupby(["task", "split", "dataset", "method", "seed"])["scaled"].mean().reset_index()
    kinds = table.groupby("method")["method_kind"].first()
    unit = unit[~unit["method"].map(kinds).eq("control")]
    observed = overall_ranking(table, scaled).set_index("method")["rank"].dropna()
    methods = np.sort(unit["method"].unique())
    seeds = np.sort(unit["seed"].unique())
    tasks = np.sort(unit["task"].unique())
    rng = np.random.default_rng(seed)
    total = np.zeros((n_boot, len(tasks), len(methods)))
    count = np.zeros_like(total)
    for (task, _), sub in unit.groupby(["task", "split"], sort=True):
        datasets = np.sort(sub["dataset"].unique())
        values = np.full((len(datasets), len(seeds), len(methods)), np.nan)
        values[np.searchsorted(datasets, sub["dataset"]), np.searchsorted(seeds, sub["seed"]),
               np.searchsorted(methods, sub["method"])] = sub["scaled"].to_numpy()
        d_idx = rng.integers(0, len(datasets), (n_boot, len(datasets), 1))
        s_idx = rng.integers(0, len(seeds), (n_boot, len(datasets), len(seeds)))
        draw = values[d_idx, s_idx]  # (boot, dataset draw, seed draw, method)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a method without this dataset: all-NaN
            per_dataset = np.nanmean(draw, axis=2)
        t = np.searchsorted(tasks, task)
        total[:, t] += np.nansum(per_dataset, axis=1)
        count[:, t] += np.isfinite(per_dataset).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        score = np.nanmean(total / count, axis=1)  # (boot, method): mean over the tasks solved
    ranks = pd.DataFrame(-score, columns=methods).rank(axis=1, method="min")
    out = pd.DataFrame({"rank": observed})
    out["same_rank_share"] = [(ranks[m] == r).mean() if m in ranks else np.nan for m, r in observed.items()]
    out["rank_lo"] = [ranks[m].quantile(0.025) if m in ranks else np.nan for m in observed.index]
    out["rank_hi"] = [ranks[m].quantile(0.975) if m in ranks else np.nan for m in observed.index]
    return out.reset_index().sort_values("rank").reset_index(drop=True)


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
    """Per (task, method): mean method time and peak memory over its ok cells, and the device it ran on."""
    ok = table[table["status"] == "ok"]
    return ok.groupby(["task", "method"]).agg(
        time_method_s=("time_method_s", "mean"), wall_time_s=("wall_time_s", "mean"),
        peak_rss_mb=("peak_rss_mb", "mean"), peak_gpu_mb=("peak_gpu_mb", "mean"),
        device=("device", ran_on)).reset_index()


def pareto_front(points: pd.DataFrame, cost: str, score: str) -> pd.Series:
    """True for the points no other point beats on both axes (lower cost, higher score)."""
    order = points.sort_values([cost, score], ascending=[True, False])
    best, front = -np.inf, pd.Series(False, index=points.index)
    for idx, value in order[score].items():
        if value > best:
            front[idx], best = True, value
    return front
