"""The hostile suite (issue 18): adapters written as an attacker would, each run by the real runner.

Every attack must be recorded with a status of the taxonomy, find nothing (an attack that finds
anything raises "LEAK ..." and would be recorded as an error *with that text*, which the asserts
refuse), and leave nothing behind; the innocent cells beside them stay ok. ``pytest -s`` prints
the table: attack, status recorded, what it found.
"""

import http.server
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from stbench.benchmark import isolation
from stbench.benchmark.runner import run_benchmark
from stbench.sandbox import landlock_abi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fault_adapters as faults  # noqa: E402
from plugins import CLI, install_plugin  # noqa: E402
from test_engine import leakcheck  # noqa: E402,F401  (the fixture: a small slice with unique spot names)

pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="the hostile suite needs Landlock ABI 6 (kernel 6.12+): "
                                                           "on older kernels see the README's sandbox table")


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in tracking server: it records every request it gets."""

    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        _Recorder.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def _processes_with(marker: str) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def test_the_hostile_suite_finds_nothing_and_leaves_nothing(leakcheck, tmp_path, data_dir, capsys):
    isolation.warm_up()  # the fork server is up: its pid is one of the snooper's targets
    from multiprocessing import forkserver

    server_pid = forkserver._forkserver._forkserver_pid
    tracking = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=tracking.serve_forever, daemon=True).start()
    marker = f"stbench-hostile-{uuid.uuid4().hex}"
    touched = tmp_path / "smuggled-code-ran"
    targets = [str(next(data_dir.glob("*.h5ad"))), str(data_dir), str(tmp_path), os.path.expanduser("~"),
               f"/proc/{os.getpid()}/environ", f"/proc/{os.getpid()}/cwd"]
    hostile = [faults.truth_hunter, faults.process_snooper, faults.forger, faults.slow_liar, faults.smuggle_pickle,
               faults.smuggle_reader, faults.smuggle_header, faults.smuggle_bomb, faults.not_data,
               faults.shm_vandal, faults.tracking_forger, faults.daemon, faults.memory_fanout,
               faults.fork_server_caller]
    innocent = ["negative_control", "positive_control", "global_mean", "knn_interpolation"]
    try:
        report = run_benchmark(
            methods=hostile + innocent, tasks=["spatial_imputation"], splits=["random20"], user_datasets=[leakcheck],
            results_dir=tmp_path / "results", progress=False, jobs=2, memory="1G",
            method_params={"fault_truth_hunter": {"targets": targets, "ports": [tracking.server_address[1]]},
                           "fault_process_snooper": {"pids": [os.getpid(), server_pid]},
                           "fault_tracking_forger": {"uri": f"http://127.0.0.1:{tracking.server_address[1]}"},
                           "fault_daemon": {"marker": marker},
                           "fault_fork_server_caller": {"address": forkserver._forkserver._forkserver_address},
                           "fault_memory_fanout": {"mb": 400, "workers": 3, "marker": marker},
                           **{m.name: {"marker": str(touched)} for m in (faults.smuggle_pickle,
                                                                        faults.smuggle_reader)}})
    finally:
        tracking.shutdown()
    by = report.results.set_index("method")
    table = pd.DataFrame({"status": by["status"], "found": by["error"].str.extract(r"(LEAK[^\n]*)")[0].fillna("nothing"),
                          "method s": by["time_method_s"].round(2), "sandbox": by["sandbox"]})
    with capsys.disabled():
        print("\n" + table.to_string())
    assert not by["error"].str.contains("LEAK").any(), table
    refused = {"fault_truth_hunter": "every read outside the cell was refused",
               "fault_process_snooper": "every look at another process was refused",
               "fault_shm_vandal": "every write into /dev/shm was refused",
               "fault_tracking_forger": "the tracking server could not be reached",
               "fault_fork_server_caller": "neither the fork server nor its pipes were reachable"}
    for name, text in refused.items():
        assert by.loc[name, "status"] == "error" and text in by.loc[name, "error"], (name, by.loc[name, "error"])
    assert _Recorder.requests == []  # the tracking server heard nothing
    # the record is the runner's: a forged "skipped" is an error, a forged time is ignored
    assert by.loc["fault_forger", "status"] == "error" and "'skipped'" in by.loc["fault_forger", "error"]
    assert by.loc["fault_slow_liar", "status"] == "ok" and by.loc["fault_slow_liar", "time_method_s"] >= 1.5
    assert by.loc["fault_slow_liar", "peak_rss_mb"] > 100  # not the 1 MB it claimed
    # crafted outputs are refused before anything runs or is allocated
    for name, text in {"fault_smuggle_pickle": "object", "fault_smuggle_reader": "read_pickle",
                       "fault_smuggle_header": "claims shape", "fault_smuggle_bomb": "compressed",
                       "fault_not_data": "not data"}.items():
        assert by.loc[name, "status"] == "invalid_output" and text in by.loc[name, "error"], (name, by.loc[name, "error"])
    assert not touched.exists() and not Path("/dev/shm/stbench-vandal-was-here").exists()
    # memory spread over detached workers is counted together; nothing any cell started is left
    assert by.loc["fault_memory_fanout", "status"] == "oom", by.loc["fault_memory_fanout", "error"]
    assert by.loc["fault_daemon", "status"] == "ok"
    time.sleep(0.5)
    assert _processes_with(marker) == []
    assert (by.loc[innocent, "status"] == "ok").all(), by.loc[innocent, "error"].to_dict()
    assert by["sandbox"].str.contains("pidns").all()
    assert len(pd.read_parquet(tmp_path / "results" / "results.parquet")) == len(hostile) + len(innocent)


PLUGIN = '''
"""A plugin that acts when it is imported: it tries to leave a marker and read the data."""
import glob, os
from pathlib import Path
import numpy as np
from stbench.methods import Method

found = []
for path in glob.glob({data!r} + "/*.h5ad"):
    try:
        open(path, "rb").read(16)
        found.append(path)
    except OSError:
        pass
try:
    Path({marker!r}).write_text(f"imported in pid {{os.getpid()}}; read {{found}}")
except OSError:
    pass

method = Method(name="import_time", kind="peer", summary="acts at import")


@method.solves("spatial_imputation")
def impute(inputs, ctx):
    mean = np.asarray(inputs.observed.X.mean(axis=0)).ravel()
    return np.tile(mean, (inputs.query.n_obs, 1))
'''


def test_a_plugin_s_import_time_code_never_runs_outside_a_sandbox(tmp_path, data_dir):
    """Listing the methods and running the plugin import it only in sandboxed processes: the marker
    it writes at import, wherever that import happens unsandboxed, never appears, and the cell is ok."""
    marker = tmp_path / "imported-outside-the-sandbox"
    env = install_plugin(tmp_path / "site", "hostile_import", PLUGIN.format(data=str(data_dir), marker=str(marker)),
                         {"import_time": "hostile_import:method"})
    env["STBENCH_DATA"] = str(data_dir)
    import subprocess

    listing = subprocess.run(CLI + ["list", "methods"], env=env, capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0 and "import_time" in listing.stdout, listing.stderr
    run = subprocess.run(CLI + ["run", "--methods", "import_time", "--tasks", "spatial_imputation", "--splits",
                                "random20", "--instances", "slice0", "--results", str(tmp_path / "r"), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    table = pd.read_parquet(tmp_path / "r" / "results.parquet").set_index("method")
    assert table.loc["import_time", "status"] == "ok", table.loc["import_time", "error"]
    assert not marker.exists(), marker.read_text()
