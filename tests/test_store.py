"""Nothing recorded is ever lost (issue 21): the MLflow record is created whole, a lost or damaged
one is one clear error and never silently re-created, and the results table never shrinks."""

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient

from stbench.benchmark import isolation
from stbench.benchmark.runner import run_benchmark
from stbench.benchmark.store import ResultStore
from stbench.errors import StbenchError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fault_adapters as faults  # noqa: E402
from headless_chromium import free_port  # noqa: E402
from mlflow_server import start_server  # noqa: E402


@pytest.fixture
def recorded(tmp_path):
    """A results folder with two recorded cells."""
    run_benchmark(tasks=["domain_identification"], instances=["slice0"], methods=["negative_control", "positive_control"],
                  results_dir=tmp_path, progress=False)
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 2
    return tmp_path


def test_an_emptied_or_missing_record_is_an_error_not_a_fresh_start(recorded):
    db = recorded / "mlflow.db"
    db.write_bytes(b"")  # truncate -s 0
    with pytest.raises(StbenchError, match="is empty, but results.parquet holds 2 recorded cells"):
        ResultStore(recorded)
    db.unlink()
    with pytest.raises(StbenchError, match="is missing, but results.parquet holds 2 recorded cells"):
        ResultStore(recorded)
    assert len(pd.read_parquet(recorded / "results.parquet")) == 2 and not db.exists()


def test_a_damaged_record_is_named_and_left_alone(recorded):
    db = recorded / "mlflow.db"
    db.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StbenchError, match="is damaged .*nothing was changed"):
        ResultStore(recorded)
    assert db.read_bytes().startswith(b"not a database")


def test_a_half_built_record_is_moved_aside_and_built_again(tmp_path, capsys):
    """What a runner killed while MLflow created its tables used to leave ("table registered_models
    already exists" for ever after): no schema version, no run."""
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        con.execute("create table registered_models (name text)")
    store = ResultStore(tmp_path)
    assert store.client.get_experiment(store.experiment_id).name == "stbench"
    assert len(list(tmp_path.glob("mlflow.db.half-built-*"))) == 1
    assert "half-built" in capsys.readouterr().err


def test_a_database_being_created_is_never_visible_half_built(tmp_path):
    """Creation happens under a temporary name: a leftover of a killed creation is cleared, and
    the record appears whole or not at all."""
    (tmp_path / ".mlflow.db.creating-1234").write_bytes(b"half")
    store = ResultStore(tmp_path)
    assert store.experiment_id and not list(tmp_path.glob(".mlflow.db.creating-*"))
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("select count(*) from alembic_version").fetchone()[0] == 1


def test_the_export_never_drops_recorded_cells(recorded, tmp_path_factory, monkeypatch):
    """Pointed at another (empty) record, the export refuses to overwrite the table, keeps a copy
    and says how many cells it would have lost."""
    other = tmp_path_factory.mktemp("other")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other / 'elsewhere.db'}")
    store = ResultStore(recorded)
    with pytest.raises(StbenchError, match="holds 2 cells the MLflow record .* does not"):
        store.export()
    assert len(pd.read_parquet(recorded / "results.parquet")) == 2
    assert len(list(recorded.glob("results.parquet.bak-*"))) == 1


def test_a_method_s_output_is_a_bounded_log_never_the_terminal(tmp_path, capfd):
    """50 MB printed by a method reach neither the runner's stdout nor its stderr; the cell's run
    carries a log of its first and last 64 KB, saying how much was left out."""
    report = run_benchmark(tasks=["spatial_imputation"], splits=["random20"], instances=["slice0"],
                           methods=[faults.chatter], results_dir=tmp_path, progress=False)
    out, err = capfd.readouterr()
    assert "chatter" not in out and "chatter" not in err and len(out) + len(err) < 100_000
    row = report.results.iloc[0]
    assert row["status"] == "ok"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("stbench").experiment_id],
                             "tags.record = 'cell'")[0]
    log = Path(client.download_artifacts(run.info.run_id, "cell.log", str(tmp_path)))
    text = log.read_text()
    assert 128 * 1024 <= log.stat().st_size < 140 * 1024 and "bytes left out" in text
    assert text.rstrip().endswith("the last line")


def _marked(marker: str) -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def _runner_with_a_sleeping_cell(tmp_path, also: list[str] = (), **popen) -> tuple[subprocess.Popen, str]:
    """A runner in its own process whose first cell (the marked sleeper) is running when this
    returns: (the runner, the marker on the cell's subprocess's command line)."""
    marker = f"stbench-sleeper-{uuid.uuid4().hex}"
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import fault_adapters as f\n"
            "from stbench.benchmark.runner import run_benchmark\n"
            f"run_benchmark(tasks=['spatial_imputation'], splits=['random20'], instances=['slice0'], "
            f"methods=[f.marked_sleeper, *{list(also)!r}], "
            f"method_params={{'fault_marked_sleeper': {{'marker': {marker!r}}}}}, "
            f"results_dir={str(tmp_path)!r}, progress=False)")
    runner = subprocess.Popen([sys.executable, "-c", code], **popen)
    deadline = time.time() + 120
    while not _marked(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert _marked(marker), "the cell's subprocess never started"
    return runner, marker


def test_a_cell_dies_with_its_runner_even_by_sigkill(tmp_path):
    """SIGKILL the runner while a cell runs: the cell, its subprocess and the fork server are gone
    within seconds (the fork server exits when no process holds the runner's liveness pipe, which
    cells no longer inherit, and each cell dies with its parent)."""
    runner, marker = _runner_with_a_sleeping_cell(tmp_path)
    family = psutil.Process(runner.pid).children(recursive=True)
    roots = {Path(isolation.exchange_root()), Path(tempfile.gettempdir())}
    # what the runner's cell has open now is what its SIGKILL leaves behind (the test would be
    # vacuous without it); it is counted before the kill because any other runner's start, such as
    # a test on the other xdist worker, may sweep it from then on
    made = [p for r in roots for p in r.glob(f"stbench-*-{runner.pid}-*")]
    assert made, "the runner made no temporary folder with its pid: nothing to sweep"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    time.sleep(5)
    alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    alive += [p.pid for p in _marked(marker)]
    assert alive == [], f"still running 5 s after the runner's SIGKILL: {alive}"
    # what it left in /dev/shm and the temporary folder goes at the next run's start
    isolation.sweep_leftovers()
    assert [p for r in roots for p in r.glob(f"stbench-*-{runner.pid}-*")] == []


def test_cells_stopped_by_an_interrupt_are_not_recorded_as_failures(tmp_path):
    """Ctrl-C while a cell runs: the cell is killed, left unrecorded (it did not fail: the next run
    runs it), the queued cells are dropped at once, and the invocation ends KILLED."""
    runner, _ = _runner_with_a_sleeping_cell(tmp_path, ["global_mean"], stderr=subprocess.PIPE, text=True)
    runner.send_signal(signal.SIGINT)
    runner.communicate(timeout=120)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("stbench")
    cells = client.search_runs([exp.experiment_id], "tags.record = 'cell'")
    assert all(r.data.params["method"] != "fault_marked_sleeper" for r in cells), \
        [(r.data.params["method"], r.data.tags.get("status")) for r in cells]
    assert all(r.data.tags["status"] == "ok" for r in cells)
    invocation = client.search_runs([exp.experiment_id], "tags.record = 'invocation'")[0]
    assert invocation.info.status == "KILLED"


def test_memory_is_the_cells_proportional_set_a_benign_pool_is_not_oom(tmp_path):
    """Four forked workers of 50 MB each share the parent's pages: their RSS sum passes 1.5 GB
    (each counts the parent's few hundred MB again), their proportional set does not; the
    ceiling applies to the latter. A real over-allocation spread over detached workers is oom
    (the hostile suite's memory fan-out)."""
    report = run_benchmark(tasks=["spatial_imputation"], splits=["random20"], instances=["slice0"],
                           methods=[faults.benign_pool], results_dir=tmp_path, progress=False, memory="1.2G")
    row = report.results.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert 200 < row["peak_pss_mb"] < 1000, row["peak_pss_mb"]
    assert 5 * row["rss_start_mb"] > 1.2 * 1024  # what an RSS sum over parent and workers would have counted


def test_a_tracking_server_outage_stops_the_run_cleanly_and_resume_is_exactly_once(tmp_path):
    """The server dies mid-run: the runner says it is waiting, gives up after its patience with one
    clear error (not a 13-minute silence); after a restart the next run records every cell once."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "STBENCH_TRACKING_PATIENCE": "6"}
    cmd = [sys.executable, "-m", "stbench.cli", "run", "--tasks", "domain_identification", "--methods", "pca_kmeans",
           "--results", str(tmp_path / "r"), "--quiet"]
    server = start_server(tmp_path, port)
    try:
        run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client = MlflowClient(uri)
        deadline = time.time() + 300
        while time.time() < deadline:  # the first cell recorded: then the server goes
            exp = client.get_experiment_by_name("stbench")
            if exp and client.search_runs([exp.experiment_id], "tags.record = 'cell'"):
                break
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        t0 = time.time()
        out, err = run.communicate(timeout=300)
        assert run.returncode == 2, err[-2000:]
        assert "waiting for the tracking server" in err and "did not answer" in err and "Traceback" not in err
        assert time.time() - t0 < 120
        server = start_server(tmp_path, port)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-2000:]
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("stbench")
        cells = client.search_runs([exp.experiment_id], "tags.record = 'cell' and attributes.status = 'FINISHED'",
                                   max_results=1000)
        keys = [r.data.tags["cell_key"] for r in cells]
        assert len(keys) == 9 and len(set(keys)) == 9  # 3 slices x (2 controls + pca_kmeans), each once
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
