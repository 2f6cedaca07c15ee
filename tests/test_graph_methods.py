"""Spotscape and the graph family (STAGATE, GraphST, SpaceFlow): they use space where expression is weak,
their mini-batch path is exact, and the task clusters their embeddings the same way for all of them."""

import json

import anndata as ad

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from stbench.benchmark.inprocess import run_cell
from stbench.datasets.loading import Dataset, _normalise
from stbench.datasets.registry import get_dataset_spec
from stbench.methods import METHODS, RunContext
from stbench.methods._graphs import adjacency, block_radius_edges, gcn_weights, seed_subgraph
from stbench.methods.spotscape import (PROFILES, ExpressionBatch, SpotscapeNet, Trainer, reconstruction_mse,
                                       scale_matching_loss, similarity, spotscape, telescope_loss)
from stbench.tasks import get_task

TASK = get_task("domain_identification")
GRAPH_METHODS = ["spotscape", "stagate", "graphst", "spaceflow"]


@pytest.fixture(scope="module")
def weak_domains():
    """A 30 x 30 square grid in 4 vertical stripes (the domains). Only 16 of 60 genes differ between
    stripes, by 40 % of their mean, under Poisson noise: one spot's expression barely tells its
    domain (PCA + k-means: ARI about 0.05), its neighbourhood does."""
    rng = np.random.default_rng(0)
    side, n_genes, n_marker = 30, 60, 16
    row, col = np.divmod(np.arange(side * side), side)
    domain = col * 4 // side
    base = rng.uniform(2, 6, n_genes)
    shift = np.zeros((4, n_genes))
    shift[:, :n_marker] = rng.choice([-0.4, 0.4], size=(4, n_marker))
    counts = rng.poisson(base * (1 + shift[domain])).astype(np.int32)
    adata = ad.AnnData(sp.csr_matrix(counts), obs=pd.DataFrame({
        "slice": "slice0", "domain": pd.Categorical([f"d{d}" for d in domain]),
        "array_row": row, "array_col": col}, index=[f"s{i}" for i in range(side * side)]))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    adata.obsm["spatial"] = np.c_[col, row].astype(float) * 100.0
    adata.obsm["spatial_warped"] = adata.obsm["spatial"].copy()
    adata.layers["counts"] = adata.X.copy()
    ds = Dataset(get_dataset_spec("synthetic"), _normalise(adata), "weak-domains")
    return TASK.make_problem(ds, "slice0", "whole_slice", 0)


def score(problem, method, **overrides):
    m = METHODS[method]
    ctx = RunContext(0, "cpu", None, {**m.params, **overrides}, TASK.name, "whole_slice")
    out = TASK.check_output(problem, m.run(TASK.name, problem.inputs, ctx))
    return {**TASK.checked_scores(problem, out), **TASK.annotate(problem, out)}


@pytest.mark.parametrize("method", GRAPH_METHODS)
def test_graph_method_beats_pca_kmeans_when_domains_are_spatial_but_weak_in_expression(weak_domains, method):
    baseline = score(weak_domains, "pca_kmeans")
    result = score(weak_domains, method)
    assert baseline["ari"] < 0.15  # the expression alone does not find the stripes
    assert result["ari"] > baseline["ari"] + 0.2
    assert result["clustered_by_task"] is True


def test_the_task_clusters_an_embedding_and_the_run_is_flagged_as_using_true_k(weak_domains):
    m = METHODS["stagate"]
    row = run_cell(weak_domains, m, {"epochs": 5})
    notes = json.loads(row["annotations"])  # bookkeeping is a tag, never a metric
    assert row["status"] == "ok" and notes["clustered_by_task"] and row["uses_true_k"]
    assert notes["n_clusters"] == weak_domains.inputs.n_domains
    assert "n_clusters" not in row and "clustered_by_task" not in row
    # the embedding is clustered twice: k-means (primary) and the tied-covariance GMM
    assert np.isfinite(row["ari_gmm"]) and 0 < row["ari_gmm"] <= 1
    with pytest.raises(Exception, match="embedding has shape"):
        TASK.check_output(weak_domains, {"embedding": np.zeros((3, 2))})
    with pytest.raises(Exception, match="expected exactly"):
        TASK.check_output(weak_domains, {"embedding": np.zeros((900, 2)), "labels": np.zeros(900)})


@pytest.mark.parametrize("density, stored_dense", [(0.05, False), (0.6, True)])
def test_factorised_losses_equal_the_dense_ones(density, stored_dense):
    """Both storages of the first layer's input (CSR when sparse, dense when mostly non-zero)."""
    torch.manual_seed(0)
    X = sp.random(70, 40, density=density, format="csr", random_state=0, dtype=np.float32)
    hidden = torch.randn(70, 8, dtype=torch.float32, requires_grad=True)
    out = torch.nn.Linear(8, 40)
    batch = ExpressionBatch(X, "cpu")
    assert batch.dense == stored_dense
    fast = reconstruction_mse(batch, hidden, out)
    fast.backward()
    grad_fast = hidden.grad.clone()
    hidden.grad = None
    dense = F.mse_loss(out(hidden), torch.as_tensor(X.toarray()))
    dense.backward()
    assert fast.item() == pytest.approx(dense.item(), rel=1e-5)
    assert torch.allclose(grad_fast, hidden.grad, atol=1e-6)
    z1, z2 = torch.randn(50, 6, dtype=torch.float64), torch.randn(50, 6, dtype=torch.float64)
    s = similarity(z1, z2)
    assert telescope_loss(z1, z2).item() == pytest.approx(F.mse_loss(s, s.T).item(), rel=1e-10)


def test_scale_matching_equals_its_definition_on_the_whole_similarity_matrix():
    """Per ordered slice pair (a, b): MSE over a's spots of mean top-k of clamp(S) within a vs within b."""
    torch.manual_seed(0)
    z1, z2 = torch.randn(60, 5, dtype=torch.float64), torch.randn(60, 5, dtype=torch.float64)
    codes = torch.as_tensor(np.repeat([0, 1, 2], [25, 20, 15]))
    s = similarity(z1, z2).clamp_min(0)
    expected = 0.0
    for a in range(3):
        rows = s[codes == a]
        within = rows[:, codes == a].sort(dim=1, descending=True).values[:, :4].mean(1)
        for b in {0, 1, 2} - {a}:
            across = rows[:, codes == b].sort(dim=1, descending=True).values[:, :4].mean(1)
            expected += ((within - across) ** 2).mean().item()
    assert scale_matching_loss(z1, z2, codes, 4).item() == pytest.approx(expected, rel=1e-10)
    assert expected > 0


def test_a_two_hop_batch_gives_its_seeds_their_full_graph_embedding():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 2000, (300, 2))
    X = sp.random(300, 30, density=0.3, format="csr", random_state=1, dtype=np.float32)
    edges = block_radius_edges(xy, np.zeros(300, int), 1.8)
    e, w = gcn_weights(edges, 300)
    torch.manual_seed(0)
    model = SpotscapeNet(30, 16, 8).eval()
    with torch.no_grad():
        full = model.encode(ExpressionBatch(X, "cpu"), adjacency(e, w, 300))
        seeds = torch.as_tensor(rng.choice(300, 40, replace=False))
        nodes, sub_e, sub_w = seed_subgraph(seeds, e, w, 300, hops=2)
        assert len(nodes) < 300  # the batch does not cover the graph
        part = model.encode(ExpressionBatch(X[nodes.numpy()], "cpu"), adjacency(sub_e, sub_w, len(nodes)))[:40]
    assert torch.allclose(part, full[seeds], atol=1e-5)


def test_mini_batch_loss_equals_full_batch_loss_when_the_batch_covers_the_graph(tiny):
    """Two slices, so every loss term (reconstruction, telescope, scale matching, prototypes) is in."""
    a = tiny.adata[tiny.adata.obs["slice"].isin(["slice0", "slice1"])]
    codes = a.obs["slice"].cat.codes.to_numpy() % 2
    losses = {}
    for mode, full_batch_max in (("full", 10_000), ("mini", 10)):
        params = {**spotscape.params, **PROFILES["fast"], "full_batch_max": full_batch_max}
        trainer = Trainer(a.X, a.obsm["spatial"], codes, params, 5, 1e-3, 0, "cpu")
        assert trainer.full_batch == (mode == "full")
        torch.manual_seed(3)
        trainer.gen.manual_seed(3)
        seeds = None if mode == "full" else torch.arange(a.n_obs)  # one batch that covers every spot
        losses[mode] = {k: v.item() for k, v in trainer.step_loss(seeds, True, 0).items()}
    assert set(losses["full"]) == {"reconstruction", "telescope", "scale_matching", "prototypes", "total"}
    for k in losses["full"]:
        assert losses["mini"][k] == pytest.approx(losses["full"][k], rel=1e-4, abs=1e-6), k


def test_one_slice_trains_full_batch_past_the_several_slice_limit(tiny, monkeypatch):
    """One slice forms no n x n matrix, so ``full_batch_max`` (the several-slice limit) does not apply to it."""
    import stbench.methods.spotscape as spotscape_module

    params = {**spotscape.params, **PROFILES["fast"], "full_batch_max": 10}
    one = tiny.adata[tiny.adata.obs["slice"] == "slice0"]
    assert Trainer(one.X, one.obsm["spatial"], np.zeros(one.n_obs, int), params, 5, 1e-3, 0, "cpu").full_batch
    two = tiny.adata[tiny.adata.obs["slice"].isin(["slice0", "slice1"])]
    codes = two.obs["slice"].cat.codes.to_numpy() % 2
    assert not Trainer(two.X, two.obsm["spatial"], codes, params, 5, 1e-3, 0, "cpu").full_batch
    monkeypatch.setattr(spotscape_module, "ONE_SLICE_FULL_BATCH_MAX", 10)
    assert not Trainer(one.X, one.obsm["spatial"], np.zeros(one.n_obs, int), params, 5, 1e-3, 0, "cpu").full_batch


def test_spotscape_aligns_the_synthetic_pair(tiny):
    task = get_task("alignment")
    p = task.make_problem(tiny, "slice0>slice1", "rigid", 0)
    m = METHODS["spotscape"]
    out = m.run("alignment", p.inputs, RunContext(0, "cpu", None, dict(m.params), "alignment", "rigid"))
    s = task.score(p, task.check_output(p, out))
    assert s["coord_rmse"] < 100.0 and s["ltari_nn"] > 0.6  # within one spot pitch of the known placement
