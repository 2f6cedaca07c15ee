"""``stbench export``: the leaderboard's tables without a server, from the same code as the app."""

import pandas as pd
import pytest

from stbench.benchmark.cli import main
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
    assert overview["overall"].to_numpy() == pytest.approx(expected["overall"].to_numpy(), nan_ok=True)
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
    text = md.read_text()
    for section in ["## overview", "## domain_identification", "## gene_imputation", "## failed cells"]:
        assert section in text
    row = board.task_table("domain_identification").set_index("method").loc["pca_kmeans"]
    cell = f"{row['synthetic · whole_slice']:.3f} ± {row['synthetic · whole_slice ±sd']:.3f}"
    assert cell in text and cell in html.read_text()
    # the weakened variant is its own row, ranked below the default
    ov = board.overview().set_index("method")
    assert ov.loc["low_rank_completion", "rank"] < ov.loc["low_rank_completion:iterations=1", "rank"]
    assert "| low_rank_completion:iterations=1 " in text
    assert html.read_text().count("<table") == 6  # overview, 4 tasks, failed cells


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
