"""The ``stbench`` command line: run, compare, export, leaderboard, list, splits."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from stbench.errors import StbenchError, UnknownNameError


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stbench", description="Benchmark spatial transcriptomics methods.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run tasks x datasets x methods x seeds and print the results table")
    run.add_argument("--tasks", nargs="+", help="task names (default: all)")
    run.add_argument("--splits", nargs="+", help="split names (default: every split of each task)")
    run.add_argument("--methods", nargs="+", help="method names (default: every control and baseline); "
                     "NAME:key=value,... runs a parameter variant (its parameters are part of its cache key); "
                     "the controls always run, they anchor the scaled scores")
    run.add_argument("--datasets", nargs="+", help="registered dataset names (default: synthetic)")
    run.add_argument("--instances", nargs="+",
                     help="only these slices (or slice pairs / groups) of the datasets, e.g. 151673 (default: all)")
    run.add_argument("--dataset-file", help="run the applicable tasks on your own .h5ad (SPEC 2.1)")
    run.add_argument("--label-key", default="domain", help="label column of --dataset-file (default: domain)")
    run.add_argument("--layer", help="the layer of --dataset-file that holds the raw counts (default: X)")
    run.add_argument("--not-counts", action="store_true", help="--dataset-file holds count-like values that are "
                     "not integers (volume-normalised, as MERFISH): accepted, thinning skipped, mcv rounds them")
    run.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    run.add_argument("--data-dir", help="folder of the real .h5ad files (default: $STBENCH_DATA, "
                     "else ~/.cache/stbench/data)")
    run.add_argument("--results", default="stbench-results", help="results folder (default: stbench-results)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--per-cell", action="store_true", help="end with the table of every cell (default: one "
                     "line per task and method)")
    run.add_argument("--force", action="store_true", help="re-run cells already recorded as ok")
    run.add_argument("--skip-published", action="store_true", help="skip cells already done on the reference "
                     "board (to resume the board's runs in a new results folder)")
    run.add_argument("--timeout", type=float, help="seconds a cell may run before it is killed (default by "
                     "method kind: control 15 min, baseline 1 h, seed/peer 6 h)")
    run.add_argument("--memory", help="memory ceiling per cell, e.g. 8G (default: 80%% of RAM / --jobs)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: a child process per cell on this machine; ray: Ray tasks (pip install "
                     "'stbench[ray]')")
    run.add_argument("--jobs", type=int, default=1, help="cells run at once (default 1)")
    run.add_argument("--address", help="Ray cluster address for --executor ray (default: a local cluster)")

    cmp = sub.add_parser("compare", help="compare two method versions, variants, runs or results files")
    cmp.add_argument("a", help="baseline side: NAME, NAME@VERSION, NAME:key=value,..., run:<id>, or a results file")
    cmp.add_argument("b", help="candidate side, same forms")
    cmp.add_argument("--results", default="stbench-results", help="results folder the names refer to")
    cmp.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a primary metric regressed")
    cmp.add_argument("--markdown", help="also write the comparison as Markdown (for a CI comment) to this file")

    exp = sub.add_parser("export", help="publish the leaderboard tables (md, html, csv) or the raw results table")
    exp.add_argument("--results", help="a results folder, shown on the reference board (default: the reference "
                     "board alone)")
    exp.add_argument("--format", choices=["md", "html", "csv", "parquet"], default="md",
                     help="html: one self-contained page (tables, charts, descriptions, provenance); md: the same "
                     "tables for a README or a CI comment; csv: one file "
                     "per table (the overview in -o, the others beside it); parquet: the raw results table")
    exp.add_argument("--raw", action="store_true", help="write the raw results table (one row per cell) "
                     "instead of the leaderboard tables")
    exp.add_argument("--view", choices=["real", "sanity", "all"], help="real datasets (the ranking), the "
                     "synthetic sanity check, or both (default: real when the folder holds real-data cells)")
    exp.add_argument("-o", "--output", required=True, help="file to write")

    lb = sub.add_parser("leaderboard", help="serve the Streamlit leaderboard: the reference board, with your "
                        "results folder's cells on it")
    lb.add_argument("--results", help="a results folder: its cells shown on the reference board (default: the "
                    "reference board alone)")
    lb.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    lb.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1; "
                    "0.0.0.0 to share it on the network)")

    bd = sub.add_parser("board", help="the published reference board: its coverage, and adding finished cells")
    bsub = bd.add_subparsers(dest="board_command", required=True)
    bst = bsub.add_parser("status", help="coverage per task x dataset x method (done, failed, missing), stale "
                          "cells, CPU time so far and the estimate for the rest")
    bst.add_argument("--data-dir", help="folder of the real .h5ad files (for split hashes not committed)")
    bad = bsub.add_parser("add", help="merge the finished cells of a results folder into the reference board")
    bad.add_argument("results", help="a results folder of `stbench run`")
    bad.add_argument("--only-valid", action="store_true", help="add the cells that pass the checks even when "
                     "others are refused (default: refuse the whole folder)")

    spl = sub.add_parser("splits", help="check the split hashes against the committed manifest")
    spl.add_argument("--data-dir", help="folder of the real .h5ad files")
    spl.add_argument("--write", action="store_true", help="rewrite tasks/split_hashes.json (a deliberate change)")
    spl.add_argument("--datasets", nargs="+", help="only these datasets (with --write: replace only their hashes)")

    ls = sub.add_parser("list", help="list what is registered")
    ls.add_argument("what", choices=["tasks", "methods", "datasets"])
    ls.add_argument("--verbose", "-v", action="store_true", help="tasks: what a method receives and must return, "
                    "split by split (the method author's reference)")
    return p


def parse_methods(texts: list[str]) -> tuple[list[str], dict[str, dict]]:
    """``--methods`` (NAME or NAME:key=value,...) -> names and per-name parameters, checked
    against the manifest (no adapter is imported): an unknown name, an unknown parameter or a
    value of the wrong type is one error that lists what is expected."""
    from stbench import manifest
    from stbench.manifest import parse_variant

    names, method_params = [], {}
    for text in texts:
        name, params = parse_variant(text)
        meta = manifest.method_metadata(name)
        manifest.check_params(name, params, meta.get("params", {}))
        if name in method_params and method_params[name] != params:
            raise StbenchError(f"method {name!r} is given twice with different parameters; Expected: one "
                               "variant of a method per run")
        method_params[name] = params
        names.append(name)
    return names, method_params


def cmd_run(args) -> int:
    methods, method_params = None, {}
    if args.methods:
        names, method_params = parse_methods(args.methods)
        methods = list(dict.fromkeys(["negative_control", "positive_control"] + names))
    if args.tasks:
        from stbench import manifest

        for t in args.tasks:
            if t not in manifest.tasks():
                raise UnknownNameError("task", t, manifest.tasks())
    from stbench.benchmark.planning import default_methods
    from stbench.benchmark.report import format_summary, format_table
    from stbench.benchmark.runner import run_benchmark
    from stbench.datasets.loading import load_user_dataset

    user = [load_user_dataset(args.dataset_file, args.label_key or None, layer=args.layer,
                              counts=not args.not_counts)] if args.dataset_file else None
    if user:
        for line in user_file_gaps(user[0].spec, args.tasks):
            print(line, file=sys.stderr)
    import signal

    def stop(signum, frame):  # SIGTERM ends the run like Ctrl-C: cells killed, invocation ended KILLED
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    start = time.perf_counter()
    report = run_benchmark(tasks=args.tasks, methods=methods or default_methods(), datasets=args.datasets,
                           seeds=args.seeds, splits=args.splits, data_dir=args.data_dir, user_datasets=user,
                           results_dir=args.results, executor=args.executor, jobs=args.jobs,
                           timeout=args.timeout, memory=args.memory, force=args.force, address=args.address,
                           skip_published=args.skip_published,
                           progress=not args.quiet, method_params=method_params, instances=args.instances,
                           command=" ".join(["stbench", *map(shlex.quote, args.argv)]))
    total = time.perf_counter() - start
    if report.results.empty and report.published:
        print(f"nothing to run: all {report.published} selected cells are done on the reference board")
        return 0
    if report.results.empty:
        print("no cell to run: no selected task declares the selected datasets", file=sys.stderr)
        return 1
    print(format_table(report.results) if args.per_cell else format_summary(report.results))
    t = report.timings
    counts = report.results["status"].value_counts().to_dict()
    print(f"\n{len(report.results)} cells {counts}: {report.executed} executed, {report.cached} already recorded "
          f"(cached)" + (f", {report.published} skipped as done on the reference board" if report.published
                         else "") + f", in {total:.1f} s")
    if report.executed == 0:
        print("nothing executed: every cell is already recorded in the results folder" +
              (" or done on the reference board" if report.published else "") + " (--force re-runs them)")
    else:
        print(f"time: data {t['data']:.1f} s, split {t['split']:.1f} s, method {t['method']:.1f} s, scoring "
              f"{t['scoring']:.1f} s, harness {t['harness']:.1f} s, worker start {t['startup']:.1f} s")
    print(f"results: {report.path} and {report.path.with_suffix('.csv')}; MLflow runs in "
          f"{os.environ.get('MLFLOW_TRACKING_URI') or report.path.parent / 'mlflow.db'}")
    return 0


def user_file_gaps(spec, tasks: list[str] | None) -> list[str]:
    """What a user's file will not run, and why: tasks with no instance on it (one slice, no
    labels) and splits that do not apply (no array grid, no integer counts)."""
    from stbench.tasks import TASKS

    lines = []
    for name in tasks or TASKS:
        task = TASKS[name]
        if not task.instances(spec):
            lines.append(f"{spec.name}: skips {name} (it needs several slices: obs['slice'] names one)")
            continue
        if task.name in ("domain_identification", "multislice_integration") and spec.label_key is None:
            lines.append(f"{spec.name}: skips {name} (no label column)")
        for split in task.splits:
            if not task.applies(spec, split):
                why = "no array grid: obs['array_row'] and obs['array_col']" if split == "lattice2x" else \
                    "values that are not integer counts (--not-counts)" if split == "thinning" else "not applicable"
                lines.append(f"{spec.name}: skips {name} / {split} ({why})")
    return lines


def cmd_compare(args) -> int:

    import pandas as pd

    from stbench.benchmark.store import read_catalog
    from stbench.leaderboard.compare import compare, select

    table, catalog = None, None
    if Path(args.results).is_dir() and (Path(args.results) / "results.parquet").is_file():
        table = pd.read_parquet(Path(args.results) / "results.parquet")
        catalog = read_catalog(args.results)
    result = compare(select(args.a, table, catalog), select(args.b, table, catalog), catalog=catalog)
    md = result.markdown(args.a, args.b)
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md)
    if args.fail_on_regression and result.regressed_primary:
        print("a primary metric regressed (--fail-on-regression)", file=sys.stderr)
        return 1
    return 0


def _results_folder(path: str):

    if not Path(path).is_dir():
        raise StbenchError(f"results folder {path!r} does not exist. Expected: the --results folder "
                           "of an earlier stbench run")
    return Path(path)


def cmd_export(args) -> int:
    from stbench.benchmark.store import REFERENCE_DIR, ResultStore, write_table
    from stbench.leaderboard.publish import write_document
    from stbench.leaderboard.tables import (Board, default_view, filter_cells, load_board, load_results,
                                            published_tables, write_csv_tables)

    results = _results_folder(args.results) if args.results else None
    if args.raw or args.format == "parquet":
        table = ResultStore(results).table() if results else load_results(REFERENCE_DIR)[0]
        path = write_table(table, args.output, args.format)
        print(f"wrote {len(table)} cells to {path} ({args.format})")
        return 0
    table, catalog, what = load_board(results)
    view = default_view(table) if args.view is None else args.view
    board = Board(filter_cells(table, view=None if view == "all" else view), catalog)
    if board.table.empty:
        raise StbenchError(f"no cell of {what} is in the {view!r} view. Expected: --view real, sanity or all")
    if args.format == "csv":
        tables = published_tables(board)
        paths = write_csv_tables(tables, args.output)
        print(f"wrote the leaderboard of {len(board.table)} cells ({', '.join(tables)}) to "
              f"{', '.join(map(str, paths))}")
    else:
        path = write_document(board, args.output, args.format, view)
        print(f"wrote the {view} leaderboard of {len(board.table)} cells to {path} ({args.format})")
    return 0


def cmd_leaderboard(args) -> int:
    from stbench.leaderboard import APP_SCRIPT, OVERLAY_ENV, RESULTS_ENV
    from stbench.leaderboard.tables import load_board

    results = _results_folder(args.results) if args.results else None
    _, _, what = load_board(results)  # a clear error here rather than a red box in the browser
    env = {**os.environ, RESULTS_ENV: str(results.resolve()) if results else "", OVERLAY_ENV: "1",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    # toolbarMode viewer: a reader's board, without Streamlit's Deploy button and developer menu
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT), "--server.headless", "true",
           "--client.toolbarMode", "viewer",
           "--server.port", str(args.port), "--server.address", args.address]
    print(f"stbench leaderboard of {what} at http://{args.address}:{args.port} (Ctrl-C stops it)", flush=True)
    # Become the Streamlit server (no child left behind when this process is stopped).
    os.execve(sys.executable, cmd, env)


def cmd_board(args) -> int:
    from stbench.benchmark import board
    from stbench.benchmark.store import REFERENCE_DIR

    if args.board_command == "status":
        grid = board.grid_keys(data_dir=args.data_dir)
        print(board.format_status(board.status(board.read_board(), grid), grid))
        return 0
    done = board.add(args.results, only_valid=args.only_valid)
    if len(done["refused"]):
        print(f"refused {len(done['refused'])} cells:\n" + done["refused"].groupby("reason").size().to_string())
    page = Path(REFERENCE_DIR) / "board.html"
    # Rewrite the static page only when the board changed: an export of the same cells differs only by its
    # timestamp, a diff that says nothing.
    changed = done["added"] or done["superseded"] or done["invocations"] or not page.exists()
    wrote = f"wrote {_write_reference_page(REFERENCE_DIR)}" if changed else f"{page} unchanged"
    replaced = (f"; {done['superseded']} stale board cells replaced by a current re-run of the same cell"
                if done["superseded"] else "")
    if done["ignored_stale"]:
        replaced += f"; {done['ignored_stale']} stale cells of {args.results} ignored (run by older code)"
    print(f"added {done['added']} cells ({done['invocations']} new invocation records){replaced}; the board "
          f"holds {done['cells']} cells; {wrote}")
    return 0


def _write_reference_page(folder) -> Path:
    """The static page of the reference board, beside its table (published as is)."""
    from stbench.leaderboard.publish import write_document
    from stbench.leaderboard.tables import Board, filter_cells, load_results

    table, catalog = load_results(folder)
    return write_document(Board(filter_cells(table, view="real"), catalog), Path(folder) / "board.html", "html", "real")


def cmd_list(args) -> int:
    """What is registered, read from the manifest (and the plugins' own child process):
    no adapter, task or torch is imported, so the answer takes well under a second."""
    import pandas as pd

    from stbench import manifest

    if args.what == "tasks" and args.verbose:
        for name, t in manifest.tasks().items():
            print(f"== {name} (version {t['version']}): {t['summary']}")
            print(f"  input:   {t['input']}")
            print(f"  output:  {t['output']}")
            print(f"  splits:  " + "; ".join(f"{s}: {d}" for s, d in t["splits"].items()))
            print(f"  metrics: " + ", ".join(f"{m['name']} ({'↑' if m['higher_is_better'] else '↓'})"
                                            for m in t["metrics"]) + f" (primary: {t['primary_metric']})")
            print(f"  datasets: {', '.join(t['datasets'])}\n")
        return 0
    if args.what == "tasks":
        rows = [{"task": name, "version": t["version"], "splits": ", ".join(t["splits"]),
                 "primary": f"{t['primary_metric']} ("
                            f"{'higher' if t['metrics'][0]['higher_is_better'] else 'lower'} is better)",
                 "datasets": ", ".join(t["datasets"]), "summary": t["summary"]}
                for name, t in manifest.tasks().items()]
    elif args.what == "methods":
        rows = [{"method": name, "kind": m["kind"], "version": m["version"], "tasks": ", ".join(m["tasks"]),
                 "flags": ", ".join(f for f in ("uses_truth", "uses_true_k", "gpu") if m.get(f)),
                 "parameters": ", ".join(f"{k}={json.dumps(v)}" for k, v in m["params"].items()),
                 "summary": m["summary"]} for name, m in manifest.methods().items()]
    else:
        from stbench.datasets.registry import DATASETS

        rows = [{"dataset": d.name, "version": d.version, "platform": d.platform, "slices": len(d.slices),
                 "labels": d.label_key or "", "file": d.filename or "(built in)",
                 "tasks": ", ".join(manifest.tasks_of_dataset(d.name))}
                for d in DATASETS.values()]
    with pd.option_context("display.max_colwidth", 70, "display.width", 250):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_splits(args) -> int:
    from stbench.benchmark.split_hashes import MANIFEST, compute_split_hashes, drift, load_manifest, write_manifest

    if args.datasets:
        from stbench.datasets.registry import get_dataset_spec

        for name in args.datasets:
            get_dataset_spec(name)  # an unknown name: one clear error
    current, missing = compute_split_hashes(datasets=args.datasets, data_dir=args.data_dir)
    if missing:
        print(f"not checked (file not in the data directory): {', '.join(missing)}", file=sys.stderr)
    if args.write:
        if missing:
            print("refusing to write a partial manifest: the files of the datasets to write must be present "
                  "(--datasets NAME writes only that dataset's hashes)", file=sys.stderr)
            return 1
        write_manifest(current, args.datasets)
        print(f"wrote {len(current)} split hashes" + (f" of {', '.join(args.datasets)}" if args.datasets else "")
              + f" to {MANIFEST}")
        return 0
    changed = drift(current, load_manifest())
    for key in changed:
        print(f"DRIFT {key}")
    print(f"{len(current) - len(changed)} of {len(current)} split hashes match {MANIFEST.name}")
    return 1 if changed else 0


def main(argv=None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _build_parser().parse_args(argv)
    args.argv = argv  # recorded with an invocation: the exact command (the board's provenance)
    try:
        return {"run": cmd_run, "list": cmd_list, "splits": cmd_splits, "export": cmd_export,
                "compare": cmd_compare, "leaderboard": cmd_leaderboard, "board": cmd_board}[args.command](args)
    except StbenchError as err:
        print(f"stbench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
