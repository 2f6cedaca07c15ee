"""Leaderboard aggregation on a hand-computed table (golden values)."""

import numpy as np
import pandas as pd
import pytest

from stbench.leaderboard.aggregate import (long_scores, overall_ranking, rank_stability, scale, seed_summary,
                                           task_ranking)


def _row(task, split, method, seed, status="ok", **metrics):
    kind = "control" if method.endswith("control") else "baseline"
    return {"task": task, "split": split, "dataset": "d1", "instance": "i1", "method": method, "seed": seed,
            "status": status, "primary_metric": {"domain_identification": "ari"}.get(task, "mae"), "method_kind": kind, "uses_truth": method == "positive_control",
            "uses_true_k": method == "A", **metrics}


@pytest.fixture
def table():
    d, g = "domain_identification", "gene_imputation"
    rows = [
        _row(d, "whole_slice", "negative_control", 0, ari=0.0, nmi=0.1),
        _row(d, "whole_slice", "negative_control", 1, ari=0.0, nmi=0.1),
        _row(d, "whole_slice", "positive_control", 0, ari=1.0, nmi=1.0),
        _row(d, "whole_slice", "positive_control", 1, ari=1.0, nmi=1.0),
        _row(d, "whole_slice", "A", 0, ari=0.5, nmi=0.55),
        _row(d, "whole_slice", "A", 1, ari=0.7, nmi=0.55),
        _row(d, "whole_slice", "B", 0, ari=0.2, nmi=0.28),
        _row(d, "whole_slice", "B", 1, status="error"),
        _row(g, "dropout30", "negative_control", 0, mae=2.0),
        _row(g, "dropout30", "positive_control", 0, mae=0.0),
        _row(g, "dropout30", "A", 0, mae=1.0),
        _row(g, "dropout30", "B", 0, mae=2.5),
        _row(g, "dropout30", "C", 0, status="skipped"),
    ]
    return pd.DataFrame(rows)


def test_scaled_scores_put_controls_at_0_and_1(table):
    s = scale(long_scores(table)).set_index(["task", "method", "seed", "metric"])["scaled"]
    assert s[("domain_identification", "negative_control", 0, "ari")] == 0.0
    assert s[("domain_identification", "positive_control", 1, "ari")] == 1.0
    assert s[("domain_identification", "A", 1, "ari")] == pytest.approx(0.7)
    assert s[("domain_identification", "A", 0, "nmi")] == pytest.approx((0.55 - 0.1) / 0.9)
    # an error metric: lower raw is better, and the scale still runs from 0 (negative) to 1 (positive)
    assert s[("gene_imputation", "A", 0, "mae")] == pytest.approx(0.5)
    assert s[("gene_imputation", "B", 0, "mae")] == pytest.approx(-0.25)  # worse than the negative control
    # a failed cell counts as 0 on every metric its task reports; a skipped one is not a score
    assert s[("domain_identification", "B", 1, "ari")] == 0.0 and s[("domain_identification", "B", 1, "nmi")] == 0.0
    assert "C" not in s.index.get_level_values("method")


def test_mean_and_sd_over_seeds(table):
    summ = seed_summary(scale(long_scores(table))).set_index(["task", "method", "metric"])
    a = summ.loc[("domain_identification", "A", "ari")]
    assert a["mean"] == pytest.approx(0.6) and a["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert a["n_seeds"] == 2
    assert summ.loc[("domain_identification", "B", "ari"), "mean"] == pytest.approx(0.1)


def test_task_and_overall_ranks(table):
    tr = task_ranking(table).set_index(["task", "method"])
    assert tr.loc[("domain_identification", "A"), ["score", "rank"]].tolist() == pytest.approx([0.6, 1])
    assert tr.loc[("domain_identification", "B"), ["score", "rank", "failed"]].tolist() == pytest.approx([0.1, 2, 1])
    assert np.isnan(tr.loc[("domain_identification", "positive_control"), "rank"])  # controls are not ranked
    assert tr.loc[("gene_imputation", "B"), "score"] == pytest.approx(-0.25)  # unclipped per task
    assert bool(tr.loc[("domain_identification", "A"), "uses_true_k"])
    ov = overall_ranking(table).set_index("method")
    # overall: mean over tasks of clipped task scores
    assert ov.loc["A", "score"] == pytest.approx((0.6 + 0.5) / 2) and ov.loc["A", "rank"] == 1
    assert ov.loc["B", "score"] == pytest.approx((0.1 + 0.0) / 2) and ov.loc["B", "rank"] == 2
    assert ov.loc["B", "failed"] == 1 and ov.loc["C", "skipped"] == 1
    assert ov.loc["positive_control", "score"] == pytest.approx(1.0)
    assert np.isnan(ov.loc["C", "score"]) and np.isnan(ov.loc["C", "rank"])  # skipped its only cell


def test_rank_stability_by_bootstrap(table):
    d = "domain_identification"
    stab = rank_stability(table, n_boot=50).set_index(["task", "method"])
    # A beats B on every seed of every dataset: every resample keeps the order
    assert stab.loc[(d, "A"), "same_rank_share"] == 1.0 and stab.loc[(d, "B"), "same_rank_share"] == 1.0
    assert ("gene_imputation", "C") not in stab.index  # incomplete: not ranked, so no stability either
    close = table.copy()
    close.loc[(close["method"] == "B") & (close["seed"] == 1), ["status", "ari", "nmi"]] = ["ok", 0.9, 0.6]
    stab = rank_stability(close, n_boot=200).set_index(["task", "method"])
    # now A and B trade places depending on which seeds are drawn
    assert 0.1 < stab.loc[(d, "A"), "same_rank_share"] < 0.95 and stab.loc[(d, "A"), "rank_hi"] == 2


def test_a_method_run_on_fewer_cells_is_incomplete_and_never_ranked_above_complete_ones(table):
    """Coverage: D ran only the easy seed of domain identification and scored the best value
    seen (0.95); it is shown with its partial score and "1 of 2" cells, below every ranked
    method, and gets no rank. A failed cell is covered (a 0); a skipped one is not."""
    d = "domain_identification"
    partial = pd.concat([table, pd.DataFrame([_row(d, "whole_slice", "D", 0, ari=0.95, nmi=0.9)])],
                        ignore_index=True)
    tr = task_ranking(partial)
    dom = tr[tr["task"] == d].set_index("method")
    assert dom.loc["D", "score"] == pytest.approx(0.95) and np.isnan(dom.loc["D", "rank"])
    assert (dom.loc["D", "cells"], dom.loc["D", "of"], bool(dom.loc["D", "complete"])) == (1, 2, False)
    assert (dom.loc["B", "cells"], bool(dom.loc["B", "complete"])) == (2, True)  # the error counts as a cell
    assert list(dom.index[:2]) == ["A", "B"]  # ranked first, D after them despite its higher score
    assert list(dom.index).index("D") < list(dom.index).index("negative_control")  # then the controls
    gene = tr[tr["task"] == "gene_imputation"].set_index("method")
    assert gene.loc["C", "cells"] == 0 and np.isnan(gene.loc["C", "rank"])  # skipped: not covered
    # an overall score only for methods complete on every task shown
    ov = overall_ranking(partial).set_index("method")
    assert np.isnan(ov.loc["D", "score"]) and np.isnan(ov.loc["C", "score"]) and ov.loc["A", "rank"] == 1
    assert ov.loc["D", "tasks"] == 0 and ov.loc["A", "tasks"] == 2
    # one task shown: no cross-task score at all
    assert overall_ranking(partial[partial["task"] == d])["score"].isna().all()


def test_task_score_error_bars_are_sd_over_seeds(table):
    from stbench.leaderboard.aggregate import task_score_by_seed

    bars = task_score_by_seed(scale(long_scores(table))).set_index(["task", "method"])
    # A on domains: seed 0 scores 0.5, seed 1 scores 0.7
    assert bars.loc[("domain_identification", "A"), "mean"] == pytest.approx(0.6)
    assert bars.loc[("domain_identification", "A"), "sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    # B failed on seed 1: a zero, not a missing value
    assert bars.loc[("domain_identification", "B"), "sd"] == pytest.approx(np.std([0.2, 0.0], ddof=1))
    assert bars.loc[("gene_imputation", "A"), "sd"] == 0.0 and bars.loc[("gene_imputation", "A"), "n_seeds"] == 1


def test_pareto_front_keeps_the_points_nothing_beats():
    from stbench.leaderboard.aggregate import pareto_front

    pts = pd.DataFrame({"time": [1.0, 2.0, 3.0, 0.5, 2.5], "score": [0.5, 0.8, 0.7, 0.1, 0.9]},
                       index=list("abcde"))
    # c is beaten by b (cheaper and better); the rest trade cost for score
    assert pareto_front(pts, "time", "score").to_dict() == {"a": True, "b": True, "c": False, "d": True, "e": True}


def test_variants_and_versions_are_their_own_board_entries():
    from stbench.leaderboard.tables import board_names

    rows = pd.DataFrame({"method": ["m", "m", "m", "m", "solo"],
                         "method_version": ["1", "1", "2", "1", "1"],
                         "params": ['{"k": 5, "w": "u"}', '{"k": 1, "w": "u"}', '{"k": 5, "w": "u"}',
                                    '{"k": 5, "w": "u"}', "{}"]})
    catalog = {"methods": {"m": {"version": "1", "params": {"k": 5, "w": "u"}}}, "datasets": {}}
    assert list(board_names(rows, catalog)) == ["m", "m:k=1", "m@2", "m", "solo"]
    # without a catalog the most recorded parameter set keeps the bare name
    assert list(board_names(rows, {"methods": {}, "datasets": {}})) == ["m", "m:k=1", "m@2", "m", "solo"]


def test_unranked_cells_are_shown_but_never_ranked(table):
    """A (task, split, dataset) its task marks unranked keeps its scaled scores (the tables show
    them) but counts in no task score: here B is best on an unranked split and stays last."""
    g = "gene_imputation"
    extra = pd.DataFrame([
        _row(g, "gaussian_like", "negative_control", 0, mae=2.0),
        _row(g, "gaussian_like", "positive_control", 0, mae=0.0),
        _row(g, "gaussian_like", "A", 0, mae=1.9),
        _row(g, "gaussian_like", "B", 0, mae=0.1),
    ]).assign(unranked="the target is a noisy sample")
    full = pd.concat([table.assign(unranked=""), extra], ignore_index=True)
    scaled = scale(long_scores(full))
    assert scaled[(scaled["split"] == "gaussian_like") & (scaled["method"] == "B")]["scaled"].item() \
        == pytest.approx(0.95)
    ranks = task_ranking(full).set_index(["task", "method"])
    assert ranks.loc[(g, "A"), "score"] == pytest.approx(0.5)  # dropout30 only
    assert ranks.loc[(g, "B"), "score"] == pytest.approx(-0.25)
    assert ranks.loc[(g, "A"), "rank"] < ranks.loc[(g, "B"), "rank"]


def test_declared_metrics_keep_bookkeeping_out_of_the_scores(table):
    """With the tasks' declarations (catalog.json), a numeric column a task does not declare
    (an older run's n_clusters) is not a score; without them every numeric column is."""
    from stbench.leaderboard.aggregate import declared_metrics, metric_columns

    t = table.assign(n_clusters=7.0)
    catalog = {"tasks": {"domain_identification": {"metrics": [{"name": "ari"}, {"name": "nmi"}]},
                         "gene_imputation": {"metrics": [{"name": "mae"}]}}}
    declared = declared_metrics(catalog)
    assert metric_columns(t, declared) == ["ari", "nmi", "mae"]
    assert "n_clusters" in metric_columns(t)
    assert set(long_scores(t, declared)["metric"]) == {"ari", "nmi", "mae"}


def test_cells_that_ran_without_a_sandbox_are_counted_per_method(table):
    from stbench.leaderboard.aggregate import method_info

    t = table.assign(sandbox="landlock-abi7 r+w, netns")
    t.loc[(t["method"] == "B"), "sandbox"] = "none"
    info = method_info(t)
    assert info.loc["B", "unsandboxed"] == 3 and info.loc["A", "unsandboxed"] == 0
    assert info.loc["C", "unsandboxed"] == 0  # a skipped cell ran nothing
