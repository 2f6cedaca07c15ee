"""The child side of one cell: what runs inside the isolated process.

The parent (``isolation.execute``) forks this from a *fork server*: a clean
interpreter started once per runner that has imported the heavy libraries and
the adapters, and nothing else. So the child starts in milliseconds, yet it
holds none of the parent's memory: no dataset, no solution, no other cell.

Data flow inside the child::

    exchange/inputs.pkl (the task's input view) --method--> exchange/output.pkl
    exchange/result.json: status, error tail, method time, CPU time, peak memory
    (the exchange folder is in /dev/shm when it has room; the method's own
    scratch folder, its working directory and TMPDIR, is on disk)

The child classifies what it can see itself (``ok``, ``skipped``, ``error``,
``oom`` on MemoryError); the parent adds ``timeout`` and ``oom`` when it has
to kill the child, and checks the output against the task's contract.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Imported here so the fork server holds them: every child then starts warm.
import anndata  # noqa: F401
import numpy as np
import pandas  # noqa: F401
import scipy.sparse  # noqa: F401
import torch

import stbench.methods  # noqa: F401  (discovers the registered adapters)
import stbench.tasks  # noqa: F401  (the input view classes)
from stbench.errors import MethodNotApplicable
# SCRUBBED_PREFIXES: variables that could point a method at data, results or the tracking store
# (the fork server is started without them; scrubbed here again for Ray workers)
from stbench.benchmark.isolation import SCRUBBED_PREFIXES, TRACEBACK_LINES
from stbench.benchmark.sandbox import device_paths, isolate_network, readable_paths, restrict_writes


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
    """A registered method name, or ``path/to/module.py:attribute`` for an unregistered one."""
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
    """Own process group, scrubbed environment, scratch cwd, read and write sandbox, memory backstop.

    The cell may read what running the method needs (see ``sandbox.readable_paths``) plus
    ``also_readable`` (its input file, a method defined in a file), and write only its scratch
    and exchange folders and device nodes."""
    os.setsid()  # the parent kills the whole group: a method's own subprocesses go too
    # Die with the fork server, which exits when the runner dies (even by SIGKILL):
    # a killed runner leaves no method running on.
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    for key in list(os.environ):
        if key.startswith(SCRUBBED_PREFIXES):
            del os.environ[key]
    for key in ("TMPDIR", "TEMP", "TMP", "MPLCONFIGDIR", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        os.environ[key] = str(scratch)
    tempfile.tempdir = str(scratch)
    os.chdir(scratch)
    sys.argv = ["stbench-cell"]
    network = isolate_network()
    sandbox = restrict_writes([str(scratch), str(exchange), *device_paths()],
                              readable_paths([str(scratch), str(exchange), *also_readable]))
    sandbox = ", ".join(x for x in (sandbox, network) if x and x != "none") or "none"
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


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0  # Linux reports KiB


def _cpu_time_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def main(job: dict) -> None:
    """Run one method on one input view; everything goes back through the scratch folder."""
    scratch, exchange = Path(job["scratch"]), Path(job["exchange"])
    result = {"status": "error", "error": "", "time_method_s": float("nan"), "peak_gpu_mb": float("nan"),
              "device_name": "cpu"}
    try:
        ref_file = job["method_ref"].rsplit(":", 1)[0] if ":" in job["method_ref"] else None
        result["sandbox"] = _isolate(scratch, exchange, job["memory_bytes"], job["threads"],
                                     [p for p in (job["inputs_path"], ref_file) if p])
        from stbench.methods import RunContext

        method = load_method(job["method_ref"])
        with open(job["inputs_path"], "rb") as fh:
            inputs = pickle.load(fh)
        ctx = RunContext(seed=job["seed"], device=job["device"], scratch_dir=scratch, params=job["params"],
                         task=job["task"], split=job["split"],
                         solution=pickle.loads(job["solution"]) if job.get("solution") else None)
        if job["device"].startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            result["device_name"] = torch.cuda.get_device_name()
        seed_everything(job["seed"])
        start = time.perf_counter()
        try:
            output = method.run(job["task"], inputs, ctx)
        finally:
            result["time_method_s"] = time.perf_counter() - start
        with open(exchange / "output.pkl", "wb") as fh:
            pickle.dump(output, fh, protocol=5)
        result["status"] = "ok"
    except MethodNotApplicable as err:
        result.update(status="skipped", error=str(err))
    except BaseException as err:  # noqa: BLE001 - everything a method does wrong is a recorded outcome
        tail = "".join(traceback.format_exc().splitlines(True)[-TRACEBACK_LINES:])
        result.update(status="oom" if is_out_of_memory(err) else "error", error=tail)
    if job["device"].startswith("cuda") and torch.cuda.is_initialized():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["cpu_time_s"] = _cpu_time_s()
    result["peak_rss_mb"] = _peak_rss_mb()
    tmp = exchange / ".result.json.tmp"
    tmp.write_text(json.dumps(result))
    tmp.replace(exchange / "result.json")
