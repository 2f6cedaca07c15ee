"""Regression testing (SPEC §9): is B better than, as good as, or worse than A?

A and B are each a *selection* of recorded cells:

* a results file (``.parquet`` or ``.csv``, as exported by ``stbench run``);
* ``NAME``, ``NAME@VERSION`` or ``NAME:key=value,...`` (a method, one of its
  versions, or a parameter variant) in the ``--results`` folder;
* ``run:<invocation id>`` (the cells one ``stbench run`` recorded).

Cells are paired by (task, split, dataset, instance, seed), and by method when
both sides hold several. Where the two seed sets do not overlap, cells are
paired by (task, split, dataset, instance) on their seed means instead (said in
the output). Per metric the mean paired difference, oriented so that positive
means B is better, gets a paired-t 95 % interval over the pairs (Student's t:
honest with the handful of seeds a benchmark has, where a bootstrap interval
is too narrow); the verdict is ``improved`` (interval above 0), ``regressed``
(below 0) or ``within noise``. A single pair has no interval: within noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.benchmark.errors import StbenchError
from stbench.leaderboard.aggregate import declared_metrics, metric_columns, metric_info, primary_metrics

PAIR = ["task", "split", "dataset", "instance", "seed"]


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:key=value,key2=value2`` -> (NAME, {key: value}); values parsed as JSON when they can be."""
    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise StbenchError(f"method variant {text!r}: {item!r} is not key=value. "
                               "Expected NAME:key=value,key2=value2")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return name, params


def select(spec: str, table: pd.DataFrame | None) -> pd.DataFrame:
    """The ok cells a comparison side stands for (see the module docstring)."""
    path = Path(spec)
    if path.suffix in (".parquet", ".csv") and path.is_file():
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    else:
        if table is None:
            raise StbenchError(f"{spec!r} is not a results file; to select cells by method, version, variant "
                               "or run, pass --results DIR")
        if spec.startswith("run:"):
            df = table[table["run_id"].astype(str).str.startswith(spec[4:])]
        else:
            name, _, version = spec.partition("@")
            name, params = parse_variant(name)
            df = table[table["method"] == name]
            if version:
                df = df[df["method_version"].astype(str) == version]
            for k, v in params.items():
                df = df[df["params"].map(lambda p: json.loads(p).get(k) == v)]
            if not params and not version and df["params"].nunique() > 1:
                defaults = _default_params(name)
                if defaults is not None:
                    df = df[df["params"].map(lambda p: json.loads(p) == defaults)]
        if df.empty:
            raise StbenchError(f"no recorded cell matches {spec!r}. Expected: a method name (with @version or "
                               ":key=value), run:<id>, or a .parquet/.csv results file")
    return df[df["status"] == "ok"]


def _default_params(name: str) -> dict | None:
    from stbench.methods import METHODS

    return dict(METHODS[name].params) if name in METHODS else None


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per (task, metric)
    pairing: str  # "cells" or "seed means"
    n_pairs: int

    @property
    def regressed_primary(self) -> bool:
        return bool((self.table["primary"] & (self.table["verdict"] == "regressed")).any())

    def markdown(self, a: str, b: str) -> str:
        lines = [f"### stbench compare: `{a}` (A) vs `{b}` (B)", "",
                 f"{self.n_pairs} paired cells (paired by {self.pairing}); difference = B - A, oriented so that "
                 "positive is better; paired-t 95 % interval.", "",
                 "| task | metric | A | B | B - A | 95 % interval | verdict |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.table.itertuples():
            mark = " (primary)" if r.primary else ""
            lines.append(f"| {r.task} | {r.metric}{mark} | {r.mean_a:.4f} | {r.mean_b:.4f} | {r.diff:+.4f} | "
                         f"[{r.lo:+.4f}, {r.hi:+.4f}] | **{r.verdict}** |")
        return "\n".join(lines) + "\n"


def _one_method(side: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """A results file holds the controls too: keep the method the other side is about."""
    if other["method"].nunique() == 1 and side["method"].nunique() > 1:
        side = side[side["method"] == other["method"].iloc[0]]
    return side


def compare(a: pd.DataFrame, b: pd.DataFrame, catalog: dict | None = None) -> Comparison:
    """Compare the ok cells of B with those of A. Metrics and their directions come from the
    tasks' declarations in ``catalog`` (a results folder's catalog.json); without one (bare
    results files), from the metric registry, which imports no adapter."""
    from scipy import stats

    declared = declared_metrics(catalog)
    if declared:
        directions = {m: d["higher_is_better"] for m, d in metric_info(catalog).items()}
    else:
        from stbench.tasks.metrics import METRICS  # directions; imported here, not by the app at start

        directions = {m: info.higher_is_better for m, info in METRICS.items()}
    a, b = _one_method(a, b), _one_method(b, a)
    for side, name in ((a, "A"), (b, "B")):
        if side.duplicated(PAIR + ["method"]).any():
            raise StbenchError(f"side {name} holds one method with several parameter sets; Expected: select one "
                               "variant (NAME:key=value) or one version (NAME@VERSION)")
    keys = PAIR + (["method"] if a["method"].nunique() > 1 and b["method"].nunique() > 1 else [])
    metrics = [m for m in metric_columns(a, declared) if m in b.columns and m in directions]
    primaries = {**primary_metrics(b), **primary_metrics(a)}
    pairing = "cells"
    merged = a[keys + metrics].merge(b[keys + metrics], on=keys, suffixes=("_a", "_b"))
    if merged.empty:  # disjoint seed sets: pair each instance's seed means
        pairing = "seed means"
        keys = [k for k in keys if k != "seed"]
        ga, gb = (x.groupby(keys)[metrics].mean().reset_index() for x in (a, b))
        merged = ga.merge(gb, on=keys, suffixes=("_a", "_b"))
    if merged.empty:
        raise StbenchError("A and B share no (task, split, dataset, instance): nothing to compare")
    rows = []
    for task, part in merged.groupby("task"):
        primary = primaries.get(task)
        for m in (metrics if not declared else [m for m in declared.get(task, metrics) if m in metrics]):
            pa, pb = part[f"{m}_a"].to_numpy(float), part[f"{m}_b"].to_numpy(float)
            ok = np.isfinite(pa) & np.isfinite(pb)
            if not ok.any():
                continue
            sign = 1.0 if directions[m] else -1.0
            d = sign * (pb[ok] - pa[ok])
            if len(d) > 1:
                half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
                lo, hi = d.mean() - half, d.mean() + half
            else:
                lo, hi = -np.inf, np.inf
            tol = 1e-9 * max(1.0, np.abs(pa[ok]).mean())
            verdict = "improved" if lo > tol else "regressed" if hi < -tol else "within noise"
            rows.append({"task": task, "metric": m, "primary": m == primary, "n": int(ok.sum()),
                         "mean_a": pa[ok].mean(), "mean_b": pb[ok].mean(), "diff": d.mean(), "lo": lo, "hi": hi,
                         "verdict": verdict})
    table = pd.DataFrame(rows).sort_values(["task", "primary", "metric"], ascending=[True, False, True])
    return Comparison(table.reset_index(drop=True), pairing, len(merged))
