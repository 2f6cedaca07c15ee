"""The in-process runner: plan the grid of cells, run each, score it, record a row.

A *cell* is (task, split, dataset, instance, method, seed). For each
(task, split, dataset, instance, seed) the task builds one Problem; every
method of the cell group gets a deep copy of its input view (so no method can
alter what the next one sees) and, only if it is a positive control, the
solution. A failing cell is recorded with its status and never stops the grid.

Process isolation, limits, caching and MLflow arrive with the engine issue;
the row schema here is what they will fill.
"""

from __future__ import annotations

import copy
import json
import random
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.benchmark.errors import ContractError, MethodNotApplicable, UnknownNameError
from stbench.datasets.loading import Dataset, load_dataset
from stbench.datasets.registry import get_dataset_spec
from stbench.methods import METHODS, Method, RunContext, get_method
from stbench.tasks import TASKS, get_task
from stbench.tasks.metrics import METRICS

ID_COLUMNS = ["run_id", "task", "split", "dataset", "instance", "method", "seed"]
INFO_COLUMNS = ["status", "error", "primary_metric", "primary_value", "method_kind", "method_version",
                "task_version", "params", "uses_truth", "uses_true_k", "device", "dataset_sha256",
                "split_sha256", "time_split_s", "time_method_s", "time_score_s", "wall_time_s", "ltari_rule",
                "finished_at"]


@dataclass
class Cell:
    task: str
    split: str
    dataset: str
    instance: str
    method: str
    seed: int


@dataclass
class RunReport:
    results: pd.DataFrame
    timings: dict = field(default_factory=lambda: {"data": 0.0, "split": 0.0, "method": 0.0, "scoring": 0.0})


def default_methods() -> list[str]:
    return [m.name for m in METHODS.values() if m.kind in ("control", "baseline")]


def plan_cells(tasks, methods, datasets: dict[str, object], seeds, splits=None) -> list[Cell]:
    """Every applicable cell, in a stable order (task, dataset, instance, split, seed, method)."""
    for s in splits or []:
        if not any(s in get_task(t).splits for t in tasks):
            raise UnknownNameError("split", s, {x for t in tasks for x in get_task(t).splits})
    cells = []
    for t in tasks:
        task = get_task(t)
        for ds_name, spec in datasets.items():
            for instance in task.instances(spec):
                for split in task.splits:
                    if (splits and split not in splits) or not task.applies(spec, split):
                        continue
                    for seed in seeds:
                        for m in methods:
                            if t in get_method(m).tasks:
                                cells.append(Cell(t, split, ds_name, instance, m, int(seed)))
    return cells


def _device(method: Method) -> str:
    if not method.gpu:
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "cpu"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def run_cell(problem, method: Method, params: dict | None = None) -> dict:
    """Run one method on one Problem and score it; never raises for a method's failure."""
    task = get_task(problem.task)
    params = {**method.params, **(params or {})}
    row = {
        "task": problem.task, "split": problem.split, "dataset": problem.dataset,
        "instance": problem.instance, "method": method.name, "seed": problem.seed,
        "method_kind": method.kind, "method_version": method.version, "task_version": task.version,
        "params": json.dumps(params, sort_keys=True), "uses_truth": method.uses_truth,
        "uses_true_k": bool(method.uses_true_k and task.provides_true_k), "device": _device(method),
        "dataset_sha256": problem.dataset_sha256, "split_sha256": problem.split_sha256,
        "primary_metric": task.primary_metric, "error": "",
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stbench-") as scratch:
        ctx = RunContext(seed=problem.seed, device=row["device"], scratch_dir=Path(scratch), params=params,
                         task=problem.task, split=problem.split,
                         solution=copy.deepcopy(problem.solution) if method.uses_truth else None)
        seed_everything(problem.seed)
        try:
            output = method.run(problem.task, copy.deepcopy(problem.inputs), ctx)
            row["time_method_s"] = time.perf_counter() - start
            output = task.check_output(problem, output)
            t0 = time.perf_counter()
            scores = task.score(problem, output)
            row["time_score_s"] = time.perf_counter() - t0
            row["status"] = "ok"
            for k, v in scores.items():
                row[k] = v
            row["primary_value"] = scores.get(task.primary_metric, np.nan)
        except MethodNotApplicable as err:
            row.update(status="skipped", error=str(err))
        except ContractError as err:
            row.update(status="invalid_output", error=str(err))
        except Exception:  # noqa: BLE001 - a failing method must not stop the grid
            row.update(status="error", error="".join(traceback.format_exc().splitlines(True)[-6:]))
    row["wall_time_s"] = time.perf_counter() - start
    row["finished_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    return row


def run_benchmark(tasks=None, methods=None, datasets=None, seeds=(0,), splits=None, data_dir=None,
                  user_datasets: list[Dataset] | None = None, progress: bool = True) -> RunReport:
    """Run the grid in process and return the results table (one row per cell) and phase timings."""
    tasks = list(tasks or TASKS)
    for t in tasks:
        get_task(t)
    methods = list(methods or default_methods())
    for m in methods:
        get_method(m)
    loaded: dict[str, Dataset] = {d.spec.name: d for d in (user_datasets or [])}
    names = list(datasets or ([] if user_datasets else ["synthetic"]))
    specs = {n: get_dataset_spec(n) for n in names}
    specs.update({n: d.spec for n, d in loaded.items()})
    cells = plan_cells(tasks, methods, specs, seeds, splits)
    report = RunReport(pd.DataFrame())
    run_id = uuid.uuid4().hex[:12]
    rows, problems = [], {}
    bar = _progress(len(cells), progress)
    for cell in cells:
        if cell.dataset not in loaded:
            t0 = time.perf_counter()
            loaded[cell.dataset] = load_dataset(cell.dataset, data_dir)
            report.timings["data"] += time.perf_counter() - t0
        key = (cell.task, cell.dataset, cell.instance, cell.split, cell.seed)
        if key not in problems:
            problems.clear()  # one problem alive at a time keeps memory flat
            t0 = time.perf_counter()
            problems[key] = get_task(cell.task).make_problem(loaded[cell.dataset], cell.instance,
                                                              cell.split, cell.seed)
            split_time = time.perf_counter() - t0
            report.timings["split"] += split_time
        row = run_cell(problems[key], get_method(cell.method))
        row["run_id"] = run_id
        row["time_split_s"] = split_time  # building the problem, shared by its methods
        report.timings["method"] += row.get("time_method_s", 0.0) or 0.0
        report.timings["scoring"] += row.get("time_score_s", 0.0) or 0.0
        rows.append(row)
        bar(cell, row["status"])
    report.results = results_frame(rows)
    return report


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return lambda cell, status: None
    from tqdm import tqdm

    bar = tqdm(total=total, file=sys.stderr, unit="cell", dynamic_ncols=True, disable=None)  # off when not a TTY
    counts = {"ok": 0, "failed": 0}

    def step(cell: Cell, status: str):
        counts["ok" if status in ("ok", "skipped") else "failed"] += 1
        bar.set_description(f"{cell.task}/{cell.split} {cell.dataset}:{cell.instance} {cell.method} s{cell.seed}")
        bar.set_postfix(ok=counts["ok"], failed=counts["failed"])
        bar.update(1)
        if bar.n == total:
            bar.close()

    return step


def results_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    metric_cols = [c for c in df.columns if c not in ID_COLUMNS + INFO_COLUMNS]
    return df.reindex(columns=ID_COLUMNS + [c for c in INFO_COLUMNS if c in df] + sorted(metric_cols))


def save_results(df: pd.DataFrame, results_dir: str | Path) -> Path:
    """Append this invocation's rows to ``DIR/results.parquet`` and ``results.csv``.

    Rows already recorded are kept as they are: a new run adds rows (its own
    ``run_id``), it never overwrites.
    """
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.parquet"
    if path.exists():
        previous = pd.read_parquet(path)
        df = pd.concat([previous, df], ignore_index=True)
    df = df.astype({c: "string" for c in ("error", "params", "ltari_rule") if c in df})
    tmp = out / ".results.parquet.tmp"
    df.to_parquet(tmp, index=False)
    tmp.replace(path)  # atomic: a crash never leaves half a file
    df.to_csv(out / "results.csv", index=False)
    return path


def metric_columns_for(task_name: str, df: pd.DataFrame) -> list[str]:
    task = get_task(task_name)
    cols = [c for c in df.columns if c not in ID_COLUMNS + INFO_COLUMNS and df[c].notna().any()]
    ordered = [task.primary_metric] + [c for c in cols if c != task.primary_metric and c in METRICS]
    return [c for c in ordered if c in df] + [c for c in cols if c not in ordered]


def format_table(df: pd.DataFrame, max_metrics: int = 6) -> str:
    """A readable table per task: identity, status, primary metric first, then the others, wall time."""
    blocks = []
    for task_name, part in df.groupby("task", sort=False):
        metrics = metric_columns_for(task_name, part.dropna(axis=1, how="all"))[:max_metrics]
        view = part[["split", "dataset", "instance", "method", "seed", "status"] + metrics + ["wall_time_s"]].copy()
        view = view.rename(columns={metrics[0]: f"{metrics[0]} (primary)"} if metrics else {})
        blocks.append(f"== {task_name} ==\n" + view.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        failed = part[~part["status"].isin(["ok", "skipped"])]
        for _, r in failed.iterrows():
            blocks.append(f"  ! {r['method']} on {r['dataset']}:{r['instance']} -> {r['status']}: "
                          f"{str(r['error']).strip().splitlines()[-1] if r['error'] else ''}")
    return "\n\n".join(blocks)
