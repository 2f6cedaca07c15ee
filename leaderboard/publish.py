"""``stbench export --format html|md``: the board as one document a reader can trust alone.

The HTML file is self-contained (inline CSS and SVG charts, no script, no
network): per-task tables, score bars with error bars, cost vs score, with the
task, metric and dataset descriptions, the metrics' directions, numbers
formatted for reading (integer ranks, percentages, blanks rather than "nan"),
and what the numbers were made with: the export date, the stbench version and
git commit(s) of the cells, and the machine(s) they ran on. It names no local
path. ``--format md`` writes the same tables for a README or a CI comment.

Every number comes from :class:`~stbench.leaderboard.tables.Board`, the code the
app shows, so a published board and the browsed one never disagree.
"""

from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from stbench import __version__
from stbench.errors import StbenchError
from stbench.leaderboard.tables import VIEWS, Board, failed_cells, format_number, task_descriptions

KIND_COLOURS = {"seed": "#4c78a8", "peer": "#f58518", "baseline": "#54a24b", "control": "#9d9d9d"}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2433;margin:2rem auto;
max-width:1200px;padding:0 1rem}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #e3e7ee;padding-bottom:.2rem}
.meta{color:#5b6475;font-size:.9rem}.note{background:#f5f7fa;border-left:4px solid #4c78a8;padding:.6rem .9rem}
.warn{background:#fff6e5;border-left:4px solid #f58518;padding:.6rem .9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.86rem;display:block;overflow-x:auto}
th,td{padding:.28rem .55rem;border-bottom:1px solid #e3e7ee;text-align:right;white-space:nowrap}
th{background:#f5f7fa;position:sticky;top:0}td:first-child,th:first-child{text-align:left}
td.text{text-align:left}tr.incomplete td{color:#7a8294;font-style:italic}tr.control td{color:#7a8294}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.charts figure{margin:0}figcaption{color:#5b6475;font-size:.82rem}
svg text{font:11px system-ui,sans-serif;fill:#1d2433}
"""


# ---------------------------------------------------------------- numbers for reading

def readable(df: pd.DataFrame) -> pd.DataFrame:
    """Text for a reader: integer ranks, percentages, 3-decimal values (mean ± sd pairs merged),
    no "-0.000", blanks for missing values, yes/blank for flags."""
    out = df.copy()
    for col in [c for c in df.columns if f"{c} ±sd" in df.columns]:
        sd = out.pop(f"{col} ±sd")
        out[col] = [_pm(m, s) for m, s in zip(out[col], sd)]
    for col in out.columns:
        values = out[col]
        if pd.api.types.is_bool_dtype(values):
            out[col] = values.map(lambda v: "yes" if v else "")
        elif pd.api.types.is_numeric_dtype(values):
            out[col] = values.map(lambda v, c=col: format_number(v, c))
        else:
            out[col] = values.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out


def _pm(m, s) -> str:
    if pd.isna(m):
        return ""
    return format_number(m, "") if pd.isna(s) else f"{format_number(m, '')} ± {format_number(s, '')}"


# ---------------------------------------------------------------- provenance

def provenance(board: Board) -> dict[str, str]:
    """What the numbers were made with: from the cells themselves, never from this machine."""
    table = board.table
    commits = table["git_commit"].astype(str).replace("", "unknown").value_counts()
    machines, gpus = set(), set(table.loc[table["device"] == "cuda", "device_name"].astype(str)) - {""}
    for text in table["versions"].astype(str).unique():
        try:
            machines.add(json.loads(text).get("cpu", ""))
        except json.JSONDecodeError:
            continue
    machines.discard("")
    return {"exported": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "stbench": __version__,
            "git commit": ", ".join(f"{c[:12]}{'+dirty' if c.endswith('+dirty') else ''} ({n} cells)"
                                    for c, n in commits.items()),
            "CPU": "; ".join(sorted(machines)) or "not recorded",
            "GPU": "; ".join(sorted(gpus)) or "none used",
            "cells": f"{len(table)} ({', '.join(f'{n} {s}' for s, n in table['status'].value_counts().items())})",
            "last recorded": str(table["finished_at"].max())[:16].replace("T", " ") + " UTC"}


# ---------------------------------------------------------------- the document

def sections(board: Board) -> list[dict]:
    """The document's sections in order: the overview, each task, failed cells. Each is a dict
    with a title, paragraphs, a table and the chart points (tasks only)."""
    out = [{"title": "Overview", "key": "overview", "table": board.overview(),
            "text": ["One row per method, per task its rank (complete methods only), score and cells recorded of "
                     "the task's cells. No rank crosses tasks unless a method solves every task shown."]}]
    descriptions = task_descriptions(board)
    for task in board.tasks:
        table = board.task_table(task)
        text = [descriptions.get(task, "")]
        decl = board.catalog.get("tasks", {}).get(task, {})
        splits = decl.get("splits", {})
        if splits:
            text.append("Splits: " + "; ".join(f"{s}: {d}" for s, d in splits.items() if d) + ".")
        metrics = [board.metric_label(m) for m in board.metrics(task)]
        text.append("Metrics (↑ higher is better, ↓ lower): " + ", ".join(metrics) + ". Table values: the scaled "
                    "primary metric, mean ± sd over seeds, per dataset · split.")
        datasets = sorted(board.table.loc[board.table["task"] == task, "dataset"].unique())
        text.append("Datasets: " + "; ".join(_dataset_line(board.catalog, d) for d in datasets) + ".")
        out.append({"title": task, "key": task, "table": table, "text": [t for t in text if t],
                    "points": board.cost_vs_score(task)})
    failed = failed_cells(board.table)
    if len(failed):
        out.append({"title": "Failed cells", "key": "failed cells", "table": failed,
                    "text": ["Each counts 0 in its method's task score."]})
    return out


def _dataset_line(catalog: dict, name: str) -> str:
    meta = catalog.get("datasets", {}).get(name, {})
    bits = [meta.get(k, "") for k in ("platform", "organism", "tissue") if meta.get(k)]
    return f"{name} ({', '.join(bits)})" if bits else name


def write_document(board: Board, path: str | Path, fmt: str, view: str | None = None) -> Path:
    """Write the board as one HTML or Markdown document (see the module docstring)."""
    path = Path(path)
    title = "stbench leaderboard" + (f": {VIEWS[view]}" if view in VIEWS else "")
    prov = provenance(board)
    if fmt == "html":
        path.write_text(_html(board, title, prov, view))
    elif fmt == "md":
        path.write_text(_markdown(board, title, prov, view))
    else:
        raise StbenchError(f"unknown document format {fmt!r}. Expected: html or md")
    return path


SCALE_TEXT = ("Scores are scaled per task, split, dataset and metric: negative control = 0, positive control = 1. "
              "A failed cell counts 0. A method is ranked on a task only when it has a record for every cell shown "
              "(\"n of m\" cells); otherwise it is incomplete, listed below the ranked methods with its partial score.")
SANITY_TEXT = ("These cells use the built-in synthetic tissue. Its simulator is public, so a method could re-run it "
               "and see the truth: the numbers check that methods work; they are not a ranking.")


def _markdown(board: Board, title: str, prov: dict, view: str | None) -> str:
    parts = [f"# {title}", "", " · ".join(f"**{k}**: {v}" for k, v in prov.items()), "", SCALE_TEXT, ""]
    if view == "sanity":
        parts += [f"> {SANITY_TEXT}", ""]
    for sec in sections(board):
        parts += [f"## {sec['title']}", ""] + [t + "\n" for t in sec["text"]]
        parts += [readable(sec["table"]).to_markdown(index=False), ""]
    return "\n".join(parts)


def _html(board: Board, title: str, prov: dict, view: str | None) -> str:
    esc = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>",
             "<p class='meta'>" + " · ".join(f"<b>{esc(k)}</b>: {esc(v)}" for k, v in prov.items()) + "</p>",
             f"<p class='note'>{esc(SCALE_TEXT)}</p>"]
    if view == "sanity":
        parts.append(f"<p class='warn'>{esc(SANITY_TEXT)}</p>")
    parts.append("<nav>" + " · ".join(f"<a href='#{_anchor(s['key'])}'>{esc(s['title'])}</a>"
                                      for s in sections(board)) + "</nav>")
    for sec in sections(board):
        parts.append(f"<h2 id='{_anchor(sec['key'])}'>{esc(sec['title'])}</h2>")
        parts += [f"<p>{esc(t)}</p>" for t in sec["text"]]
        parts.append(_html_table(sec["table"]))
        points = sec.get("points")
        if points is not None and len(points):
            parts.append("<div class='charts'>")
            parts.append(f"<figure>{score_bars_svg(points)}<figcaption>Task score (scaled primary metric), "
                         "mean ± sd over seeds.</figcaption></figure>")
            parts.append(f"<figure>{cost_scatter_svg(points)}<figcaption>Task score vs method time per cell "
                         "(log scale); labelled: the Pareto front.</figcaption></figure>")
            parts.append("</div>")
    parts.append("<p class='meta'>Made with stbench: <code>stbench export --format html</code>.</p></body></html>")
    return "\n".join(parts)


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def _html_table(df: pd.DataFrame) -> str:
    shown = readable(df)
    esc = html.escape
    text_cols = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])}
    text_cols -= {c for c in df.columns if f"{c} ±sd" in df.columns}
    rows = ["<table><thead><tr>" + "".join(f"<th>{esc(str(c))}</th>" for c in shown.columns) + "</tr></thead><tbody>"]
    for i, (_, r) in enumerate(shown.iterrows()):
        raw = df.iloc[i]
        cls = "control" if raw.get("kind") == "control" else \
            "incomplete" if "rank" in df.columns and pd.isna(raw.get("rank")) and "task score" in df.columns else ""
        rows.append(f"<tr class='{cls}'>" + "".join(
            f"<td class='{'text' if c in text_cols else ''}'>{esc(str(v))}</td>" for c, v in r.items()) + "</tr>")
    return "\n".join(rows) + "</tbody></table>"


# ---------------------------------------------------------------- charts (inline SVG)

def score_bars_svg(points: pd.DataFrame, width: int = 560) -> str:
    """Horizontal bars of each method's task score with an sd whisker, best first; the
    incomplete methods after the ranked ones, faded, their coverage in the label."""
    pts = points.assign(_rank=~points["complete"]).sort_values(["_rank", "mean"], ascending=[True, False])
    label_w, row_h, top = 300, 22, 24
    lo = min(0.0, float((pts["mean"] - pts["sd"]).min()))
    hi = max(1.0, float((pts["mean"] + pts["sd"]).max()))
    plot_w = width - label_w - 20
    x = (lambda v: label_w + (v - lo) / (hi - lo) * plot_w)
    height = top + row_h * len(pts) + 30
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>"]
    for t in np.linspace(lo, hi, 5) if hi - lo > 1.01 else (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f"<line x1='{x(t):.1f}' x2='{x(t):.1f}' y1='{top - 6}' y2='{height - 24}' stroke='#e3e7ee'/>"
                   f"<text x='{x(t):.1f}' y='{height - 10}' text-anchor='middle'>{t:.2f}</text>")
    for i, r in enumerate(pts.itertuples()):
        y = top + i * row_h
        colour = KIND_COLOURS.get(getattr(r, "kind", ""), "#4c78a8")
        x0, x1 = sorted((x(0.0), x(r.mean)))
        fade = "" if r.complete else " fill-opacity='0.3'"
        out.append(f"<text x='{label_w - 6}' y='{y + 14}' text-anchor='end'>{html.escape(_short(r.label, 48))}</text>")
        out.append(f"<rect x='{x0:.1f}' y='{y + 3}' width='{max(x1 - x0, 1):.1f}' height='{row_h - 7}' "
                   f"fill='{colour}'{fade}><title>{html.escape(r.label)}: {r.mean:.3f} ± {r.sd:.3f}</title></rect>")
        if r.sd > 0:
            out.append(f"<line x1='{x(r.mean - r.sd):.1f}' x2='{x(r.mean + r.sd):.1f}' y1='{y + row_h / 2:.1f}' "
                       f"y2='{y + row_h / 2:.1f}' stroke='#1d2433' stroke-width='1.5'/>")
    out.append(f"<text x='{label_w + plot_w / 2:.0f}' y='{top - 10}' text-anchor='middle'>task score (scaled)</text>")
    return "".join(out) + "</svg>"


def cost_scatter_svg(points: pd.DataFrame, width: int = 520, height: int = 340) -> str:
    """Task score against method time (log axis); the Pareto front joined and labelled."""
    pts = points[points["time_method_s"] > 0]
    if pts.empty:
        return ""
    left, right, top, bottom = 50, 20, 20, 40
    lx = np.log10(pts["time_method_s"].to_numpy())
    xlo, xhi = math.floor(lx.min()), math.ceil(lx.max()) if lx.max() > math.floor(lx.min()) else math.floor(lx.min()) + 1
    ylo, yhi = min(0.0, float(pts["mean"].min())), max(1.0, float(pts["mean"].max()))
    sx = (lambda v: left + (math.log10(v) - xlo) / (xhi - xlo) * (width - left - right))
    sy = (lambda v: height - bottom - (v - ylo) / (yhi - ylo) * (height - top - bottom))
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>"]
    for e in range(xlo, xhi + 1):
        out.append(f"<line x1='{sx(10 ** e):.1f}' x2='{sx(10 ** e):.1f}' y1='{top}' y2='{height - bottom}' "
                   f"stroke='#e3e7ee'/><text x='{sx(10 ** e):.1f}' y='{height - bottom + 14}' "
                   f"text-anchor='middle'>{10.0 ** e:g}</text>")
    for t in np.linspace(ylo, yhi, 5):
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{sy(t):.1f}' y2='{sy(t):.1f}' stroke='#e3e7ee'/>"
                   f"<text x='{left - 5}' y='{sy(t) + 4:.1f}' text-anchor='end'>{t:.2f}</text>")
    out.append(f"<text x='{(left + width - right) / 2:.0f}' y='{height - 6}' text-anchor='middle'>method time per "
               "cell (s, log)</text>")
    out.append(f"<text transform='translate(12 {(top + height - bottom) / 2:.0f}) rotate(-90)' "
               "text-anchor='middle'>task score</text>")
    front = pts[pts["pareto (time)"]].sort_values("time_method_s")
    if len(front) > 1:
        out.append("<polyline fill='none' stroke='#7a8294' stroke-dasharray='4 3' points='" + " ".join(
            f"{sx(t):.1f},{sy(m):.1f}" for t, m in zip(front["time_method_s"], front["mean"])) + "'/>")
    for r in pts.itertuples():
        colour = KIND_COLOURS.get(getattr(r, "kind", ""), "#4c78a8")
        fade = "" if r.complete else " fill-opacity='0.3'"  # incomplete: never on the front
        out.append(f"<circle cx='{sx(r.time_method_s):.1f}' cy='{sy(r.mean):.1f}' r='5' fill='{colour}'{fade}>"
                   f"<title>{html.escape(r.label)}: {r.mean:.3f}, {r.time_method_s:.3g} s</title></circle>")
    for r in front.itertuples():
        out.append(f"<text x='{sx(r.time_method_s) + 7:.1f}' y='{sy(r.mean) - 6:.1f}'>{html.escape(_short(r.method))}"
                   "</text>")
    return "".join(out) + "</svg>"


def _short(name: str, n: int = 34) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"
