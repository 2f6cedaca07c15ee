"""``stbench export``: the leaderboard's tables without a server, from the same code as the app."""

import pandas as pd
import pytest

from stbench.cli import main
from stbench.leaderboard.tables import Board, load_results


@pytest.fixture(scope="module")
def board(leaderboard_results):
    return Board(*load_results(leaderboard_results))


def test_csv_export_writes_the_overview_and_one_file_per_task(leaderboard_results, board, tmp_path, capsys):
    out = tmp_path / "board.csv"
    assert main(["export", "--results", str(leaderboard_results), "--format", "csv", "-o", str(out)]) == 0
    overview = pd.read_csv(out).set_index("method")
    expected = board.overview().set_index("method")
    assert list(overview.index) == list(expected.index)
    col = "gene_imputation score"
    assert overview[col].to_numpy() == pytest.approx(expected[col].to_numpy(), nan_ok=True)
    task = pd.read_csv(tmp_path / "board.domain_identification.csv").set_index("method")
    assert task.loc["pca_kmeans", "task score"] == pytest.approx(
        board.task_table("domain_identification").set_index("method").loc["pca_kmeans", "task score"])
    failed = pd.read_csv(tmp_path / "board.failed_cells.csv")
    assert len(failed) == 3 and set(failed["status"]) == {"error"}
    assert "board.alignment.csv" in capsys.readouterr().out


def test_markdown_and_html_exports_carry_mean_and_sd(leaderboard_results, board, tmp_path):
    md, html = tmp_path / "board.md", tmp_path / "board.html"
    assert main(["export", "--results", str(leaderboard_results), "--format", "md", "-o", str(md)]) == 0
    assert main(["export", "--results", str(leaderboard_results), "--format", "html", "-o", str(html)]) == 0
    text, page = md.read_text(), html.read_text()
    for section in ["## Overview", "## domain_identification", "## gene_imputation", "## Failed cells"]:
        assert section in text
    row = board.task_table("domain_identification").set_index("method").loc["pca_kmeans"]
    cell = f"{row['synthetic · whole_slice']:.3f} ± {row['synthetic · whole_slice ±sd']:.3f}"
    assert cell in text and cell in page
    # the weakened variant is its own row, ranked below the default
    ov = board.overview().set_index("method")
    assert ov.loc["low_rank_completion", "gene_imputation rank"] < \
        ov.loc["low_rank_completion:iterations=1", "gene_imputation rank"]
    assert "| low_rank_completion:iterations=1 " in text
    assert page.count("<table") == 6  # overview, 4 tasks, failed cells


def test_html_export_is_a_self_contained_page_for_readers(leaderboard_results, tmp_path):
    """One file with inline CSS and SVG charts, no script or remote resource; descriptions,
    directions, provenance (date, version, commit, machine); integer ranks, no "nan", no
    "-0.000", and no local path."""
    import re

    html = tmp_path / "board.html"
    assert main(["export", "--results", str(leaderboard_results), "--format", "html", "-o", str(html)]) == 0
    page = html.read_text()
    assert "<style>" in page and "<script" not in page and not re.search(r"(src|href)=['\"]https?:", page)
    assert page.count("<svg") == 2 * 4  # score bars and cost vs score per task
    assert "synthetic sanity" in page.lower() or "sanity check" in page  # all-synthetic folder: the sanity view
    for fact in ("exported", "stbench</b>: 0.1.0", "git commit", "CPU", "GPU"):
        assert fact in page
    assert "ari (↑)" in page and "mse (↓)" in page and "Adjusted Rand index" in page
    assert "nan" not in re.sub(r"<[^>]+>", " ", page).split() and "-0.000" not in page
    assert str(leaderboard_results) not in page and str(tmp_path) not in page
    ranks = re.findall(r"<tr class='[a-z]*'><td class='text'>[^<]+</td><td class=''>([^<]*)</td>", page)
    assert ranks and all(r == "" or r.isdigit() for r in ranks)


def test_export_of_a_folder_without_results_names_it(tmp_path, capsys):
    assert main(["export", "--results", str(tmp_path), "--format", "md", "-o", str(tmp_path / "x.md")]) == 2
    assert "no results table" in capsys.readouterr().err


def test_tasks_carry_their_description_direction_and_unranked_marks(leaderboard_results, tmp_path):
    """The catalog holds each task's declaration (written by the runner): the board labels
    metrics with their direction, orders them as declared, and shows a split that its task
    marks unranked as "(not ranked)" with the reason, out of the task score."""
    import shutil

    from stbench.leaderboard.tables import task_descriptions

    folder = tmp_path / "results"
    shutil.copytree(leaderboard_results, folder)
    table = pd.read_parquet(folder / "results.parquet")
    gene = table["task"] == "gene_imputation"
    mute = table[gene].assign(split="mute70", unranked="the target is a noisy sample")
    mute["cell_key"] = mute["cell_key"] + "-mute70"
    pd.concat([table, mute], ignore_index=True).to_parquet(folder / "results.parquet")
    board = Board(*load_results(folder))
    assert board.metrics("gene_imputation")[:2] == ["pearson_gene_masked", "mse"]  # the declared order
    assert board.metric_label("mse") == "mse (↓)" and board.metric_label("ari") == "ari (↑)"
    tt = board.task_table("gene_imputation").set_index("method")
    assert "synthetic · mute70 (not ranked)" in tt.columns and "synthetic · dropout30" in tt.columns
    # the task score is that of dropout30 alone
    ranked_only = Board(*load_results(leaderboard_results)).task_table("gene_imputation").set_index("method")
    assert tt.loc["gene_mean", "task score"] == pytest.approx(ranked_only.loc["gene_mean", "task score"])
    text = task_descriptions(board)["gene_imputation"]
    assert "pearson_gene_masked (↑)" in text and "Not ranked: synthetic · mute70" in text
    assert not text.endswith("..")


def test_a_method_run_on_part_of_the_grid_is_shown_incomplete_below_the_ranked_ones(leaderboard_results, tmp_path):
    """leiden_k loses its seed-1 cells: it keeps its partial score and "3 of 6" cells, gets no
    rank, and every page lists it after the ranked methods, however good its partial score."""
    import shutil

    import numpy as np

    from stbench.leaderboard.publish import write_document

    folder = tmp_path / "results"
    shutil.copytree(leaderboard_results, folder)
    table = pd.read_parquet(folder / "results.parquet")
    drop = (table["method"] == "leiden_k") & (table["seed"] == 1)
    table[~drop].to_parquet(folder / "results.parquet")
    board = Board(*load_results(folder))
    tt = board.task_table("domain_identification").set_index("method")
    assert tt.loc["leiden_k", "cells"] == "3 of 6" and np.isnan(tt.loc["leiden_k", "rank"])
    assert tt.loc["pca_kmeans", "rank"] == 1 and tt.loc["pca_kmeans", "cells"] == "6 of 6"
    assert tt.loc["leiden_k", "task score"] > tt.loc["pca_kmeans", "task score"]  # better, yet below
    order = list(tt.index)
    assert order.index("pca_kmeans") < order.index("leiden_k") < order.index("positive_control")
    ov = board.overview().set_index("method")
    assert ov.loc["leiden_k", "domain_identification cells"] == "3 of 6"
    assert np.isnan(ov.loc["leiden_k", "domain_identification rank"])
    page = write_document(board, tmp_path / "b.html", "html").read_text()
    assert "<tr class='incomplete'><td class='text'>leiden_k</td>" in page
    # the charts keep the rule: leiden_k is drawn faded and labelled, and is on no Pareto front
    # (its better partial score would otherwise push a complete method off it)
    pts = board.cost_vs_score("domain_identification").set_index("method")
    assert not pts.loc["leiden_k", "complete"] and pts.loc["pca_kmeans", "complete"]
    assert pts.loc["leiden_k", "label"] == "leiden_k (incomplete: 3 of 6 cells)"
    assert not pts.loc["leiden_k", ["pareto (time)", "pareto (memory)"]].any()
    assert pts.loc["pca_kmeans", "pareto (time)"]  # alone among the complete ones here
    assert "leiden_k (incomplete: 3 of 6 cells)</text><rect" in page and "fill-opacity='0.3'" in page


def test_real_data_is_the_default_view_and_the_synthetic_tissue_its_own(leaderboard_results, tmp_path):
    import json
    import shutil

    from stbench.leaderboard.tables import default_view, filter_cells

    table, catalog = load_results(leaderboard_results)
    assert default_view(table) == "sanity" and filter_cells(table, view="real").empty
    folder = tmp_path / "results"
    shutil.copytree(leaderboard_results, folder)
    raw = pd.read_parquet(folder / "results.parquet")
    real = raw[raw["task"] == "domain_identification"].assign(dataset="dlpfc")
    real["cell_key"] = real["cell_key"] + "-real"
    pd.concat([raw, real], ignore_index=True).to_parquet(folder / "results.parquet")
    cat = json.loads((folder / "catalog.json").read_text())
    cat["datasets"]["dlpfc"] = {"platform": "10x Visium", "synthetic": False}
    (folder / "catalog.json").write_text(json.dumps(cat))
    table, catalog = load_results(folder)
    assert default_view(table) == "real"
    real_board = Board(filter_cells(table, view="real"), catalog)
    assert real_board.tasks == ["domain_identification"] and set(real_board.table["dataset"]) == {"dlpfc"}
    assert set(filter_cells(table, view="sanity")["dataset"]) == {"synthetic", "synthetic_partial"} or \
        set(filter_cells(table, view="sanity")["dataset"]) == {"synthetic"}
