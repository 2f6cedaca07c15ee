"""stbench compare: verdicts on hand-made tables, and end to end on a weakened variant."""

import numpy as np
import pandas as pd
import pytest

from stbench.errors import StbenchError
from stbench.leaderboard.compare import compare
from stbench.manifest import parse_variant


def _side(method, values, seeds=(0, 1, 2), metric="mae"):
    return pd.DataFrame([{"task": "gene_imputation", "split": "dropout30", "dataset": "d", "instance": "i",
                          "seed": s, "method": method, "status": "ok", "primary_metric": "mae", metric: v}
                         for s, v in zip(seeds, values)])


def test_paired_t_interval_and_verdicts():
    a = _side("m", [1.0, 2.0, 3.0])
    worse = compare(a, _side("m", [1.5, 2.4, 3.6])).table.iloc[0]  # MAE up: worse
    d = -np.array([0.5, 0.4, 0.6])
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)  # t(0.975, 2)
    assert worse["diff"] == pytest.approx(-0.5) and worse["lo"] == pytest.approx(d.mean() - half)
    assert worse["verdict"] == "regressed" and bool(worse["primary"])
    assert compare(a, _side("m", [0.5, 1.6, 2.4])).table.iloc[0]["verdict"] == "improved"
    assert compare(a, _side("m", [1.2, 1.9, 3.1])).table.iloc[0]["verdict"] == "within noise"
    # disjoint seed sets: paired on seed means, and said so
    c = compare(a, _side("m", [1.1, 2.0, 2.9], seeds=(3, 4, 5)))
    assert c.pairing == "seed means" and c.n_pairs == 1 and c.table.iloc[0]["verdict"] == "within noise"


def test_variant_syntax():
    assert parse_variant("knn_interpolation:k=1,weights=distance") == ("knn_interpolation",
                                                                        {"k": 1, "weights": "distance"})
    assert parse_variant("icp") == ("icp", {})
    with pytest.raises(StbenchError, match="is not key=value"):
        parse_variant("icp:iterations")


def test_compare_cli_weakened_variant_regresses(tmp_path, capsys):
    from stbench.cli import main

    common = ["--tasks", "spatial_imputation", "--splits", "random20", "--seeds", "0", "1", "--results",
              str(tmp_path), "--quiet"]
    assert main(["run", "--methods", "knn_interpolation"] + common) == 0
    assert main(["run", "--methods", "knn_interpolation:k=1"] + common) == 0
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert table["params"][table["method"] == "knn_interpolation"].nunique() == 2  # two identities, two keys
    capsys.readouterr()
    args = ["compare", "knn_interpolation", "knn_interpolation:k=1", "--results", str(tmp_path),
            "--markdown", str(tmp_path / "cmp.md")]
    assert main(args + ["--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "| spatial_imputation | pearson_gene (primary)" in out and "**regressed**" in out
    assert main(args) == 0  # without the flag a regression is reported, not fatal
    assert (tmp_path / "cmp.md").read_text().startswith("### stbench compare")


def test_a_candidate_that_fails_cells_regresses_whatever_its_ok_cells_say():
    """B matches A on the cells it finished, but timed out on one and never ran another: both
    are listed with their reason and the primary metric regresses (a crash never passes CI)."""
    a = _side("m", [1.0, 2.0, 3.0, 4.0], seeds=(0, 1, 2, 3))
    b = _side("m", [1.0, 2.0], seeds=(0, 1))
    b = pd.concat([b, pd.DataFrame([{**b.iloc[0].to_dict(), "seed": 2, "status": "timeout", "mae": np.nan,
                                      "error": "Traceback...\ncell timed out after 20 s"}])], ignore_index=True)
    c = compare(a, b)
    assert c.regressed_primary and c.n_pairs == 2
    row = c.table[c.table["primary"]].iloc[0]
    assert row["verdict"] == "regressed" and row["failed_b"] == 2
    fails = c.failures.set_index("seed")
    assert fails.loc[2, "status_b"] == "timeout" and fails.loc[2, "reason"] == "cell timed out after 20 s"
    assert fails.loc[3, "status_b"] == "missing" and fails.loc[3, "reason"] == "not recorded in B"
    md = c.markdown("m", "m:k=2")
    assert "2 cell(s) ok in A failed or are missing in B" in md and "| timeout | cell timed out after 20 s |" in md


def test_a_candidate_that_only_failed_is_compared_not_refused():
    a = _side("m", [1.0, 2.0])
    b = a.assign(status="error", mae=np.nan, error="RuntimeError: boom")
    c = compare(a, b)
    assert c.regressed_primary and len(c.failures) == 2 and set(c.failures["reason"]) == {"RuntimeError: boom"}
    assert c.table.iloc[0]["verdict"] == "regressed" and np.isnan(c.table.iloc[0]["mean_b"])
    with pytest.raises(StbenchError, match="side A has no ok cell"):
        compare(b, a)


def test_compare_cli_counts_a_candidate_that_timed_out_as_a_regression(leaderboard_results, tmp_path, capsys):
    """The candidate timed out on 2 of its 6 cells and matches A on the rest: `--fail-on-regression`
    exits 1 and the failures are listed with their reason (before, this said "within noise")."""
    import shutil

    from stbench.cli import main

    folder = tmp_path / "results"
    shutil.copytree(leaderboard_results, folder)
    table = pd.read_parquet(folder / "results.parquet")
    base = table[(table["method"] == "low_rank_completion") & table["params"].str.contains('"iterations": 15')]
    assert len(base) == 6
    cand = base.copy()
    cand["params"] = cand["params"].str.replace('"iterations": 15', '"iterations": 51')
    cand["cell_key"] = cand["cell_key"] + "-cand"
    slow = cand.index[:2]
    cand.loc[slow, "status"] = "timeout"
    cand.loc[slow, "error"] = "killed: still running after 20 s (--timeout)"
    cand.loc[slow, "pearson_gene_masked"] = np.nan
    pd.concat([table, cand], ignore_index=True).to_parquet(folder / "results.parquet")
    capsys.readouterr()
    code = main(["compare", "low_rank_completion", "low_rank_completion:iterations=51", "--results", str(folder),
                 "--fail-on-regression"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 1, captured.err
    assert "2 cell(s) ok in A failed or are missing in B" in out
    assert out.count("| timeout | killed: still running after 20 s (--timeout) |") == 2
    assert "| gene_imputation | pearson_gene_masked (primary)" in out and "**regressed**" in out
