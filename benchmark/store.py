"""Where results live: MLflow runs (the record) and the results table exported from them.

* One MLflow **parent run per invocation** of ``stbench run`` and one **child
  run per cell** (SPEC §7): params (task, split, dataset, instance, method,
  seed, method parameters), tags (status, error, kind, hashes, versions,
  device, flags, cell key), metrics (scores and resources), and the spatial
  plot as an artifact.
* Default store: ``sqlite:///DIR/mlflow.db`` with artifacts in
  ``DIR/mlartifacts``; ``MLFLOW_TRACKING_URI`` points anywhere else.
* A cell run is written whole under a file lock and ended last (FINISHED, or
  FAILED for a failed cell), so
  a runner killed mid-write leaves at most an unfinished run, which is ignored
  and cleared by the next invocation. Runs are never overwritten: a re-run
  (``--force``, or a retry of a failed cell) adds a run.
* ``DIR/results.parquet`` (and ``.csv``) is exported from the finished runs
  after each invocation: one row per cell key (its latest ``ok``/``skipped``
  record, else its latest record; ``attempts`` counts them), schema-checked.
* Claims: before running a cell, a runner takes an exclusive ``flock`` on
  ``DIR/.claims/<cell key>``; a concurrent runner defers that cell and checks
  the record once the claim is released. The kernel drops the lock when a
  process dies, so a killed runner never blocks the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from stbench.errors import StbenchError

EXPERIMENT = "stbench"
# MLflow 3's UI opens an experiment without this tag in its GenAI (traces) view; these are
# model-development runs with params and metrics, the classic runs table.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
RECORDED = "attributes.status != 'RUNNING'"  # a cell run ends FINISHED (ok, skipped) or FAILED
STATUSES = ("ok", "skipped", "error", "timeout", "oom", "invalid_output")
DONE = ("ok", "skipped")  # cached: not re-run without --force
FAILED = ("error", "timeout", "oom", "invalid_output")  # recorded, counted, retried on the next run

# The results table: identity, then what describes the cell; every other column is a float score.
PARAM_COLUMNS = ["task", "split", "dataset", "instance", "method", "seed", "params"]
SCHEMA: dict[str, str] = {
    "run_id": "string", "task": "string", "split": "string", "dataset": "string", "instance": "string",
    "method": "string", "seed": "int64",
    "status": "string", "error": "string", "primary_metric": "string", "primary_value": "float64",
    "method_kind": "string", "method_version": "string", "task_version": "string", "params": "string",
    "uses_truth": "bool", "uses_true_k": "bool", "device": "string", "device_name": "string",
    "dataset_sha256": "string", "split_sha256": "string", "cell_key": "string", "git_commit": "string",
    "sandbox": "string", "versions": "string", "artifact": "string",
    # "" when the cell counts in rankings, else why its (task, split, dataset) is only shown
    "unranked": "string",
    # the task's bookkeeping about the output (JSON: e.g. the LTARI rule, clusters found); never ranked
    "annotations": "string",
    "mlflow_run_id": "string", "finished_at": "string", "attempts": "int64",
    "time_split_s": "float64", "time_method_s": "float64", "time_score_s": "float64", "wall_time_s": "float64",
    "cpu_time_s": "float64", "peak_rss_mb": "float64", "peak_gpu_mb": "float64",
    # the child's resident memory when it started (the harness floor): peak − this is the method's own
    "rss_start_mb": "float64", "time_startup_s": "float64",
    # all the cell's processes together: the peak of their proportional sets (what --memory limits)
    "peak_pss_mb": "float64",
}
# columns later than the first schema: "" (text) or NaN (numbers) in tables from before them
ADDED_COLUMNS = ("unranked", "annotations", "rss_start_mb", "time_startup_s", "peak_pss_mb")
TAG_COLUMNS = [c for c, t in SCHEMA.items() if c not in PARAM_COLUMNS and t in ("string", "bool")
               and c not in ("run_id", "mlflow_run_id", "attempts", "finished_at")]
MAX_TAG = 7000
CATALOG = "catalog.json"  # method and dataset metadata beside the results table
# The published reference board (benchmark/board.py writes it; `stbench leaderboard` serves it)
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "leaderboard" / "reference"


class SchemaError(StbenchError):
    pass


def check_schema(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce to the results schema or say exactly which column is wrong."""
    df = df.assign(**{c: "" if SCHEMA[c] == "string" else np.nan for c in ADDED_COLUMNS if c not in df})
    missing = [c for c in SCHEMA if c not in df]
    if missing:
        raise SchemaError(f"results table: missing columns {missing}. Expected: {list(SCHEMA)} plus float scores")
    out = df.copy()
    for col in out.columns:
        want = SCHEMA.get(col, "float64")
        try:
            if want == "bool":
                out[col] = out[col].map(lambda v: str(v).lower() in ("true", "1")).astype(bool)
            elif want == "string":
                out[col] = out[col].astype("string").fillna("")
            else:
                out[col] = pd.to_numeric(out[col], errors="raise").astype(want)
        except (TypeError, ValueError) as err:
            raise SchemaError(f"results table: column {col!r} is not {want} ({err})") from None
    bad = set(out["status"]) - set(STATUSES)
    if bad:
        raise SchemaError(f"results table: unknown status {sorted(bad)}. Expected one of {STATUSES}")
    if out["cell_key"].duplicated().any():
        raise SchemaError("results table: a cell key appears twice. Expected one row per cell")
    return out


def empty_table() -> pd.DataFrame:
    """A results table with no cell (every column of the schema)."""
    return check_schema(pd.DataFrame({c: pd.Series(dtype="object") for c in SCHEMA}))


class TrackingUnavailable(StbenchError):
    """The tracking server did not answer within its patience."""


class _Patient:
    """An MlflowClient for a tracking server that may be briefly away: a call that cannot reach
    it is retried with backoff (1, 2, 4 ... 30 s) for up to ``STBENCH_TRACKING_PATIENCE``
    seconds (default 300), each wait said on stderr; then ``TrackingUnavailable``, and the run
    stops with every cell recorded so far kept (the rest run on the next `stbench run`)."""

    def __init__(self, client, uri: str):
        self._client, self._uri = client, uri
        self._patience = float(os.environ.get("STBENCH_TRACKING_PATIENCE", "300"))

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def patient(*args, **kwargs):
            import sys

            waited, delay = 0.0, 1.0
            while True:
                try:
                    return target(*args, **kwargs)
                except Exception as err:  # noqa: BLE001 - only an unreachable server is retried
                    if not _unreachable(err):
                        raise
                    if waited + delay > self._patience:
                        raise TrackingUnavailable(
                            f"the tracking server {self._uri} did not answer for {waited:.0f} s "
                            f"({type(err).__name__}); the cells recorded so far are kept, the others run on "
                            "the next `stbench run`. Expected: a reachable server (STBENCH_TRACKING_PATIENCE "
                            "sets how long to wait)") from None
                    print(f"stbench: waiting for the tracking server {self._uri} ({waited:.0f} s so far; "
                          f"next try in {delay:.0f} s)", file=sys.stderr, flush=True)
                    time.sleep(delay)
                    waited += delay
                    delay = min(2 * delay, 30.0)

        return patient


def _unreachable(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}".lower()
    return any(s in text for s in ("connection refused", "connectionerror", "max retries exceeded",
                                   "timed out", "failed to establish", "remote end closed",
                                   "connection reset", "name or service not known"))


class ResultStore:
    """The MLflow record of one results folder (or of the server named by MLFLOW_TRACKING_URI)."""

    def __init__(self, results_dir: str | Path, tracking_uri: str | None = None):
        self.dir = Path(results_dir).resolve()
        if self.dir.exists() and not self.dir.is_dir():
            raise StbenchError(f"results folder {self.dir} is a file. Expected: a folder (it is created if absent)")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / ".claims").mkdir(exist_ok=True)
        self.uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.dir / 'mlflow.db'}"
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # one line per run otherwise
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not the INFO lines of database creation

        remote = self.uri.startswith(("http://", "https://"))
        if remote:  # short requests, no retries of MLflow's own: _Patient retries, saying so
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with self.lock():  # creating the database (migrations) must not race another runner
            if self.uri == f"sqlite:///{self.dir / 'mlflow.db'}":
                self._open_local_database()
            self.client = _Patient(MlflowClient(tracking_uri=self.uri), self.uri) if remote else \
                MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                local = self.uri.startswith("sqlite:")
                self.experiment_id = self.client.create_experiment(
                    EXPERIMENT, artifact_location=(self.dir / "mlartifacts").as_uri() if local else None,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            else:
                self.experiment_id = exp.experiment_id
                if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                    self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    # -- the local database: created whole, never silently re-created ----------
    def _recorded_in_table(self) -> int:
        try:
            return len(pd.read_parquet(self.results_path, columns=["cell_key"]))
        except Exception:  # noqa: BLE001 - no table, or an unreadable one: nothing it says is recorded
            return 0

    def _open_local_database(self) -> None:
        """Make ``mlflow.db`` sound before MLflow opens it (under the folder lock).

        * Absent (or emptied to 0 bytes) while ``results.parquet`` holds cells: the record was
          lost; re-creating it would silently re-run those cells and the next export would drop
          them, so this is one error with the way out.
        * Absent and nothing recorded: created whole, under a temporary name, then renamed, so
          a runner killed while MLflow builds its tables never leaves a half-built database.
        * Half-built by an older stbench killed during creation (tables without MLflow's
          schema version, no run in it): moved aside and created again, saying so.
        * Damaged (not a database, malformed): one error naming it; nothing is changed."""
        import sqlite3
        import sys

        db = self.dir / "mlflow.db"
        for stale in self.dir.glob(".mlflow.db.creating-*"):  # a creation that was killed
            stale.unlink(missing_ok=True)
        if db.exists() and db.stat().st_size > 0:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
                    stamped = "alembic_version" in tables and \
                        con.execute("select count(*) from alembic_version").fetchone()[0] > 0
                    runs = con.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0
                    if stamped and con.execute("pragma quick_check").fetchone()[0] != "ok":
                        raise sqlite3.DatabaseError("pragma quick_check failed")
            except sqlite3.DatabaseError as err:
                raise StbenchError(f"the MLflow record {db} is damaged ({err}); nothing was changed. Expected: "
                                   f"restore mlflow.db from a backup; results.parquet ({self._recorded_in_table()} "
                                   "cells) still holds the exported results") from None
            if stamped:
                return
            if runs:
                raise StbenchError(f"the MLflow record {db} has runs but no schema version; nothing was changed. "
                                   "Expected: restore mlflow.db from a backup")
            aside = db.with_name(f"mlflow.db.half-built-{time.strftime('%Y%m%d-%H%M%S')}")
            db.replace(aside)
            print(f"stbench: {db} was half-built (a run was killed while creating it) and held no run: moved "
                  f"to {aside.name} and created again", file=sys.stderr)
        recorded = self._recorded_in_table()
        if recorded:
            what = "is empty" if db.exists() else "is missing"
            raise StbenchError(f"the MLflow record {db} {what}, but {self.results_path.name} holds {recorded} recorded "
                               "cells: a new record would run them again and the next export would drop them. "
                               "Expected: restore mlflow.db from a backup, or move results.parquet (and mlflow.db) "
                               "aside to start a new record in this folder")
        db.unlink(missing_ok=True)
        tmp = self.dir / f".mlflow.db.creating-{os.getpid()}"
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}")
        client.search_experiments()  # builds every table and stamps the schema version
        tmp.replace(db)  # (an open connection follows the file: nothing of it is lost in the rename)

    # -- locks ---------------------------------------------------------------
    @contextmanager
    def lock(self):
        """Serialise writers of this folder (several runners may share it)."""
        with open(self.dir / ".store.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def claim(self, key: str, wait: bool = False):
        """An exclusive claim on one cell (an open file holding a flock), or None if another runner has it."""
        fh = open(self.dir / ".claims" / key, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.close()
            return None
        return fh

    @staticmethod
    def release(claim) -> None:
        if claim is not None:
            fcntl.flock(claim, fcntl.LOCK_UN)
            claim.close()

    # -- invocations ---------------------------------------------------------
    def start_invocation(self, config: dict, tags: dict) -> str:
        from mlflow.entities import Param

        with self.lock():
            self._clear_unfinished()
            self._end_dead_invocations()
            owner = {"runner_host": socket.gethostname(), "runner_pid": str(os.getpid()),
                     "runner_started": str(_process_start(os.getpid()))}
            run = self.client.create_run(self.experiment_id, tags={"record": "invocation", **owner, **tags},
                                         run_name=f"stbench run {time.strftime('%Y-%m-%d %H:%M:%S')}")
            self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:MAX_TAG]) for k, v in config.items()])
        return run.info.run_id

    def end_invocation(self, run_id: str, metrics: dict, status: str = "FINISHED") -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        with self.lock():
            self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()])
            self.client.set_terminated(run_id, status)

    def _end_dead_invocations(self) -> None:
        """Mark KILLED the invocations still RUNNING whose runner process is gone (SIGKILL, a
        lost machine): only this host's, checked by pid and process start time, so a runner
        alive in another process, or on another machine sharing the server, is left alone."""
        host = socket.gethostname()
        for run in self._search("tags.record = 'invocation' and attributes.status = 'RUNNING'"):
            tags = run.data.tags
            if tags.get("runner_host") != host or not tags.get("runner_pid", "").isdigit():
                continue
            pid = int(tags["runner_pid"])
            if _process_start(pid) != tags.get("runner_started"):
                self.client.set_tag(run.info.run_id, "ended_by", "the next stbench run: its runner was gone")
                self.client.set_terminated(run.info.run_id, "KILLED")

    def _clear_unfinished(self) -> None:
        """Delete cell runs a killed runner left half-written (only ever done under the lock)."""
        for run in self._search("tags.record = 'cell' and attributes.status = 'RUNNING'"):
            self.client.delete_run(run.info.run_id)

    # -- cells ---------------------------------------------------------------
    def record(self, row: dict, invocation: str, artifacts: list[Path] = (), run_name: str | None = None,
               started: float | None = None, ended: float | None = None) -> str:
        """Write one cell as a child run of the invocation, its end status set last: FINISHED
        for ok and skipped, FAILED for a failed cell (its ``status`` tag says how). ``started``
        and ``ended`` (epoch seconds) are the cell's own times, so MLflow shows its real duration;
        ``run_name`` names the method variant in full."""
        from mlflow.entities import Metric, Param, RunTag

        ended = time.time() if ended is None else ended
        ts = int(ended * 1000)
        params = [Param(k, str(row[k])) for k in PARAM_COLUMNS]
        tags = [RunTag(k, str(row.get(k, ""))[:MAX_TAG]) for k in TAG_COLUMNS if k != "artifact"]
        tags += [RunTag("record", "cell"), RunTag("mlflow.parentRunId", invocation)]
        metrics = [Metric(k, float(v), ts, 0) for k, v in row.items()
                   if k not in SCHEMA or SCHEMA[k] == "float64"
                   if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)]
        name = f"{row['task']}/{row['split']} {row['dataset']}:{row['instance']} {run_name or row['method']} " \
               f"s{row['seed']}"
        with self.lock():
            run = self.client.create_run(self.experiment_id, run_name=name, tags={"record": "cell"},
                                         start_time=int((started if started is not None else ended) * 1000))
            run_id = run.info.run_id
            self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
            for path in artifacts:
                self.client.log_artifact(run_id, str(path))
                if Path(path).suffix == ".png":  # the spatial map the board shows (not the cell's log)
                    self.client.set_tag(run_id, "artifact", f"{run.info.artifact_uri}/{Path(path).name}")
            self.client.set_terminated(run_id, "FAILED" if row.get("status") in FAILED else "FINISHED", end_time=ts)
        return run_id

    def _search(self, filter_string: str) -> list:
        from mlflow.entities import ViewType

        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, ViewType.ACTIVE_ONLY,
                                           max_results=5000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def statuses(self, key: str | None = None) -> dict[str, set[str]]:
        """cell key -> the statuses it has been recorded with (finished runs; one key or all)."""
        flt = f"tags.record = 'cell' and {RECORDED}"
        if key is not None:
            flt += f" and tags.cell_key = '{key}'"
        with self.lock():  # a read never meets another runner's half-done write
            runs = self._search(flt)
        out: dict[str, set[str]] = {}
        for run in runs:
            out.setdefault(run.data.tags.get("cell_key", ""), set()).add(run.data.tags.get("status", ""))
        return out

    def is_done(self, key: str) -> bool:
        return bool(self.statuses(key).get(key, set()) & set(DONE))

    def table(self) -> pd.DataFrame:
        """Every recorded cell, one row per cell key, schema-checked."""
        rows = []
        for run in self._search(f"tags.record = 'cell' and {RECORDED}"):
            d = run.data
            # tags outside the schema (MLflow's own, or a column an older version kept) are not cell data
            row = {**d.params, **{k: v for k, v in d.tags.items() if k in SCHEMA}, **d.metrics}
            row.update(mlflow_run_id=run.info.run_id, run_id=d.tags.get("mlflow.parentRunId", ""),
                       _end=run.info.end_time or 0)
            rows.append(row)
        if not rows:
            return empty_table()
        df = pd.DataFrame(rows)
        df["finished_at"] = pd.to_datetime(df["_end"], unit="ms", utc=True).map(lambda t: t.isoformat())
        df["attempts"] = df.groupby("cell_key")["cell_key"].transform("size")
        # The row that stands for a cell: its latest ok/skipped record, else its latest record.
        df["_done"] = df["status"].isin(DONE)
        df = df.sort_values(["_done", "_end"]).groupby("cell_key", sort=False).tail(1)
        df = df.drop(columns=[c for c in df.columns if c.startswith(("_", "mlflow.", "record"))])
        for col in SCHEMA:
            if col not in df:
                df[col] = np.nan if SCHEMA[col] == "float64" else ""
        order = list(SCHEMA) + sorted(c for c in df.columns if c not in SCHEMA)
        df = df[order].sort_values(["task", "dataset", "instance", "split", "seed", "method"])
        return check_schema(df.reset_index(drop=True))

    @property
    def results_path(self) -> Path:
        return self.dir / "results.parquet"

    @property
    def catalog_path(self) -> Path:
        return self.dir / CATALOG

    def update_catalog(self, methods: dict[str, dict], datasets: dict[str, dict],
                       tasks: dict[str, dict] | None = None) -> None:
        """Merge what the leaderboard shows about methods, datasets and tasks (paper, code,
        deviations, platform; a task's metrics with direction, range and formula) into
        DIR/catalog.json, so that the app never imports an adapter or a task to show it."""
        with self.lock():
            catalog = read_catalog(self.dir)
            catalog["methods"].update(methods)
            catalog["datasets"].update(datasets)
            catalog["tasks"].update(tasks or {})
            tmp = self.dir / ".catalog.json.tmp"
            tmp.write_text(json.dumps(catalog, indent=1, sort_keys=True, default=str))
            tmp.replace(self.catalog_path)

    def export(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Write DIR/results.parquet and results.csv from the record, atomically; return the table.
        Never shrinks: when the table on disk holds cells the record does not, it is copied to a
        backup and this is an error naming how many (a lost or replaced record, not a result)."""
        with self.lock():
            df = self.table() if df is None else check_schema(df)
            if self.results_path.is_file():
                try:
                    before = set(pd.read_parquet(self.results_path, columns=["cell_key"])["cell_key"])
                except Exception:  # noqa: BLE001 - an unreadable old table is replaced, as before
                    before = set()
                lost = before - set(df["cell_key"])
                if lost:
                    backup = self.dir / f"results.parquet.bak-{time.strftime('%Y%m%d-%H%M%S')}"
                    import shutil

                    shutil.copy2(self.results_path, backup)
                    raise StbenchError(f"{self.results_path} holds {len(lost)} cells the MLflow record "
                                       f"{self.uri} does not; it was left as it is (a copy is in {backup.name}). "
                                       "Expected: the record these results came from (restore mlflow.db, or "
                                       "point MLFLOW_TRACKING_URI at the right server)")
            tmp = self.dir / ".results.parquet.tmp"
            df.to_parquet(tmp, index=False)
            tmp.replace(self.results_path)
            tmp_csv = self.dir / ".results.csv.tmp"
            df.to_csv(tmp_csv, index=False)
            tmp_csv.replace(self.dir / "results.csv")
        return df


def _process_start(pid: int) -> str:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), "" when it
    does not exist: with the pid it names one process, whatever pid reuse happened since."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def read_catalog(results_dir: str | Path) -> dict:
    """DIR/catalog.json as {"methods": {...}, "datasets": {...}, "tasks": {name: declaration}} (empty when absent)."""
    path = Path(results_dir) / CATALOG
    catalog = json.loads(path.read_text()) if path.is_file() else {}
    return {"methods": catalog.get("methods", {}), "datasets": catalog.get("datasets", {}),
            "tasks": catalog.get("tasks", {})}


def write_table(df: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    """``stbench export``: the results table as parquet, csv, Markdown or HTML."""
    path = Path(path)
    if fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "md":
        path.write_text(df.to_markdown(index=False, floatfmt=".4f") + "\n")
    elif fmt == "html":
        path.write_text(df.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""))
    else:
        raise StbenchError(f"unknown export format {fmt!r}. Expected one of: parquet, csv, md, html")
    return path
