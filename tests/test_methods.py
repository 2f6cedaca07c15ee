"""Baseline behaviour that would break if the code were wrong."""

import json

import numpy as np
import pytest

from stbench.benchmark.inprocess import run_cell
from stbench.methods import METHODS, RunContext, get_method
from stbench.methods._rigid import icp, kabsch, principal_axes_candidates
from stbench.tasks import get_task


def rigid(xy, deg, shift):
    th = np.radians(deg)
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return xy @ R.T + shift


@pytest.mark.parametrize("deg, shift", [(37.0, (500.0, -200.0)), (-150.0, (0.0, 1200.0)), (200.0, (-50.0, 60.0))])
def test_icp_and_kabsch_recover_a_known_rigid_transform(tiny, deg, shift):
    ref = tiny.slice("slice0").obsm["spatial"]  # the notched outline has no rotational symmetry
    query = rigid(ref, deg, np.asarray(shift))
    R, t = kabsch(query, ref)
    assert np.allclose(query @ R.T + t, ref, atol=1e-6)
    starts = principal_axes_candidates(query, ref)
    fits = [icp(query, ref, R0, t0) for R0, t0 in starts]
    R, t, err = min(fits, key=lambda f: f[2])
    assert np.sqrt(((query @ R.T + t - ref) ** 2).sum(axis=1)).mean() < 1.0  # micrometres
    assert err < 1e-6


def test_icp_adapter_aligns_the_synthetic_pair(tiny):
    p = get_task("alignment").make_problem(tiny, "slice0>slice1", "rigid", 0)
    icp_row = run_cell(p, METHODS["icp"])
    identity_row = run_cell(p, METHODS["identity"])
    assert icp_row["status"] == "ok"
    # slices are different samplings of the tissue: within one spot pitch (100 um)
    assert icp_row["coord_rmse"] < 100 < identity_row["coord_rmse"]
    assert icp_row["ltari"] > 0.6


def test_bicubic_is_skipped_off_the_lattice_and_exact_on_a_linear_field(tiny):
    p = get_task("spatial_imputation").make_problem(tiny, "slice0", "random20", 0)
    row = run_cell(p, METHODS["bicubic"])
    assert row["status"] == "skipped" and "lattice2x" in row["error"]
    # on a field linear in the grid coordinates, cubic interpolation is exact inside the lattice
    p = get_task("spatial_imputation").make_problem(tiny, "slice0", "lattice2x", 0)
    obs, q = p.inputs.observed, p.inputs.query
    field = lambda g: np.column_stack([1 + 0.1 * g[:, 0] + 0.05 * g[:, 1], 5 + 0.02 * g[:, 0]])
    obs = obs[:, :2].copy()
    obs.X = field(obs.obsm["grid"])
    p.inputs.observed = obs
    ctx = RunContext(0, "cpu", None, {}, "spatial_imputation", "lattice2x")
    pred = get_method("bicubic").run("spatial_imputation", p.inputs, ctx)
    lattice = obs.obsm["grid"]
    inside = ((q.obsm["grid"] >= lattice.min(axis=0)) & (q.obsm["grid"] <= lattice.max(axis=0))).all(axis=1)
    truth = field(q.obsm["grid"])
    # Inside the tissue the spline reproduces the linear field up to the pull of the
    # nearest-filled nodes outside it; it beats copying the nearest observed spot.
    err = np.abs(pred - truth).max(axis=1)
    assert np.median(err[inside]) < 1e-3
    nearest = get_method("nearest_neighbor").run("spatial_imputation", p.inputs, ctx)
    assert np.abs(pred - truth).mean() < 0.2 * np.abs(nearest - truth).mean()


def test_knn_interpolation_beats_global_mean_on_a_smooth_field(tiny):
    p = get_task("spatial_imputation").make_problem(tiny, "slice0", "random20", 0)
    obs = p.inputs.observed
    xy = obs.obsm["spatial"]
    f = lambda z: np.column_stack([np.sin(z[:, 0] / 400) + 1.5, np.cos(z[:, 1] / 300) + 1.5])
    obs = obs[:, :2].copy()
    obs.X = f(xy)
    p.inputs.observed = obs
    truth = f(p.inputs.query.obsm["spatial"])
    ctx = RunContext(0, "cpu", None, {"k": 6}, "spatial_imputation", "random20")
    knn = get_method("knn_interpolation").run("spatial_imputation", p.inputs, ctx)
    mean = get_method("global_mean").run("spatial_imputation", p.inputs, ctx)
    assert np.abs(knn - truth).mean() < 0.2 * np.abs(mean - truth).mean()


def test_leiden_finds_k_and_harmony_mixes_batches_better(tiny):
    p = get_task("domain_identification").make_problem(tiny, "slice0", "whole_slice", 0)
    row = run_cell(p, METHODS["leiden_k"])
    assert json.loads(row["annotations"])["n_clusters"] == p.inputs.n_domains and row["uses_true_k"]
    assert row["ari_gmm"] == row["ari"]  # labels, not an embedding: the same value in both clusterings
    p = get_task("multislice_integration").make_problem(tiny, "slice0+slice1+slice2", "all_slices", 0)
    harmony, plain = run_cell(p, METHODS["harmony"]), run_cell(p, METHODS["unintegrated_pca"])
    assert harmony["batch_asw"] > plain["batch_asw"]


def test_low_rank_completion_keeps_measured_entries(tiny):
    p = get_task("gene_imputation").make_problem(tiny, "slice0", "mute70", 0)
    ctx = RunContext(0, "cpu", None, get_method("low_rank_completion").params, "gene_imputation", "mute70")
    out = get_method("low_rank_completion").run("gene_imputation", p.inputs, ctx)
    X = np.asarray(p.inputs.adata.X)
    assert np.allclose(out[X > 0], X[X > 0]) and (out >= 0).all()
