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


def _cell_conn():
    """The cell's connection to the runner, found in the child's own stack (child.main's ``conn``)."""
    import sys

    frame = sys._getframe()
    while frame is not None and "conn" not in frame.f_locals:
        frame = frame.f_back
    return frame.f_locals["conn"], Path(frame.f_locals["exchange"])


def _say_done(conn, **fields) -> None:
    import json

    conn.send_bytes(json.dumps({"done": True, **fields}).encode())


forger = Method(name="fault_forger", kind="baseline", summary="says it was skipped, then exits")


@forger.solves("spatial_imputation")
def _forge(inputs, ctx):
    """Say "skipped" (cached as done, never retried, never a 0, were it believed) and leave."""
    conn, _ = _cell_conn()
    _say_done(conn, status="skipped", error="")
    os._exit(0)


slow_liar = Method(name="fault_slow_liar", kind="baseline", summary="works 1.5 s, says it took none")


@slow_liar.solves("spatial_imputation")
def _slow_lie(inputs, ctx):
    """Sleep 1.5 s, write a valid output, say done with a method time of 0 and a tiny memory."""
    from stbench.benchmark import exchange

    time.sleep(1.5)
    conn, folder = _cell_conn()
    exchange.write(_mean_prediction(inputs), folder / "output.zip")
    _say_done(conn, status="ok", time_method_s=0.0, peak_rss_mb=1.0, cpu_time_s=0.0)
    os._exit(0)


def _smuggler(attack: str) -> Method:
    """Write a crafted output file in place of the real one, say done ok, and leave: the runner
    reads it. Each attack must end ``invalid_output`` with nothing run and nothing allocated."""
    m = Method(name=f"fault_smuggle_{attack}", kind="baseline", summary=f"crafted output: {attack}",
               params={"marker": ""})

    @m.solves("spatial_imputation")
    def _smuggle(inputs, ctx):
        import io
        import json
        import zipfile

        conn, folder = _cell_conn()
        marker = ctx.params["marker"]
        with zipfile.ZipFile(folder / "output.zip", "w") as zf:
            if attack == "pickle":  # an object array whose unpickling would touch a file in the runner
                buf = io.BytesIO()
                np.save(buf, np.array([_Touch(marker)], dtype=object), allow_pickle=True)
                zf.writestr("a0.npy", buf.getvalue())
                zf.writestr("tree.json", json.dumps({"t": "array", "f": "a0.npy"}))
            elif attack == "reader":  # a "view" node naming pandas' pickle reader
                zf.writestr("tree.json", json.dumps({"t": "view", "class": "pandas.io.pickle.read_pickle",
                                                     "fields": {"filepath_or_buffer": marker}}))
            elif attack == "header":  # 100,000 x 100,000 float64 claimed (80 GB), 80 bytes present
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False,
                                                           "shape": (100000, 100000)})
                zf.writestr("a0.npy", head.getvalue() + bytes(80))
                zf.writestr("tree.json", json.dumps({"t": "array", "f": "a0.npy"}))
            elif attack == "bomb":  # 200 MB of zeros deflated to a few hundred KB
                buf = io.BytesIO()
                np.save(buf, np.zeros(25 * 2**20))
                zf.writestr(zipfile.ZipInfo("a0.npy"), buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
                zf.writestr("tree.json", json.dumps({"t": "array", "f": "a0.npy"}))
        _say_done(conn, status="ok")
        os._exit(0)

    return m


class _Touch:
    """Unpickling this creates the marker file: proof that code ran where it was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


smuggle_pickle, smuggle_reader, smuggle_header, smuggle_bomb = (
    _smuggler(a) for a in ("pickle", "reader", "header", "bomb"))


not_data = Method(name="fault_not_data", kind="baseline", summary="returns an object that is not data")


@not_data.solves("spatial_imputation")
def _not_data(inputs, ctx):
    return {"aligned": _Touch("/nonexistent")}


shm_vandal = Method(name="fault_shm_vandal", kind="baseline", summary="writes, reads and deletes in /dev/shm")


@shm_vandal.solves("spatial_imputation")
def _shm_vandal(inputs, ctx):
    """Try to drop a file in /dev/shm, to read and delete the problems' input files there and to
    put a folder where a neighbouring cell writes its output."""
    import glob

    done = []
    try:
        Path("/dev/shm/stbench-vandal-was-here").write_text("x")
        done.append("wrote /dev/shm")
    except OSError:
        pass
    for path in glob.glob("/dev/shm/stbench-problems-*/*") + glob.glob("/dev/shm/stbench-cell-io-*"):
        try:
            if os.path.isdir(path):
                os.mkdir(os.path.join(path, "output.zip"))
                done.append(f"blocked {path}")
            else:
                open(path, "rb").close()
                os.unlink(path)
                done.append(f"deleted {path}")
        except OSError:
            pass
    if done:
        raise RuntimeError("LEAK " + "; ".join(done))
    raise PermissionError("every write into /dev/shm was refused")


process_snooper = Method(name="fault_process_snooper", kind="baseline", params={"pids": []},
                         summary="reads, signals, ptraces and reads the memory of other processes")


@process_snooper.solves("spatial_imputation")
def _snoop_processes(inputs, ctx):
    """For each pid (the runner, the fork server): its /proc entries, a signal probe, SIGSTOP
    (then SIGCONT at once, so a success does not hang the test), ptrace attach, process_vm_readv."""
    import ctypes
    import errno
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    seen = []
    for pid in ctx.params["pids"]:
        for entry in ("environ", "cwd", "fd", "maps", "mem", "cmdline"):
            path = f"/proc/{pid}/{entry}"
            try:
                if os.path.isdir(path):
                    os.listdir(path)
                else:
                    with open(path, "rb") as fh:
                        fh.read(16)
                seen.append(f"read {path}")
            except OSError:
                pass
        for sig in (0, signal.SIGSTOP):
            try:
                os.kill(pid, sig)
                seen.append(f"signal {sig} to {pid}")
                if sig == signal.SIGSTOP:
                    os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
            seen.append(f"ptrace {pid}")
            libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        buf = ctypes.create_string_buffer(8)

        class IOVec(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

        local, remote = IOVec(ctypes.cast(buf, ctypes.c_void_p), 8), IOVec(0x400000, 8)
        if libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) >= 0 \
                or ctypes.get_errno() == errno.EFAULT:  # EFAULT: permitted, only the address was wrong
            seen.append(f"process_vm_readv {pid}")
    if seen:
        raise RuntimeError("LEAK " + "; ".join(seen))
    raise PermissionError("every look at another process was refused")


tracking_forger = Method(name="fault_tracking_forger", kind="baseline", params={"uri": ""},
                         summary="posts a forged run to the tracking server")


@tracking_forger.solves("spatial_imputation")
def _forge_tracking(inputs, ctx):
    """What a method that read MLFLOW_TRACKING_URI would do: create a run through the REST API."""
    import json
    import urllib.request

    body = json.dumps({"experiment_id": "0", "run_name": "forged"}).encode()
    request = urllib.request.Request(ctx.params["uri"] + "/api/2.0/mlflow/runs/create", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=3).read()
    except OSError as err:
        raise PermissionError(f"the tracking server could not be reached ({err})") from None
    raise RuntimeError("LEAK posted a run to the tracking server")


memory_fanout = Method(name="fault_memory_fanout", kind="baseline", params={"mb": 300, "workers": 3, "marker": ""},
                       summary="spreads memory over detached workers")


@memory_fanout.solves("spatial_imputation")
def _fan_out(inputs, ctx):
    """Double-fork ``workers`` setsid'd processes that each hold ``mb`` MB (every page touched),
    so no single process, nor the cell's process group, holds much: the ceiling must count them all."""
    import sys

    p = ctx.params
    code = f"import time; b = bytearray({p['mb']} * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(120)"
    for _ in range(p["workers"]):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", code, p["marker"]])
            os._exit(0)
    time.sleep(60)
    return _mean_prediction(inputs)


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


chatter = Method(name="fault_chatter", kind="baseline", summary="prints 50 MB to stdout and stderr")


@chatter.solves("spatial_imputation")
def _chatter(inputs, ctx):
    import sys

    line = "chatter " + "x" * 92 + "\n"
    for i in range(250_000):  # 25 MB each
        sys.stdout.write(line)
        sys.stderr.write(line)
    print("the last line")
    return _mean_prediction(inputs)


fork_server_caller = Method(name="fault_fork_server_caller", kind="baseline", params={"address": ""},
                            summary="connects to the fork server and the resource tracker it inherited")


@fork_server_caller.solves("spatial_imputation")
def _call_fork_server(inputs, ctx):
    """The fork server forks unsandboxed processes for whoever connects to its socket: try to
    reach it; and try the runner's fork-server liveness pipe and resource-tracker pipe that a
    forkserver child inherits."""
    import socket
    from multiprocessing import forkserver, resource_tracker

    found = []
    # the test hands it the runner's fork-server address, as if it had found or guessed it
    address = ctx.params["address"] or getattr(forkserver._forkserver, "_forkserver_address", None)
    if address:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(address)
            found.append(f"connected to the fork server at {address!r}")
        except OSError:
            pass
    for what, fd in (("fork-server liveness pipe", getattr(forkserver._forkserver, "_forkserver_alive_fd", None)),
                     ("resource tracker pipe", getattr(resource_tracker._resource_tracker, "_fd", None))):
        if fd is not None:
            try:
                os.fstat(fd)
                found.append(f"holds the {what} (fd {fd})")
            except OSError:
                pass
    if found:
        raise RuntimeError("LEAK " + "; ".join(found))
    raise PermissionError("neither the fork server nor its pipes were reachable")


marked_sleeper = Method(name="fault_marked_sleeper", kind="baseline", params={"marker": "stbench-sleeper"},
                        summary="runs a marked subprocess that sleeps for ten minutes")


@marked_sleeper.solves("spatial_imputation")
def _marked_sleep(inputs, ctx):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import time; time.sleep(600)", ctx.params["marker"]], check=False)
    return _mean_prediction(inputs)


benign_pool = Method(name="fault_benign_pool", kind="baseline", params={"workers": 4, "mb": 50},
                     summary="a pool of forked workers, each with its own 50 MB")


@benign_pool.solves("spatial_imputation")
def _pool(inputs, ctx):
    """Fork ``workers`` processes that each touch ``mb`` MB of their own and hold it for 3 s: each
    also maps every page it shares with its parent (torch and all), which an RSS sum counts once
    per worker."""
    p = ctx.params
    pids = []
    for _ in range(p["workers"]):
        pid = os.fork()
        if pid == 0:
            block = np.ones(p["mb"] * 2**20 // 8)
            time.sleep(3)
            os._exit(0 if block.sum() > 0 else 1)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return _mean_prediction(inputs)


fork_tree = Method(name="fault_fork_tree", kind="baseline", params={"depth": 4, "mb": 10},
                   summary="a binary tree of forked processes, each with its own 10 MB")


@fork_tree.solves("spatial_imputation")
def _fork_tree(inputs, ctx):
    """Each process forks two children, ``depth`` levels deep (2**depth - 1 descendants), each
    touches ``mb`` MB of its own and waits: every one maps its parent's pages too."""
    def grow(level):
        kids = []
        for _ in range(2 if level < ctx.params["depth"] else 0):
            pid = os.fork()
            if pid == 0:
                grow(level + 1)
                os._exit(0)
            kids.append(pid)
        block = np.ones(ctx.params["mb"] * 2**20 // 8)
        time.sleep(3)
        for pid in kids:
            os.waitpid(pid, 0)
        return block.sum()

    grow(0)
    return _mean_prediction(inputs)
