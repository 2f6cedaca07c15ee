"""The published reference board (issue 20): committed with provenance, never stale, grown only by
cells that may be published, and a user's new method lands on it without re-running anyone."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stbench.benchmark import board
from stbench.benchmark.store import REFERENCE_DIR

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "reference_board"


def test_no_committed_cell_is_stale():
    """Every committed cell's key is a key of the current grid: if a task, a method's version or
    defaults, a dataset or a split changed, this fails until those cells are re-run (never edited)."""
    grid = board.grid_keys()  # the committed split hashes cover the grid: no data needed
    table = board.read_board()
    assert len(table) > 0, "the reference board is empty"
    st = board.status(table, grid)
    stale = board.stale_reasons(st["stale"], grid)
    assert stale.empty, "stale reference cells (re-run them):\n" + stale[
        ["task", "split", "dataset", "instance", "method", "seed", "reason"]].to_string(index=False)


def test_the_board_holds_scores_and_provenance_only_and_stays_small():
    size = sum(f.stat().st_size for f in REFERENCE_DIR.iterdir() if f.is_file())
    assert size < 20 * 2**20, f"the reference board is {size / 2**20:.1f} MB"
    table = board.read_board()
    assert table["cell_key"].is_unique
    assert (table["artifact"].fillna("") == "").all() and (table["mlflow_run_id"].fillna("") == "").all()
    assert not board.refusals(table).astype(bool).any(), "a committed cell would be refused by `board add`"
    records = {r["invocation"]: r for r in json.loads((REFERENCE_DIR / board.PROVENANCE).read_text())}
    assert set(table["run_id"]) <= set(records), "a cell without its invocation's provenance record"
    for r in records.values():
        assert r["git_commit"] and r["command"].startswith("stbench run") and r["versions"]["torch"] and r["cpu"]
    catalog = json.loads((REFERENCE_DIR / "catalog.json").read_text())
    assert set(table["method"]) <= set(catalog["methods"]) and set(table["dataset"]) <= set(catalog["datasets"])
    assert set(table["task"]) <= set(catalog["tasks"])


def _cells(**over) -> pd.DataFrame:
    from stbench.datasets.registry import DATASETS

    row = {"task": "domain_identification", "split": "whole_slice", "dataset": "dlpfc", "instance": "151673",
           "method": "pca_kmeans", "seed": 0, "status": "ok", "git_commit": "0123456789abcdef0123",
           "dataset_sha256": DATASETS["dlpfc"].sha256, "sandbox": "landlock-abi7 r+w+tcp+signal, netns, pidns"}
    return pd.DataFrame([{**row, **o} for o in over.get("rows", [{}])])


def test_board_add_refuses_what_may_not_be_published():
    """A dirty work tree, no commit, a dataset that is not the registry's (another sha, a user
    file, the synthetic tissue) and a cell that ran unsandboxed are each refused, with the reason."""
    cells = _cells(rows=[{}, {"git_commit": "0123456789abcdef0123+dirty"}, {"git_commit": "unknown"},
                         {"dataset_sha256": "f" * 64}, {"dataset": "my_file"}, {"dataset": "synthetic"},
                         {"sandbox": "none"}, {"sandbox": "landlock-abi3 w, netns"},
                         {"sandbox": "none", "status": "skipped"}])
    why = board.refusals(cells).tolist()
    assert why[0] == "" and why[-1] == ""  # a clean, sandboxed cell; a declared skip ran nothing
    assert "dirty work tree" in why[1] and "no commit" in why[2] and "sha256" in why[3]
    assert "real dataset" in why[4] and "real dataset" in why[5]
    assert "sandbox" in why[6] and "sandbox" in why[7]


@pytest.mark.realdata
def test_a_users_method_lands_on_the_reference_board_without_rerunning_anyone(tmp_path, data_dir):
    """A new method run on DLPFC 151673 domain identification (two seeds) is shown on a committed
    reference board (a small fixture of the same cells) and ranked among the published methods;
    the user's folder holds only the new method's cells: nobody else was re-run."""
    from stbench.benchmark.runner import run_benchmark
    from stbench.leaderboard.tables import YOURS, Board, load_board

    sys.path.insert(0, str(HERE))
    import user_methods  # noqa: PLC0415

    report = run_benchmark(methods=[user_methods.smoothed_kmeans], tasks=["domain_identification"],
                           datasets=["dlpfc"], instances=["151673"], seeds=[0, 1], data_dir=str(data_dir),
                           results_dir=tmp_path / "mine", progress=False)
    assert set(report.results["method"]) == {"my_smoothed_kmeans"} and report.results["status"].eq("ok").all()
    table, catalog, what = load_board(tmp_path / "mine", reference_dir=FIXTURE)
    reference = board.read_board(FIXTURE)
    assert "on the reference board" in what
    assert len(table) == len(reference) + 2  # the fixture's cells of these problems, plus the user's two
    ranking = Board(table, catalog).task_ranking
    ranking = ranking[ranking["task"] == "domain_identification"].set_index("method")
    mine = "my_smoothed_kmeans" + YOURS
    assert mine in ranking.index and np.isfinite(ranking.loc[mine, "rank"])
    ranked = ranking.dropna(subset=["rank"])
    assert {"pca_kmeans", mine} <= set(ranked.index)  # compared with a published baseline, same cells
    # the user's method is complete on the problems it ran, so it is ranked; the reference's
    # scores are the committed ones, untouched
    shown = table[table["method"] == "pca_kmeans"].set_index("cell_key")["primary_value"]
    committed = reference[reference["method"] == "pca_kmeans"].set_index("cell_key")["primary_value"]
    pd.testing.assert_series_equal(shown.sort_index(), committed.sort_index(), check_names=False)


def test_the_readme_shows_the_board_s_current_headlines():
    import subprocess

    out = subprocess.run([sys.executable, str(HERE.parent / "scripts" / "board_headlines.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def _papers_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("board_vs_papers", HERE.parent / "scripts" / "board_vs_papers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_papers_script_averages_problems_per_seed_then_seeds_and_computes_the_s2s_gain():
    """Hand-computed: seed 0's two slices average to 0.30, seed 1's to 0.50, so 0.40 ± 0.1414
    (sample sd); s2s_st's MAE 0.27 against the best baseline's 0.30 is 10 % lower. A failed cell is
    not averaged, and makes the method's cells 3 of 4."""
    papers = _papers_script()
    rows = []
    for method, kind, maes in (("knn_interpolation", "baseline", [0.2, 0.4, 0.3, 0.3]),
                               ("bicubic", "baseline", [0.5, 0.5, 0.5, 0.5]),
                               ("s2s_st", "seed", [0.17, 0.37, 0.27, 0.27])):
        for (seed, inst), mae in zip([(0, "a"), (0, "b"), (1, "a"), (1, "b")], maes):
            rows.append(dict(task="spatial_imputation", split="lattice2x", dataset="d", instance=inst,
                             seed=seed, method=method, method_kind=kind, status="ok", mae=mae,
                             pearson_gene=0.1))
    rows[-1]["status"] = "failed"
    table = pd.DataFrame(rows)
    knn = papers.over_seeds(table[table["method"] == "knn_interpolation"], "mae").loc["knn_interpolation"]
    assert knn["mean"] == pytest.approx(0.30) and knn["std"] == pytest.approx(0.0)
    s2s = papers.over_seeds(table, "mae").loc["s2s_st"]
    # seed 0: (0.17 + 0.37) / 2 = 0.27; seed 1: only slice a survives, 0.27
    assert s2s["mean"] == pytest.approx(0.27) and s2s["cells"] == 3 and s2s["seeds"] == 2
    spread = papers.over_seeds(table.assign(mae=[0.2, 0.4, 0.5, 0.5] * 3), "mae").loc["bicubic"]
    assert spread["mean"] == pytest.approx(0.40) and spread["std"] == pytest.approx(0.1414, abs=1e-4)
    text = "\n".join(papers.s2s_part(table))
    assert "s2s_st's MAE is 10.0 % lower than the best baseline's (knn_interpolation), on the 3 of 4 problems" in text
    worse = "\n".join(papers.s2s_part(table.assign(mae=table["mae"].where(table["method"] != "s2s_st", 0.33))))
    assert "s2s_st's MAE is 10.0 % higher than the best baseline's (knn_interpolation)" in worse
    # on the problems s2s_st has only: a baseline's bad slice it skipped does not count against it
    skewed = table.assign(mae=np.where((table["method"] == "knn_interpolation") & (table["seed"] == 1)
                                       & (table["instance"] == "b"), 9.0, table["mae"]))
    assert "10.0 % lower than the best baseline's (knn_interpolation)" in "\n".join(papers.s2s_part(skewed))
    assert "| d | s2s_st | 0.2700 ± 0.0000 | 0.100 ± 0.000 | 2 | 3 of 4 |" in text


def test_papers_task_table_tells_a_method_that_skips_a_split_from_an_incomplete_one():
    """knn has both splits (2 problems); s2s_st declares it does not solve random20 (a skipped
    record) and has all of lattice2x; suica failed one: only suica is incomplete, and both are
    listed after the methods whose means are over all problems."""
    papers = _papers_script()
    rows = [dict(task="spatial_imputation", split=split, dataset="d", instance="a", seed=0, method=m,
                 method_kind="seed", status=status, pearson_gene=value, unranked="")
            for m, split, status, value in (("knn_interpolation", "lattice2x", "ok", 0.1),
                                            ("knn_interpolation", "random20", "ok", 0.3),
                                            ("s2s_st", "lattice2x", "ok", 0.9),
                                            ("s2s_st", "random20", "skipped", np.nan),
                                            ("suica", "lattice2x", "ok", 0.5),
                                            ("suica", "random20", "failed", np.nan))]
    catalog = {"tasks": {"spatial_imputation": {"primary_metric": "pearson_gene",
                                                "metrics": [{"name": "pearson_gene", "higher_is_better": True}]}}}
    lines = papers.task_tables(pd.DataFrame(rows), catalog)
    rows_by_method = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert rows_by_method["knn_interpolation"].endswith("| 2 of 2 |")
    assert rows_by_method["s2s_st"].endswith("| 1 of 1 (lattice2x only) |")
    assert rows_by_method["suica"].endswith("| 1 of 2 (incomplete) |")
    order = [line.split(" | ")[0].strip("| ") for line in lines if line.startswith("| ") and "---" not in line]
    assert order.index("knn_interpolation") < min(order.index("s2s_st"), order.index("suica"))


def test_the_estimate_uses_the_board_s_own_cell_times_then_the_task_s_then_the_dataset_s_then_a_default():
    ran = pd.DataFrame(dict(task=["t", "t", "t", "u"], dataset=["a", "a", "b", "b"], method=["m", "m", "m", "m"],
                            method_kind="seed", status=["ok", "timeout", "ok", "ok"],
                            wall_time_s=[10.0, 30.0, 100.0, 7.0]))
    cells = pd.DataFrame(dict(task=["t", "t", "t", "t", "t", "v"], dataset=["a", "c", "a", "a", "a", "b"],
                              method=["m", "m", "p", "m", "m", "m"],
                              method_kind=["seed", "seed", "peer", "seed", "seed", "seed"],
                              state=["missing", "missing", "missing", "missing", "done", "missing"],
                              skip=["", "", "", "declared skip", "", ""]))
    est = board.cell_estimates(ran, cells)
    # (t, a, m): mean of 10 and 30; (t, c, m): no cell there, so (t, m)'s mean of 10, 30, 100 = 46.67;
    # p has none: the peer default; a declared skip and a done cell cost nothing; (v, b, m): no
    # cell of task v, so m's mean on dataset b in the other tasks, (100 + 7) / 2
    assert est.tolist() == pytest.approx([20.0, 140 / 3, board.DEFAULT_CELL_S["peer"], 0.0, 0.0, 53.5])



def test_the_estimate_scales_a_method_s_time_by_how_much_slower_the_dataset_is():
    # m takes 10 s on a and 100 s on b (b is 10x slower); n has run on a only (20 s), so its
    # cell on b is estimated at 200 s, not at its 20 s on a. The baseline's times (start-up, not
    # size) do not move the factor; n's cell on c, a dataset no peer or seed ran on, falls back
    # to n's own mean in the task.
    ran = pd.DataFrame(dict(task="t", dataset=["a", "b", "a", "a", "b"], method=["m", "m", "n", "base", "base"],
                            method_kind=["peer", "peer", "seed", "baseline", "baseline"], status="ok",
                            wall_time_s=[10.0, 100.0, 20.0, 1.0, 1.0]))
    cells = pd.DataFrame(dict(task="t", dataset=["b", "c"], method="n", method_kind="seed", state="missing",
                              skip=""))
    assert board.cell_estimates(ran, cells).tolist() == pytest.approx([200.0, 20.0])
    predict = board.size_model(ran)
    assert predict("t", "a", "m") == pytest.approx(10.0) and predict("t", "b", "n") == pytest.approx(200.0)
    # a (task, method) linked to the dataset by no chain of cells has no prediction
    apart = pd.concat([ran, pd.DataFrame(dict(task="u", dataset=["z"], method=["k"], method_kind=["peer"],
                                              status=["ok"], wall_time_s=[5.0]))])
    assert np.isnan(board.size_model(apart)("u", "b", "k"))
    assert board.size_model(apart)("u", "z", "k") == pytest.approx(5.0)

@pytest.mark.realdata
def test_the_board_s_runs_resume_from_the_board_in_a_new_results_folder(tmp_path, data_dir):
    """`stbench run --skip-published`: cells done on the reference board are not run again (a
    results folder does not outlive a session, the board does); the rest are."""
    from stbench.benchmark.runner import run_benchmark

    published = board.read_board(FIXTURE)
    mine = published[(published["method"] == "pca_kmeans") & (published["instance"] == "151673")]
    seeds = sorted(int(s) for s in mine["seed"])
    assert len(seeds) >= 1, "the fixture has pca_kmeans on 151673"
    new_seed = max(seeds) + 1
    report = run_benchmark(methods=["pca_kmeans"], tasks=["domain_identification"], datasets=["dlpfc"],
                           instances=["151673"], seeds=[*seeds, new_seed], data_dir=str(data_dir),
                           results_dir=tmp_path / "resumed", progress=False, skip_published=True,
                           reference_dir=FIXTURE)
    assert report.published == len(seeds) and report.executed == 1
    assert report.results["seed"].astype(int).tolist() == [new_seed]  # only the cell the board lacks ran


def test_board_add_replaces_a_stale_cell_by_its_re_run_and_never_the_other_way(tmp_path, monkeypatch):
    """After a method's version bump its committed cells are stale; their re-runs (same task,
    split, dataset, instance, method, seed; a current key) replace them on `board add`. A re-run
    from older code arriving late never displaces a current cell, and a stale cell with no re-run
    stays for `board status` to name."""
    import shutil

    shutil.copytree(FIXTURE, tmp_path / "board")
    published = board.read_board(tmp_path / "board")
    at = lambda t, method, seed: (t["method"] == method) & (t["seed"].astype(int) == seed)  # noqa: E731
    rerun = published[at(published, "pca_kmeans", 0)].assign(cell_key="key-after-the-bump", primary_value=0.5,
                                                             run_id="invocation-new")
    late = published[at(published, "negative_control", 1)].assign(cell_key="key-before-a-bump",
                                                                    run_id="invocation-old")
    results = tmp_path / "results"
    results.mkdir()
    (results / "results.parquet").touch()
    store = type("Store", (), {"table": lambda self: pd.concat([rerun, late])})
    monkeypatch.setattr(board, "ResultStore", lambda _: store())
    monkeypatch.setattr(board, "refusals", lambda cells: pd.Series("", index=cells.index, dtype=object))
    monkeypatch.setattr(board, "invocation_records", lambda *_: [])
    bumped = published.loc[at(published, "pca_kmeans", 0), "cell_key"].tolist()
    stale_left = published.loc[at(published, "pca_kmeans", 1), "cell_key"].tolist()
    grid = pd.DataFrame({"cell_key": [k for k in published["cell_key"] if k not in bumped + stale_left]
                         + ["key-after-the-bump"]})
    done = board.add(results, board_dir=tmp_path / "board", grid=grid)
    after = board.read_board(tmp_path / "board")
    assert done["superseded"] == 1  # the board's pre-bump pca_kmeans seed 0
    assert done["ignored_stale"] == 1  # the late pre-bump re-run, dropped on arrival: the board never held it
    assert done["added"] == 1  # the late one was dropped on arrival: only the re-run joined
    assert after.loc[at(after, "pca_kmeans", 0), "cell_key"].tolist() == ["key-after-the-bump"]
    assert after.loc[at(after, "negative_control", 1), "cell_key"].tolist() == \
        published.loc[at(published, "negative_control", 1), "cell_key"].tolist()
    assert after.loc[at(after, "pca_kmeans", 1), "cell_key"].tolist() == stale_left  # nothing replaces it
    assert len(after) == len(published)


def test_board_add_rewrites_the_static_page_only_when_the_board_changed(tmp_path, monkeypatch):
    """A `board add` that merges nothing leaves board.html as it was (an export of the same cells
    would differ only by its timestamp); one that adds a cell writes the page again."""
    import shutil
    from types import SimpleNamespace

    from stbench import cli
    from stbench.benchmark import store

    shutil.copytree(FIXTURE, tmp_path / "board")
    page = tmp_path / "board" / "board.html"
    page.write_text("the page as committed")
    monkeypatch.setattr(store, "REFERENCE_DIR", tmp_path / "board")
    # a stale cell of the results folder, dropped on arrival, leaves the board as it was
    merged = {"added": 0, "superseded": 0, "ignored_stale": 2, "invocations": 0, "cells": 1,
              "refused": pd.DataFrame()}
    monkeypatch.setattr(board, "add", lambda *_, **__: merged)
    args = SimpleNamespace(board_command="add", results=tmp_path / "results", only_valid=False)
    assert cli.cmd_board(args) == 0
    assert page.read_text() == "the page as committed"
    merged["added"] = 1
    assert cli.cmd_board(args) == 0
    assert "<html" in page.read_text().lower()
