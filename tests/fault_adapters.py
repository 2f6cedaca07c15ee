"""Adapters that misbehave on purpose, for the engine's fault-injection tests.

They live with the tests and are never registered: the runner hands them to
its children as ``tests/fault_adapters.py:<name>``. Each solves
``spatial_imputation`` so that a small grid exercises every outcome.
"""

import gc
import os
import time
from pathlib import Path

import numpy as np

from stbench.methods import Method


def _mean_prediction(inputs):
    """A valid output: every query spot gets the mean observed profile."""
    mean = np.asarray(inputs.observed.X.mean(axis=0)).ravel()
    return np.tile(mean, (inputs.query.n_obs, 1))


raises = Method(name="fault_raises", kind="baseline", summary="raises inside the method")


@raises.solves("spatial_imputation")
def _raise(inputs, ctx):
    raise RuntimeError("injected failure")


hangs = Method(name="fault_hangs", kind="baseline", summary="never returns")


@hangs.solves("spatial_imputation")
def _hang(inputs, ctx):
    time.sleep(3600)


hog = Method(name="fault_hog", kind="baseline", summary="allocates until stopped")


@hog.solves("spatial_imputation")
def _hog(inputs, ctx):
    blocks = []
    for _ in range(400):  # up to 20 GiB, 50 MiB at a time, every page touched
        blocks.append(np.ones(50 * 2**20 // 8))
    return _mean_prediction(inputs)


returns_nan = Method(name="fault_nan", kind="baseline", summary="returns NaN")


@returns_nan.solves("spatial_imputation")
def _nan(inputs, ctx):
    out = _mean_prediction(inputs)
    out[0, 0] = np.nan
    return out


wrong_shape = Method(name="fault_shape", kind="baseline", summary="returns one row too few")


@wrong_shape.solves("spatial_imputation")
def _shape(inputs, ctx):
    return _mean_prediction(inputs)[1:]


snooper = Method(name="fault_snooper", kind="baseline",
                 summary="searches its process for held-out truth and fails the run if it finds any")


def find_truth(inputs) -> list[str]:
    """Where this process can see held-out truth: objects, environment, arguments, files.

    The held-out spots are known by name (``inputs.query.obs_names``); truth is
    anything that pairs those names with expression, or that has the exact
    shape of the held-out matrix, or a pointer to the data or the results.
    """
    import anndata as ad
    import pandas as pd

    query_names = set(inputs.query.obs_names)
    shape = (inputs.query.n_obs, inputs.observed.n_vars)
    found = []
    for obj in gc.get_objects():  # everything this process holds, inherited or loaded
        try:
            if type(obj).__name__ == "Problem":
                found.append("a Problem object (it carries the solution)")
            elif isinstance(obj, ad.AnnData) and obj.n_vars > 0 and query_names & set(obj.obs_names):
                found.append("an AnnData with expression for held-out spots")
            elif isinstance(obj, np.ndarray) and obj.shape == shape and obj.dtype.kind == "f":
                found.append(f"an array of the held-out shape {shape}")
            elif isinstance(obj, pd.DataFrame) and obj.shape[1] > 1 and query_names & set(map(str, obj.index)):
                found.append("a DataFrame indexed by held-out spots")
        except Exception:  # noqa: BLE001 - some objects do not like being inspected
            continue
    for key in os.environ:
        if key.startswith(("STBENCH_", "MLFLOW_")):
            found.append(f"environment variable {key} (points at data or results)")
    args = Path("/proc/self/cmdline").read_bytes().decode(errors="replace")
    if "--results" in args or any(n in args for n in list(query_names)[:50]):
        found.append(f"arguments {args!r}")
    # files: anything the runner or the tests leave in the temporary folder (its problem
    # and cell folders, the results folders), or under the working folder, that names
    # held-out spots, except this child's own input file
    sample = [n.encode() for n in sorted(query_names)[:20]]
    own = Path(ctx_inputs_path()).resolve() if ctx_inputs_path() else None
    roots = [os.getcwd()] + [str(p) for p in Path("/tmp").glob("stbench-*")] + \
        [str(p) for p in Path("/tmp").glob("pytest-of-*")]
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in (".venv", "site-packages", ".git", "node_modules")]
            for name in files:
                path = Path(dirpath, name)
                try:
                    if path.resolve() == own or path.stat().st_size > 50 * 2**20:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if sum(s in data for s in sample) >= 10 and (own is None or data != own.read_bytes()):
                    found.append(f"file {path}")
    return found


def ctx_inputs_path():
    """The input file this child was given (the only file that may name held-out spots)."""
    for obj in gc.get_objects():
        if isinstance(obj, dict) and isinstance(obj.get("inputs_path"), str) and "method_ref" in obj:
            return obj["inputs_path"]
    return None


@snooper.solves("spatial_imputation")
def _snoop(inputs, ctx):
    found = find_truth(inputs)
    if found:
        raise RuntimeError("LEAK: held-out truth reachable: " + "; ".join(sorted(set(found))))
    return _mean_prediction(inputs)


vandal = Method(name="fault_vandal", kind="baseline", summary="tries to overwrite the recorded results",
                params={"target": ""})


@vandal.solves("spatial_imputation")
def _vandalise(inputs, ctx):
    target = Path(ctx.params["target"])
    done, refused = [], []
    attempts = [
        ("overwrite results.parquet", lambda: (target / "results.parquet").write_bytes(b"junk")),
        ("truncate mlflow.db", lambda: open(target / "mlflow.db", "r+b").truncate(0)),
        ("delete mlflow.db", lambda: (target / "mlflow.db").unlink()),
        ("add a fake row file", lambda: (target / "injected.csv").write_text("task,method\nx,y\n")),
    ]
    for what, act in attempts:
        try:
            act()
            done.append(what)
        except OSError as err:
            refused.append(f"{what}: {err.strerror}")
    if not done:
        raise PermissionError("every write into the results folder was refused: " + "; ".join(refused))
    return _mean_prediction(inputs)


forger = Method(name="fault_forger", kind="baseline", summary="writes its own result.json, then exits")


@forger.solves("spatial_imputation")
def _forge(inputs, ctx):
    """Find its own exchange folder in the child's stack, write a report with a status the taxonomy
    does not have, then leave before the child can write the real one."""
    import json
    import sys

    frame = sys._getframe()
    while frame is not None and "exchange" not in frame.f_locals:
        frame = frame.f_back
    Path(frame.f_locals["exchange"], "result.json").write_text(json.dumps({"status": "pwned", "time_method_s": 0.0}))
    os._exit(0)


shm_vandal = Method(name="fault_shm_vandal", kind="baseline", summary="writes and deletes in /dev/shm")


@shm_vandal.solves("spatial_imputation")
def _shm_vandal(inputs, ctx):
    """Try to drop a file in /dev/shm and to delete the problems' input files there."""
    import glob

    done = []
    try:
        Path("/dev/shm/stbench-vandal-was-here").write_text("x")
        done.append("wrote /dev/shm")
    except OSError:
        pass
    for path in glob.glob("/dev/shm/stbench-problems-*/*.pkl"):
        try:
            os.unlink(path)
            done.append(f"deleted {path}")
        except OSError:
            pass
    if done:
        return _mean_prediction(inputs)
    raise PermissionError("every write into /dev/shm was refused")


class _Boom:
    def __reduce__(self):
        return (int, ("not a number",))  # int("not a number") raises ValueError while it is read back


bad_pickle = Method(name="fault_bad_pickle", kind="baseline", summary="an output whose reading raises")


@bad_pickle.solves("spatial_imputation")
def _bad_pickle(inputs, ctx):
    return {"aligned": _Boom()}


truth_hunter = Method(name="fault_truth_hunter", kind="baseline", summary="looks for the truth on disk",
                      params={"targets": [], "ports": []})


@truth_hunter.solves("spatial_imputation")
def _hunt(inputs, ctx):
    """Try to read every target (a dataset file, a results table, another process's environment and
    working folder, its parent's): anything read is reported; all refused is a PermissionError."""
    read = []
    for target in ctx.params["targets"] + [f"/proc/{os.getppid()}/environ", f"/proc/{os.getppid()}/cwd"]:
        try:
            if os.path.isdir(target):
                read.append(f"{target}: {os.listdir(target)[:3]}")
            else:
                with open(target, "rb") as fh:
                    read.append(f"{target}: {len(fh.read(100))} bytes")
        except OSError:
            continue
    import socket

    for port in ctx.params.get("ports", []):  # a server the test listens with on this machine
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            read.append(f"connected to 127.0.0.1:{port}")
        except OSError:
            pass
    with open("/proc/self/environ", "rb") as fh:  # its own, as exec'd: the runner's variables must not be there
        env = fh.read()
    read += [name for name in ("STBENCH_", "MLFLOW_") if name.encode() in env]
    if read:
        raise RuntimeError("LEAK " + "; ".join(read))
    raise PermissionError("every read outside the cell was refused")


daemon = Method(name="fault_daemon", kind="baseline", summary="leaves a detached process behind",
                params={"marker": "stbench-daemon"})


@daemon.solves("spatial_imputation")
def _daemonise(inputs, ctx):
    """Double-fork a setsid'd sleeper (out of the cell's process group), then answer normally."""
    import sys

    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", ctx.params["marker"]])
        os._exit(0)
    time.sleep(1.0)  # the sleeper is running, detached, when the cell ends
    return _mean_prediction(inputs)
