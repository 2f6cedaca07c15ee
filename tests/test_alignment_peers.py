"""PASTE and PASTE2: they recover known rigid transforms, and their plans have the marginals they should."""

import numpy as np
import pytest

from stbench.datasets.loading import Dataset, _normalise
from stbench.datasets.registry import get_dataset_spec
from stbench.datasets.synthetic import content_sha256, simulate_tissue
from stbench.methods import METHODS, RunContext
from stbench.methods._fgw import fgw_plan, rigid_from_plan
from stbench.tasks import get_task
from stbench.tasks.alignment import best_rigid_by_labels, rotation
from stbench.tasks.metrics.alignment import ltari_nn, rigid_part

TASK = get_task("alignment")
PITCH_UM = 100.0  # the synthetic spot pitch: slices are different samplings of one tissue


def run(method, problem, **overrides):
    m = METHODS[method]
    ctx = RunContext(0, "cpu", None, {**m.params, **overrides}, "alignment", "rigid",
                     solution=TASK.reference_output(problem) if m.uses_truth else None)
    out = TASK.check_output(problem, m.run("alignment", problem.inputs, ctx))
    return out, {**TASK.checked_scores(problem, out), **TASK.annotate(problem, out)}


@pytest.fixture(scope="module")
def pair(tiny):
    return TASK.make_problem(tiny, "slice0>slice1", "rigid", 0)


@pytest.fixture(scope="module")
def partial_pair():
    """The query keeps about 60 % of the tissue (a half-plane cut), then the task moves it."""
    adata = simulate_tissue(n_spots=500, n_genes=120, n_slices=2, seed=3, overlap=0.6)
    ds = Dataset(get_dataset_spec("synthetic"), _normalise(adata), content_sha256(adata))
    return TASK.make_problem(ds, "slice0>slice1", "rigid", 0)


def test_rigid_from_a_permutation_plan_is_exact():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1000, size=(50, 2))
    th = np.radians(123.0)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    perm = rng.permutation(50)
    query = (ref[perm] - 300.0) @ R  # query spot i is reference spot perm[i], moved
    plan = np.zeros((50, 50))
    plan[np.arange(50), perm] = 1 / 50
    R_hat, t_hat = rigid_from_plan(query, ref, plan)
    assert np.allclose(query @ R_hat.T + t_hat, ref[perm], atol=1e-8)


@pytest.mark.parametrize("method", ["paste", "paste2"])
def test_aligner_recovers_the_known_transform(pair, method):
    out, s = run(method, pair)
    _, identity = run("identity", pair)
    # within one spot pitch of the true placement (the task moved the query by thousands of um)
    assert s["coord_rmse"] < PITCH_UM < identity["coord_rmse"]
    assert s["ltari"] > 0.6 and s["ltari"] > identity["ltari"] + 0.3
    assert s["ltari_plan"] > 0.6 and s["returns_plan"] is True


def test_paste_plan_has_uniform_marginals(pair):
    out, _ = run("paste", pair)
    plan = out["plan"].toarray()
    n_q, n_r = plan.shape
    assert np.allclose(plan.sum(axis=1), 1 / n_q, atol=1e-9)
    assert np.allclose(plan.sum(axis=0), 1 / n_r, atol=1e-9)


def test_spot_pitch_units_make_the_plan_independent_of_the_coordinate_unit():
    """PASTE's default scale: the same slices in microns or in pixels (x 7.3) give the same plan;
    raw distances do not (alpha would mean something else on every platform)."""
    rng = np.random.default_rng(0)
    q, r = rng.uniform(0, 1000, (60, 2)), rng.uniform(0, 1000, (50, 2))
    M = rng.uniform(0, 1, (60, 50))
    plans = {unit: {mode: fgw_plan(M, q * unit, r * unit, 0.1, "product", rescale=mode)[0] for mode in ("pitch", "none")}
             for unit in (1.0, 7.3)}
    assert np.allclose(plans[1.0]["pitch"], plans[7.3]["pitch"], atol=1e-10)
    assert not np.allclose(plans[1.0]["none"], plans[7.3]["none"], atol=1e-6)
    with pytest.raises(ValueError, match="rescale 'pixels' is unknown"):
        fgw_plan(M, q, r, 0.1, "product", rescale="pixels")


def test_paste2_plan_moves_only_the_overlap_mass(pair):
    out, s = run("paste2", pair, overlap=0.7)
    plan = out["plan"].toarray()
    n_q, n_r = plan.shape
    assert plan.sum() == pytest.approx(0.7, abs=1e-6)
    assert (plan.sum(axis=1) <= 1 / n_q + 1e-9).all() and (plan.sum(axis=0) <= 1 / n_r + 1e-9).all()
    # unmatched query spots are scored out of LTARI and counted
    assert s["ltari_mapped"] == pytest.approx((plan.sum(axis=1) > 0).mean())
    assert s["ltari_mapped"] < 1


def test_paste2_beats_paste_when_the_query_covers_part_of_the_reference(partial_pair):
    _, full = run("paste", partial_pair)
    _, partial = run("paste2", partial_pair, overlap=0.6)
    assert partial["coord_rmse"] < 0.7 * full["coord_rmse"]


def test_subsampled_paste_still_aligns_and_maps_every_query_spot(pair):
    n_q, n_r = pair.inputs.query.n_obs, pair.inputs.reference.n_obs
    out, s = run("paste", pair, max_spots=200)
    assert out["plan"].shape == (n_q, n_r)
    assert s["ltari_mapped"] == 1.0  # unsampled query spots copy their nearest sampled neighbour's row
    assert (np.asarray(out["plan"].sum(axis=0)).ravel() > 0).sum() == 200  # only sampled reference spots
    assert s["coord_rmse"] < 1.5 * PITCH_UM


def test_partial_overlap_dataset_is_registered_with_a_known_answer():
    from stbench.datasets.loading import load_dataset

    ds = load_dataset("synthetic_partial")
    p = TASK.make_problem(ds, "slice0>slice1", "rigid", 0)
    ratio = p.inputs.query.n_obs / p.inputs.reference.n_obs
    assert 0.5 < ratio < 0.7  # the query keeps about 60 % of the tissue
    _, truth = run("positive_control", p)
    assert truth["coord_rmse"] == 0.0 and truth["ltari_plan"] == 1.0


def test_her2st_pairs_score_against_the_authors_registration(data_dir):
    from stbench.datasets.loading import load_dataset

    ds = load_dataset("her2st", data_dir)
    p = TASK.make_problem(ds, "A1>A2", "rigid", 0)
    labels = [v for v in p.solution["query_labels"] if isinstance(v, str)]
    assert len(set(labels)) >= 4 and all(v.startswith("A_") for v in labels)  # the per-patient clusters
    _, truth = run("positive_control", p)
    _, identity = run("identity", p)
    # the positive control starts from the registration's rigid fit and moves only as far as the
    # labels ask (250 px here, about a spot), so it stays near the registration; the identity does not
    assert truth["registration_rmse"] < 0.1 * identity["registration_rmse"] and identity["registration_rmse"] > 1000
    assert np.isnan(truth["coord_rmse"])  # the registration is a second reference, not ground truth
    with pytest.raises(ValueError, match="reference must be the slice"):
        TASK.make_problem(ds, "A2>A3", "rigid", 0)


def test_mutual_nearest_neighbours_by_hand():
    from stbench.methods._embedding_alignment import mutual_nearest_neighbours

    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [3.0, 0.1]])
    # a0 <-> b1 and a1 <-> b0 are mutual 1-NN by cosine; a2 points at 45 degrees, nobody's first choice
    assert sorted(map(tuple, mutual_nearest_neighbours(a, b, k=1))) == [(0, 1), (1, 0)]


def test_embedding_alignment_survives_wrong_matches(tiny):
    from stbench.methods._embedding_alignment import align_by_embedding

    ref = tiny.slice("slice0").obsm["spatial"]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(ref))
    th = np.radians(-70.0)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    query = ref[perm] @ R.T + np.array([3000.0, -500.0])
    z_ref = np.eye(len(ref)) + 0.01  # each spot its own direction ...
    z_query = z_ref[perm].copy()
    wrong = rng.random(len(ref)) < 0.3  # ... but 30 % of query spots look like a random other spot
    z_query[wrong] = z_ref[rng.integers(0, len(ref), wrong.sum())]
    out = align_by_embedding(query, ref, z_query, z_ref, seed=0, k=1, refine=False)
    assert np.abs(out["aligned"] - ref[perm]).max() < 1e-6  # RANSAC keeps only the consistent pairs
    assert out["inliers"].mean() > 0.6


def test_staligner_aligns_the_synthetic_pair(pair):
    _, s = run("staligner", pair)
    assert s["coord_rmse"] < PITCH_UM and s["ltari_nn"] > 0.6


def test_staligner_integrates_better_than_unintegrated_pca(tiny):
    task = get_task("multislice_integration")
    p = task.make_problem(tiny, "slice0+slice1+slice2", "all_slices", 0)
    scores = {}
    for name in ("staligner", "unintegrated_pca"):
        m = METHODS[name]
        out = m.run(task.name, p.inputs, RunContext(0, "cpu", None, dict(m.params), task.name, "all_slices"))
        scores[name] = task.score(p, task.check_output(p, out))
    assert scores["staligner"]["ari"] > scores["unintegrated_pca"]["ari"] + 0.1


def test_neither_a_plan_nor_a_per_spot_placement_moves_the_primary(pair):
    """A hostile answer: each query spot put on the reference spot of its own true label nearest to
    its true place (the positive control's partner), with that matching as the plan. It wins the
    plan rule and the raw nearest-neighbour rule outright; the primary sees only its rigid part."""
    truth = TASK.reference_output(pair)
    partner = truth["plan"].tocsr().indices  # one partner per query spot
    cheat = {"aligned": pair.solution["reference_spatial"][partner], "plan": truth["plan"]}
    s = TASK.checked_scores(pair, TASK.check_output(pair, cheat))
    assert s["ltari_plan"] == 1.0 and s["ltari_nn"] == 1.0
    rigid = TASK.checked_scores(pair, TASK.check_output(pair, rigid_part(pair.inputs.query.obsm["spatial"],
                                                                         cheat["aligned"])))
    assert s["ltari"] == pytest.approx(rigid["ltari"]) and np.isnan(rigid["ltari_plan"])
    assert s["ltari"] < 1.0


def test_positive_control_finds_the_labels_best_rigid_placement_from_a_nearby_start(pair):
    """From the true placement moved by 3 spot spacings and 3 degrees, the search gets back to at
    least the true placement's LTARI."""
    sol = pair.solution
    ref_xy, true_xy = sol["reference_spatial"], sol["query_true_spatial"]
    labels = (sol["reference_labels"], sol["query_labels"])
    centre = true_xy.mean(axis=0)
    start = (true_xy - centre) @ rotation(np.radians(3.0)).T + centre + 3 * PITCH_UM
    found = best_rigid_by_labels(ref_xy, labels[0], start, labels[1])
    assert ltari_nn(*labels, ref_xy, start) < ltari_nn(*labels, ref_xy, true_xy) - 0.05  # the start is worse
    assert ltari_nn(*labels, ref_xy, found) >= ltari_nn(*labels, ref_xy, true_xy) - 0.01
    assert np.allclose(rigid_part(start, found), found)  # a rigid move of the start
