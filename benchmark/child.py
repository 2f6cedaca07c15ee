"""The child side of one cell: what runs inside the isolated process.

The parent (``isolation.execute``) forks this from a *fork server*: a clean
interpreter started once per runner that has imported the heavy libraries and
the built-in adapters, and nothing else. So the child starts in milliseconds,
yet it holds none of the parent's memory: no dataset, no solution, no other cell.

Data flow of one cell (``conn`` is a socket pair with the runner)::

    child: namespaces, sandbox, load the method --"ready"--> runner (starts the method clock)
    runner --the input file's open descriptor--> child (it may not open the file by name)
    child: read the input view (exchange file) --method--> exchange/output.zip
    child --"done" + status (ok, error, oom), error tail--> runner (stops the clock)

The child only says how the method ended; the runner measures the times, CPU and
memory, adds ``timeout`` and ``oom`` when it has to kill the cell, decides the
status and checks the output against the task's contract. A method that refuses at
run time (``MethodNotApplicable``) is an ``error``: what a method applies to is
declared (``Method.splits``) and decided by the runner before anything runs.
Adapters installed through the entry point are imported here, in the sandbox,
never in the runner or the fork server.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import tempfile
import traceback
from pathlib import Path

# Imported here so the fork server holds them: every child then starts warm.
import anndata  # noqa: F401
import numpy as np
import pandas  # noqa: F401
import scipy.sparse  # noqa: F401
import torch

import stbench.methods  # noqa: F401  (the built-in adapters; plugins load in the cell, sandboxed)
import stbench.tasks  # noqa: F401  (the input view classes)
from stbench.errors import ContractError, MethodNotApplicable
# SCRUBBED_PREFIXES: variables that could point a method at data, results or the tracking store
# (the fork server is started without them; scrubbed here again for Ray workers)
from stbench.benchmark.isolation import SCRUBBED_PREFIXES, TRACEBACK_LINES
from stbench.sandbox import device_paths, enter_namespaces, readable_paths, restrict_writes

RUNNER_HANGUP_WAIT_S = 10.0  # after "done": how long a cell waits for the runner to read its CPU and memory


try:  # joblib probes the physical cores with lscpu, which a sandboxed cell may not run: probe once
    # here, in the fork server, so every cell inherits the cached answer (and no warning per KMeans)
    from joblib.externals.loky.backend.context import cpu_count as _loky_cpu_count

    _loky_cpu_count(only_physical_cores=True)
except Exception:  # noqa: BLE001 - only a cache warm-up
    pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def load_method(ref: str):
    """A registered method name (a built-in, or an entry-point plugin, imported here in the
    sandbox), or ``path/to/module.py:attribute`` for an unregistered one."""
    from stbench.methods import get_method

    if ":" not in ref:
        return get_method(ref)
    import importlib.util

    path, attr = ref.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location(f"_stbench_adapter_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


def _isolate(scratch: Path, exchange: Path, memory_bytes: int, threads: int, also_readable: list[str] = ()) -> str:
    """Own session, namespaces, scrubbed environment, scratch cwd, sandbox, memory backstop.

    Returns in a *new process*: the first process of the cell's PID namespace (its init), so
    that every process the method starts, detached or not, dies with it and is counted in its
    memory; the process that called this waits for it and exits with its status (see
    ``sandbox.enter_namespaces``). The cell may read what running the method needs (see
    ``sandbox.readable_paths``) plus ``also_readable`` (a method defined in a file), write only
    its scratch and exchange folders and device nodes, and signal only its own processes."""
    os.setsid()  # the parent kills the whole group: a method's own subprocesses go too
    # Die with the fork server, which exits when the runner dies (even by SIGKILL):
    # a killed runner leaves no method running on.
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    # multiprocessing hands every forkserver child the runner's liveness pipe (the fork server
    # exits only once no process holds it) and its resource tracker's pipe: closed here, so a dead
    # runner takes the fork server, and with it this cell, down, and a cell cannot write to its tracker
    from multiprocessing import forkserver, resource_tracker

    for holder, attr in ((forkserver._forkserver, "_forkserver_alive_fd"), (resource_tracker._resource_tracker, "_fd")):
        fd = getattr(holder, attr, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(holder, attr, None)
    forkserver._forkserver._forkserver_address = None
    namespaces = enter_namespaces()  # forks when a PID namespace is in force: this is now its init
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # a fork clears it: die with the waiting parent
    for key in list(os.environ):
        if key.startswith(SCRUBBED_PREFIXES):
            del os.environ[key]
    for key in ("TMPDIR", "TEMP", "TMP", "MPLCONFIGDIR", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        os.environ[key] = str(scratch)
    tempfile.tempdir = str(scratch)
    os.chdir(scratch)
    sys.argv = ["stbench-cell"]
    sandbox = restrict_writes([str(scratch), str(exchange), *device_paths()],
                              readable_paths([str(scratch), str(exchange), *also_readable]))
    sandbox = ", ".join(x for x in (sandbox, namespaces) if x and x != "none") or "none"
    # The parent polls RSS and kills past the ceiling; this address-space backstop
    # turns a single huge allocation (faster than a poll) into a clean MemoryError.
    if memory_bytes > 0:
        with open("/proc/self/status") as fh:
            data_kb = next((int(line.split()[1]) for line in fh if line.startswith("VmData:")), 0)
        limit = data_kb * 1024 + 2 * memory_bytes
        try:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
        except (ValueError, OSError):
            pass
    torch.set_num_threads(max(1, threads))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(max(1, threads))
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        pass
    return sandbox


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text


MESSAGE_BYTES = 64 * 2**10  # the most the runner reads of one message from a cell


def _say(conn, **message) -> None:
    conn.send_bytes(json.dumps(message, default=str).encode()[:MESSAGE_BYTES])


def main(job: dict, conn) -> None:
    """Run one method on one input view (see the module's data flow); ``conn`` is the cell's end
    of its socket pair with the runner."""
    from multiprocessing.reduction import recv_handle

    from stbench.benchmark import exchange as exchange_file
    from stbench.tasks import INPUT_VIEWS

    scratch, exchange = Path(job["scratch"]), Path(job["exchange"])
    done = {"status": "error", "error": "", "peak_gpu_mb": float("nan"), "device_name": "cpu"}
    # the method's stdout and stderr: into the pipe the runner reads, keeping only a bounded log
    log = recv_handle(conn)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        ref_file = job["method_ref"].rsplit(":", 1)[0] if ":" in job["method_ref"] else None
        sandbox = _isolate(scratch, exchange, job["memory_bytes"], job["threads"], [p for p in (ref_file,) if p])
        from stbench.methods import RunContext

        method = load_method(job["method_ref"])
        _say(conn, ready=True, sandbox=sandbox, pid=os.getpid())
        # the runner's clock starts now; the input comes as an open descriptor: the sandbox lets
        # this process open no file of the runner's by name
        with os.fdopen(recv_handle(conn), "rb") as fh:
            inputs = exchange_file.read(fh, max_bytes=2**40, views=INPUT_VIEWS)
        solution = exchange_file.read(job["solution"], max_bytes=2**40) if job.get("solution") else None
        ctx = RunContext(seed=job["seed"], device=job["device"], scratch_dir=scratch, params=job["params"],
                         task=job["task"], split=job["split"], solution=solution)
        if job["device"].startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            done["device_name"] = torch.cuda.get_device_name()
        seed_everything(job["seed"])
        output = method.run(job["task"], inputs, ctx)
        try:
            exchange_file.write(output, exchange / "output.zip")
            done["status"] = "ok"
        except ContractError as err:  # the method returned something that is not data
            done.update(status="invalid_output", error=str(err))
    except MethodNotApplicable as err:  # declared applicability is the runner's: a refusal here is a failure
        done.update(error=f"the method refused to run at run time ({err}); declare the splits it runs on "
                          "(Method.splits) so the runner skips them instead")
    except BaseException as err:  # noqa: BLE001 - everything a method does wrong is a recorded outcome
        tail = "".join(traceback.format_exc().splitlines(True)[-TRACEBACK_LINES:])
        done.update(status="oom" if is_out_of_memory(err) else "error", error=tail)
    if job["device"].startswith("cuda") and torch.cuda.is_initialized():
        done["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    for stream in (sys.stdout, sys.stderr):  # the method's last words reach the log before "done"
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _say(conn, done=True, **done)
    # Stay until the runner hangs up: it reads this cell's CPU time and memory from /proc when
    # "done" arrives, and a cell already gone (reaped by the fork server) leaves nothing to read.
    # Bounded, so a runner that died cannot keep the cell waiting.
    try:
        conn.poll(RUNNER_HANGUP_WAIT_S)
    except (OSError, EOFError):
        pass
