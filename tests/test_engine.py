"""The engine's promises (SPEC §6, §7): isolation, limits, the failure taxonomy,
cache and resume, exactly-once records under kill and concurrency, MLflow."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stbench.benchmark.inprocess import run_cell
from stbench.benchmark.runner import run_benchmark
from stbench.sandbox import landlock_abi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fault_adapters as faults  # noqa: E402
from headless_chromium import free_port  # noqa: E402
from mlflow_server import start_server  # noqa: E402

STBENCH = [sys.executable, "-m", "stbench.cli"]


@pytest.fixture(scope="module")
def leakcheck():
    """One small slice whose spot names exist nowhere else, so truth is recognisable by name."""
    from stbench.datasets.loading import Dataset, _normalise
    from stbench.datasets.registry import get_dataset_spec
    from stbench.datasets.synthetic import content_sha256, simulate_tissue

    adata = simulate_tissue(n_spots=300, n_genes=40, n_slices=1, seed=5)
    adata.obs_names = [f"leak{uuid.uuid4().hex[:8]}_{n}" for n in adata.obs_names]
    spec = dataclasses.replace(get_dataset_spec("synthetic"), name="leakcheck", version="user",
                               slices=("slice0",))
    return Dataset(spec, _normalise(adata), content_sha256(adata))


def recorded_cells(results: Path) -> pd.DataFrame:
    """Every finished cell run in the MLflow store (not deduplicated): exactly-once is checked on this."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("stbench")
    runs = client.search_runs([exp.experiment_id], "tags.record = 'cell' and attributes.status != 'RUNNING'",
                              max_results=10000)
    return pd.DataFrame([{**r.data.params, **r.data.tags, "run_status": r.info.status, "run_name": r.info.run_name,
                          "run_s": (r.info.end_time - r.info.start_time) / 1000,
                          "wall_time_s": r.data.metrics.get("wall_time_s")} for r in runs])


def invocations(results: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("stbench")
    return client.search_runs([exp.experiment_id], "tags.record = 'invocation'", max_results=1000)


def test_fault_injection_every_outcome_recorded_once(leakcheck, tmp_path):
    methods = ["negative_control", "positive_control", "global_mean", faults.raises, faults.hangs, faults.hog,
               faults.returns_nan, faults.wrong_shape, faults.snooper]
    report = run_benchmark(tasks=["spatial_imputation"], splits=["random20"], methods=methods,
                           user_datasets=[leakcheck], results_dir=tmp_path, timeout=12, memory="1000M",
                           progress=False)  # the hog needs ~5 s of page faults per GB on this VM: room for a loaded CI
    by = report.results.set_index("method")
    expected = {"negative_control": "ok", "positive_control": "ok", "global_mean": "ok", "fault_raises": "error",
                "fault_hangs": "timeout", "fault_hog": "oom", "fault_nan": "invalid_output",
                "fault_shape": "invalid_output", "fault_snooper": "ok"}
    assert by["status"].to_dict() == expected, by[["status", "error"]]
    assert "RuntimeError: injected failure" in by.loc["fault_raises", "error"]
    assert "--timeout" in by.loc["fault_hangs", "error"]
    assert "NaN" in by.loc["fault_nan", "error"] and "Expected:" in by.loc["fault_nan", "error"]
    assert "shape" in by.loc["fault_shape", "error"] and "Expected:" in by.loc["fault_shape", "error"]
    assert by.loc["positive_control", "cosine"] == pytest.approx(1.0)
    # the snooper found nothing in its child and so scored like the baseline it imitates
    assert by.loc["fault_snooper", "cosine"] == pytest.approx(by.loc["global_mean", "cosine"])
    # resources are measured per cell
    ok = by[by["status"] == "ok"]
    assert (ok["peak_rss_mb"] > 10).all() and (ok["cpu_time_s"] > 0).all() and (ok["wall_time_s"] > 0).all()
    # a killed cell's CPU time is what it had used when it was stopped (the hog: seconds of page faults)
    assert by.loc["fault_hog", "cpu_time_s"] > 0.5
    assert (ok["time_method_s"] <= ok["wall_time_s"]).all() and ok["git_commit"].str.len().ge(7).all()
    # every cell exactly once, in the store and in the exported table
    store = recorded_cells(tmp_path)
    assert len(store) == len(expected) and store["cell_key"].is_unique
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert sorted(table["method"]) == sorted(expected) and table["cell_key"].is_unique
    # MLflow reads right: a failed cell's run is FAILED (its status tag says how), and every run
    # spans the cell's own time (the timed-out one ran ~12 s), not the few ms its record took
    runs = store.set_index("method")
    assert (runs["run_status"] == runs["status"].map(lambda s: "FINISHED" if s == "ok" else "FAILED")).all()
    assert runs.loc["fault_hangs", "run_s"] > 11.5
    assert np.allclose(runs["run_s"], runs["wall_time_s"].astype(float), atol=0.01)
    # the harness floor is measured at fork, so the memory a method adds can be told apart
    assert (ok["rss_start_mb"] > 10).all() and (ok["rss_start_mb"] <= ok["peak_rss_mb"]).all()
    assert by.loc["fault_hog", "peak_rss_mb"] - by.loc["fault_hog", "rss_start_mb"] > 500


def test_snooper_finds_truth_when_not_isolated(leakcheck):
    """The snooper is not vacuous: run in the runner's own process, it sees the Problem."""
    from stbench.tasks import get_task

    problem = get_task("spatial_imputation").make_problem(leakcheck, "slice0", "random20", 0)
    row = run_cell(problem, faults.snooper)
    assert row["status"] == "error" and "LEAK" in row["error"] and "Problem" in row["error"]


@pytest.mark.skipif(landlock_abi() < 1, reason="Landlock is not available on this kernel: the child cannot be "
                                              "kept from writing into the results folder")
def test_method_cannot_write_into_results(leakcheck, tmp_path):
    common = dict(tasks=["spatial_imputation"], splits=["random20"], user_datasets=[leakcheck],
                  results_dir=tmp_path, progress=False)
    first = run_benchmark(methods=["negative_control", "global_mean"], **common)
    before = (tmp_path / "mlflow.db").stat().st_size
    report = run_benchmark(methods=["negative_control", "global_mean", faults.vandal],
                           method_params={"fault_vandal": {"target": str(tmp_path)}}, **common)
    row = report.results.set_index("method").loc["fault_vandal"]
    assert row["status"] == "error" and "every write into the results folder was refused" in row["error"]
    assert row["sandbox"].startswith("landlock")
    assert not (tmp_path / "injected.csv").exists() and (tmp_path / "mlflow.db").stat().st_size >= before
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 3 and table["cell_key"].is_unique
    kept = table.set_index("cell_key").loc[first.results["cell_key"]]
    assert (kept["status"] == "ok").all() and (kept["attempts"] == 1).all()


def _grid_args(results: Path) -> list[str]:
    return ["run", "--tasks", "domain_identification", "spatial_imputation", "--splits", "whole_slice",
            "random20", "--methods", "pca_kmeans", "global_mean", "knn_interpolation", "--results", str(results),
            "--quiet"]


def _wait_for_records(results: Path, n: int, proc, limit_s: float = 120) -> None:
    """Wait until at least n cells are FINISHED, watching the artifact folder only.

    A cell's map is logged before its run is marked FINISHED, so n maps can mean n - 1
    finished cells. With one job, cells run one after another: the (n+1)-th map appears
    only after the n-th cell finished. (Opening the store here could race the runner's
    own creation of the SQLite schema, so the files are watched instead.)
    """
    art = results / "mlartifacts"
    deadline = time.time() + limit_s
    while time.time() < deadline and proc.poll() is None:
        if art.exists() and sum(1 for _ in art.glob("*/artifacts/*.png")) >= n + 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"the runner did not record {n} cells in {limit_s} s")


def test_sigkill_mid_grid_then_resume(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(STBENCH + _grid_args(tmp_path), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for_records(tmp_path, 4, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = recorded_cells(tmp_path)
    assert 4 <= len(partial) < 21  # 3 slices x (3 domain + 4 imputation methods) = 21 cells
    assert [r.info.status for r in invocations(tmp_path)] == ["RUNNING"]  # the killed runner could not end it
    # the resume also runs two cells at a time (--jobs 2)
    out = subprocess.run(STBENCH + _grid_args(tmp_path) + ["--jobs", "2"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"{len(partial)} already recorded" in out.stdout
    # the resume ended the dead runner's invocation KILLED; its own is FINISHED
    assert sorted(r.info.status for r in invocations(tmp_path)) == ["FINISHED", "KILLED"]
    store = recorded_cells(tmp_path)
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 21 and (table["status"] == "ok").all() and (table["attempts"] == 1).all()
    assert len(store) == 21 and store["cell_key"].is_unique
    # a second run right after executes nothing and says so
    again = subprocess.run(STBENCH + _grid_args(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert "0 executed, 21 already recorded" in again.stdout and "nothing executed" in again.stdout
    assert len(recorded_cells(tmp_path)) == 21


def test_four_runners_share_one_results_folder(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(STBENCH + _grid_args(tmp_path), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-2000:] for _, e in outs]
    store = recorded_cells(tmp_path)
    assert len(store) == 21 and store["cell_key"].is_unique  # no cell ran twice
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 21 and (table["status"] == "ok").all()
    executed = [int(o.split(" executed")[0].rsplit(" ", 1)[-1]) for o, _ in outs]
    assert sum(executed) == 21, executed  # the work was shared, every cell run by exactly one runner


def test_force_reruns_and_keeps_history(tmp_path):
    args = ["--tasks", "domain_identification", "--methods", "pca_kmeans", "--results", str(tmp_path), "--quiet"]
    from stbench.cli import main

    assert main(["run"] + args) == 0
    assert main(["run", "--force"] + args) == 0
    store = recorded_cells(tmp_path)
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(store) == 2 * len(table) and (table["attempts"] == 2).all()


def test_logs_to_a_real_mlflow_server_over_http(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    port = free_port()
    server = start_server(tmp_path, port)
    uri = f"http://127.0.0.1:{port}"
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        report = run_benchmark(tasks=["domain_identification"], methods=["pca_kmeans"],
                               results_dir=tmp_path / "results", progress=False)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("stbench")
        cells = client.search_runs([exp.experiment_id], "tags.record = 'cell'")
        parents = client.search_runs([exp.experiment_id], "tags.record = 'invocation'")
        assert len(cells) == len(report.results) == 3 and len(parents) == 1
        assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}
        run = next(r for r in cells if r.data.params["method"] == "pca_kmeans")
        assert run.data.metrics["ari"] == pytest.approx(
            report.results.set_index(["method", "instance"]).loc[("pca_kmeans", run.data.params["instance"]), "ari"])
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["spatial_map.png"]
        assert not (tmp_path / "results" / "mlflow.db").exists()  # nothing went to the local default
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_export_formats(tmp_path, capsys):
    from stbench.cli import main

    assert main(["run", "--tasks", "alignment", "--methods", "icp", "--results", str(tmp_path), "--quiet"]) == 0
    for fmt in ["csv", "md", "html", "parquet"]:
        out = tmp_path / f"table.{fmt}"
        assert main(["export", "--results", str(tmp_path), "--raw", "--format", fmt, "-o", str(out)]) == 0
    assert len(pd.read_csv(tmp_path / "table.csv")) == 6
    assert pd.read_parquet(tmp_path / "table.parquet")["ltari"].notna().sum() == 6
    md = (tmp_path / "table.md").read_text()
    assert md.startswith("| run_id") and md.count("\n") == 8 and "| icp" in md
    assert "<table" in (tmp_path / "table.html").read_text()
    assert main(["export", "--results", str(tmp_path / "nope"), "--format", "csv", "-o", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_schema_check_names_the_bad_column():
    from stbench.benchmark.store import SCHEMA, SchemaError, check_schema

    row = {c: ("1" if t == "string" else 1) for c, t in SCHEMA.items()} | {"status": "ok", "ari": 0.5}
    assert check_schema(pd.DataFrame([row]))["ari"].dtype == np.float64
    with pytest.raises(SchemaError, match="'ari' is not float64"):
        check_schema(pd.DataFrame([row | {"ari": "high"}]))
    with pytest.raises(SchemaError, match="unknown status"):
        check_schema(pd.DataFrame([row | {"status": "maybe"}]))
    with pytest.raises(SchemaError, match="missing columns"):
        check_schema(pd.DataFrame([{"task": "x"}]))


def test_ray_executor_runs_the_same_cell_function(tmp_path):
    pytest.importorskip("ray", reason="ray is an optional extra: pip install 'stbench[ray]'")
    local = run_benchmark(tasks=["domain_identification"], methods=["pca_kmeans"], results_dir=tmp_path / "a",
                          progress=False)
    remote = run_benchmark(tasks=["domain_identification"], methods=["pca_kmeans"], results_dir=tmp_path / "b",
                           executor="ray", jobs=2, progress=False)
    cols = ["cell_key", "status", "ari", "nmi"]
    pd.testing.assert_frame_equal(local.results[cols], remote.results[cols])
    assert (remote.results["status"] == "ok").all()


def test_cell_that_ends_before_it_is_watched_still_records(tmp_path, monkeypatch):
    """A fast cell can exit (and be reaped by the fork server) before the runner looks up its
    pid; that race once failed a whole CI run. Simulate it: the cell's result must still land."""
    import psutil

    from stbench.benchmark import isolation

    def gone(pid):
        raise psutil.NoSuchProcess(pid)

    monkeypatch.setattr(isolation.psutil, "Process", gone)
    report = run_benchmark(tasks=["domain_identification"], methods=["pca_kmeans"], results_dir=tmp_path,
                           progress=False)
    assert (report.results["status"] == "ok").all()
    assert report.results["ari"].notna().all()
