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

A crash is the worst regression there is, so it is never averaged away: a cell
that is ok in A and failed (error, timeout, oom, invalid output), skipped or not
recorded in B is listed with B's reason and counts as a regression of its task's
primary metric (``--fail-on-regression`` exits 1). "Nothing to compare" is said
only when A holds no ok cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.benchmark.store import FAILED
from stbench.errors import StbenchError
from stbench.manifest import parse_variant
from stbench.leaderboard.aggregate import declared_metrics, last_line, metric_columns, metric_info, primary_metrics

PAIR = ["task", "split", "dataset", "instance", "seed"]


def select(spec: str, table: pd.DataFrame | None, catalog: dict | None = None) -> pd.DataFrame:
    """Every recorded cell a comparison side stands for (see the module docstring), whatever
    its status: a failed cell is part of the verdict. ``catalog`` gives a method's default
    parameters, which the bare ``NAME`` selects when several variants are recorded."""
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
                defaults = (catalog or {}).get("methods", {}).get(name, {}).get("params")
                if defaults is not None:
                    df = df[df["params"].map(lambda p: json.loads(p) == defaults)]
        if df.empty:
            raise StbenchError(f"no recorded cell matches {spec!r}. Expected: a method name (with @version or "
                               ":key=value), run:<id>, or a .parquet/.csv results file")
    return df


@dataclass
class Comparison:
    table: pd.DataFrame  # one row per (task, metric)
    pairing: str  # "cells" or "seed means"
    n_pairs: int
    # cells ok in A and failed, skipped or missing in B: each a regression of its task's primary
    failures: pd.DataFrame = None
    recovered: int = 0  # cells failed in A and ok in B

    @property
    def regressed_primary(self) -> bool:
        return bool((self.table["primary"] & (self.table["verdict"] == "regressed")).any()) or \
            (self.failures is not None and len(self.failures) > 0)

    def markdown(self, a: str, b: str) -> str:
        lines = [f"### stbench compare: `{a}` (A) vs `{b}` (B)", "",
                 f"{self.n_pairs} paired cells (paired by {self.pairing}); difference = B - A, oriented so that "
                 "positive is better; paired-t 95 % interval."]
        n_fail = 0 if self.failures is None else len(self.failures)
        if n_fail:
            lines.append(f"**{n_fail} cell(s) ok in A failed or are missing in B: a regression.**")
        if self.recovered:
            lines.append(f"{self.recovered} cell(s) failed in A are ok in B.")
        lines += ["", "| task | metric | A | B | B - A | 95 % interval | failed in B | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.table.itertuples():
            mark = " (primary)" if r.primary else ""
            interval = f"[{r.lo:+.4f}, {r.hi:+.4f}]" if np.isfinite(r.diff) else ""
            lines.append(f"| {r.task} | {r.metric}{mark} | {_num(r.mean_a, '.4f')} | {_num(r.mean_b, '.4f')} | "
                         f"{_num(r.diff, '+.4f')} | {interval} | {r.failed_b or ''} | **{r.verdict}** |")
        if n_fail:
            lines += ["", "#### Failed or missing in B", "",
                      "| task | split | dataset | instance | seed | B status | reason |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for r in self.failures.itertuples():
                lines.append(f"| {r.task} | {r.split} | {r.dataset} | {r.instance} | {r.seed} | {r.status_b} | "
                             f"{str(r.reason).replace('|', '/')[:200]} |")
        return "\n".join(lines) + "\n"


def _num(value: float, fmt: str) -> str:
    return format(value, fmt) if np.isfinite(value) else ""


def _one_method(side: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """A results file holds the controls too: keep the method the other side is about."""
    if other["method"].nunique() == 1 and side["method"].nunique() > 1:
        side = side[side["method"] == other["method"].iloc[0]]
    return side


def compare(a: pd.DataFrame, b: pd.DataFrame, catalog: dict | None = None) -> Comparison:
    """Compare the cells of B with those of A. Metrics and their directions come from the
    tasks' declarations in ``catalog`` (a results folder's catalog.json); without one (bare
    results files), from the manifest (``stbench.manifest``): no task or adapter is imported. A cell ok in A that
    B failed, skipped or never recorded is a failure of B (``Comparison.failures``)."""
    from scipy import stats

    if not declared_metrics(catalog):  # bare results files: the declarations of today's tasks
        from stbench.manifest import tasks

        catalog = {"tasks": tasks()}
    declared = declared_metrics(catalog)
    directions = {m: d["higher_is_better"] for m, d in metric_info(catalog).items()}
    a, b = _one_method(a, b), _one_method(b, a)
    a_ok, b_ok = a[a["status"] == "ok"], b[b["status"] == "ok"]
    if a_ok.empty:
        raise StbenchError("side A has no ok cell: nothing to compare. Expected: A is a selection with at least "
                           "one cell recorded ok (the baseline)")
    for side, name in ((a_ok, "A"), (b_ok, "B")):
        if side.duplicated(PAIR + ["method"]).any():
            raise StbenchError(f"side {name} holds one method with several parameter sets; Expected: select one "
                               "variant (NAME:key=value) or one version (NAME@VERSION)")
    keys = PAIR + (["method"] if a["method"].nunique() > 1 and b["method"].nunique() > 1 else [])
    metrics = [m for m in metric_columns(a_ok, declared) if m in b.columns and m in directions]
    primaries = {**primary_metrics(b), **primary_metrics(a)}
    pairing = "cells"
    if a_ok[keys].merge(b[keys].drop_duplicates(), on=keys).empty and not b.empty:
        # disjoint seed sets: pair each instance's seed means
        pairing, keys = "seed means", [k for k in keys if k != "seed"]
        a_ok = a_ok.groupby(keys)[metrics].mean().reset_index()
        b_ok_means = b_ok.groupby(keys)[metrics].mean().reset_index()
        b_status = b.assign(_ok=b["status"] == "ok").sort_values("_ok").drop_duplicates(keys, keep="last")
        b_ok = b_ok_means
    else:
        b_status = b.drop_duplicates(keys, keep="last")
    merged = a_ok[keys + metrics].merge(b_ok[keys + metrics], on=keys, suffixes=("_a", "_b"))
    failures = _failures(a_ok, b_ok, b_status, keys)
    recovered = a[a["status"].isin(FAILED)][keys].drop_duplicates().merge(b_ok[keys], on=keys)
    rows = []
    for task in sorted(set(merged["task"]) | set(failures["task"])):
        part = merged[merged["task"] == task]
        primary = primaries.get(task)
        n_failed = int((failures["task"] == task).sum())
        for m in (metrics if not declared else [m for m in declared.get(task, metrics) if m in metrics]):
            pa, pb = part[f"{m}_a"].to_numpy(float), part[f"{m}_b"].to_numpy(float)
            ok = np.isfinite(pa) & np.isfinite(pb)
            is_primary = m == primary
            if not ok.any() and not (is_primary and n_failed):
                continue
            sign = 1.0 if directions[m] else -1.0
            d = sign * (pb[ok] - pa[ok])
            if len(d) > 1:
                half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
                lo, hi = d.mean() - half, d.mean() + half
            else:
                lo, hi = -np.inf, np.inf
            tol = 1e-9 * max(1.0, np.abs(pa[ok]).mean()) if ok.any() else 0.0
            verdict = "improved" if lo > tol else "regressed" if hi < -tol else "within noise"
            if is_primary and n_failed:
                verdict = "regressed"  # a crash is never averaged away
            nan = float("nan")
            rows.append({"task": task, "metric": m, "primary": is_primary, "n": int(ok.sum()),
                         "mean_a": pa[ok].mean() if ok.any() else nan, "mean_b": pb[ok].mean() if ok.any() else nan,
                         "diff": d.mean() if ok.any() else nan, "lo": lo, "hi": hi,
                         "failed_b": n_failed if is_primary else 0, "verdict": verdict})
    cols = ["task", "metric", "primary", "n", "mean_a", "mean_b", "diff", "lo", "hi", "failed_b", "verdict"]
    table = pd.DataFrame(rows, columns=cols).sort_values(["task", "primary", "metric"], ascending=[True, False, True])
    return Comparison(table.reset_index(drop=True), pairing, len(merged), failures, len(recovered))


def _failures(a_ok: pd.DataFrame, b_ok: pd.DataFrame, b_status: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The keys ok in A with no ok value in B, with B's status and the last line of its error
    (or "not recorded in B")."""
    missing = a_ok[keys].drop_duplicates().merge(b_ok[keys].drop_duplicates(), on=keys, how="left",
                                                 indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    extra = [c for c in ("status", "error") if c in b_status.columns]
    out = missing.merge(b_status[keys + extra], on=keys, how="left")
    out["status_b"] = out["status"].fillna("missing") if "status" in out else "missing"
    errors = out["error"] if "error" in out else pd.Series("", index=out.index)
    out["reason"] = [last_line(e) if s != "missing" and last_line(e) else
                     ("not recorded in B" if s == "missing" else f"recorded {s} in B")
                     for s, e in zip(out["status_b"], errors.fillna(""))]
    for k in PAIR:
        if k not in out:
            out[k] = ""  # paired by seed means: no seed
    return out[PAIR + ["status_b", "reason"]].reset_index(drop=True)
