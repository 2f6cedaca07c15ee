"""The stbench leaderboard (SPEC §8), a Streamlit script: ``stbench leaderboard --results DIR``.

Views: **real data** (the ranking, shown by default) and the **synthetic
sanity** view (the public simulator's tissue: a check that methods work, never
a ranking, since a method can re-run the simulator). Every filter and page
choice lives in the URL, so a view can be linked.

Pages: **Overview** (the method × task matrix: rank, score and coverage per
task), **Tasks** (per-task table, raw or scaled, mean ± sd over seeds, coverage
and rank stability, a per-slice breakdown; score bars
with error bars; accuracy vs runtime and vs peak memory with the Pareto
front; spatial maps of truth vs prediction), **Methods** (paper, code,
versions, parameters, deviations, failed cells with their reason) and
**Regression** (two recorded versions or variants of a method, compared cell
by cell as ``stbench compare`` does).

Why it is built this way: the app reads ``DIR/results.parquet`` and
``DIR/catalog.json`` once (cached, keyed on the files' modification times), not
MLflow per page, so a page renders in well under a second; every number comes
from ``leaderboard/tables.py``, the code ``stbench export`` publishes with; and
it imports no adapter and executes nothing a submission contains: it shows
recorded numbers, metadata and PNG artifacts inside the results folder.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import altair as alt
import pandas as pd
import streamlit as st

from stbench.errors import StbenchError
from stbench.benchmark.store import REFERENCE_DIR
from stbench.leaderboard import OVERLAY_ENV, RESULTS_ENV, aggregate
from stbench.leaderboard.tables import (VIEWS, Board, cell_count, default_view, failed_cells, filter_cells,
                                        format_number, load_board, load_results, task_descriptions, variants, YOURS)

PAGES = ("Overview", "Tasks", "Methods", "Regression")
SCALE_NOTE = ("Scaled scores: negative control = 0, positive control = 1, per task, split, dataset and metric "
              "(a method can fall below 0 or rise above 1). A failed cell counts 0. The task score is the mean "
              "scaled primary metric over the ranked splits and datasets (a split marked not ranked is shown, never "
              "scored). A method is ranked on a task only when it has a record for every cell of the current "
              "selection (\"n of m\" cells); otherwise it is incomplete: shown below the ranked methods with its "
              "partial score, never ranked. No rank crosses tasks unless every ranked method solves every task "
              "shown (then: mean of the task scores clipped to [0, 1]). Controls are shown, not ranked.")
HIDE_DEPLOY = "<style>[data-testid='stAppDeployButton'], .stDeployButton {display: none !important;}</style>"


# ---------------------------------------------------------------- data (read once, cached)

def _stamp(results_dir: Path | None) -> tuple:
    """Modification times of the files the app reads: a new `stbench run` invalidates the cache."""
    folders = [f for f in (results_dir, REFERENCE_DIR if _overlay() else None) if f is not None]
    return tuple(p.stat().st_mtime_ns if p.is_file() else 0
                 for f in folders for p in (f / "results.parquet", f / "catalog.json"))


def _overlay() -> bool:
    return os.environ.get(OVERLAY_ENV) == "1"


@st.cache_data(show_spinner=False, max_entries=4)
def _load(results_dir: str, stamp: tuple) -> tuple[pd.DataFrame, dict]:
    if _overlay():
        return load_board(Path(results_dir) if results_dir else None)[:2]
    return load_results(results_dir)


@st.cache_resource(show_spinner=False, max_entries=32)
def _board(results_dir: str, stamp: tuple, view: str, tasks: tuple, datasets: tuple, platforms: tuple,
           splits: tuple, instances: tuple, seeds: tuple) -> Board:
    table, catalog = _load(results_dir, stamp)
    return Board(filter_cells(table, tasks, datasets, platforms, splits, instances, seeds, view=view), catalog)


def _column_config(df: pd.DataFrame) -> dict:
    config = {}
    if "method" in df.columns:  # variant names are long; keep them readable while scrolling sideways
        config["method"] = st.column_config.TextColumn("method", width="medium", pinned=True)
    return config


def for_reading(df: pd.DataFrame):
    """The grid a reader sees: each number formatted as the exports format it (``format_number``:
    integer ranks, no "-0.000"), while the values underneath stay numbers, so a click on a header
    still sorts by value."""
    formats = {c: functools.partial(format_number, column=c) for c in df.columns
               if pd.api.types.is_float_dtype(df[c])}
    return df.style.format(formats, na_rep="")


def _show_table(df: pd.DataFrame, key: str, all_rows: bool = False) -> None:
    """A sortable table; ``all_rows`` sizes it to show every row (rankings) instead of scrolling.
    A missing value is a blank cell (``placeholder``), not Streamlit's default "None"."""
    height = min(38 + 35 * len(df), 1200) if all_rows else "auto"
    st.dataframe(for_reading(df), hide_index=True, width="stretch", height=height, column_config=_column_config(df),
                 key=key, placeholder="")


def _query_multi(label: str, options: list, param: str, container, **kwargs) -> list:
    """A multiselect whose choices are mirrored in the URL (?param=a,b), so a filtered view
    can be shared; values not among the options are dropped."""
    wanted = [v for v in str(st.query_params.get(param, "")).split(",") if v]
    as_text = {str(o): o for o in options}
    key = f"f_{param}"
    if key not in st.session_state:
        st.session_state[key] = [as_text[v] for v in wanted if v in as_text]
    chosen = container.multiselect(label, options, key=key, **kwargs)
    if chosen:
        st.query_params[param] = ",".join(map(str, chosen))
    elif param in st.query_params:
        del st.query_params[param]
    return chosen


def _query_choice(label: str, options: list, param: str, container=st, **kwargs):
    """A selectbox whose choice is mirrored in the URL (?param=value), so a page can be linked."""
    wanted = st.query_params.get(param)
    index = options.index(wanted) if wanted in options else 0
    choice = container.selectbox(label, options, index=index, key=f"choice_{param}", **kwargs)
    st.query_params[param] = choice
    return choice


# ---------------------------------------------------------------- pages

def overview_page(board: Board, shown: list[str]) -> None:
    st.header("Overview")
    st.caption(SCALE_NOTE)
    table = board.overview(shown)
    _show_table(table, "overview_table", all_rows=True)
    st.caption("Per task: rank (complete methods only), score and cells recorded of the task's cells. "
               "uses true k: the method was given the true number of domains. unsandboxed: cells that ran "
               "without a sandbox (a kernel without Landlock), whose method could have read the truth. Rank "
               "stability per task is on each task's page.")
    loose = table[table["unsandboxed"] > 0] if "unsandboxed" in table else table.iloc[:0]
    if len(loose):
        st.warning(f"{len(loose)} method(s) have cells that ran without a sandbox: "
                   + ", ".join(f"{m} ({n})" for m, n in zip(loose["method"], loose["unsandboxed"])))
    descriptions = task_descriptions(board)
    if descriptions:
        with st.expander("What each task measures"):
            st.markdown("\n".join(f"* **{t}**: {d}" for t, d in descriptions.items()))
    if "overall score" in table:
        ranked = table.dropna(subset=["overall score"])
        chart = alt.Chart(ranked).mark_bar().encode(
            x=alt.X("overall score:Q", title="overall score (mean of clipped task scores)",
                    scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("method:N", sort="-x", title=None), color=alt.Color("kind:N"),
            tooltip=["method", "kind", alt.Tooltip("overall score:Q", format=".3f")])
        st.altair_chart(chart, width="stretch")
    failed = failed_cells(board.table)
    with st.expander(f"Failed cells: {len(failed)}"):
        if len(failed):
            _show_table(failed, "overview_failed")
        else:
            st.write("No cell failed.")


def task_page(board: Board, shown: list[str], results_dir: Path) -> None:
    task = _query_choice("Task", board.tasks, "task")
    st.header(f"Task: {task}")
    decl = board.catalog.get("tasks", {}).get(task)
    info = aggregate.metric_info(board.catalog)
    if decl:
        st.write(decl["summary"])
        st.markdown("\n".join(f"* `{split}`: {text}" for split, text in decl["splits"].items() if text))
    datasets = {d: board.catalog["datasets"].get(d, {}) for d in sorted(board.table.loc[board.table["task"] == task,
                                                                                      "dataset"].unique())}
    st.caption("Datasets: " + "; ".join(f"**{d}** ({m.get('platform', '?')}"
                                        + (f", {m['tissue']}" if m.get("tissue") else "") + ")"
                                        for d, m in datasets.items()))
    left, right = st.columns(2)
    metrics = board.metrics(task)
    metric = left.selectbox("Metric", metrics, index=0, key="task_metric", format_func=board.metric_label,
                            help=f"the primary metric of {task} is {metrics[0]}; ↑ higher is better, ↓ lower")
    if metric in info:
        st.caption(f"**{board.metric_label(metric)}**: {info[metric]['description']}")
    for column, reason in board.unranked_splits(task).items():
        st.warning(f"{column} is shown but not ranked: {reason}")
    value = right.radio("Values", ["scaled", "raw"], horizontal=True, key="task_value",
                        help="scaled: negative control = 0, positive control = 1; raw: the metric itself")
    st.caption(f"Mean over seeds (±sd columns) of {metric} ({value}) per dataset · split; task score and rank: "
               f"scaled primary metric ({metrics[0]}). Click a column header to sort.")
    _show_table(board.task_table(task, metric, value, shown), "task_table", all_rows=True)
    with st.expander("Per slice: mean ± sd over seeds"):
        _show_table(board.instance_table(task, metric, value, shown), "instance_table")

    points = board.cost_vs_score(task)
    points = points[points["method"].isin(shown)]
    if points.empty:
        st.info("No ranked method has a score on this task with the current filters.")
    else:
        st.subheader("Task score with error bars (sd over seeds)")
        st.altair_chart(_score_bars(points), width="stretch")
        st.subheader("Accuracy vs cost")
        tab_time, tab_mem, tab_own = st.tabs(["vs runtime", "vs peak memory", "vs memory above start"])
        tab_time.altair_chart(_pareto_chart(points, "time_method_s", "method time per cell (s, log)",
                                            "pareto (time)"), width="stretch")
        tab_mem.altair_chart(_pareto_chart(points, "peak_rss_mb", "peak resident memory per cell (MB, log)",
                                           "pareto (memory)"), width="stretch")
        own = points.dropna(subset=["rss_above_start_mb"])
        if own.empty:
            tab_own.info("Not recorded for these cells (results from before stbench measured the child's "
                         "memory at start).")
        else:
            tab_own.altair_chart(_pareto_chart(own, "rss_above_start_mb", "peak memory above the child's "
                                               "memory at start (MB, log)", "pareto (memory above start)"),
                                 width="stretch")
            tab_own.caption("Every cell's child starts with the harness's memory (torch and the stack, "
                            "~330 MB); this axis is what the method itself added.")
        st.caption("The line joins the Pareto front: methods no other method beats on both cost and score.")
    _spatial_maps(board, task, shown, results_dir)


def _score_bars(points: pd.DataFrame) -> alt.Chart:
    pts = points.assign(lo=points["mean"] - points["sd"], hi=points["mean"] + points["sd"])
    # ranked methods first, then the incomplete ones (faded, "n of m" in their label): a method
    # that ran on fewer cells is never drawn as if it outranked the complete ones
    pts["order"] = pts["mean"].where(pts["complete"], pts["mean"] - 10)
    base = alt.Chart(pts).encode(y=alt.Y("label:N", sort=alt.EncodingSortField("order", order="descending"),
                                         title=None, axis=alt.Axis(labelLimit=420)))
    bars = base.mark_bar().encode(x=alt.X("mean:Q", title="task score (scaled)"), color="kind:N",
                                  opacity=alt.condition("datum.complete", alt.value(1.0), alt.value(0.3)),
                                  tooltip=["method", alt.Tooltip("mean:Q", format=".3f"),
                                           alt.Tooltip("sd:Q", format=".3f"), "n_seeds", "complete"])
    return bars + base.mark_rule(color="black").encode(x="lo:Q", x2="hi:Q")


def _pareto_chart(points: pd.DataFrame, cost: str, title: str, front: str) -> alt.Chart:
    pts = points[points[cost] > 0]
    dots = alt.Chart(pts).mark_circle(size=90).encode(
        x=alt.X(f"{cost}:Q", title=title, scale=alt.Scale(type="log")),
        y=alt.Y("mean:Q", title="task score (scaled)"), color="kind:N",
        opacity=alt.condition("datum.complete", alt.value(1.0), alt.value(0.3)),  # incomplete: faded, off the front
        tooltip=["label", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip(f"{cost}:Q", format=".3g"), "device"])
    line = alt.Chart(pts[pts[front]].sort_values(cost)).mark_line(color="gray", strokeDash=[4, 3]).encode(
        x=f"{cost}:Q", y="mean:Q")
    # Label only the front: labels on every point overlap as soon as methods cluster.
    labels = alt.Chart(pts[pts[front]]).mark_text(align="left", dx=7, dy=-7).encode(
        x=f"{cost}:Q", y="mean:Q", text="method:N")
    return line + dots + labels


def _artifact_path(uri: str, results_dir: Path) -> Path | None:
    """The local PNG a cell's artifact URI names, only when it lies inside the results folder."""
    if not uri:
        return None
    parsed = urlparse(uri)
    path = Path(unquote(parsed.path)) if parsed.scheme in ("file", "") else None
    if path is None or not path.is_file():
        return None
    try:
        path.resolve().relative_to(results_dir.resolve())
    except ValueError:
        return None
    return path


def _spatial_maps(board: Board, task: str, shown: list[str], results_dir: Path) -> None:
    cells = board.table[(board.table["task"] == task) & (board.table["status"] == "ok")
                        & (board.table["artifact"] != "")]
    st.subheader("Spatial maps: truth vs prediction")
    if cells.empty:
        st.info("No spatial map was recorded for this task (integration has none; cells recorded on a remote "
                "MLflow server keep theirs there).")
        return
    cols = st.columns(4)
    problem = cols[0].selectbox("Dataset · split", sorted((cells["dataset"] + " · " + cells["split"]).unique()),
                                key="map_problem")
    dataset, split = problem.split(" · ")
    cells = cells[(cells["dataset"] == dataset) & (cells["split"] == split)]
    instance = cols[1].selectbox("Slice", sorted(cells["instance"].unique()), key="map_instance")
    seed = cols[2].selectbox("Seed", sorted(cells["seed"].unique()), key="map_seed")
    cells = cells[(cells["instance"] == instance) & (cells["seed"] == seed)]
    ranked = board.task_ranking[board.task_ranking["task"] == task]  # by rank, controls last
    options = [m for m in ranked["method"] if m in set(cells["method"]) and m in shown]
    chosen = cols[3].multiselect("Methods", options, default=options[:2], key="map_methods")
    for method, col in zip(chosen, st.columns(max(1, len(chosen)))):
        uri = cells.loc[cells["method"] == method, "artifact"].iloc[0]
        path = _artifact_path(uri, results_dir)
        if path is None:
            col.warning(f"{method}: the map {uri!r} is not a file inside {results_dir}")
        else:
            col.image(str(path), caption=f"{method} · {dataset} {instance} · seed {seed}")


def method_page(board: Board, catalog: dict) -> None:
    methods = sorted(board.table["method"].unique())
    method = _query_choice("Method", methods, "method")
    base = board.table.loc[board.table["method"] == method, "base_method"].iloc[0]
    meta = catalog["methods"].get(base, {})
    info = board.methods.loc[method]
    st.header(f"Method: {method}")
    if meta.get("summary"):
        st.write(meta["summary"])
    recorded = sorted(board.table.loc[board.table["base_method"] == base, "method_version"].unique())
    flags = [f for f, on in (("uses the true k", info["uses_true_k"]), ("uses the truth (control)",
                                                                        info["uses_truth"])) if on]
    facts = {"kind": info["kind"], "versions recorded": ", ".join(recorded),
             "GPU-capable": "yes" if meta.get("gpu") else "no", "ran on": info["device"],
             "flags": ", ".join(flags) or "none",
             "cells": f"{info['cells']} ({info['failed']} failed, {info['skipped']} skipped)"}
    st.table(pd.DataFrame({"": list(facts), "value": [str(v) for v in facts.values()]}).set_index(""))
    paper = meta.get("paper") or ""
    if paper or meta.get("paper_url"):
        st.markdown(f"**Paper:** {paper} {'[link](' + meta['paper_url'] + ')' if meta.get('paper_url') else ''}")
    if meta.get("code_url"):
        st.markdown(f"**Code:** [{meta['code_url']}]({meta['code_url']})")
    if not meta:
        st.info("No metadata for this method in catalog.json (written by `stbench run`).")
    st.subheader("Parameters")
    st.caption("Defaults, then every version and parameter set recorded: each is its own entry on the board "
               "(a variant's parameters are part of its cache key).")
    st.json(meta.get("params", {}), expanded=True)
    _show_table(variants(board.table, base), "method_variants")
    st.subheader("Deviations from the paper")
    st.markdown(meta.get("deviations") or "_None stated._")
    st.subheader("Scores per task")
    scores = board.task_ranking[board.task_ranking["method"] == method]
    scores = scores.assign(cells=[f"{c} of {o}" for c, o in zip(scores["cells"], scores["of"])])
    _show_table(scores[["task", "rank", "score", "cells", "failed"]], "method_scores")
    st.caption("rank: only where the method has a record for every cell of the task in this selection.")
    st.subheader("Failed cells")
    failed = failed_cells(board.table, method)
    if failed.empty:
        st.success("No failed cell.")
    else:
        _show_table(failed, "method_failed")


def regression_page(board: Board) -> None:
    from stbench.leaderboard.compare import compare

    st.header("Regression: two versions of a method")
    st.caption("Cells are paired by task, split, dataset, slice and seed (by seed means when the seed sets do "
               "not overlap). Difference = B − A, oriented so that positive is better, with a paired-t 95 % "
               "interval. The same comparison as `stbench compare A B`.")
    bases = [m for m in sorted(board.table["base_method"].unique()) if len(variants(board.table, m)) > 1]
    if not bases:
        st.info("No method has two recorded versions or parameter variants yet. Record one with "
                "`stbench run --methods NAME:key=value` (or a new version of the adapter), then compare.")
        return
    base = _query_choice("Method", bases, "regression_method")
    var = variants(board.table, base)
    _show_table(var, "regression_variants")
    entries = list(var["method"])
    left, right = st.columns(2)
    a = left.selectbox("A (baseline)", entries, index=entries.index(base) if base in entries else 0,
                       key="regression_a")
    b = right.selectbox("B (candidate)", entries, index=next(i for i, e in enumerate(entries) if e != a),
                        key="regression_b")
    sides = [board.table[board.table["method"] == entry] for entry in (a, b)]  # failed cells count
    try:
        result = compare(*sides, catalog=board.catalog)
    except StbenchError as err:
        st.error(str(err))
        return
    verdicts = result.table["verdict"].value_counts().to_dict()
    st.write(f"{result.n_pairs} paired cells (paired by {result.pairing}); verdicts: {json.dumps(verdicts)}")
    if result.regressed_primary:
        st.error("A primary metric regressed: `stbench compare --fail-on-regression` would exit 1.")
    _show_table(result.table, "regression_table")
    if len(result.failures):
        st.subheader(f"Failed or missing in B: {len(result.failures)} cell(s)")
        st.caption("Cells ok in A that B failed, skipped or never ran: each is a regression of its task's primary "
                   "metric, whatever B's other cells say.")
        _show_table(result.failures, "regression_failures")
    with st.expander("Markdown (for a CI comment)"):
        st.code(result.markdown(a, b), language="markdown")


# ---------------------------------------------------------------- the script

def empty_state(results_dir: Path, message: str) -> None:
    """What a reader sees before anything was recorded: what to run to fill the board."""
    st.title("stbench leaderboard")
    st.info(f"{message}\n\nTo fill this board, run the benchmark into this folder, for example:\n\n"
            f"```\nstbench run --results {results_dir}\n"
            f"stbench run --datasets dlpfc starmap_mpfc --tasks domain_identification --results {results_dir}\n```"
            "\n\nThe first uses the built-in synthetic tissue (a sanity check); the second ranks methods on "
            "real data (set STBENCH_DATA to the folder of the .h5ad files). Then reload this page.")


def main() -> None:
    st.set_page_config(page_title="stbench leaderboard", layout="wide", menu_items={})
    st.markdown(HIDE_DEPLOY, unsafe_allow_html=True)
    named = os.environ.get(RESULTS_ENV, "" if _overlay() else "stbench-results")
    results_dir = Path(named) if named else None
    stamp = _stamp(results_dir)
    try:
        table, catalog = _load(str(results_dir or ""), stamp)
    except StbenchError as err:
        st.error(str(err))
        empty_state(results_dir or Path("stbench-results"), "No results are recorded here yet.")
        st.stop()
    if table.empty:
        empty_state(results_dir or Path("stbench-results"), "The results table is empty.")
        st.stop()
    st.title("stbench leaderboard")
    if _overlay():
        mine = table["method"].str.endswith(YOURS)
        st.caption("The published reference board." if results_dir is None or not mine.any() else
                   f"Your cells ({int(mine.sum())}, methods marked *(yours)*) on the reference board, which is "
                   "limited to the problems you ran (task, split, dataset, slice, seed): ranks compare like with like.")
    counts = cell_count(table)
    st.caption(f"{len(table)} cells ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
               f"last recorded {table['finished_at'].max()[:19].replace('T', ' ')} UTC")

    side = st.sidebar
    wanted = str(st.query_params.get("page", "overview")).capitalize()
    page = side.radio("Page", PAGES, index=PAGES.index(wanted) if wanted in PAGES else 0, key="page")
    st.query_params["page"] = page.lower()
    views = [v for v in VIEWS if (table["synthetic"] == (v == "sanity")).any()]
    view = _view_choice(side, views, default_view(table))
    side.header("Filters")
    side.caption("An empty filter keeps everything. Ranks and coverage are computed on the selection.")
    in_view = filter_cells(table, view=view)
    tasks = _query_multi("Task", sorted(in_view["task"].unique()), "tasks", side)
    datasets = _query_multi("Dataset", sorted(in_view["dataset"].unique()), "datasets", side)
    platforms = _query_multi("Platform", sorted(in_view["platform"].unique()), "platforms", side)
    splits = _query_multi("Split", sorted(in_view["split"].unique()), "splits", side)
    instances = _query_multi("Slice", sorted(in_view["instance"].astype(str).unique()), "slices", side)
    seeds = _query_multi("Seed", sorted(int(s) for s in in_view["seed"].unique()), "seeds", side)
    kinds = _query_multi("Method kind", sorted(in_view["method_kind"].unique()), "kinds", side)
    devices = _query_multi("Ran on", ["cpu", "gpu"], "devices", side)
    true_k = side.checkbox("Show methods that use the true k", value=st.query_params.get("true_k") != "0",
                           key="f_true_k", help="domain methods told the true number of domains have an easier task")
    if true_k and "true_k" in st.query_params:
        del st.query_params["true_k"]
    elif not true_k:
        st.query_params["true_k"] = "0"

    board = _board(str(results_dir or ""), stamp, view, tuple(tasks), tuple(datasets), tuple(platforms), tuple(splits),
                   tuple(instances), tuple(seeds))
    if view == "sanity":
        st.warning("Synthetic sanity view: the built-in tissue comes from a public simulator, which a method "
                   "could re-run to see the truth. These numbers check that methods work; they are not the "
                   "ranking (the real-data view is).")
    if board.table.empty:
        st.warning("No cell matches these filters.")
        st.stop()
    shown = board.shown_methods(kinds, devices, true_k)
    if page == "Overview":
        overview_page(board, shown)
    elif page == "Tasks":
        task_page(board, shown, results_dir)
    elif page == "Methods":
        method_page(board, catalog)
    else:
        regression_page(board)


def _view_choice(side, views: list[str], default: str) -> str:
    """Real data or the synthetic sanity view, mirrored in the URL (?view=real)."""
    wanted = st.query_params.get("view", default)
    views = views or [default]
    index = views.index(wanted) if wanted in views else (views.index(default) if default in views else 0)
    view = side.radio("View", views, index=index, key="view", format_func=VIEWS.get)
    st.query_params["view"] = view
    return view


if __name__ == "__main__":  # how Streamlit (and AppTest) runs this script
    main()
