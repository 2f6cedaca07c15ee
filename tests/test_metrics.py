"""Golden values on small hand-computed examples, one per metric."""

import numpy as np
import pytest
import scipy.sparse as sp

from stbench.tasks.metrics import METRICS
from stbench.tasks.metrics.alignment import (coord_rmse, label_transfer_ari, ltari, ltari_mapped, ltari_nn, ltari_plan,
                                             rigid_part, transfer_partner)
from stbench.tasks.metrics.expression import (cosine, cosine_gene, expression_scores, mae, mae_nz, mse, mse_nz,
                                              pearson, pearson_gene, spearman, spearman_gene)
from stbench.tasks.metrics.integration import batch_asw, integration_scores, label_asw
from stbench.tasks.metrics.labels import ari, boundary_ca, boundary_mask, ca, nmi

T = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
P = np.array([[2.0, 0.0, 2.0], [1.0, 1.0, 0.0]])


def test_every_metric_declares_direction_and_range():
    assert {"mae", "mse", "cosine", "ssim", "ari", "ltari", "coord_rmse", "batch_asw"} <= set(METRICS)
    for info in METRICS.values():
        assert isinstance(info.higher_is_better, bool)
        lo, hi = info.range
        assert lo < hi
        assert info.fn.__doc__, f"{info.name} needs a docstring formula"
    assert METRICS["mae"].higher_is_better is False and METRICS["cosine"].higher_is_better is True


def test_error_metrics_by_hand():
    # |diff| = [1,0,0,1,2,0] -> MAE 4/6; squared = [1,0,0,1,4,0] -> MSE 6/6
    assert mae(T, P) == pytest.approx(4 / 6)
    assert mse(T, P) == pytest.approx(1.0)
    # truth > 0 at (0,0)=1, (0,2)=2, (1,1)=3: |diff| 1, 0, 2
    assert mae_nz(T, P) == pytest.approx(1.0)
    assert mse_nz(T, P) == pytest.approx(5 / 3)


def test_cosine_per_spot_by_hand():
    # row 0: (2+0+4)/(sqrt5*sqrt8) ; row 1: 3/(3*sqrt2)
    expected = (6 / np.sqrt(40) + 1 / np.sqrt(2)) / 2
    assert cosine(T, P) == pytest.approx(expected)


def test_pearson_and_spearman_per_spot_by_hand():
    t = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    p = np.array([[2.0, 4.0, 6.0], [3.0, 2.0, 1.0]])
    assert pearson(t, p) == pytest.approx(0.0)  # +1 and -1
    p2 = np.array([[1.0, 4.0, 9.0], [1.0, 3.0, 2.0]])
    # row 0 monotone -> 1 ; row 1 ranks (1,3,2) vs (1,2,3): corr = 0.5
    assert spearman(t, p2) == pytest.approx(0.75)
    # Pearson row 1: (1,3,2) vs (1,2,3) = 0.5; row 0: corr((1,2,3),(1,4,9))
    r0 = np.corrcoef([1, 2, 3], [1, 4, 9])[0, 1]
    assert pearson(t, p2) == pytest.approx((r0 + 0.5) / 2)


def test_constant_rows_score_zero_not_nan():
    t = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    p = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert pearson(t, p) == pytest.approx(0.5)
    assert spearman(t, p) == pytest.approx(0.5)
    assert cosine(np.zeros((1, 3)), np.ones((1, 3))) == 0.0


def test_gene_variants_are_column_wise():
    assert cosine_gene(T, P) == pytest.approx(cosine(T.T, P.T))
    assert pearson_gene(T, P) == pytest.approx(pearson(T.T, P.T))
    assert spearman_gene(T, P) == pytest.approx(spearman(T.T, P.T))


def test_expression_scores_agree_with_single_metrics():
    rng = np.random.default_rng(0)
    t, p = rng.poisson(1.0, (20, 7)).astype(float), rng.poisson(1.0, (20, 7)).astype(float)
    allm = expression_scores(t, p)
    for name, fn in [("mae", mae), ("mse", mse), ("cosine", cosine), ("pearson", pearson), ("spearman", spearman),
                     ("mae_nz", mae_nz), ("pearson_gene", pearson_gene)]:
        assert allm[name] == pytest.approx(fn(t, p))


def test_label_metrics_by_hand():
    truth = np.array(["a", "a", "b", "b"])
    assert ari(truth, ["x", "x", "y", "y"]) == pytest.approx(1.0)
    assert nmi(truth, ["x", "x", "y", "y"]) == pytest.approx(1.0)
    # pred (0,0,0,1): pair index 1, expected 2*3/6 = 1, max 2.5 -> ARI 0
    assert ari(truth, [0, 0, 0, 1]) == pytest.approx(0.0)
    # pred (0,0,1,2): index 1, expected 2*1/6 = 1/3, max 1.5 -> (2/3) / (7/6) = 4/7
    assert ari(truth, [0, 0, 1, 2]) == pytest.approx(4 / 7)
    # Hungarian: 0->a, 1->b -> 3 of 4 right
    assert ca(truth, [0, 0, 0, 1]) == pytest.approx(0.75)
    # label permutation does not matter
    assert ca(truth, ["b", "b", "a", "a"]) == pytest.approx(1.0)


def test_boundary_ca_by_hand():
    # a 1-D row of spots: labels a a a b b b; with k=2 the boundary spots are positions 2 and 3
    coords = np.column_stack([np.arange(6.0), np.zeros(6)])
    truth = np.array(list("aaabbb"))
    mask = boundary_mask(truth, coords, k=2)
    assert mask.tolist() == [False, False, True, True, False, False]
    pred = np.array([0, 0, 1, 1, 1, 1])  # map 0->a, 1->b: wrong only at position 2
    assert ca(truth, pred) == pytest.approx(5 / 6)
    assert boundary_ca(truth, pred, coords, k=2) == pytest.approx(0.5)


def test_ltari_and_rmse_by_hand():
    ref_xy = np.array([[0.0, 0.0], [10.0, 0.0]])
    ref_lab = np.array(["a", "b"], dtype=object)
    q_lab = np.array(["a", "a", "b", None], dtype=object)
    aligned = np.array([[1.0, 0.0], [2.0, 0.0], [9.0, 0.0], [8.0, 0.0]])
    partner, rule = transfer_partner(ref_xy, aligned)
    assert rule == "nearest_neighbour" and partner.tolist() == [0, 0, 1, 1]
    assert label_transfer_ari(ref_lab, q_lab, partner) == pytest.approx(1.0)  # unlabelled spot scored out
    plan = np.array([[0, 1], [1, 0], [1, 0], [0, 1]], float)
    partner, rule = transfer_partner(ref_xy, aligned, plan)
    assert rule == "argmax_pi" and partner.tolist() == [1, 0, 0, 1]
    # transferred b,a,a vs true a,a,b -> ARI of (0,0,1) vs (1,0,0) = -0.5
    assert ltari_plan(ref_lab, q_lab, plan) == pytest.approx(-0.5)
    assert np.isnan(ltari_plan(ref_lab, q_lab, None))
    # a partial plan: the empty row (spot 1) has no partner and is scored out, not sent to reference spot 0
    partial = np.array([[1, 0], [0, 0], [0, 1], [0, 1]], float)
    partner, _ = transfer_partner(ref_xy, aligned, sp.csr_matrix(partial))
    assert partner.tolist() == [0, -1, 1, 1] and ltari_mapped(partner) == pytest.approx(0.75)
    assert ltari_plan(ref_lab, q_lab, sp.csr_matrix(partial)) == pytest.approx(1.0)  # a->a, b->b: spots 0, 2


def test_ltari_scores_the_rigid_part_of_the_answer_only():
    """Query spots at x = 1, 2, 9, 8 (labels a, b, b, a); reference a at x = 0, b at x = 10."""
    ref_xy = np.array([[0.0, 0.0], [10.0, 0.0]])
    ref_lab = np.array(["a", "b"], dtype=object)
    q_lab = np.array(["a", "b", "b", "a"], dtype=object)
    given = np.array([[1.0, 0.0], [2.0, 0.0], [9.0, 0.0], [8.0, 0.0]])
    # a rigid answer (a half turn about (5, 0)) is scored as it is: partners b, b, a, a
    turned = np.column_stack([10 - given[:, 0], -given[:, 1]])
    np.testing.assert_allclose(rigid_part(given, turned), turned, atol=1e-12)
    # transferred b,b,a,a vs true a,b,b,a: ARI of (0,0,1,1) vs (0,1,1,0) = (0 - 2/3) / (2 - 2/3) = -0.5
    assert ltari(ref_lab, q_lab, ref_xy, given, turned) == pytest.approx(-0.5)
    # a per-spot placement on same-label reference spots wins the nearest-neighbour rule ...
    cheat = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [0.0, 0.0]])
    assert ltari_nn(ref_lab, q_lab, ref_xy, cheat) == pytest.approx(1.0)
    # ... but its rigid part is the identity (centroids 5 and 5; the x-covariance is positive), so
    # ltari sees the given coordinates: partners a, a, b, b, ARI -0.5 again
    np.testing.assert_allclose(rigid_part(given, cheat), given, atol=1e-12)
    assert ltari(ref_lab, q_lab, ref_xy, given, cheat) == pytest.approx(-0.5)


def test_rmse_by_hand():
    assert coord_rmse([[0, 0], [0, 0]], [[3, 4], [0, 0]]) == pytest.approx(np.sqrt(12.5))
    # a spot without a reference position (NaN) is scored out
    assert coord_rmse([[0, 0], [np.nan, np.nan]], [[3, 4], [0, 0]]) == pytest.approx(5.0)


def test_integration_metrics():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], 50)
    batches = np.tile(["s1", "s2"], 50)
    separated = np.where(labels[:, None] == "a", 0.0, 10.0) + rng.normal(0, 0.1, (100, 2))
    # labels perfectly separated, batches perfectly mixed
    assert label_asw(separated, labels) > 0.95
    assert batch_asw(separated, batches, labels) > 0.8  # random mixing: |silhouette| small
    shifted = separated + np.where(batches[:, None] == "s1", 0.0, 5.0)  # batch pulls slices apart
    assert batch_asw(shifted, batches, labels) < batch_asw(separated, batches, labels)
    scores = integration_scores(separated, labels, batches, k=2)
    assert scores["ari"] == pytest.approx(1.0) and scores["ca"] == pytest.approx(1.0)


def test_rmse_gene_by_hand():
    # diff columns: [-1, -1] -> rmse 1; [0, 2] -> sqrt(2); [0, 0] -> 0; mean over genes
    from stbench.tasks.metrics.expression import rmse_gene

    assert rmse_gene(T, P) == pytest.approx((1 + np.sqrt(2) + 0) / 3)


def test_pearson_gene_masked_by_hand():
    """Gene 0 masked at spots 0-2: truth [1, 2, 3] vs prediction [2, 1, 6] -> 4 / sqrt(2 * 14);
    gene 1 is constant on its masked spots -> 0; gene 2 has one masked spot -> 0."""
    from stbench.tasks.metrics.expression import pearson_gene_masked

    truth = np.array([[1.0, 5.0, 1.0], [2.0, 5.0, 2.0], [3.0, 5.0, 3.0], [4.0, 1.0, 4.0]])
    pred = np.array([[2.0, 1.0, 9.0], [1.0, 2.0, 9.0], [6.0, 3.0, 9.0], [8.0, 4.0, 9.0]])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    assert pearson_gene_masked(truth, pred, mask) == pytest.approx((4 / np.sqrt(28) + 0 + 0) / 3)
    # a constant fill (all zeros, a gene mean) scores exactly 0
    assert pearson_gene_masked(truth, np.zeros_like(truth), mask) == 0.0


def test_poisson_deviance_by_hand():
    """Depth 1e4, so lam = expm1(prediction): x = 2 at lam = 1 gives 2 ln 2 - 2 + 1; x = 0 at
    lam = 1 gives 1; mean ln 2. The target itself (lam = x) gives 0."""
    from stbench.tasks.metrics.expression import poisson_deviance

    counts = np.array([[2.0, 0.0]])
    depth = np.array([1e4])
    assert poisson_deviance(counts, np.log1p([[1.0, 1.0]]), depth) == pytest.approx(np.log(2))
    assert poisson_deviance(counts, np.log1p(counts), depth) == pytest.approx(0, abs=1e-7)  # 0 up to the 1e-8
    # a zero rate where molecules were counted costs x * log(x / 1e-8) - x
    assert poisson_deviance(counts, np.zeros((1, 2)), depth) == pytest.approx((2 * np.log(2 / 1e-8) - 2) / 2)


def test_gmm_clustering_and_its_metrics():
    """Two well-separated groups: the tied-covariance GMM recovers them; the _gmm metrics are
    the label metrics of its labels."""
    from stbench.tasks.metrics.labels import ari_gmm, ca_gmm, cluster_embedding_gmm, nmi_gmm

    rng = np.random.default_rng(0)
    emb = np.vstack([rng.normal([0, 0], [1.0, 0.3], (60, 2)), rng.normal([0, 3], [1.0, 0.3], (60, 2))])
    truth = np.repeat(["a", "b"], 60)
    labels = cluster_embedding_gmm(emb, 2)
    assert ari_gmm(truth, labels) == pytest.approx(1.0)
    assert ari_gmm(truth, labels) == ari(truth, labels) and nmi_gmm(truth, labels) == nmi(truth, labels)
    assert ca_gmm(truth, labels) == ca(truth, labels) == 1.0


def test_metric_declarations_carry_a_one_line_formula():
    """The catalog (and so the leaderboard) shows each metric's direction and formula line."""
    d = METRICS["pearson_gene"].declaration()
    assert d["higher_is_better"] is True and d["range"] == [-1.0, 1.0]
    assert d["description"].startswith("mean_j corr(y_j, yhat_j)")
