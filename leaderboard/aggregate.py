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

import numpy as np
import pandas as pd

from stbench.benchmark.store import FAILED
from stbench.tasks import get_task
from stbench.tasks.metrics import METRICS

CELL = ["task", "split", "dataset", "instance", "method", "seed"]


def long_scores(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, registered metric) with its raw value; failed cells get one NaN row
    per metric their task reports, so that they are counted rather than dropped."""
    metrics = [m for m in METRICS if m in table.columns]
    done = table[table["status"].isin(("ok",) + FAILED)]
    long = done.melt(id_vars=CELL + ["status", "method_kind", "uses_truth", "uses_true_k"], value_vars=metrics,
                     var_name="metric", value_name="raw")
    # keep the metrics each task actually reports (those with a value on some ok cell)
    reported = long[long["status"] == "ok"].dropna(subset=["raw"])[["task", "metric"]].drop_duplicates()
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
    prim = scaled["task"].map(lambda t: get_task(t).primary_metric)
    return scaled[scaled["metric"] == prim]


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


def rank_stability(table: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """How stable the overall ranks are: resample datasets (within each task and split) and
    seeds with replacement, recompute the overall ranking each time.

    Returns per ranked method its observed rank, the share of resamples that
    give it that same rank, and the 2.5–97.5 % range of its ranks.
    """
    scaled = scale(long_scores(table))
    prim = _primary(scaled).copy()
    prim["scaled"] = prim["scaled"].clip(0, 1)
    # one value per (task, split, dataset, method, seed): the unit resampled
    unit = prim.groupby(["task", "split", "dataset", "method", "seed"])["scaled"].mean().reset_index()
    kinds = table.groupby("method")["method_kind"].first()
    unit = unit[~unit["method"].map(kinds).eq("control")]
    observed = overall_ranking(table, scaled).set_index("method")["rank"].dropna()
    rng = np.random.default_rng(seed)
    groups = unit[["task", "split"]].drop_duplicates().itertuples(index=False)
    groups = list(groups)
    seeds = np.sort(unit["seed"].unique())
    ranks = []
    for _ in range(n_boot):
        parts = []
        for task, split in groups:
            sub = unit[(unit["task"] == task) & (unit["split"] == split)]
            datasets = sub["dataset"].unique()
            for i, ds in enumerate(rng.choice(datasets, size=len(datasets), replace=True)):
                for j, s in enumerate(rng.choice(seeds, size=len(seeds), replace=True)):
                    parts.append(sub[(sub["dataset"] == ds) & (sub["seed"] == s)].assign(dataset=f"{ds}#{i}",
                                                                                        seed=j))
        boot = pd.concat(parts)
        per_task = boot.groupby(["task", "split", "dataset", "method"])["scaled"].mean() \
            .groupby(["task", "method"]).mean()
        score = per_task.groupby("method").mean()
        ranks.append(score.rank(ascending=False, method="min"))
    ranks = pd.DataFrame(ranks)
    out = pd.DataFrame({"rank": observed})
    out["same_rank_share"] = [(ranks[m] == r).mean() if m in ranks else np.nan for m, r in observed.items()]
    out["rank_lo"] = [ranks[m].quantile(0.025) if m in ranks else np.nan for m in observed.index]
    out["rank_hi"] = [ranks[m].quantile(0.975) if m in ranks else np.nan for m in observed.index]
    return out.reset_index().sort_values("rank").reset_index(drop=True)
