"""The runner: plan the grid of cells, skip what is recorded, run the rest isolated, score, record.

A *cell* is (task, split, dataset, instance, method, seed). Data flow::

    plan_cells --> cell keys (dataset sha, split sha, task version, method
                   name + version + parameters, seed) --> already ok in the store? skip
    for each problem (task, dataset, instance, split, seed) with cells to run:
        task.make_problem --> Problem.inputs written once as an exchange file
        per cell: claim the key --> a cell the method's declaration excludes is
                  recorded skipped, unrun --> else the executor runs
                  isolation.execute(job) in a fresh child --> output read back as
                  data --> task.check_output --> task.score --> spatial plot -->
                  one MLflow child run
    export DIR/results.parquet from the record

The solution never leaves this process, except to the positive control (whose
``uses_truth`` flag says so). No adapter's code runs here either: the runner
knows methods by their metadata (``planning.MethodInfo``, from the manifest or
a sandboxed child's report) and only cells import them. A failing cell is
recorded with its status and never stops the grid.

``inprocess.run_cell`` runs one method in the caller's process, without
isolation or recording: for unit tests and debugging, never for published results.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.benchmark import exchange, isolation
from stbench.benchmark.backends import Backend
from stbench.benchmark.planning import (DEFAULT_TIMEOUT_S, Cell, MethodInfo, cell_key, default_memory,
                                        default_methods, method_info, parse_memory, plan_cells)
from stbench.benchmark.report import Progress, RunReport
from stbench.errors import ContractError, StbenchError
from stbench.benchmark.provenance import git_commit, library_versions
from stbench.benchmark.store import DONE, FAILED, REFERENCE_DIR, ResultStore, TrackingUnavailable
from stbench.datasets.loading import Dataset, load_dataset
from stbench.datasets.registry import DATASETS, get_dataset_spec
from stbench.manifest import check_params, variant_name
from stbench.tasks import TASKS, get_task
from stbench.tasks.base import hash_arrays

@functools.lru_cache(maxsize=1)
def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False


def _device(method: MethodInfo) -> str:
    return "cuda" if method.gpu and _cuda_available() else "cpu"


def _base_row(problem, method: MethodInfo, params: dict) -> dict:
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


class _Grid:
    """One invocation's state: the store, loaded datasets, live problems and the executor."""

    def __init__(self, store, invocation: str, backend: Backend, methods: dict[str, MethodInfo],
                 params: dict[str, dict], timeout, memory: int, threads: int, report: RunReport,
                 progress: Progress, loaded: dict, data_dir):
        self.store, self.invocation, self.backend = store, invocation, backend
        self.methods, self.params, self.timeout, self.memory, self.threads = methods, params, timeout, memory, threads
        self.report, self.progress, self.loaded, self.data_dir = report, progress, loaded, data_dir
        self.tmp = Path(tempfile.mkdtemp(prefix=isolation.owned("stbench-problems-"), dir=isolation.exchange_root()))
        self.commit, self.versions = git_commit(), json.dumps(library_versions(), sort_keys=True)
        self.lock = threading.Lock()
        # problem key -> its split's arrays, computed for its cell key and kept to build the problem,
        # within a memory budget (a grid's splits together can be gigabytes: denoising's thinned counts)
        self.split_arrays: dict[tuple, dict] = {}
        self.split_bytes = 0

    SPLIT_BUDGET_BYTES = 256 * 2**20

    def keep_split(self, pkey: tuple, arrays: dict) -> None:
        """Keep a split's arrays for building its problem if they fit the budget; else the problem
        recomputes them (cheap by design, only memory is saved)."""
        size = sum(getattr(a, "nbytes", 0) for a in arrays.values())
        if self.split_bytes + size <= self.SPLIT_BUDGET_BYTES:
            self.split_arrays[pkey] = arrays
            self.split_bytes += size

    def take_split(self, pkey: tuple) -> dict | None:
        arrays = self.split_arrays.pop(pkey, None)
        if arrays is not None:
            self.split_bytes -= sum(getattr(a, "nbytes", 0) for a in arrays.values())
        return arrays

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
                                              arrays=self.take_split(pkey))
        problem_id = uuid.uuid4().hex
        path = self.tmp / f"{problem_id}.zip"
        exchange.write(problem.inputs, path)  # plain data: a cell reads it without running code
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
            start, started_at = time.perf_counter(), time.time()
            artifacts = []
            if cell.skip:  # declared: nothing runs, nothing is scored
                row.update(status="skipped", error=cell.skip, sandbox="none")
                self._record(cell, row, artifacts, label, start, started_at)
                return
            job = isolation.Job(
                method_ref=method.ref, task=cell.task, split=cell.split, seed=cell.seed,
                device=row["device"], params=params, memory_bytes=self.memory, threads=self.threads,
                timeout_s=float(self.timeout or DEFAULT_TIMEOUT_S[method.kind]), inputs_path=str(inputs_path),
                solution=exchange.to_bytes(get_task(cell.task).reference_output(problem))
                if method.uses_truth else None)
            if isolation.interrupted():
                return  # the run is stopping: this cell is left for the next one
            res = self.backend.run(job, problem_id)
            if isolation.interrupted():
                return  # killed because the run stopped: not a result (the next run runs it)
            row.update(status=res.status, error=res.error, time_method_s=res.time_method_s,
                       time_startup_s=res.time_startup_s,
                       cpu_time_s=res.cpu_time_s, peak_rss_mb=res.peak_rss_mb, peak_pss_mb=res.peak_pss_mb,
                       peak_gpu_mb=res.peak_gpu_mb,
                       rss_start_mb=res.rss_start_mb,
                       device_name=res.device_name, sandbox=res.sandbox)
            if res.log:  # the method's stdout and stderr (bounded), with the run, never on the terminal
                (self.tmp / key).mkdir(exist_ok=True)
                (self.tmp / key / "cell.log").write_text(res.log)
                artifacts.append(self.tmp / key / "cell.log")
            if res.status == "ok":
                try:
                    raw = res.output_object if res.output is None else isolation.load_output(res.output, job)
                    output = _check_and_score(row, problem, raw)
                    from stbench.benchmark.artifacts import spatial_plot

                    (self.tmp / key).mkdir(exist_ok=True)
                    score = f"{row['primary_metric']} = {row['primary_value']:.3f}" \
                        if np.isfinite(row.get("primary_value", np.nan)) else ""
                    plot = spatial_plot(problem, output, self.tmp / key / "spatial_map.png", label, score)
                    artifacts += [plot] if plot else []
                except ContractError as err:
                    row.update(status="invalid_output", error=str(err))
                except Exception:  # noqa: BLE001 - a scoring failure is recorded, the grid goes on
                    row.update(status="error", error="scoring failed:\n" + "".join(
                        traceback.format_exc().splitlines(True)[-isolation.TRACEBACK_LINES:]))
            self._record(cell, row, artifacts, label, start, started_at)
        finally:
            self.store.release(claim)

    def _record(self, cell: Cell, row: dict, artifacts: list, label: str, start: float, started_at: float) -> None:
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

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def _finite(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return 0.0
    return v if np.isfinite(v) else 0.0


@dataclass
class RunConfig:
    """What one ``stbench run`` does. Every field has the command line's default.

    The grid: ``tasks`` (names; None: all), ``splits`` (None: each task's all),
    ``datasets`` (registered names; None: ``synthetic``, or only ``user_datasets``
    when those are given), ``instances`` (slices, pairs or groups to keep; None: all),
    ``seeds``, ``methods`` (names or Method objects; None: the controls and baselines)
    and ``method_params`` (name -> parameters overriding its defaults: a variant).
    Where: ``results_dir`` (the MLflow record and results table), ``data_dir`` (the
    real .h5ad files; None: $STBENCH_DATA). How: ``executor`` ("local" or "ray", at
    ``address``), ``jobs`` cells at once, ``timeout`` seconds and ``memory`` ("8G" or
    bytes) per cell (None: by method kind, and 80 % of RAM / jobs), ``force`` re-runs
    recorded cells, ``progress`` shows the bar, ``command`` is recorded as the invocation's.
    """

    tasks: list[str] | None = None
    methods: list | None = None
    datasets: list[str] | None = None
    seeds: tuple[int, ...] | list[int] = (0,)
    splits: list[str] | None = None
    instances: list[str] | None = None
    method_params: dict[str, dict] | None = None
    data_dir: str | None = None
    user_datasets: list[Dataset] | None = None
    results_dir: str | Path = "stbench-results"
    executor: str = "local"
    jobs: int = 1
    timeout: float | None = None
    memory: str | int | None = None
    force: bool = False
    skip_published: bool = False  # skip cells done on the reference board (resuming the board's runs)
    reference_dir: str | Path | None = None  # that board (None: the committed one)
    address: str | None = None
    progress: bool = True
    command: str = ""  # the command line that asked for this run, recorded with the invocation


def run_benchmark(config: RunConfig | None = None, /, **fields) -> RunReport:
    """Run the grid of ``config`` isolated, record every cell in the store, export the results
    table, and return what happened (a :class:`RunReport`). Fields may also be given by name
    (``run_benchmark(tasks=[...], seeds=[0, 1])``), over ``config`` or the defaults."""
    cfg = replace(config or RunConfig(), **fields)
    tasks, methods, datasets, seeds, splits = cfg.tasks, cfg.methods, cfg.datasets, cfg.seeds, cfg.splits
    instances, method_params, data_dir, user_datasets = cfg.instances, cfg.method_params, cfg.data_dir, \
        cfg.user_datasets
    results_dir, executor, jobs, timeout, memory = cfg.results_dir, cfg.executor, cfg.jobs, cfg.timeout, cfg.memory
    force, address, progress = cfg.force, cfg.address, cfg.progress
    start_all = time.perf_counter()
    tasks = list(tasks or TASKS)
    for t in tasks:
        get_task(t)
    methods = [method_info(m) for m in (methods or default_methods())]
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
    isolation.reset_interrupted()
    isolation.sweep_leftovers()  # what killed runners left in /dev/shm and the temporary folder
    isolation.forkserver_context()  # started here, in one thread, with the scrubbed environment
    warm = threading.Thread(target=lambda: report.timings.__setitem__("startup", isolation.warm_up()), daemon=True)
    warm.start()  # the fork server imports the libraries while the data loads
    store = ResultStore(results_dir)
    backend = Backend(executor, jobs, address)
    config = {"tasks": tasks, "datasets": list(specs), "methods": list(by_name), "seeds": list(seeds),
              "splits": splits or "all", "executor": executor, "jobs": jobs, "timeout_s": timeout or "by kind",
              "memory_bytes": memory, "force": force}
    invocation = store.start_invocation({k: json.dumps(v) for k, v in config.items()},
                                        {"git_commit": git_commit(), "versions": json.dumps(library_versions()),
                                         "command": cfg.command[:5000]})
    report.invocation = invocation
    bar = Progress(len(cells), progress)
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
                grid.keep_split(pk, arrays)
                split_sha[pk] = (ds.sha256, hash_arrays(*arrays.values()))
            keys[cell] = cell_key(cell, *split_sha[pk], by_name[cell.method], params[cell.method])
        recorded = {} if force else store.statuses()
        published = published_keys(cfg.reference_dir) if cfg.skip_published else set()
        groups: OrderedDict[tuple, list[Cell]] = OrderedDict()
        for cell in cells:
            if keys[cell] in published:
                report.published += 1
                bar.done("cached")
            elif recorded.get(keys[cell], set()) & set(DONE):
                report.cached += 1
                bar.done("cached")
            else:
                groups.setdefault(cell.problem_key, []).append(cell)
        for pk in [pk for pk in grid.split_arrays if pk not in groups]:
            grid.take_split(pk)  # every cell of it is recorded: no problem will be built
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
    except TrackingUnavailable:
        status = "UNREACHABLE"  # the store cannot be written: no export, no end of the invocation
        isolation.kill_active()
        raise
    except BaseException:
        isolation.kill_active()
        status = "KILLED"
        raise
    finally:
        bar.close()
        grid.close()
        if status != "UNREACHABLE":  # (unreachable: the error propagates; the next run ends it KILLED)
            store.update_catalog(*catalog_entries(methods, specs, tasks))
            table = store.export()
            report.path = store.results_path
            report.results = table[table["cell_key"].isin(set(keys.values()))].reset_index(drop=True)
            n_failed = int(report.results["status"].isin(FAILED).sum()) if len(report.results) else 0
            store.end_invocation(invocation, {"cells": len(cells), "executed": report.executed,
                                              "cached": report.cached, "failed": n_failed,
                                              "wall_time_s": time.perf_counter() - start_all}, status)
    return report


def published_keys(reference_dir: str | Path | None = None) -> set[str]:
    """The cell keys done on the reference board: a board's runs resume from it, whatever
    results folder they write to (a folder does not outlive a session; the board does)."""
    from stbench.benchmark.board import read_board

    board = read_board(Path(reference_dir or REFERENCE_DIR))
    return set(board.loc[board["status"].isin(DONE), "cell_key"]) if len(board) else set()


def catalog_entries(methods: list[MethodInfo], specs: dict, tasks: list[str]) -> tuple[dict, dict, dict]:
    """What the app shows about methods, datasets and tasks (``catalog.json``), from their metadata."""
    datasets = {n: {"platform": d.platform, "organism": d.organism, "tissue": d.tissue, "version": d.version,
                    "paper": d.source.get("paper", ""), "synthetic": d.filename is None and n in DATASETS,
                    "description": d.description} for n, d in specs.items()}
    return ({m.name: m.metadata for m in methods}, datasets, {t: get_task(t).declaration() for t in tasks})


def _run_groups(grid: _Grid, groups, keys, force: bool, jobs: int) -> list[Cell]:
    """Run every group's cells on ``jobs`` workers; at most two problems are alive at once."""
    deferred: list[Cell] = []
    window: list[list] = []  # futures of the live problems, oldest first
    claim_of: dict = {}  # future -> the claim its cell holds (released by the cell, or here if cancelled)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stbench-cell")
    try:
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
            futures = []
            for cell, claim in claims.items():
                futures.append(pool.submit(grid.run, cell, keys[cell], problem, pid, path, split_time, claim))
                claim_of[futures[-1]] = claim
            window.append((path, futures))
            del problem  # the futures hold it until its cells are done
            while len(window) > 1:
                _finish(*window.pop(0))
        for path, futures in window:
            _finish(path, futures)
    except BaseException:
        # Ctrl-C, SIGTERM, a lost tracking server: kill the running cells (not recorded) and drop
        # the queued ones at once, rather than running the window's remaining cells first
        isolation.kill_active()
        pool.shutdown(wait=True, cancel_futures=True)
        for future, claim in claim_of.items():
            if future.cancelled():
                grid.store.release(claim)
        for path, _ in window:
            path.unlink(missing_ok=True)
        raise
    pool.shutdown(wait=True)
    return deferred


def _finish(inputs_path: Path, futures) -> None:
    """Wait for a problem's cells, then drop its input file (it may sit in memory, /dev/shm)."""
    try:
        for f in futures:
            f.result()
    finally:
        inputs_path.unlink(missing_ok=True)


