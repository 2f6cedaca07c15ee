"""The leaderboard's tables, built from the exported results table.

The Streamlit app (``leaderboard/app.py``) shows them and ``stbench export``
writes them as Markdown, HTML or CSV: one code path, so a published table and
the page a reader browses never disagree.

Data flow::

    DIR/results.parquet + DIR/catalog.json   (written by `stbench run`)
      --load_results-->  table (schema-checked, + platform) and catalog
      --filter_cells-->  the cells of the chosen tasks / datasets / platforms
      --Board-->         scaled scores, task and overall rankings, seed summaries, costs
      --overview / task_table / failed_cells-->  what is shown or exported

Nothing here imports a method adapter: what a page says about a method comes
from ``catalog.json``, which the runner wrote from the adapters' metadata.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from stbench.benchmark.errors import StbenchError
from stbench.benchmark.store import FAILED, check_schema, read_catalog
from stbench.leaderboard import aggregate

RESULTS_FILE = "results.parquet"


def load_results(results_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """The exported results table of a results folder (with a ``platform`` column) and its catalog."""
    path = Path(results_dir) / RESULTS_FILE
    if not path.is_file():
        raise StbenchError(f"no results table at {path}. Expected: the --results folder of an earlier "
                           "`stbench run` (it exports results.parquet there)")
    table = check_schema(pd.read_parquet(path))
    catalog = read_catalog(results_dir)
    table["base_method"] = table["method"]
    table["method"] = board_names(table, catalog)
    platforms = {name: d.get("platform", "") for name, d in catalog["datasets"].items()}
    table["platform"] = table["dataset"].map(platforms).fillna("unknown").replace("", "unknown")
    return table, catalog


def board_names(table: pd.DataFrame, catalog: dict) -> pd.Series:
    """The name each cell's method has on the board. A parameter variant or another version is
    its own entry, ``NAME:key=value,...`` or ``NAME@VERSION`` (the forms `stbench run` and
    `stbench compare` take), so that two variants are never averaged into one row. The
    method's defaults (from the catalog; else its most recorded set) keep the bare name."""
    names = table["method"].copy()
    for name, rows in table.groupby("method"):
        meta = catalog["methods"].get(name)
        combos = rows.groupby(["method_version", "params"]).size()
        if len(combos) == 1 and meta is None:
            continue
        if meta is not None:
            default_version, default_params = str(meta.get("version", "")), meta.get("params", {})
        else:
            default_version, default_params = combos.idxmax()[0], json.loads(combos.idxmax()[1] or "{}")
        for (version, params), _ in combos.items():
            parsed = json.loads(params) if params else {}
            changed = {k: v for k, v in parsed.items() if default_params.get(k, object()) != v}
            label = name if version == default_version else f"{name}@{version}"
            if changed:
                label += ":" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))
            names[(table["method"] == name) & (table["method_version"] == version) & (table["params"] == params)] \
                = label
    return names


def filter_cells(table: pd.DataFrame, tasks=None, datasets=None, platforms=None) -> pd.DataFrame:
    """The cells of the chosen tasks, datasets and platforms (None: all). Filtering happens
    before aggregation, so scaled scores and ranks are those of the chosen slice of the board."""
    keep = pd.Series(True, index=table.index)
    for col, chosen in (("task", tasks), ("dataset", datasets), ("platform", platforms)):
        if chosen:
            keep &= table[col].isin(list(chosen))
    return table[keep]


@dataclass
class Board:
    """Everything the pages show, computed once per filtered table (the app caches it)."""

    table: pd.DataFrame
    catalog: dict = field(default_factory=lambda: {"methods": {}, "datasets": {}, "tasks": {}})

    @cached_property
    def scaled(self) -> pd.DataFrame:
        return aggregate.scale(aggregate.long_scores(self.table, aggregate.declared_metrics(self.catalog)))

    @cached_property
    def task_ranking(self) -> pd.DataFrame:
        return aggregate.task_ranking(self.table, self.scaled)

    @cached_property
    def overall_ranking(self) -> pd.DataFrame:
        return aggregate.overall_ranking(self.table, self.scaled)

    @cached_property
    def rank_stability(self) -> pd.DataFrame:
        return aggregate.rank_stability(self.table, scaled=self.scaled)

    @cached_property
    def costs(self) -> pd.DataFrame:
        return aggregate.cost_summary(self.table)

    @cached_property
    def task_error_bars(self) -> pd.DataFrame:
        return aggregate.task_score_by_seed(self.scaled)

    @cached_property
    def methods(self) -> pd.DataFrame:
        """Per method: kind, flags, device (gpu when any cell ran on CUDA), cells by outcome."""
        info = aggregate.method_info(self.table)
        info["device"] = self.table.groupby("method")["device"].agg(aggregate.ran_on)
        return info

    @property
    def tasks(self) -> list[str]:
        return sorted(self.table["task"].unique())

    def shown_methods(self, kinds=None, devices=None, uses_true_k: bool = True) -> list[str]:
        """Methods that pass the method filters (kind, CPU/GPU, whether one using the true k is shown)."""
        info = self.methods
        keep = pd.Series(True, index=info.index)
        if kinds:
            keep &= info["kind"].isin(list(kinds))
        if devices:
            keep &= info["device"].isin(list(devices))
        if not uses_true_k:
            keep &= ~info["uses_true_k"]
        return list(info.index[keep])

    def overview(self, methods: list[str] | None = None) -> pd.DataFrame:
        """One row per method: overall rank and score, the score per task, rank stability, counts."""
        ov = self.overall_ranking.set_index("method")
        per_task = self.task_ranking.pivot(index="method", columns="task", values="score")
        stab = self.rank_stability.set_index("method")
        out = pd.DataFrame(index=ov.index)
        out["kind"] = ov["kind"]
        out["overall"] = ov["score"]
        for task in per_task.columns:
            out[task] = per_task[task]
        out["rank range (95%)"] = [_rank_range(stab, m) for m in out.index]
        out["same rank (%)"] = (stab["same_rank_share"] * 100).reindex(out.index).round(0)
        out["tasks"] = ov["tasks"].fillna(0).astype(int)
        for col in ("cells", "failed", "skipped"):
            out[col] = ov[col]
        out["device"] = self.methods["device"]
        out["uses true k"] = ov["uses_true_k"]
        out["uses truth"] = ov["uses_truth"]
        return _ranked(out, "overall", methods)

    def task_table(self, task: str, metric: str | None = None, value: str = "scaled",
                   methods: list[str] | None = None) -> pd.DataFrame:
        """One row per method on one task: its task score and rank, then per (dataset · split) the
        mean and sd over seeds of ``metric`` (default: the primary), ``raw`` or ``scaled``; then cost."""
        metric = metric or aggregate.primary_metrics(self.table)[task]
        rows = self.scaled[(self.scaled["task"] == task) & (self.scaled["metric"] == metric)]
        if rows.empty:
            raise StbenchError(f"task {task!r} reports no metric {metric!r}. Expected one of "
                               f"{self.metrics(task)}")
        summ = aggregate.seed_summary(rows, value=value)
        unranked = rows.groupby(["dataset", "split"])["unranked"].first()
        summ["column"] = [f"{d} · {s}" + (" (not ranked)" if unranked.get((d, s), "") else "")
                          for d, s in zip(summ["dataset"], summ["split"])]
        tr = self.task_ranking[self.task_ranking["task"] == task].set_index("method")
        kinds = self.table.groupby("method")["method_kind"].first()
        out = pd.DataFrame(index=tr.index.union(pd.Index(summ["method"].unique())))
        tr = tr.reindex(out.index)
        tr["kind"] = kinds.reindex(out.index)
        out["kind"] = tr["kind"]
        out["task score"] = tr["score"]
        for col, part in summ.groupby("column", sort=True):
            part = part.set_index("method")
            out[col] = part["mean"]
            out[f"{col} ±sd"] = part["sd"]
        out["n seeds"] = summ.groupby("method")["n_seeds"].max()
        cost = self.costs[self.costs["task"] == task].set_index("method")
        out["method time (s)"] = cost["time_method_s"]
        out["peak RSS (MB)"] = cost["peak_rss_mb"]
        out["failed"] = tr["failed"]
        out["uses true k"] = tr["uses_true_k"]
        return _ranked(out, "task score", methods)

    def metrics(self, task: str) -> list[str]:
        """The metrics a task reports, primary first (in the task's declared order when known)."""
        reported = set(self.scaled.loc[self.scaled["task"] == task, "metric"])
        declared = aggregate.declared_metrics(self.catalog).get(task)
        if declared:
            return [m for m in declared if m in reported]
        primary = aggregate.primary_metrics(self.table)[task]
        return [primary] + sorted(reported - {primary})

    def metric_label(self, metric: str) -> str:
        """``name (↑)`` or ``name (↓)``: the direction, from the task declarations in the catalog."""
        info = aggregate.metric_info(self.catalog).get(metric)
        return metric if info is None else f"{metric} ({'↑' if info['higher_is_better'] else '↓'})"

    def unranked_splits(self, task: str) -> dict[str, str]:
        """Map "dataset · split" -> why those cells are shown but not ranked."""
        rows = self.table[(self.table["task"] == task) & (self.table["unranked"].astype(str) != "")]
        return {f"{d} · {s}": r for (d, s), r in rows.groupby(["dataset", "split"])["unranked"].first().items()}

    def cost_vs_score(self, task: str) -> pd.DataFrame:
        """Per method on one task: score with its sd over seeds, mean time and peak memory, Pareto flags."""
        bars = self.task_error_bars[self.task_error_bars["task"] == task].set_index("method")
        cost = self.costs[self.costs["task"] == task].set_index("method")
        out = bars.join(cost[["time_method_s", "peak_rss_mb", "device"]], how="inner")
        out = out.join(self.methods[["kind"]]).reset_index()
        out = out[out["kind"] != "control"].dropna(subset=["mean", "time_method_s"])
        out["pareto (time)"] = aggregate.pareto_front(out, "time_method_s", "mean")
        out["pareto (memory)"] = aggregate.pareto_front(out, "peak_rss_mb", "mean")
        return out.reset_index(drop=True)


def _rank_range(stab: pd.DataFrame, method: str) -> str:
    if method not in stab.index or pd.isna(stab.loc[method, "rank_lo"]):
        return ""
    lo, hi = int(stab.loc[method, "rank_lo"]), int(stab.loc[method, "rank_hi"])
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _ranked(out: pd.DataFrame, score: str, methods: list[str] | None) -> pd.DataFrame:
    """Keep the shown methods and rank them by ``score`` (controls are shown last, unranked)."""
    if methods is not None:
        out = out[out.index.isin(methods)]
    ranked = out["kind"] != "control"
    out.insert(0, "rank", out[score].where(ranked).rank(ascending=False, method="min"))
    out = out.sort_values(["rank", score], ascending=[True, False], na_position="last")
    return out.rename_axis("method").reset_index()


def failed_cells(table: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """The failed cells (error, timeout, oom, invalid output) with the last line of their reason."""
    failed = table[table["status"].isin(FAILED)]
    if method is not None:
        failed = failed[failed["method"] == method]
    reason = failed["error"].astype(str).map(lambda e: next((ln for ln in reversed(e.strip().splitlines())
                                                             if ln.strip()), ""))
    return failed.assign(reason=reason)[["task", "split", "dataset", "instance", "method", "seed", "status",
                                         "reason", "attempts"]].reset_index(drop=True)


def variants(table: pd.DataFrame, base_method: str) -> pd.DataFrame:
    """The recorded versions and parameter sets of one method (its board entries): what the
    regression view compares."""
    rows = table[(table["base_method"] == base_method) & (table["status"] == "ok")]
    return rows.groupby("method").agg(version=("method_version", "first"), params=("params", "first"),
                                      cells=("cell_key", "size"),
                                      seeds=("seed", lambda s: ", ".join(map(str, sorted(set(s)))))).reset_index()


# ---------------------------------------------------------------- static export (stbench export)

def published_tables(board: Board) -> dict[str, pd.DataFrame]:
    """The tables a static export publishes: the overview, then one table per task (scaled primary)."""
    tables = {"overview": board.overview()}
    for task in board.tasks:
        tables[task] = board.task_table(task)
    failed = failed_cells(board.table)
    if len(failed):
        tables["failed cells"] = failed
    return tables


def _with_pm(df: pd.DataFrame) -> pd.DataFrame:
    """Merge each 'X' / 'X ±sd' column pair into one 'mean ± sd' text column (for reading, not sorting)."""
    out = df.copy()
    for col in [c for c in df.columns if f"{c} ±sd" in df.columns]:
        sd = out.pop(f"{col} ±sd")
        out[col] = [("" if pd.isna(m) else f"{m:.3f}" if pd.isna(s) else f"{m:.3f} ± {s:.3f}")
                    for m, s in zip(out[col], sd)]
    return out


def task_descriptions(board: Board) -> dict[str, str]:
    """task -> one line: its summary, primary metric with direction and formula, and unranked splits."""
    info = aggregate.metric_info(board.catalog)
    out = {}
    for task in board.tasks:
        decl = board.catalog.get("tasks", {}).get(task)
        if not decl:
            continue
        primary = decl["primary_metric"]
        text = f"{decl['summary']} Primary metric: {board.metric_label(primary)}"
        if primary in info:
            text += f", {info[primary]['description'].rstrip('.')}"
        unranked = board.unranked_splits(task)
        if unranked:
            text += ". Not ranked: " + "; ".join(f"{col} ({why.split(':')[0]})" for col, why in unranked.items())
        out[task] = text.rstrip(".") + "."
    return out


def write_published(tables: dict[str, pd.DataFrame], path: str | Path, fmt: str, title: str,
                    descriptions: dict[str, str] | None = None) -> list[Path]:
    """Write the tables as one Markdown or HTML document, or as one CSV file per table.
    ``descriptions`` (table name -> a line) are printed above their tables."""
    descriptions = descriptions or {}
    path = Path(path)
    note = ("Scores are scaled per task, split, dataset and metric: negative control = 0, positive control "
            "= 1. A failed cell counts 0. Task scores are means of the primary metric over the ranked splits and "
            "datasets; the overall score is the mean over tasks of the task scores clipped to [0, 1]. "
            "Controls are shown, not ranked.")
    if fmt == "csv":
        written = []
        for name, df in tables.items():
            target = path if name == "overview" else path.with_name(f"{path.stem}.{name.replace(' ', '_')}.csv")
            df.to_csv(target, index=False)
            written.append(target)
        return written
    if fmt == "md":
        parts = [f"# {title}", "", note, ""]
        for name, df in tables.items():
            parts += [f"## {name}", ""] + ([descriptions[name], ""] if name in descriptions else []) + \
                [_with_pm(df).to_markdown(index=False, floatfmt=".3f"), ""]
        path.write_text("\n".join(parts))
    elif fmt == "html":
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>",
                 f"<h1>{title}</h1><p>{note}</p>"]
        for name, df in tables.items():
            parts += [f"<h2>{name}</h2>"] + ([f"<p>{html.escape(descriptions[name])}</p>"] if name in descriptions else [])
            parts += [_with_pm(df).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3f}")]
        path.write_text("\n".join(parts + ["</body></html>"]))
    else:
        raise StbenchError(f"unknown leaderboard export format {fmt!r}. Expected one of: md, html, csv")
    return [path]


def cell_count(table: pd.DataFrame) -> dict[str, int]:
    """Cells by status, for the page headers."""
    return {k: int(v) for k, v in table["status"].value_counts().items()}

