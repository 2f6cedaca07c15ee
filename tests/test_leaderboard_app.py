"""The Streamlit leaderboard, page by page (``streamlit.testing.v1.AppTest``), on a results
folder made by real ``stbench run`` invocations (the ``leaderboard_results`` fixture)."""

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from stbench.leaderboard import APP_SCRIPT, RESULTS_ENV
from stbench.leaderboard.tables import Board, load_results

pytestmark = pytest.mark.filterwarnings("ignore")


def _open(results, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv(RESULTS_ENV, str(results))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception[0].message
    return at


def _charts(at) -> int:
    return sum(getattr(e, "type", "") == "vega_lite_chart" for e in at.main)


def test_overview_ranks_every_method_with_the_published_numbers(leaderboard_results, monkeypatch):
    at = _open(leaderboard_results, monkeypatch)
    assert at.title[0].value == "stbench leaderboard"
    table = at.dataframe[0].value
    raw = pd.read_parquet(leaderboard_results / "results.parquet")
    # every recorded method is on the board, the weakened variant as its own entry
    expected = set(raw["method"]) | {"low_rank_completion:iterations=1"}
    assert set(table["method"]) == expected
    # the same numbers as the static export's overview (one code path)
    board = Board(*load_results(leaderboard_results))
    published = board.overview().set_index("method")
    shown = table.set_index("method")
    g = "gene_imputation"
    for m in expected:
        for task in ("alignment", "domain_identification", g, "spatial_imputation"):
            assert shown.loc[m, f"{task} score"] == pytest.approx(published.loc[m, f"{task} score"], abs=5e-4,
                                                                   nan_ok=True)
    assert shown.loc["low_rank_completion", f"{g} score"] > shown.loc["low_rank_completion:iterations=1", f"{g} score"]
    # a method × task matrix: no method solves every task shown, so there is no cross-task rank
    assert "overall rank" not in table and shown.loc["low_rank_completion", f"{g} cells"] == "6 of 6"
    assert shown.loc["low_rank_completion", f"{g} rank"] == 1 and np.isnan(shown.loc["icp", f"{g} rank"])
    # controls are shown last and unranked; the failing method scores 0 on its task, with its failures counted
    assert table["kind"].tail(2).eq("control").all() and table.filter(like=" rank").tail(2).isna().all().all()
    assert shown.loc["fault_raises", "spatial_imputation score"] == 0.0 and shown.loc["fault_raises", "failed"] == 3
    assert _charts(at) == 0  # the overall bar chart only exists when there is an overall score
    # all synthetic: the sanity view, said so
    assert at.sidebar.radio(key="view").value == "sanity" and "not the ranking" in at.warning[0].value
    assert "Failed cells: 3" in [e.label for e in at.expander]


def test_filters_narrow_the_board(leaderboard_results, monkeypatch):
    at = _open(leaderboard_results, monkeypatch)
    at.sidebar.multiselect(key="f_tasks").set_value(["alignment"]).run()
    methods = set(at.dataframe[0].value["method"])
    assert methods == {"icp", "identity", "negative_control", "positive_control"}
    at.sidebar.multiselect(key="f_tasks").set_value([]).run()
    at.sidebar.multiselect(key="f_kinds").set_value(["control"]).run()
    assert set(at.dataframe[0].value["method"]) == {"negative_control", "positive_control"}
    at.sidebar.multiselect(key="f_kinds").set_value([]).run()
    at.sidebar.checkbox(key="f_true_k").uncheck().run()
    shown = set(at.dataframe[0].value["method"])
    assert "pca_kmeans" not in shown and "leiden_k" not in shown and "icp" in shown
    at.sidebar.multiselect(key="f_devices").set_value(["gpu"]).run()  # nothing ran on a GPU here
    assert at.dataframe[0].value.empty


def test_filters_come_from_and_go_to_the_url(leaderboard_results, monkeypatch):
    """A shared link reproduces the view: ?tasks=alignment&seeds=0 opens the board filtered,
    and changing a filter writes it back into the URL."""
    at = _open(leaderboard_results, monkeypatch, tasks="alignment", seeds="0")
    table = at.dataframe[0].value.set_index("method")
    assert set(table.index) == {"icp", "identity", "negative_control", "positive_control"}
    assert table.loc["icp", "alignment cells"] == "2 of 2"  # one seed of two slice pairs... of the selection
    at.sidebar.multiselect(key="f_seeds").set_value([0, 1]).run()
    assert at.query_params["seeds"] == "0,1" and at.dataframe[0].value.set_index("method").loc[
        "icp", "alignment cells"] == "4 of 4"


def test_task_page_raw_and_scaled_tables_charts_and_maps(leaderboard_results, monkeypatch):
    at = _open(leaderboard_results, monkeypatch, page="tasks", task="domain_identification")
    assert at.header[0].value == "Task: domain_identification"
    scaled = at.dataframe[0].value.set_index("method")
    col = "synthetic · whole_slice"
    assert scaled.loc["positive_control", col] == pytest.approx(1.0)
    assert scaled.loc["negative_control", col] == pytest.approx(0.0)
    at.radio(key="task_value").set_value("raw").run()
    raw_table = at.dataframe[0].value.set_index("method")
    raw = pd.read_parquet(leaderboard_results / "results.parquet")
    ari = raw[(raw["task"] == "domain_identification") & (raw["method"] == "pca_kmeans")]
    per_seed = ari.groupby("seed")["ari"].mean()  # mean over slices per seed, then mean ± sd over seeds
    assert raw_table.loc["pca_kmeans", col] == pytest.approx(per_seed.mean(), abs=5e-4)  # shown to 3 decimals
    assert raw_table.loc["pca_kmeans", f"{col} ±sd"] == pytest.approx(per_seed.std(ddof=1), abs=5e-4)
    at.selectbox(key="task_metric").set_value("nmi").run()
    assert at.dataframe[0].value.set_index("method").loc["pca_kmeans", col] == pytest.approx(
        ari.groupby("seed")["nmi"].mean().mean(), abs=5e-4)
    assert _charts(at) == 4  # score bars; accuracy vs runtime, vs peak memory, vs memory above start
    images = [e for e in at.main if type(e).__name__ == "Image"]
    assert len(images) == 2  # the truth-vs-prediction maps of the two best-ranked methods
    assert at.multiselect(key="map_methods").value == ["leiden_k", "pca_kmeans"]


def test_method_page_shows_metadata_variants_and_failed_cells(leaderboard_results, monkeypatch):
    at = _open(leaderboard_results, monkeypatch, page="methods", method="fault_raises")
    assert at.header[0].value == "Method: fault_raises"
    failed = at.dataframe[-1].value
    assert len(failed) == 3 and set(failed["reason"]) == {"RuntimeError: injected failure"}
    at = _open(leaderboard_results, monkeypatch, page="methods", method="low_rank_completion")
    catalog = json.loads((leaderboard_results / "catalog.json").read_text())["methods"]["low_rank_completion"]
    assert at.json[0].value == json.dumps(catalog["params"])
    recorded = at.dataframe[0].value
    assert set(recorded["method"]) == {"low_rank_completion", "low_rank_completion:iterations=1"}
    assert any("No failed cell" in s.value for s in at.success)


def test_regression_page_flags_the_weakened_variant(leaderboard_results, monkeypatch):
    at = _open(leaderboard_results, monkeypatch, page="regression")
    assert at.selectbox(key="regression_a").value == "low_rank_completion"
    assert at.selectbox(key="regression_b").value == "low_rank_completion:iterations=1"
    table = at.dataframe[-1].value
    primary = table[table["primary"]].iloc[0]
    assert primary["metric"] == "pearson_gene_masked" and primary["verdict"] == "regressed" and primary["n"] == 6
    assert "primary metric regressed" in at.error[0].value
    at.selectbox(key="regression_b").set_value("low_rank_completion").run()  # against itself: no change
    table = at.dataframe[-1].value
    assert set(table["verdict"]) == {"within noise"} and np.allclose(table["diff"], 0)


def test_missing_results_folder_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=60).run()
    assert not at.exception
    assert "no results table" in at.error[0].value and "stbench run" in at.error[0].value


def test_maps_outside_the_results_folder_are_not_read(leaderboard_results, tmp_path):
    from stbench.leaderboard.app import _artifact_path

    table, _ = load_results(leaderboard_results)
    uri = table.loc[table["artifact"] != "", "artifact"].iloc[0]
    assert _artifact_path(uri, leaderboard_results) is not None
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"png")
    assert _artifact_path(outside.as_uri(), leaderboard_results) is None
    assert _artifact_path("s3://bucket/map.png", leaderboard_results) is None


def test_leaderboard_command_refuses_a_folder_without_results(tmp_path, capsys):
    from stbench.cli import main

    assert main(["leaderboard", "--results", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["leaderboard", "--results", str(tmp_path)]) == 2
    assert "no results table" in capsys.readouterr().err
