"""The parent side of one cell: start the isolated child, enforce the limits, measure, classify.

``execute(job)`` is *the cell function*: the local executor calls it in a
thread of the runner, the Ray executor in a Ray worker. It never sees the
solution of a task (except the positive control's); it returns the method's
output read back as data, plus what it measured. Output checking and scoring
stay with the runner, which holds the truth.

The record is the parent's: it measures the method time (from handing the input
over to the child's "done"), the CPU time and the memory of every process of
the cell; the child only says whether the method returned (``ok``), raised
(``error``) or ran out of memory (``oom``), and that word is checked. The parent
kills the cell and records ``timeout`` past the wall-clock limit, ``oom`` past
the memory ceiling (the proportional set, PSS, of all the cell's processes together,
polled), ``invalid_output`` when the output file is not data, and ``oom`` or
``error`` when the child dies without a word (SIGKILL from the kernel's OOM
killer, a segfault, ``os._exit``).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import re
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


def owned(prefix: str) -> str:
    """A temporary name that says which process made it (``stbench-cell-PID-...``), so that what
    a killed runner left behind can be told from what a live one is using (``sweep_leftovers``)."""
    return f"{prefix}{os.getpid()}-"


_LEFTOVER = re.compile(r"^stbench-(?:problems|cell|cell-io|input)-(\d+)-")


def sweep_leftovers() -> int:
    """Remove the temporary folders and files of runners that are gone (killed, even by SIGKILL):
    their problems' inputs and their cells' exchange and scratch folders, in /dev/shm and the
    temporary folder. Those of live processes are left alone. Returns how many were removed."""
    removed = 0
    for root in {exchange_root(), tempfile.gettempdir()}:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            found = _LEFTOVER.match(name)
            if not found or psutil.pid_exists(int(found.group(1))):
                continue
            path = os.path.join(root, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed += 1
            except OSError:
                pass
    return removed


_interrupted = threading.Event()  # the runner is stopping: cells it kills are not results


def kill_active() -> None:
    """The runner is being interrupted (Ctrl-C, SIGTERM, a lost tracking server): kill every
    child still running. Their cells are not recorded (``interrupted``): they did not fail, they
    were stopped, and the next run runs them."""
    _interrupted.set()
    for pid in list(_active):
        _kill_group(pid)


def interrupted() -> bool:
    return _interrupted.is_set()


def reset_interrupted() -> None:
    """A new grid starts (several may run in one process, one after the other)."""
    _interrupted.clear()


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
    import secrets
    from multiprocessing import connection, forkserver

    saved = {k: v for k, v in os.environ.items() if k.startswith(SCRUBBED_PREFIXES)}
    pathname = connection.arbitrary_address
    # The fork server forks, unsandboxed, for whoever connects to its socket and sends a request.
    # multiprocessing puts that socket in /tmp, where a cell could connect to it (a network
    # namespace does not cover socket files); an abstract socket lives in the runner's network
    # namespace, out of every cell's reach (and Landlock's scope refuses it too).
    connection.arbitrary_address = lambda family: (f"\0stbench-forkserver-{secrets.token_hex(16)}"
                                                   if family == "AF_UNIX" else pathname(family))
    try:
        for key in saved:
            del os.environ[key]
        forkserver.ensure_running()
    finally:
        os.environ.update(saved)
        connection.arbitrary_address = pathname


def _noop():
    pass


def _child_entry(payload: dict, conn) -> None:
    """The child's target; the runner itself never imports the child module (torch and all)."""
    from stbench.benchmark.child import main

    main(payload, conn)
    conn.close()


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
    inputs_path: str | None = None  # the input view's exchange file (local executor: one file per problem)
    solution: bytes | None = None  # only for methods marked uses_truth: an exchange file's bytes


@dataclass
class ChildResult:
    status: str
    error: str = ""
    output: bytes | None = None
    time_method_s: float = float("nan")
    cpu_time_s: float = float("nan")
    peak_rss_mb: float = float("nan")  # the cell's first process: its resident high-water mark
    peak_pss_mb: float = float("nan")  # all its processes: the peak of their proportional sets together
    rss_start_mb: float = float("nan")  # the child's resident memory at fork: the harness floor every cell has
    peak_gpu_mb: float = float("nan")
    child_wall_s: float = float("nan")  # start of the child to its result read back
    time_startup_s: float = float("nan")  # start of the child to its "ready" (sandbox, loading the method)
    log: str = ""  # the method's stdout and stderr, bounded (CellLog)
    output_object: object = None  # the output, already read back as data (benchmark.exchange)
    device_name: str = "cpu"
    sandbox: str = "none"


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _cell_processes(watcher: psutil.Process | None, in_pidns: bool) -> list[psutil.Process]:
    """Every process of the cell. With a PID namespace the forked child only waits for the
    namespace's first process (it shares that one's pages, and would count them twice), so it
    is left out; its descendants, detached ones included (the namespace re-parents them to its
    first process), are all in."""
    if watcher is None:
        return []
    try:
        family = watcher.children(recursive=True)
    except psutil.Error:
        return []
    return family if in_pidns and family else [watcher] + family


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    """CPU time of live processes, with what their exited children used."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _pss(proc: psutil.Process) -> int:
    """A process's proportional set size (its own pages, plus its share of those it shares),
    from /proc/PID/smaps_rollup; its RSS where that cannot be read."""
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return _rss(proc)


def _peak_rss_of(proc: psutil.Process) -> int:
    """The kernel's resident-memory high-water mark of one process (VmHWM), in bytes."""
    try:
        with open(f"/proc/{proc.pid}/status") as fh:
            return next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


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


MESSAGE_BYTES = 64 * 2**10  # the most read of one message from a cell (child.MESSAGE_BYTES)


class CellLog:
    """A cell's stdout and stderr as they arrive through a pipe: the first and the last
    ``KEEP`` bytes are kept, the rest only counted, so a method that prints a gigabyte costs the
    runner a read, never its memory or its terminal."""

    KEEP = 64 * 2**10

    def __init__(self):
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def read(self, fd: int) -> bool:
        """Read what is there now; False once the pipe is closed by every writer."""
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.total += len(chunk)
            room = self.KEEP - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail = (self.tail + chunk)[-self.KEEP:]

    def text(self) -> str:
        left_out = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {left_out:,} bytes left out ...]\n".encode() if left_out > 0 else b""
        return (bytes(self.head) + middle + bytes(self.tail)).decode("utf-8", "replace")


def _message(conn) -> dict | None:
    """One message from the cell, as a dict; None when the connection is closed or the message is
    not one (oversized, not JSON, not an object)."""
    try:
        data = json.loads(conn.recv_bytes(MESSAGE_BYTES))
    except (EOFError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def execute(job: Job, inputs: bytes | None = None) -> ChildResult:
    """Run one cell's method in a fresh child process under the job's limits (see the module).

    ``inputs`` (the input view's exchange file as bytes) replaces ``job.inputs_path`` where no
    file system is shared with the runner (Ray workers). The child never learns where the input
    lives: once it is ready, it is handed an open descriptor of it.
    """
    from multiprocessing.reduction import send_handle

    from stbench.benchmark import exchange as exchange_file

    scratch = Path(tempfile.mkdtemp(prefix=owned("stbench-cell-")))
    exchange = Path(tempfile.mkdtemp(prefix=owned("stbench-cell-io-"), dir=exchange_root()))
    inputs_file = None
    try:
        if inputs is not None:
            inputs_file = tempfile.NamedTemporaryFile(prefix=owned("stbench-input-"), dir=exchange_root())
            inputs_file.write(inputs)
            inputs_file.flush()
        inputs_path = inputs_file.name if inputs_file else job.inputs_path
        payload = {k: v for k, v in asdict(job).items() if k != "inputs_path"} | {
            "scratch": str(scratch), "exchange": str(exchange)}
        ctx = forkserver_context()
        conn, child_conn = ctx.Pipe(duplex=True)  # a socket pair: it carries the input's descriptor
        proc = ctx.Process(target=_child_entry, args=(payload, child_conn), name="stbench-cell")
        start = time.perf_counter()
        _start(proc)
        child_conn.close()
        log_r, log_w = os.pipe()  # the cell's stdout and stderr: read here, kept bounded (CellLog)
        try:
            send_handle(conn, log_w, proc.pid)
        except OSError:  # it died at once: its exit code says how
            pass
        os.close(log_w)
        os.set_blocking(log_r, False)
        log = CellLog()
        try:
            watcher = psutil.Process(proc.pid)
            start_rss = _rss(watcher) / 2**20  # measured here, at fork, before the method allocates
        except psutil.NoSuchProcess:
            watcher, start_rss = None, float("nan")
        killed, peak_rss, peak_pss, polls, waiting_on = None, 0, 0, 0, [proc.sentinel, conn, log_r]
        ready_at = done_at = None
        said, sandbox, in_pidns, cpu_s, procs = None, "none", False, float("nan"), []
        while True:
            age = time.perf_counter() - start
            ready = mp_connection.wait(waiting_on, POLL_FAST_S if age < 1.0 else POLL_SLOW_S)
            if log_r in ready and not log.read(log_r):
                waiting_on.remove(log_r)  # every writer has closed it
            if conn in ready:
                msg = _message(conn)
                now = time.perf_counter()
                if msg is None:  # closed, or not a message: its exit code (or the kill) will say
                    waiting_on = [proc.sentinel]
                elif msg.get("ready") is True and ready_at is None:
                    ready_at, sandbox = now, str(msg.get("sandbox", "none"))[:200]
                    in_pidns = "pidns" in sandbox
                    try:
                        fh = open(inputs_path, "rb")
                    except OSError as err:  # the runner's side: never the method's doing
                        killed = ("error", f"the problem's input could not be opened ({err})")
                    else:
                        with fh:
                            try:
                                send_handle(conn, fh.fileno(), proc.pid)
                            except OSError:  # it went away after saying ready: its exit code says how
                                waiting_on = [w for w in waiting_on if w is not conn]
                elif msg.get("done") is True and ready_at is not None:
                    done_at, said = now, msg
                    procs = _cell_processes(watcher, in_pidns)
                    # what it used until now; the last figure seen while polling if it cannot be read
                    cpu_s = max(_cpu_seconds(procs), cpu_s) if procs else cpu_s
                    peak_rss = max([peak_rss] + [_peak_rss_of(p) for p in procs[:1]])
                    peak_pss = max(peak_pss, sum(_pss(p) for p in procs))
                    break
                else:
                    killed = ("error", f"the cell broke the protocol: it sent {json.dumps(msg)[:120]}")
            if proc.exitcode is not None:
                if conn in waiting_on and conn.poll(0):
                    continue  # it has ended: first read what it said before it did
                break
            if not killed:
                # the cell's first process every poll (one small /proc read); all of its processes
                # every 10th poll (that walks /proc, and would steal CPU from the method)
                polls += 1
                if polls % 10 == 1 or not procs:
                    procs = _cell_processes(watcher, in_pidns or (ready_at is None))
                    if procs:
                        cpu_s = _cpu_seconds(procs)
                first = _rss(procs[0]) if procs else 0
                peak_rss = max(peak_rss, first)
                # The ceiling applies to the proportional set (PSS) of all the cell's processes
                # together: pages a pool's workers share with their parent count once, not once per
                # worker; read every 10th poll, or at once when the first process alone is past it.
                if procs and (polls % 10 == 1 or (job.memory_bytes and first > job.memory_bytes)):
                    pss = sum(_pss(p) for p in procs)
                    peak_pss = max(peak_pss, pss)
                    if job.memory_bytes and pss > job.memory_bytes:
                        killed = ("oom", f"killed: memory (proportional set of its {len(procs)} processes) "
                                         f"{_mb(pss)} passed the ceiling of {_mb(job.memory_bytes)} (--memory)")
                if not killed and age > job.timeout_s:
                    killed = ("timeout", f"killed: still running after {job.timeout_s:g} s (--timeout)")
            if killed:
                if procs:  # what it had used when it was stopped (its processes as last listed)
                    cpu_s = _cpu_seconds(procs)
                _kill_group(proc.pid)
                proc.join()
                break
        wall = time.perf_counter() - start
        conn.close()
        log.read(log_r)  # what is left in the pipe (a daemon may still hold it open: not waited for)
        os.close(log_r)
        _active.discard(proc.pid)
        # The whole cell goes: its process group (the waiting parent and the namespace's first
        # process, whose end takes every process of the namespace with it), then, where no PID
        # namespace could be made, whatever it detached (a setsid daemon re-parented to the fork server).
        _kill_group(proc.pid, alive=False)
        proc.join(timeout=5)
        reap_orphans()
        if killed:
            res = ChildResult(status=killed[0], error=killed[1])
        elif said is not None:
            status = said.get("status")
            if status not in CHILD_STATUSES:
                res = ChildResult(status="error", error=f"the child said status {str(status)[:40]!r}, which is "
                                                        f"not one of {', '.join(CHILD_STATUSES)}")
            else:
                res = ChildResult(status=status, error=str(said.get("error", ""))[:20000])
                res.peak_gpu_mb = _nonnegative(said.get("peak_gpu_mb"))  # the device's figure: the child's
                res.device_name = str(said.get("device_name", "cpu"))[:200]
            if res.status == "ok":
                try:
                    if inputs is None:  # local: read it back here, straight from the file
                        res.output_object = exchange_file.read(exchange / "output.zip", _output_limit(job))
                    else:  # Ray: bytes travel back to the runner, which reads them the same way
                        res.output = (exchange / "output.zip").read_bytes()
                except (ContractError, OSError) as err:
                    res.status, res.error = "invalid_output", f"the output file: {err}"
        elif proc.exitcode == -signal.SIGKILL:
            res = ChildResult(status="oom", error="the child was killed by SIGKILL without reporting "
                                                  "(most likely the kernel's out-of-memory killer)")
        else:
            how = (f"signal {signal.Signals(-proc.exitcode).name}" if proc.exitcode < 0
                   else f"exit code {proc.exitcode}")
            res = ChildResult(status="error", error=f"the child process ended with {how} before reporting")
        res.child_wall_s = wall
        res.log = log.text()
        res.sandbox = sandbox
        res.rss_start_mb = start_rss if start_rss > 0 else float("nan")
        res.peak_rss_mb = peak_rss / 2**20 if peak_rss else float("nan")
        res.peak_pss_mb = peak_pss / 2**20 if peak_pss else float("nan")
        res.cpu_time_s = cpu_s
        if ready_at is not None:
            res.time_startup_s = ready_at - start
        if done_at is not None:
            res.time_method_s = done_at - ready_at
        return res
    finally:
        if inputs_file is not None:
            inputs_file.close()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(exchange, ignore_errors=True)


# what a child may say (the output it wrote was not data: invalid_output); the rest is the parent's
CHILD_STATUSES = ("ok", "error", "oom", "invalid_output")


def _nonnegative(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if value >= 0 else float("nan")


def _output_limit(job: Job) -> int:
    """The most an output file may hold: the cell's memory ceiling (it had to fit in the cell), or 64 GiB."""
    return int(job.memory_bytes) if job.memory_bytes else 64 * 2**30


def load_output(data: bytes, job: Job):
    """An output that travelled as bytes (Ray), read as data; ContractError when it is not."""
    from stbench.benchmark import exchange as exchange_file

    return exchange_file.read(data, _output_limit(job))
