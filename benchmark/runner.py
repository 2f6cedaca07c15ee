"""The runner: plan the grid of cells, skip what is recorded, run the rest isolated, score, record.

A *cell* is (task, split, dataset, instance, method, seed). Data flow::

    plan_cells --> cell keys (dataset sha, split sha, task version, method
                   name + version + parameters, seed) --> already ok in the store? skip
    for each problem (task, dataset, instance, split, seed) with cells to run:
        task.make_problem --> Problem.inputs pickled once to a problem folder
        per cell: claim the key --> executor runs isolation.execute(job) in a
                  fresh child --> output bytes back --> task.check_output -->
                  task.score --> spatial plot --> one MLflow child run
    export DIR/results.parquet from the record

The solution never leaves this process, except to the positive control (whose
``uses_truth`` flag says so). A failing cell is recorded with its status and
never stops the grid.

``run_cell`` runs one method in this process, without isolation or recording:
it is for unit tests and debugging, never for published results.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.benchmark import isolation
from stbench.errors import ContractError, MethodNotApplicable, StbenchError, UnknownNameError
from stbench.benchmark.provenance import git_commit, library_versions
from stbench.benchmark.store import DONE, FAILED, ResultStore
from stbench.datasets.loading import Dataset, load_dataset
from stbench.datasets.registry import DATASETS, get_dataset_spec
from stbench.manifest import check_params, variant_name
from stbench.methods import METHODS, Method, RunContext, get_method
from stbench.tasks import TASKS, get_task
from stbench.tasks.base import hash_arrays

ID_COLUMNS = ["run_id", "task", "split", "dataset", "instance", "method", "seed"]
# Seconds a cell may run before it is killed, by method kind (``--timeout`` overrides).
DEFAULT_TIMEOUT_S = {"control": 15 * 60, "baseline": 60 * 60, "seed": 6 * 60 * 60, "peer": 6 * 60 * 60}


@dataclass(frozen=True)
class Cell:
    task: str
    split: str
    dataset: str
    instance: str
    method: str
    seed: int

    @property
    def problem_key(self) -> tuple:
        return (self.task, self.dataset, self.instance, self.split, self.seed)

    def label(self) -> str:
        return f"{self.task}/{self.split} {self.dataset}:{self.instance} {self.method} s{self.seed}"


@dataclass
class RunReport:
    results: pd.DataFrame  # one row per planned cell, as recorded (executed now or before)
    executed: int = 0
    cached: int = 0
    path: Path | None = None
    invocation: str = ""
    timings: dict = field(default_factory=lambda: {"startup": 0.0, "data": 0.0, "split": 0.0, "method": 0.0,
                                                   "scoring": 0.0, "harness": 0.0})


def default_methods() -> list[str]:
    return [m.name for m in METHODS.values() if m.kind in ("control", "baseline")]


def plan_cells(tasks, methods, datasets: dict[str, object], seeds, splits=None, instances=None) -> list[Cell]:
    """Every applicable cell, in a stable order (task, dataset, instance, split, seed, method).

    ``instances`` keeps only those slices (or pairs, groups) of the datasets.
    """
    for s in splits or []:
        if not any(s in get_task(t).splits for t in tasks):
            raise UnknownNameError("split", s, {x for t in tasks for x in get_task(t).splits})
    for i in instances or []:
        known = {x for t in tasks for spec in datasets.values() for x in get_task(t).instances(spec)}
        if i not in known:
            raise UnknownNameError("instance", i, known)
    methods = [m if isinstance(m, Method) else get_method(m) for m in methods]
    cells = []
    for t in tasks:
        task = get_task(t)
        for ds_name, spec in datasets.items():
            for instance in task.instances(spec):
                if instances and instance not in instances:
                    continue
                for split in task.splits:
                    if (splits and split not in splits) or not task.applies(spec, split):
                        continue
                    for seed in seeds:
                        for m in methods:
                            if t in m.tasks:
                                cells.append(Cell(t, split, ds_name, instance, m.name, int(seed)))
    return cells


def cell_key(cell: Cell, dataset_sha256: str, split_sha256: str, method: Method, params: dict) -> str:
    """The cache key of a cell (SPEC §6.2): what would change its result, and nothing else."""
    payload = {"dataset": cell.dataset, "dataset_sha256": dataset_sha256, "task": cell.task,
               "task_version": get_task(cell.task).version, "split": cell.split, "instance": cell.instance,
               "split_sha256": split_sha256, "method": method.name, "method_version": method.version,
               "params": params, "seed": cell.seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def method_reference(method: Method) -> str:
    """How a child finds the method: its registered name, or ``file.py:attribute`` for one
    defined outside the registry (the fault-injection adapters of the tests)."""
    if METHODS.get(method.name) is method:
        return method.name
    for fn in method.solvers.values():
        module = sys.modules.get(fn.__module__)
        for attr, value in vars(module or object()).items():
            if value is method and getattr(module, "__file__", None):
                return f"{module.__file__}:{attr}"
    raise StbenchError(f"method {method.name!r} is neither registered nor a module-level object; "
                       "Expected: register it (entry point stbench.methods) or define it at module level")


@functools.lru_cache(maxsize=1)
def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False


def _device(method: Method) -> str:
    return "cuda" if method.gpu and _cuda_available() else "cpu"


def _base_row(problem, method: Method, params: dict) -> dict:
    task = get_task(problem.task)
    return {
        "task": problem.task, "split": problem.split, "dataset": problem.dataset,
        "instance": problem.instance, "method": method.name, "seed": problem.seed,
        "method_kind": method.kind, "method_version": method.version, "task_version": task.version,
        "params": json.dumps(params, sort_keys=True), "uses_truth": method.uses_truth,
        "uses_true_k": bool(method.uses_true_k and task.provides_true_k), "device": _device(method),
        "dataset_sha256": problem.dataset_sha256, "split_sha256": problem.split_sha256,
        "primary_metric": task.primary_metric, "error": "", "annotations": "",
        # a problem that knows its dataset says it; otherwise the task's static declaration
        "unranked": problem.unranked or task.UNRANKED.get(problem.split, ""),
    }


def _check_and_score(row: dict, problem, output):
    """Validate the output against the task's contract and score it (in the runner: it holds the truth)."""
    task = get_task(problem.task)
    output = task.check_output(problem, output)
    t0 = time.perf_counter()
    scores = task.checked_scores(problem, output)  # exactly the task's declared metrics
    notes = task.annotate(problem, output)  # bookkeeping: recorded as a tag, never a metric
    row["time_score_s"] = time.perf_counter() - t0
    row["status"] = "ok"
    row.update(scores)
    row["annotations"] = json.dumps(notes, sort_keys=True) if notes else ""
    if notes.get("uses_true_k"):  # e.g. the task clustered an embedding with the true k for it
        row["uses_true_k"] = True
    row["primary_value"] = scores[task.primary_metric]
    return output


def run_cell(problem, method: Method, params: dict | None = None) -> dict:
    """Run one method on one Problem *in this process* and score it (tests, debugging).

    No isolation, no limits, no record: ``run_benchmark`` is the real thing.
    """
    params = {**method.params, **(params or {})}
    row = _base_row(problem, method, params)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stbench-") as scratch:
        ctx = RunContext(seed=problem.seed, device=row["device"], scratch_dir=Path(scratch), params=params,
                         task=problem.task, split=problem.split,
                         solution=get_task(problem.task).reference_output(problem) if method.uses_truth else None)
        from stbench.benchmark.child import seed_everything

        seed_everything(problem.seed)
        try:
            output = method.run(problem.task, copy.deepcopy(problem.inputs), ctx)
            row["time_method_s"] = time.perf_counter() - start
            _check_and_score(row, problem, output)
        except MethodNotApplicable as err:
            row.update(status="skipped", error=str(err))
        except ContractError as err:
            row.update(status="invalid_output", error=str(err))
        except Exception:  # noqa: BLE001 - a failing method must not stop the grid
            row.update(status="error", error="".join(traceback.format_exc().splitlines(True)[-6:]))
    row["wall_time_s"] = time.perf_counter() - start
    return row


def parse_memory(text: str | int | None) -> int:
    """``8G``, ``500M``, ``2048K`` or bytes -> bytes."""
    if text is None or isinstance(text, int):
        return int(text or 0)
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(float(t))
    except ValueError:
        raise StbenchError(f"--memory {text!r} is not a size. Expected e.g. 8G, 500M or a number of bytes") from None


def default_memory(jobs: int) -> int:
    import psutil

    return int(0.8 * psutil.virtual_memory().total / max(1, jobs))


class _Backend:
    """Runs the cell function: in a thread here (local) or as a Ray task (ray)."""

    def __init__(self, executor: str, jobs: int, address: str | None):
        self.executor, self.jobs = executor, jobs
        if executor == "local":
            return
        if executor != "ray":
            raise StbenchError(f"unknown executor {executor!r}. Expected: local or ray")
        try:
            import ray
        except ImportError:
            raise StbenchError("--executor ray needs Ray: pip install 'stbench[ray]'") from None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        self.remote = ray.remote(num_cpus=1, max_retries=0)(isolation.execute)
        self._refs: dict[str, object] = {}

    def share(self, problem_id: str, inputs_path: Path):
        """Ray workers may run on other machines: ship the inputs through the object store, once."""
        if self.executor == "ray" and problem_id not in self._refs:
            self._refs[problem_id] = self.ray.put(inputs_path.read_bytes())
            while len(self._refs) > 3:  # at most two problems are in flight
                self._refs.pop(next(iter(self._refs)))

    def run(self, job: isolation.Job, problem_id: str) -> isolation.ChildResult:
        if self.executor == "local":
            return isolation.execute(job)
        return self.ray.get(self.remote.remote(job, self._refs[problem_id]))


class _Progress:
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


class _Grid:
    """One invocation's state: the store, loaded datasets, live problems and the executor."""

    def __init__(self, store, invocation: str, backend: _Backend, methods: dict[str, Method],
                 params: dict[str, dict], timeout, memory: int, threads: int, report: RunReport,
                 progress: _Progress, loaded: dict, data_dir):
        self.store, self.invocation, self.backend = store, invocation, backend
        self.methods, self.params, self.timeout, self.memory, self.threads = methods, params, timeout, memory, threads
        self.report, self.progress, self.loaded, self.data_dir = report, progress, loaded, data_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="stbench-problems-", dir=isolation.exchange_root()))
        self.commit, self.versions = git_commit(), json.dumps(library_versions(), sort_keys=True)
        self.lock = threading.Lock()
        self.split_arrays: dict[tuple, dict] = {}  # problem key -> its split, computed once for its key

    def dataset(self, name: str) -> Dataset:
        if name not in self.loaded:
            t0 = time.perf_counter()
            self.loaded[name] = load_dataset(name, self.data_dir)
            self.report.timings["data"] += time.perf_counter() - t0
        return self.loaded[name]

    def problem(self, pkey: tuple):
        """Build a problem and write its input view once, for every cell that uses it."""
        task, dataset, instance, split, seed = pkey
        t0 = time.perf_counter()
        problem = get_task(task).make_problem(self.dataset(dataset), instance, split, seed,
                                              arrays=self.split_arrays.pop(pkey, None))
        problem_id = uuid.uuid4().hex
        path = self.tmp / f"{problem_id}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(problem.inputs, fh, protocol=5)
        self.backend.share(problem_id, path)
        elapsed = time.perf_counter() - t0
        self.report.timings["split"] += elapsed
        return problem, problem_id, path, elapsed

    def run(self, cell: Cell, key: str, problem, problem_id: str, inputs_path: Path, split_time: float, claim):
        """One cell, start to record. Runs in an executor thread; always releases the claim."""
        try:
            self.progress.start(cell)
            method = self.methods[cell.method]
            params = self.params[cell.method]
            row = _base_row(problem, method, params)
            label = variant_name(method.name, params, method.params)
            row.update(cell_key=key, time_split_s=split_time, git_commit=self.commit, versions=self.versions)
            job = isolation.Job(
                method_ref=method_reference(method), task=cell.task, split=cell.split, seed=cell.seed,
                device=row["device"], params=params, memory_bytes=self.memory, threads=self.threads,
                timeout_s=float(self.timeout or DEFAULT_TIMEOUT_S[method.kind]), inputs_path=str(inputs_path),
                solution=pickle.dumps(get_task(cell.task).reference_output(problem), protocol=5)
                if method.uses_truth else None)
            start, started_at = time.perf_counter(), time.time()
            res = self.backend.run(job, problem_id)
            row.update(status=res.status, error=res.error, time_method_s=res.time_method_s,
                       cpu_time_s=res.cpu_time_s, peak_rss_mb=res.peak_rss_mb, peak_gpu_mb=res.peak_gpu_mb,
                       rss_start_mb=res.rss_start_mb,
                       device_name=res.device_name, sandbox=res.sandbox)
            artifacts = []
            if res.status == "ok":
                try:
                    raw = res.output_object if res.output is None else isolation.load_output(res.output)
                    output = _check_and_score(row, problem, raw)
                    from stbench.benchmark.artifacts import spatial_plot

                    (self.tmp / key).mkdir(exist_ok=True)
                    score = f"{row['primary_metric']} = {row['primary_value']:.3f}" \
                        if np.isfinite(row.get("primary_value", np.nan)) else ""
                    plot = spatial_plot(problem, output, self.tmp / key / "spatial_map.png", label, score)
                    artifacts = [plot] if plot else []
                except ContractError as err:
                    row.update(status="invalid_output", error=str(err))
                except Exception:  # noqa: BLE001 - a scoring failure is recorded, the grid goes on
                    row.update(status="error", error="scoring failed:\n" + "".join(
                        traceback.format_exc().splitlines(True)[-isolation.TRACEBACK_LINES:]))
            row["wall_time_s"] = time.perf_counter() - start
            self.store.record(row, self.invocation, artifacts, run_name=label, started=started_at,
                              ended=started_at + row["wall_time_s"])
            for a in artifacts:
                a.unlink(missing_ok=True)
            with self.lock:
                t = self.report.timings
                t["method"] += _finite(row.get("time_method_s"))
                t["scoring"] += _finite(row.get("time_score_s"))
                t["harness"] += time.perf_counter() - start - _finite(row.get("time_method_s")) \
                    - _finite(row.get("time_score_s"))
                self.report.executed += 1
            self.progress.done(row["status"], cell)
        finally:
            self.store.release(claim)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def _finite(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return 0.0
    return v if np.isfinite(v) else 0.0


def run_benchmark(tasks=None, methods=None, datasets=None, seeds=(0,), splits=None, data_dir=None,
                  user_datasets: list[Dataset] | None = None, results_dir="stbench-results",
                  executor: str = "local", jobs: int = 1, timeout: float | None = None, memory=None,
                  force: bool = False, address: str | None = None, progress: bool = True,
                  method_params: dict[str, dict] | None = None, instances=None) -> RunReport:
    """Run the grid isolated, record every cell in the store, export the results table.

    ``methods``: registered names or Method objects. ``timeout`` (seconds) and
    ``memory`` (bytes or "8G") apply per cell; by default the timeout depends on
    the method's kind and the memory ceiling is 80 % of RAM shared by ``jobs``.
    """
    start_all = time.perf_counter()
    tasks = list(tasks or TASKS)
    for t in tasks:
        get_task(t)
    methods = [m if isinstance(m, Method) else get_method(m) for m in (methods or default_methods())]
    by_name = {m.name: m for m in methods}
    for m in methods:
        check_params(m.name, (method_params or {}).get(m.name, {}), m.params)
    params = {m.name: {**m.params, **(method_params or {}).get(m.name, {})} for m in methods}
    loaded: dict[str, Dataset] = {d.spec.name: d for d in (user_datasets or [])}
    names = list(datasets or ([] if user_datasets else ["synthetic"]))
    specs = {n: get_dataset_spec(n) for n in names}
    specs.update({n: d.spec for n, d in loaded.items()})
    cells = plan_cells(tasks, methods, specs, seeds, splits, instances)
    jobs = max(1, int(jobs))
    memory = parse_memory(memory) or default_memory(jobs)
    if timeout is not None and float(timeout) <= 0:
        raise StbenchError(f"--timeout {timeout} is not positive. Expected a number of seconds > 0")
    report = RunReport(pd.DataFrame())
    warm = threading.Thread(target=lambda: report.timings.__setitem__("startup", isolation.warm_up()), daemon=True)
    warm.start()  # the fork server imports the libraries while the data loads
    store = ResultStore(results_dir)
    backend = _Backend(executor, jobs, address)
    config = {"tasks": tasks, "datasets": list(specs), "methods": list(by_name), "seeds": list(seeds),
              "splits": splits or "all", "executor": executor, "jobs": jobs, "timeout_s": timeout or "by kind",
              "memory_bytes": memory, "force": force}
    invocation = store.start_invocation({k: json.dumps(v) for k, v in config.items()},
                                        {"git_commit": git_commit(), "versions": json.dumps(library_versions())})
    report.invocation = invocation
    bar = _Progress(len(cells), progress)
    grid = _Grid(store, invocation, backend, by_name, params, timeout, memory,
                 max(1, (os.cpu_count() or 1) // jobs), report, bar, loaded, data_dir)
    status = "FAILED"
    keys, split_sha = {}, {}
    try:
        # Keys need the split hashes: cheap (no preprocessing), one per problem.
        for cell in cells:
            pk = cell.problem_key
            if pk not in split_sha:
                ds = grid.dataset(cell.dataset)
                # computed once per problem: hashed here for the keys, reused to build the problem
                arrays = get_task(cell.task).make_split(ds, cell.instance, cell.split, cell.seed)
                grid.split_arrays[pk] = arrays
                split_sha[pk] = (ds.sha256, hash_arrays(*arrays.values()))
            keys[cell] = cell_key(cell, *split_sha[pk], by_name[cell.method], params[cell.method])
        recorded = {} if force else store.statuses()
        groups: OrderedDict[tuple, list[Cell]] = OrderedDict()
        for cell in cells:
            if recorded.get(keys[cell], set()) & set(DONE):
                report.cached += 1
                bar.done("cached")
            else:
                groups.setdefault(cell.problem_key, []).append(cell)
        if groups:
            warm.join()  # startup time is then measured on its own, not charged to the first cell
        deferred = _run_groups(grid, groups, keys, force, jobs)
        for cell in deferred:  # cells another runner held: wait for it, then run them only if it did not
            claim = store.claim(keys[cell], wait=True)
            if not force and store.is_done(keys[cell]):
                store.release(claim)
                report.cached += 1
                bar.done("cached")
                continue
            problem, pid, path, split_time = grid.problem(cell.problem_key)
            grid.run(cell, keys[cell], problem, pid, path, split_time, claim)
            path.unlink(missing_ok=True)
        status = "FINISHED"
    except BaseException:
        isolation.kill_active()
        status = "KILLED"
        raise
    finally:
        bar.close()
        grid.close()
        store.update_catalog({m.name: m.metadata() for m in methods},
                             {n: {"platform": d.platform, "organism": d.organism, "tissue": d.tissue,
                                  "version": d.version, "paper": d.source.get("paper", ""),
                                  "synthetic": d.filename is None and n in DATASETS,
                                  "description": d.description}
                              for n, d in specs.items()},
                             {t: get_task(t).declaration() for t in tasks})
        table = store.export()
        report.path = store.results_path
        report.results = table[table["cell_key"].isin(set(keys.values()))].reset_index(drop=True)
        n_failed = int(report.results["status"].isin(FAILED).sum()) if len(report.results) else 0
        store.end_invocation(invocation, {"cells": len(cells), "executed": report.executed,
                                          "cached": report.cached, "failed": n_failed,
                                          "wall_time_s": time.perf_counter() - start_all}, status)
    return report


def _run_groups(grid: _Grid, groups, keys, force: bool, jobs: int) -> list[Cell]:
    """Run every group's cells on ``jobs`` workers; at most two problems are alive at once."""
    deferred: list[Cell] = []
    window: list[list] = []  # futures of the live problems, oldest first
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stbench-cell") as pool:
        for pkey, group in groups.items():
            claims = {}
            for cell in group:
                claim = grid.store.claim(keys[cell])
                if claim is None:
                    deferred.append(cell)
                elif not force and grid.store.is_done(keys[cell]):  # finished by another runner meanwhile
                    grid.store.release(claim)
                    grid.report.cached += 1
                    grid.progress.done("cached")
                else:
                    claims[cell] = claim
            if not claims:
                continue
            problem, pid, path, split_time = grid.problem(pkey)
            window.append((path, [pool.submit(grid.run, cell, keys[cell], problem, pid, path, split_time, claim)
                                  for cell, claim in claims.items()]))
            del problem  # the futures hold it until its cells are done
            while len(window) > 1:
                _finish(*window.pop(0))
        for path, futures in window:
            _finish(path, futures)
    return deferred


def _finish(inputs_path: Path, futures) -> None:
    """Wait for a problem's cells, then drop its input file (it may sit in memory, /dev/shm)."""
    try:
        for f in futures:
            f.result()
    finally:
        inputs_path.unlink(missing_ok=True)


def metric_columns_for(task_name: str, df: pd.DataFrame) -> list[str]:
    """The task's declared metrics (primary first) that have a value in ``df``."""
    return [m for m in get_task(task_name).metrics if m in df and df[m].notna().any()]


def method_labels(df: pd.DataFrame, methods: dict[str, Method] | None = None) -> pd.Series:
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
