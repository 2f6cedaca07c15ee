"""The parent side of one cell: start the isolated child, enforce the limits, classify.

``execute(job)`` is *the cell function*: the local executor calls it in a
thread of the runner, the Ray executor in a Ray worker. It never sees the
solution of a task (except the positive control's, passed through the pipe and
never written to disk); it returns the method's output as bytes, plus what the
child measured. Output checking and scoring stay with the runner, which holds
the truth.

Outcomes: ``ok``, ``skipped`` and ``error`` come from the child; the parent
kills the child's whole process group and records ``timeout`` past the
wall-clock limit, ``oom`` past the memory ceiling (resident memory of the child
and its own subprocesses, polled), and ``oom`` or ``error`` when the child dies
without a word (SIGKILL from the kernel's OOM killer, a segfault, ``os._exit``).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from stbench.errors import ContractError

POLL_FAST_S, POLL_SLOW_S = 0.02, 0.1  # fine polling while a cell is young, then cheaper
TRACEBACK_LINES = 12  # the tail of a traceback kept in the record

_context_lock = threading.Lock()
_start_lock = threading.Lock()
_context = None
_BLANK_MAIN = types.ModuleType("__main__")  # no __file__, no __spec__: nothing to re-import
_active: set[int] = set()  # children running now, killed if the runner is interrupted


def exchange_root() -> str:
    """Where input views and outputs travel between runner and child.

    ``/dev/shm`` (memory) when it has room, since writing a 4,000 x 3,000 float64
    output there takes 0.04 s against 0.2 s on disk here; else the temporary folder.
    The method's own scratch folder stays on disk either way.
    """
    shm = "/dev/shm"
    try:
        if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 4 * 2**30:
            return shm
    except OSError:
        pass
    return tempfile.gettempdir()


def kill_active() -> None:
    """Kill every child still running (the runner is being interrupted)."""
    for pid in list(_active):
        _kill_group(pid)


def forkserver_context():
    """The fork server's multiprocessing context, with the child module preloaded.

    Started once per process (lazily, or early by :func:`warm_up`); it is a
    fresh interpreter, so children forked from it share nothing with the runner.
    """
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["stbench.benchmark.forkserver_init", "stbench.benchmark.child"])
            _start_scrubbed()
            _context = ctx
        return _context


# What a cell must not learn from its environment: where the data and the results are, which
# tracking server records them, which cluster runs them.
SCRUBBED_PREFIXES = ("STBENCH_", "MLFLOW_", "RAY_ADDRESS")


def _start_scrubbed() -> None:
    """Start the fork server with those variables removed from the environment it is exec'd
    with: ``/proc/<pid>/environ`` shows a process's environment as of its exec, so scrubbing
    ``os.environ`` inside the child alone would leave them readable there. The runner's own
    environment is restored at once (the variables are taken out only for the exec)."""
    from multiprocessing import forkserver

    saved = {k: v for k, v in os.environ.items() if k.startswith(SCRUBBED_PREFIXES)}
    try:
        for key in saved:
            del os.environ[key]
        forkserver.ensure_running()
    finally:
        os.environ.update(saved)


def _noop():
    pass


def _child_entry(payload: dict, done) -> None:
    """The child's target; the runner itself never imports the child module (torch and all)."""
    from stbench.benchmark.child import main

    main(payload)
    done.send_bytes(b"done")
    done.close()


def reap_orphans() -> int:
    """Kill what cells left behind: the fork server is a child subreaper (forkserver_init), so a
    process a method detached (double fork, ``setsid``) becomes its child when its own parent
    exits. Any child of the fork server that is not a running cell is such an orphan: it and its
    descendants are killed. Runs under the start lock, so a cell being started is never taken for
    one. Returns how many processes were killed."""
    from multiprocessing import forkserver

    server_pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not server_pid:
        return 0
    killed = 0
    with _start_lock:
        try:
            orphans = [p for p in psutil.Process(server_pid).children() if p.pid not in _active]
        except psutil.Error:
            return 0
        for proc in orphans:
            try:
                family = [proc] + proc.children(recursive=True)
            except psutil.Error:
                continue
            for p in family:
                try:
                    p.kill()
                    killed += 1
                except psutil.Error:
                    pass
    return killed


def _start(proc) -> None:
    """Start a child without re-running the runner's main script in it.

    multiprocessing re-imports ``__main__`` in every child of a fork server (spawn
    semantics). For the runner that is at best wasted time (the ``stbench``
    script) and at worst a script without a main guard run once per cell; it
    would also hand the child whatever the main module computes. The
    preparation data is read from ``sys.modules["__main__"]`` while starting, so
    a blank main module is swapped in for that moment.
    """
    with _start_lock:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = _BLANK_MAIN
        try:
            proc.start()
            _active.add(proc.pid)  # under the lock: reap_orphans never mistakes a starting cell for an orphan
        finally:
            sys.modules["__main__"] = main


def warm_up() -> float:
    """Start the fork server now (imports torch, scanpy and the adapters once); returns seconds."""
    start = time.perf_counter()
    p = forkserver_context().Process(target=_noop)
    _start(p)
    p.join()
    _active.discard(p.pid)
    return time.perf_counter() - start


@dataclass
class Job:
    """Everything a child needs, and nothing of the truth (bar the positive control's solution)."""

    method_ref: str  # registered name, or "path/to/module.py:attribute"
    task: str
    split: str
    seed: int
    device: str
    params: dict
    timeout_s: float
    memory_bytes: int
    threads: int = 1
    inputs_path: str | None = None  # the pickled input view (local executor: one file per problem)
    solution: bytes | None = None  # only for methods marked uses_truth


@dataclass
class ChildResult:
    status: str
    error: str = ""
    output: bytes | None = None
    time_method_s: float = float("nan")
    cpu_time_s: float = float("nan")
    peak_rss_mb: float = float("nan")
    rss_start_mb: float = float("nan")  # the child's resident memory at fork: the harness floor every cell has
    peak_gpu_mb: float = float("nan")
    child_wall_s: float = float("nan")  # start of the child to its result read back
    output_object: object = None  # the output, already read back as data (see load_output)
    device_name: str = "cpu"
    sandbox: str = "none"


def _rss(proc: psutil.Process | None) -> int:
    if proc is None:
        return 0
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _tree_rss(proc: psutil.Process | None) -> int:
    if proc is None:
        return 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_group(pid: int, alive: bool = True) -> None:
    """SIGKILL the child's process group (the child made itself its leader).

    ``alive=False`` after the child has exited: only its leftover subprocesses
    can still be in the group, and the bare pid may already belong to someone else.
    """
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if alive:  # killed before it could call setsid()
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def execute(job: Job, inputs: bytes | None = None) -> ChildResult:
    """Run one cell's method in a fresh child process under the job's limits.

    ``inputs`` (bytes of the pickled input view) replaces ``job.inputs_path``
    where no file system is shared with the runner (Ray workers).
    """
    scratch = Path(tempfile.mkdtemp(prefix="stbench-cell-"))
    exchange = Path(tempfile.mkdtemp(prefix="stbench-cell-io-", dir=exchange_root()))
    try:
        if inputs is not None:
            (exchange / "inputs.pkl").write_bytes(inputs)
            job.inputs_path = str(exchange / "inputs.pkl")
        payload = asdict(job) | {"scratch": str(scratch), "exchange": str(exchange)}
        ctx = forkserver_context()
        # The child says "done" through this pipe once its result is written, so the
        # runner need not wait for it to exit (tearing down a large heap takes a while).
        done_r, done_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_entry, args=(payload, done_w), name="stbench-cell")
        start = time.perf_counter()
        _start(proc)
        done_w.close()
        start_rss = float("nan")
        try:
            watcher = psutil.Process(proc.pid)
            start_rss = _rss(watcher) / 2**20  # measured here, at fork, before the method allocates
        except psutil.NoSuchProcess:
            # A fast cell can finish, and be reaped by the fork server, before we look;
            # its result file is still there and the child reports its own peak RSS.
            watcher = None
        killed, peak_rss, polls, waiting_on = None, 0, 0, [proc.sentinel, done_r]
        while True:
            age = time.perf_counter() - start
            ready = mp_connection.wait(waiting_on, POLL_FAST_S if age < 1.0 else POLL_SLOW_S)
            if done_r in ready:
                try:
                    done_r.recv_bytes()
                    break  # reported: the result is complete
                except EOFError:  # died without reporting: its exit code will say how
                    waiting_on = [proc.sentinel]
            if proc.exitcode is not None:
                break
            # the child's own RSS every poll (one small /proc read); its subprocesses too,
            # every 10th poll (that walks /proc, and would steal CPU from the method)
            polls += 1
            peak_rss = max(peak_rss, _tree_rss(watcher) if polls % 10 == 1 else _rss(watcher))
            if job.memory_bytes and peak_rss > job.memory_bytes:
                killed = ("oom", f"killed: resident memory {_mb(peak_rss)} passed the ceiling of "
                                 f"{_mb(job.memory_bytes)} (--memory)")
            elif age > job.timeout_s:
                killed = ("timeout", f"killed: still running after {job.timeout_s:g} s (--timeout)")
            if killed:
                _kill_group(proc.pid)
                proc.join()
                break
        wall = time.perf_counter() - start
        done_r.close()
        _active.discard(proc.pid)
        # What is left of the group: the exiting child, and subprocesses a method forked and left;
        # then whatever it detached from the group (a setsid daemon), re-parented to the fork server.
        _kill_group(proc.pid, alive=False)
        proc.join(timeout=5)
        reap_orphans()
        result_file = exchange / "result.json"
        if killed:
            res = ChildResult(status=killed[0], error=killed[1], peak_rss_mb=peak_rss / 2**20)
        elif result_file.exists():
            res = child_report(result_file)
            if res.status == "ok":
                if inputs is None:  # local: read it back here, straight from the file
                    try:
                        with open(exchange / "output.pkl", "rb") as fh:
                            res.output_object = load_output(fh)
                    except (ContractError, OSError) as err:
                        res.status, res.error = "invalid_output", str(err)
                else:  # Ray: bytes travel back to the runner
                    res.output = (exchange / "output.pkl").read_bytes()
        elif proc.exitcode == -signal.SIGKILL:
            res = ChildResult(status="oom", error="the child was killed by SIGKILL without reporting "
                                                  "(most likely the kernel's out-of-memory killer)")
        else:
            how = (f"signal {signal.Signals(-proc.exitcode).name}" if proc.exitcode < 0
                   else f"exit code {proc.exitcode}")
            res = ChildResult(status="error", error=f"the child process ended with {how} before reporting")
        res.child_wall_s = wall
        res.rss_start_mb = start_rss if start_rss > 0 else float("nan")
        if res.peak_rss_mb != res.peak_rss_mb:  # NaN: the child could not say
            res.peak_rss_mb = peak_rss / 2**20
        return res
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(exchange, ignore_errors=True)


CHILD_STATUSES = ("ok", "skipped", "error", "oom")  # what a child may report; timeout is the parent's


def child_report(path: Path) -> ChildResult:
    """The child's result.json, held to what a child may say: a status of the taxonomy (else the
    cell is an error saying what was reported), numbers as floats, text as short strings. The
    child runs the method's code, so its report is checked, never trusted as written."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"a {type(data).__name__}, not an object")
    except (OSError, ValueError) as err:
        return ChildResult(status="error", error=f"the child's report is unreadable ({err})")
    status = data.get("status")
    if status not in CHILD_STATUSES:
        return ChildResult(status="error", error=f"the child reported status {str(status)[:40]!r}, which is not one "
                                                 f"of {', '.join(CHILD_STATUSES)}")
    res = ChildResult(status=status, error=str(data.get("error", ""))[:20000])
    for name in ("time_method_s", "cpu_time_s", "peak_rss_mb", "peak_gpu_mb"):
        try:
            value = float(data.get(name, float("nan")))
        except (TypeError, ValueError):
            value = float("nan")
        setattr(res, name, value if value >= 0 else float("nan"))
    res.device_name = str(data.get("device_name", "cpu"))[:200]
    res.sandbox = str(data.get("sandbox", "none"))[:200]
    return res


# -- reading a method's output back ------------------------------------------
_SAFE_MODULES = ("numpy", "scipy.sparse", "pandas", "anndata", "collections", "copyreg", "datetime", "zoneinfo",
                 "pytz", "dateutil", "_codecs")
_SAFE_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "slice", "complex", "bytearray", "bytes", "int",
                  "float", "str", "bool", "range", "object", "NoneType"}


class _OutputUnpickler(pickle.Unpickler):
    """Outputs are data: arrays, sparse matrices, frames, AnnData and plain containers.

    Anything else (a class from the method's own module, a function) is refused,
    so reading an output back can never run a method's code in the runner.
    """

    def find_class(self, module, name):
        if (module == "builtins" and name in _SAFE_BUILTINS) or module.split(".")[0] in _SAFE_MODULES \
                or module.startswith(_SAFE_MODULES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def load_output(data):
    """The method's output (from bytes or an open file), or ContractError naming the
    object type that is not plain data."""
    try:
        return _OutputUnpickler(io.BytesIO(data) if isinstance(data, bytes) else data).load()
    except pickle.UnpicklingError as err:
        raise ContractError(f"the output holds an object of type {err} that is not data. Expected: numpy "
                            "arrays, scipy.sparse matrices, pandas objects, AnnData, or dicts/lists of them") from None
    except Exception as err:  # noqa: BLE001 - a malformed output is that cell's invalid_output, not the grid's end
        raise ContractError(f"the output could not be read back ({type(err).__name__}: {str(err)[:300]}). Expected: "
                            "numpy arrays, scipy.sparse matrices, pandas objects, AnnData, or dicts/lists of them") \
            from None
