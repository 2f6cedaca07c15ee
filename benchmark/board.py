"""The published reference board: every method on every real dataset, committed with provenance.

``leaderboard/reference/`` holds the finished cells' table (``results.parquet``: scores and
resources, one row per cell key; no method output, no data), the catalog the app reads
(``catalog.json``), one provenance record per invocation that produced cells
(``provenance.json``) and the static page (``board.html``).

Data flow::

    stbench run ... --results DIR        (a clean work tree, the sandbox in force)
    stbench board add DIR                 --> checks every cell, merges by cell key
    stbench board status                  --> coverage against the grid, stale cells, estimate

The grid (``grid_cells``) is every task x every registered real dataset and instance the task
declares x every built-in method that solves it (controls, baselines, seeds, peers; default
parameters) x seeds 0-2, and seeds 0-9 for domain identification on DLPFC 151673 (OGB's
rule, Spotscape's protocol). A committed cell whose key is not in the grid any more is
*stale*: its task, method (version, parameters), dataset or split changed since it ran; the
fix is to re-run it, never to edit the table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from stbench.benchmark.planning import Cell, cell_key, method_info, plan_cells
from stbench.benchmark.split_hashes import EXTRA_SEEDS, SEEDS, load_manifest as load_split_hashes, split_key
from stbench.benchmark.store import DONE, FAILED, REFERENCE_DIR, ResultStore, check_schema, empty_table
from stbench.datasets.loading import load_dataset
from stbench.datasets.registry import DATASETS
from stbench.errors import StbenchError
from stbench.manifest import load as load_manifest
from stbench.tasks import TASKS

PROVENANCE = "provenance.json"
# What a reference cell must have had in force: the truth out of reach (reads restricted) and no
# network. A cell labelled otherwise is refused (a kernel without Landlock, an old engine).
REQUIRED_SANDBOX = ("landlock", "r+w", "netns")
# Columns that point at a local MLflow store: meaningless in the committed table.
LOCAL_COLUMNS = ("artifact", "mlflow_run_id")


def real_datasets() -> list[str]:
    return [n for n, spec in DATASETS.items() if spec.filename is not None]


def grid_cells() -> list[Cell]:
    """Every cell of the reference board, in the planner's order."""
    methods = list(load_manifest()["methods"])
    specs = {n: DATASETS[n] for n in real_datasets()}
    cells = plan_cells(list(TASKS), methods, specs, SEEDS)
    for (task, dataset, instance), seeds in EXTRA_SEEDS.items():
        extra = plan_cells([task], methods, {dataset: specs[dataset]}, [s for s in seeds if s not in SEEDS],
                           instances=[instance])
        cells += extra
    return cells


def grid_keys(cells: list[Cell] | None = None, data_dir=None) -> pd.DataFrame:
    """The grid with each cell's key: split hashes from the committed ``split_hashes.json``, or
    computed from the data for seeds it does not hold."""
    cells = cells if cells is not None else grid_cells()
    committed = load_split_hashes()
    infos = {m: method_info(m) for m in {c.method for c in cells}}
    computed: dict[str, str] = {}
    rows = []
    for c in cells:
        sk = split_key(c.task, c.split, c.dataset, c.instance, c.seed)
        if sk not in committed and sk not in computed:  # load_dataset caches the datasets it loads
            computed[sk] = TASKS[c.task].split_sha256(load_dataset(c.dataset, data_dir), c.instance, c.split, c.seed)
        split_sha = committed.get(sk) or computed[sk]
        info = infos[c.method]
        rows.append({"task": c.task, "split": c.split, "dataset": c.dataset, "instance": c.instance,
                     "method": c.method, "seed": c.seed, "skip": c.skip, "method_kind": info.kind,
                     "cell_key": cell_key(c, DATASETS[c.dataset].sha256, split_sha, info, info.params)})
    return pd.DataFrame(rows)


def read_board(folder: Path = REFERENCE_DIR) -> pd.DataFrame:
    path = Path(folder) / "results.parquet"
    if not path.is_file():
        return empty_table()
    return check_schema(pd.read_parquet(path))


# -- status -------------------------------------------------------------------
def status(board: pd.DataFrame, grid: pd.DataFrame) -> dict:
    """Coverage of the grid by the board: per task x dataset x method the cells done (ok or
    skipped by declaration), failed (with a status of the taxonomy) and missing; the stale
    cells (on the board, not in the grid); the CPU time spent and an estimate for the rest."""
    by_key = board.set_index("cell_key") if len(board) else board
    g = grid.copy()
    g["state"] = "missing"
    if len(board):
        recorded = by_key["status"].reindex(g["cell_key"]).to_numpy()
        g.loc[pd.Series(recorded).isin(DONE).to_numpy(), "state"] = "done"
        g.loc[pd.Series(recorded).isin(FAILED).to_numpy(), "state"] = "failed"
    coverage = (g.groupby(["task", "dataset", "method", "state"]).size().unstack("state", fill_value=0)
                .reindex(columns=["done", "failed", "missing"], fill_value=0))
    stale = board[~board["cell_key"].isin(set(grid["cell_key"]))] if len(board) else board
    spent = float(board["wall_time_s"].fillna(0).sum()) if len(board) else 0.0
    g["estimate_s"] = cell_estimates(board, g)
    coverage["estimate_h"] = g.groupby(["task", "dataset", "method"])["estimate_s"].sum() / 3600
    return {"cells": g, "coverage": coverage, "stale": stale, "spent_s": spent,
            "estimate_s": float(g["estimate_s"].sum())}


DEFAULT_CELL_S = {"control": 5.0, "baseline": 60.0, "peer": 300.0, "seed": 300.0}  # until the board has its own


def cell_estimates(board: pd.DataFrame, cells: pd.DataFrame, scale_by_size: bool = True) -> pd.Series:
    """Seconds each missing (not declared-skipped) cell would take on this machine: its (task,
    dataset, method)'s mean wall time on the board; else the size model's prediction (the
    method's time on this task's other datasets, scaled by how much slower this dataset is, see
    ``size_model``); else its (task, method)'s mean (the same work on other data), else its
    (dataset, method)'s (the same method on this data in other tasks), else a default by kind;
    0 for the other cells. The board's own cells make it better as they land. ``scale_by_size=False``
    skips the size model (``scripts/board_estimate_check.py`` measures what it adds)."""
    todo = (cells["state"] == "missing") & (cells["skip"] == "")
    est = pd.Series(0.0, index=cells.index)
    if not todo.any():
        return est
    ran = board[board["status"].isin(("ok",) + FAILED)] if len(board) else board
    levels = [["task", "dataset", "method"], ["task", "method"], ["dataset", "method"]]
    means = [ran.groupby(by)["wall_time_s"].mean() if len(ran) else pd.Series(dtype=float) for by in levels]
    predict = size_model(ran)
    for i, r in cells[todo].iterrows():
        v = means[0].get((r.task, r.dataset, r.method), np.nan)
        if not np.isfinite(v) and scale_by_size:
            v = predict(r.task, r.dataset, r.method)
        for by, mean in zip(levels[1:], means[1:]):  # the most specific level that has a time
            if np.isfinite(v):
                break
            v = mean.get(tuple(r[by]), np.nan)
        est[i] = v if np.isfinite(v) else DEFAULT_CELL_S.get(r.method_kind, 600.0)
    return est


def size_model(ran: pd.DataFrame):
    """A predictor of a cell's wall time from the times of other cells: log time = a(task,
    method) + b(dataset), fitted by least squares to the (task, dataset, method) mean log times
    of the peers' and seeds' cells. Why: a method's time on another dataset is a poor guess when
    the datasets differ tenfold in size (GraphST's integration takes 63 s on STARmap and 916 s
    on DLPFC), and b() learns that factor from the methods that ran on both. Controls and
    baselines are left out: their seconds are start-up, not the data's size. The prediction is
    NaN where the fit cannot identify it: the (task, method) and the dataset are not linked by
    any chain of cells (connected components of the bipartite graph)."""
    def unknown(task, dataset, method):
        return np.nan
    if not len(ran) or "method_kind" not in ran:
        return unknown
    long = ran[ran["method_kind"].isin(("peer", "seed")) & (ran["wall_time_s"] > 0)]
    if not len(long):
        return unknown
    g = long.assign(log_s=np.log(long["wall_time_s"].astype(float))) \
        .groupby(["task", "method", "dataset"])["log_s"].mean().reset_index()
    work = {k: i for i, k in enumerate(sorted(set(zip(g["task"], g["method"]))))}
    data = {d: len(work) + i for i, d in enumerate(sorted(set(g["dataset"])))}
    rows = np.arange(len(g))
    cols_work = np.array([work[k] for k in zip(g["task"], g["method"])])
    cols_data = np.array([data[d] for d in g["dataset"]])
    design = np.zeros((len(g), len(work) + len(data)))
    design[rows, cols_work] = design[rows, cols_data] = 1.0
    coef = np.linalg.lstsq(design, g["log_s"].to_numpy(), rcond=None)[0]
    n = len(work) + len(data)
    _, component = connected_components(coo_matrix((np.ones(len(g)), (cols_work, cols_data)), shape=(n, n)),
                                        directed=False)

    def predict(task, dataset, method):
        w, d = work.get((task, method)), data.get(dataset)
        if w is None or d is None or component[w] != component[d]:
            return np.nan
        return float(np.exp(coef[w] + coef[d]))
    return predict


def stale_reasons(stale: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Why each stale cell no longer matches: what differs from the grid's cell of the same
    (task, split, dataset, instance, method, seed), or that the grid has no such cell."""
    if stale.empty:
        return stale.assign(reason=pd.Series(dtype=str))
    manifest = load_manifest()
    reasons = []
    ident = ["task", "split", "dataset", "instance", "method", "seed"]
    known = set(map(tuple, grid[ident].astype(str).to_numpy()))
    committed = load_split_hashes()
    for r in stale.itertuples():
        why = []
        if tuple(str(getattr(r, c)) for c in ident) not in known:
            why.append("not a cell of the grid")
        meta = manifest["methods"].get(r.method)
        task = manifest["tasks"].get(r.task)
        if task and str(task.get("version")) != str(r.task_version):
            why.append(f"task version {r.task_version} -> {task.get('version')}")
        if meta and str(meta["version"]) != str(r.method_version):
            why.append(f"method version {r.method_version} -> {meta['version']}")
        if meta and json.loads(r.params or "{}") != meta["params"]:
            why.append("default parameters changed")
        if r.dataset in DATASETS and DATASETS[r.dataset].sha256 != r.dataset_sha256:
            why.append("dataset sha256 changed")
        sk = committed.get(split_key(r.task, r.split, r.dataset, r.instance, int(r.seed)))
        if sk and sk != r.split_sha256:
            why.append("split hash changed")
        reasons.append("; ".join(why) or "cell key changed")
    return stale.assign(reason=reasons)


def format_status(st: dict, grid: pd.DataFrame) -> str:
    cov = st["coverage"]
    lines = []
    totals = cov[["done", "failed", "missing"]].sum()
    n = int(totals.sum())
    lines.append(f"reference board: {int(totals['done'])} of {n} cells done, {int(totals['failed'])} failed, "
                 f"{int(totals['missing'])} missing; {len(st['stale'])} stale")
    lines.append(f"CPU time so far (cell wall time, one thread per cell): {st['spent_s'] / 3600:.1f} h; "
                 f"estimate for the missing cells: {st['estimate_s'] / 3600:.1f} h")
    per_task = cov[["done", "failed", "missing"]].groupby(level=["task", "dataset"]).sum()
    per_task["methods complete"] = cov.assign(c=(cov["missing"] == 0) & (cov["failed"] == 0) & (cov["done"] > 0)) \
        .groupby(level=["task", "dataset"])["c"].sum()
    per_task["methods"] = cov.groupby(level=["task", "dataset"]).size()
    lines.append("\nper task x dataset (cells):")
    lines.append(per_task.to_string())
    incomplete = cov[(cov["missing"] > 0) | (cov["failed"] > 0)]
    if len(incomplete):
        # the plan: what remains, cheapest first, with each line's estimate in hours
        lines.append("\nnot complete (task, dataset, method), cheapest first; estimate_h from the board's own "
                     "cell times where it has them, else the method's times on other datasets scaled by "
                     "the dataset's size factor (board.size_model):")
        lines.append(incomplete.sort_values("estimate_h").to_string(float_format=lambda v: f"{v:.2f}"))
    if len(st["stale"]):
        reasons = stale_reasons(st["stale"], grid)
        lines.append("\nstale cells (re-run them; never edit the table):")
        lines.append(reasons[["task", "split", "dataset", "instance", "method", "seed", "reason"]]
                     .to_string(index=False))
    return "\n".join(lines)


# -- add ----------------------------------------------------------------------
def write_catalog(board_dir: Path, table: pd.DataFrame) -> Path:
    """The board's catalog from the current code's metadata (manifest, dataset registry, task
    declarations) for the methods, datasets and tasks it holds: one source, never a copy."""
    from stbench.benchmark.runner import catalog_entries

    methods = [method_info(m) for m in sorted(set(table["method"])) if m in load_manifest()["methods"]]
    specs = {n: DATASETS[n] for n in sorted(set(table["dataset"])) if n in DATASETS}
    names = ("methods", "datasets", "tasks")
    catalog = dict(zip(names, catalog_entries(methods, specs, [t for t in TASKS if t in set(table["task"])])))
    path = Path(board_dir) / "catalog.json"
    path.write_text(json.dumps(catalog, indent=1, sort_keys=True, default=str) + "\n")
    return path


def refusals(cells: pd.DataFrame) -> pd.Series:
    """Why each cell may not join the reference board ("" when it may)."""
    why = pd.Series("", index=cells.index, dtype=object)
    commit = cells["git_commit"].fillna("").astype(str)
    why[commit.str.endswith("+dirty")] = "run with a dirty work tree (commit, then re-run)"
    why[(why == "") & ~commit.str.fullmatch(r"[0-9a-f]{7,40}")] = "run outside a git checkout (no commit recorded)"
    shas = cells["dataset"].map(lambda d: DATASETS[d].sha256 if d in DATASETS else None)
    real = cells["dataset"].isin(real_datasets())
    why[(why == "") & ~real] = "not a registered real dataset (the board ranks real data only)"
    why[(why == "") & real & (cells["dataset_sha256"] != shas)] = "a different dataset sha256 than the registry's"
    sandbox = cells["sandbox"].fillna("").astype(str)
    ran = cells["status"] != "skipped"  # a declared skip ran nothing
    unsandboxed = ran & ~sandbox.map(lambda s: all(part in s for part in REQUIRED_SANDBOX))
    why[(why == "") & unsandboxed] = f"run without the sandbox in force (needs {' + '.join(REQUIRED_SANDBOX)})"
    return why


def invocation_records(results_dir: Path, run_ids: set[str]) -> list[dict]:
    """Provenance of the invocations that produced ``run_ids``: date, commit, versions, machine,
    the command (as recorded, else rebuilt from the configuration)."""
    store = ResultStore(results_dir)
    out = []
    for run in store._search("tags.record = 'invocation'"):
        if run.info.run_id not in run_ids:
            continue
        p, t = run.data.params, run.data.tags
        versions = json.loads(t.get("versions", "{}") or "{}")
        out.append({"invocation": run.info.run_id,
                    "started": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC").isoformat(),
                    "git_commit": t.get("git_commit", ""), "stbench": versions.get("stbench", ""),
                    "versions": versions, "cpu": versions.get("cpu", ""),
                    "command": t.get("command") or _command_from(p), "status": run.info.status})
    return out


def _command_from(params: dict) -> str:
    """``stbench run`` as the invocation's configuration says it was called (older invocations
    did not record the command line itself)."""
    args = ["stbench run"]
    for name in ("tasks", "datasets", "methods", "seeds", "splits", "jobs"):
        value = json.loads(params.get(name, "null") or "null")
        if value not in (None, "all"):
            args.append(f"--{name} " + (" ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return " ".join(args)


POSITION = ["task", "split", "dataset", "instance", "method", "seed"]  # a grid cell, whatever its key


def superseded(table: pd.DataFrame, current_keys: set[str]) -> pd.Series:
    """The stale rows that a current one replaces: same task, split, dataset, instance, method
    and seed, but a key the grid no longer has (a method or task version bumped, say), beside a
    row whose key it has. A stale row nothing replaces stays, and `board status` names it."""
    current = table["cell_key"].isin(current_keys)
    replaced_at = set(map(tuple, table.loc[current, POSITION].astype(str).to_numpy()))
    position = pd.Series(list(map(tuple, table[POSITION].astype(str).to_numpy())), index=table.index)
    return ~current & position.isin(replaced_at)


def add(results_dir: str | Path, board_dir: Path = REFERENCE_DIR, only_valid: bool = False,
        grid: pd.DataFrame | None = None) -> dict:
    """Merge the finished cells of a results folder into the board. Every cell is checked
    (``refusals``); with any refused, nothing is written unless ``only_valid``. A board cell is
    replaced only by a better record of the same key (ok or skipped over failed), or by the
    re-run of a stale cell (``superseded``: git history keeps the old row); provenance records are
    appended, deduplicated by invocation. Returns counts (``superseded``: board rows replaced;
    ``ignored_stale``: stale cells of the results folder dropped on arrival) and the refusals."""
    results_dir = Path(results_dir)
    if not (results_dir / "mlflow.db").is_file() and not (results_dir / "results.parquet").is_file():
        raise StbenchError(f"{results_dir} is not a results folder. Expected: the --results folder of a `stbench run`")
    new = ResultStore(results_dir).table()
    new = new[new["status"].isin(DONE + FAILED)]
    why = refusals(new)
    refused = new[why != ""].assign(reason=why[why != ""])
    if len(refused) and not only_valid:
        summary = refused.groupby("reason").size().to_string()
        raise StbenchError(f"{len(refused)} of {len(new)} cells of {results_dir} may not join the reference board; "
                           f"nothing was written:\n{summary}\nExpected: cells run from a clean work tree on the "
                           "registered real datasets with the sandbox in force (or --only-valid to add the rest)")
    new = new[why == ""].copy()
    invocations = set(new["run_id"])  # the invocation (parent run) of each cell: its provenance record
    for col in LOCAL_COLUMNS:
        new[col] = ""
    board = read_board(board_dir)
    merged = pd.concat([board.assign(_rank=0), new.assign(_rank=1)], ignore_index=True)
    merged["_better"] = merged["status"].isin(DONE).astype(int)
    # per key: the done record over a failed one; between equals, the one already published
    merged = merged.sort_values(["cell_key", "_better", "_rank"], ascending=[True, False, True])
    merged = merged.drop_duplicates("cell_key", keep="first")
    grid = grid if grid is not None else grid_keys()
    old = superseded(merged, set(grid["cell_key"]))
    # a stale cell that arrives (from a run of older code) and is dropped at once is not "added", and
    # the board did not change for it: it is counted apart from the board's own stale rows replaced
    arriving = merged["_rank"] == 1
    added = int((arriving & ~old).sum())
    merged = merged[~old].drop(columns=["_rank", "_better"])
    merged = merged.sort_values(["task", "dataset", "instance", "split", "seed", "method"]).reset_index(drop=True)
    board_dir.mkdir(parents=True, exist_ok=True)
    tmp = board_dir / ".results.parquet.tmp"
    check_schema(merged).to_parquet(tmp, index=False)
    tmp.replace(board_dir / "results.parquet")
    write_catalog(board_dir, merged)
    prov_path = board_dir / PROVENANCE
    records = {r["invocation"]: r for r in (json.loads(prov_path.read_text()) if prov_path.is_file() else [])}
    fresh = invocation_records(results_dir, invocations)
    new_ids = {r["invocation"] for r in fresh} - set(records)
    records.update({r["invocation"]: r for r in fresh})  # a record seen RUNNING before is brought up to date
    prov_path.write_text(json.dumps(list(records.values()), indent=1, default=str) + "\n")
    return {"added": added, "refused": refused, "cells": len(merged), "invocations": len(new_ids),
            "superseded": int((old & ~arriving).sum()), "ignored_stale": int((old & arriving).sum())}
