"""What a run reports: its counts and timings, the live progress bar, and the tables it ends with."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from stbench.benchmark.planning import Cell
from stbench.benchmark.store import FAILED
from stbench.tasks import get_task


@dataclass
class RunReport:
    results: pd.DataFrame  # one row per planned cell, as recorded (executed now or before)
    executed: int = 0
    cached: int = 0
    published: int = 0  # done on the reference board (``skip_published``): not run, not in ``results``
    path: Path | None = None
    invocation: str = ""
    timings: dict = field(default_factory=lambda: {"startup": 0.0, "data": 0.0, "split": 0.0, "method": 0.0,
                                                   "scoring": 0.0, "harness": 0.0})


class Progress:
    """A progress bar that shows life during long cells: every few seconds it redraws with
    the running cells and how long each has run. Cached cells leave the bar's total (they
    take no time), so the rate and the ETA count executed cells only."""

    TICK_S = 2.0

    def __init__(self, total: int, enabled: bool, stream=None, tick_s: float | None = None):
        self.counts = {"ok": 0, "failed": 0, "cached": 0}
        self.lock = threading.Lock()
        self.bar = None
        self.running: dict[Cell, float] = {}
        self._stop = threading.Event()
        self.tick_s = tick_s or self.TICK_S
        if enabled and total:
            from tqdm import tqdm

            # disable=None: no bar when stderr is not a terminal (CI logs), unless a stream is given
            self.bar = tqdm(total=total, file=stream or sys.stderr, unit="cell", dynamic_ncols=stream is None,
                            disable=False if stream is not None else None)
            if not self.bar.disable:
                threading.Thread(target=self._tick, daemon=True, name="stbench-progress").start()

    def _describe(self) -> str:
        now = time.perf_counter()
        return "; ".join(f"{c.label()} {now - t0:.0f}s" for c, t0 in list(self.running.items())[:3])

    def _tick(self):
        while not self._stop.wait(self.tick_s):
            with self.lock:
                if self.bar is not None and self.running:
                    self.bar.set_description(self._describe(), refresh=False)
                    self.bar.refresh()

    def start(self, cell: Cell):
        with self.lock:
            self.running[cell] = time.perf_counter()
            if self.bar is not None:
                self.bar.set_description(self._describe())

    def done(self, status: str, cell: Cell | None = None):
        with self.lock:
            self.running.pop(cell, None)
            self.counts["cached" if status == "cached" else "ok" if status in ("ok", "skipped") else "failed"] += 1
            if self.bar is not None:
                self.bar.set_postfix(self.counts, refresh=False)
                if status == "cached":
                    self.bar.total -= 1  # no time spent: keep it out of the rate and the ETA
                    self.bar.refresh()
                else:
                    self.bar.update(1)

    def close(self):
        self._stop.set()
        if self.bar is not None:
            with self.lock:
                self.bar.close()


def metric_columns_for(task_name: str, df: pd.DataFrame) -> list[str]:
    """The task's declared metrics (primary first) that have a value in ``df``."""
    return [m for m in get_task(task_name).metrics if m in df and df[m].notna().any()]


def method_labels(df: pd.DataFrame, methods: dict | None = None) -> pd.Series:
    """Each row's method named in full (``NAME:key=value`` for a variant; see
    :func:`stbench.manifest.variant_name`) against its defaults."""
    from stbench.manifest import load, variant_name

    builtin = load()["methods"]
    labels = []
    for name, params in zip(df["method"], df["params"]):
        defaults = methods[name].params if methods and name in methods else builtin.get(name, {}).get("params", {})
        labels.append(variant_name(name, json.loads(params) if params else {}, defaults))
    return pd.Series(labels, index=df.index)


def format_summary(df: pd.DataFrame) -> str:
    """One line per (task, method variant): cells by outcome, the mean primary metric over its
    ok cells (raw, with the direction), and the mean method time: what a long run ends with."""
    from stbench.manifest import load

    declared = load()["tasks"]
    view = df.assign(method=method_labels(df))
    rows = []
    for (task, method), part in view.groupby(["task", "method"], sort=False):
        ok = part[part["status"] == "ok"]
        primary = declared.get(task, {}).get("primary_metric") or (part["primary_metric"].iloc[0] or "")
        higher = next((m["higher_is_better"] for m in declared.get(task, {}).get("metrics", [])
                       if m["name"] == primary), None)
        arrow = "" if higher is None else " ↑" if higher else " ↓"
        value = ok[primary].mean() if primary in ok and len(ok) else float("nan")
        rows.append({"task": task, "method": method, "cells": len(part), "ok": len(ok),
                     "failed": int(part["status"].isin(FAILED).sum()), "skipped": int((part["status"] == "skipped").sum()),
                     "primary": f"{primary}{arrow}", "mean": value,
                     "method time (s)": ok["time_method_s"].mean() if len(ok) else float("nan")})
    out = pd.DataFrame(rows)
    blocks = [out.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")]
    failed = view[view["status"].isin(FAILED)]
    for _, r in failed.iterrows():
        blocks.append(f"  ! {r['method']} on {r['task']} {r['dataset']}:{r['instance']} seed {r['seed']} -> "
                      f"{r['status']}: {str(r['error']).strip().splitlines()[-1] if r['error'] else ''}")
    return "\n".join(blocks)


def format_table(df: pd.DataFrame, max_metrics: int = 6) -> str:
    """A readable table per task: identity, status, primary metric first, then the others, wall time."""
    blocks = []
    for task_name, part in df.groupby("task", sort=False):
        metrics = metric_columns_for(task_name, part.dropna(axis=1, how="all"))[:max_metrics]
        view = part.assign(method=method_labels(part))[["split", "dataset", "instance", "method", "seed", "status"]
                                                      + metrics + ["wall_time_s"]].copy()
        view = view.rename(columns={metrics[0]: f"{metrics[0]} (primary)"} if metrics else {})
        blocks.append(f"== {task_name} ==\n" + view.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        failed = part[part["status"].isin(FAILED)]
        for _, r in failed.assign(method=method_labels(failed)).iterrows():
            blocks.append(f"  ! {r['method']} on {r['dataset']}:{r['instance']} -> {r['status']}: "
                          f"{str(r['error']).strip().splitlines()[-1] if r['error'] else ''}")
    return "\n\n".join(blocks)
