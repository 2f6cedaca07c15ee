"""The command line: list, run (tables, files, append-only results) and clear errors."""

import pandas as pd

from stbench.cli import main


def test_list_prints_registered_things(capsys):
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    for t in ["spatial_imputation", "gene_imputation", "denoising", "domain_identification",
              "multislice_integration", "alignment"]:
        assert t in out
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "positive_control" in out and "uses_truth" in out and "pca_kmeans" in out
    assert main(["list", "datasets"]) == 0
    assert "merfish_hypothalamus" in capsys.readouterr().out


def test_run_writes_tables_and_never_overwrites(tmp_path, capsys):
    args = ["run", "--tasks", "domain_identification", "--methods", "pca_kmeans", "--results", str(tmp_path),
            "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ari ↑" in out and "pca_kmeans" in out and "positive_control" in out
    first = pd.read_parquet(tmp_path / "results.parquet")
    assert set(first["method"]) == {"pca_kmeans", "negative_control", "positive_control"}
    assert (first["status"] == "ok").all() and first["dataset_sha256"].str.len().eq(64).all()
    assert (first.loc[first["method"] == "positive_control", "ari"] == 1.0).all()
    assert main(args + ["--seeds", "1"]) == 0
    both = pd.read_parquet(tmp_path / "results.parquet")
    assert len(both) == 2 * len(first) and both["run_id"].nunique() == 2
    # the first run's rows are still there, unchanged
    again = both.set_index("cell_key").loc[first["cell_key"]].reset_index()[first.columns]
    pd.testing.assert_frame_equal(again, first, check_dtype=False)
    assert len(pd.read_csv(tmp_path / "results.csv")) == len(both)


def test_unknown_names_get_one_clear_error(capsys, tmp_path):
    assert main(["run", "--tasks", "spatial_imputaton", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'spatial_imputaton'" in err and "spatial_imputation" in err
    assert main(["run", "--methods", "suica2", "--results", str(tmp_path)]) == 2
    assert "unknown method 'suica2'" in capsys.readouterr().err
    assert main(["run", "--datasets", "dlpfc9", "--results", str(tmp_path)]) == 2
    assert "unknown dataset 'dlpfc9'" in capsys.readouterr().err
    assert main(["run", "--memory", "lots", "--results", str(tmp_path)]) == 2
    assert "--memory 'lots' is not a size" in capsys.readouterr().err
    assert main(["run", "--timeout", "0", "--results", str(tmp_path)]) == 2
    assert "--timeout 0.0 is not positive" in capsys.readouterr().err
    assert not (tmp_path / "results.parquet").exists()


def test_failing_and_invalid_methods_are_recorded_not_fatal(tiny):
    import numpy as np

    from stbench.benchmark.inprocess import run_cell
    from stbench.methods import Method
    from stbench.tasks import get_task

    broken = Method(name="broken", kind="baseline", summary="raises")
    wrong = Method(name="wrong", kind="baseline", summary="wrong shape")
    broken.solves("spatial_imputation")(lambda inputs, ctx: 1 / 0)
    wrong.solves("spatial_imputation")(lambda inputs, ctx: np.zeros((1, 1)))
    p = get_task("spatial_imputation").make_problem(tiny, "slice0", "random20", 0)
    row = run_cell(p, broken)
    assert row["status"] == "error" and "ZeroDivisionError" in row["error"]
    row = run_cell(p, wrong)
    assert row["status"] == "invalid_output" and "Expected:" in row["error"]


def test_user_dataset_file_runs(tmp_path, capsys):
    from stbench.datasets.synthetic import simulate_tissue

    path = tmp_path / "mytissue.h5ad"
    simulate_tissue(300, 30, 2, seed=4).write_h5ad(path)
    assert main(["run", "--dataset-file", str(path), "--tasks", "domain_identification", "alignment",
                 "--methods", "pca_kmeans", "icp", "--results", str(tmp_path / "r"), "--quiet"]) == 0
    df = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert len(set(df["dataset"])) == 1 and df["dataset"].iloc[0].startswith("mytissue-")
    assert set(df["instance"]) == {"slice0", "slice1", "slice0>slice1"}
    assert (df["status"] == "ok").all()


def test_instances_select_slices_and_an_unknown_one_is_named():
    import pytest

    from stbench.errors import UnknownNameError
    from stbench.benchmark.planning import plan_cells
    from stbench.datasets.registry import get_dataset_spec

    specs = {"synthetic": get_dataset_spec("synthetic")}
    every = plan_cells(["spatial_imputation"], ["knn_interpolation"], specs, [0])
    one = plan_cells(["spatial_imputation"], ["knn_interpolation"], specs, [0], instances=["slice1"])
    assert {c.instance for c in every} == {"slice0", "slice1", "slice2"}
    assert {c.instance for c in one} == {"slice1"} and len(one) == len(every) // 3
    with pytest.raises(UnknownNameError, match="unknown instance 'slice9'.*slice0, slice1, slice2"):
        plan_cells(["spatial_imputation"], ["knn_interpolation"], specs, [0], instances=["slice9"])


def test_the_progress_bar_shows_life_during_a_long_cell_and_counts_only_executed_cells():
    import io
    import time

    from stbench.benchmark.planning import Cell
    from stbench.benchmark.report import Progress as _Progress

    stream = io.StringIO()
    bar = _Progress(4, True, stream=stream, tick_s=0.1)
    bar.done("cached")
    assert bar.bar.total == 3  # a cached cell takes no time: it leaves the rate and the ETA
    cell = Cell("domain_identification", "whole_slice", "dlpfc", "151673", "pca_kmeans", 0)
    bar.start(cell)
    time.sleep(0.35)
    redraws = stream.getvalue().count("pca_kmeans")
    time.sleep(0.3)
    assert stream.getvalue().count("pca_kmeans") > redraws  # redrawn while the cell runs, not only at its end
    assert "pca_kmeans" in bar._describe() and bar._describe().endswith("s")
    bar.done("ok", cell)
    bar.close()
    assert bar.running == {} and bar.counts == {"ok": 1, "failed": 0, "cached": 1}


def test_a_run_ends_with_one_line_per_method_and_the_per_cell_table_behind_a_flag(tmp_path, capsys):
    common = ["run", "--tasks", "spatial_imputation", "--splits", "random20", "--methods", "knn_interpolation:k=2",
              "--results", str(tmp_path), "--quiet"]
    assert main(common) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "knn_interpolation:k=2" in ln]
    assert len(lines) == 1 and "pearson_gene ↑" in lines[0]  # one summary line, the variant named in full
    assert main(common + ["--per-cell"]) == 0
    out = capsys.readouterr().out
    assert sum("knn_interpolation:k=2" in ln for ln in out.splitlines()) == 3  # one per slice
