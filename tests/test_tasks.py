"""Input views carry no truth; splits are deterministic; output contracts are enforced."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stbench.errors import ContractError, UnknownNameError
from stbench.tasks import get_task

TRUTH_COLUMNS = {"domain", "cell_type", "array_row", "array_col"}


def test_spatial_imputation_view_has_no_heldout_expression(tiny):
    task = get_task("spatial_imputation")
    p = task.make_problem(tiny, "slice0", "random20", 0)
    obs, query = p.inputs.observed, p.inputs.query
    assert query.n_vars == 0 and query.X is None  # coordinates only
    assert set(obs.obs_names).isdisjoint(query.obs_names)
    assert obs.n_obs + query.n_obs == (tiny.adata.obs["slice"] == "slice0").sum()
    assert query.n_obs == round(0.2 * (obs.n_obs + query.n_obs))
    for view in (obs, query):
        assert not TRUTH_COLUMNS & set(view.obs.columns)
        assert set(view.obsm) <= {"spatial", "grid"} and not view.layers
    assert p.solution.shape == (query.n_obs, obs.n_vars)


def test_lattice2x_keeps_even_even_and_hvgs_ignore_heldout_counts(tiny):
    task = get_task("spatial_imputation")
    p = task.make_problem(tiny, "slice1", "lattice2x", 0)
    assert (p.inputs.observed.obsm["grid"] % 2 == 0).all()
    assert ((p.inputs.query.obsm["grid"] % 2) != 0).any(axis=1).all()
    # HVGs are chosen on observed spots only: changing held-out counts changes nothing for the method
    from stbench.datasets.preprocessing import select_hvg
    a = tiny.slice("slice1")
    held = np.isin(a.obs_names, p.inputs.query.obs_names)
    X = a.X.toarray()
    genes_before = select_hvg(sp.csr_matrix(X[~held]), n_top=20)
    X[held] = X[held][:, ::-1] * 7
    assert (select_hvg(sp.csr_matrix(X[~held]), n_top=20) == genes_before).all()


def test_gene_imputation_hides_masked_entries_without_marking_them(tiny):
    task = get_task("gene_imputation")
    for split, rate in [("dropout30", 0.3), ("mute70", 0.7)]:
        p = task.make_problem(tiny, "slice0", split, 0)
        X, m = np.asarray(p.inputs.adata.X), p.scoring["mask"]
        assert (X[m] == 0).all()
        assert np.allclose(X[~m], p.solution[~m], atol=1e-6)
        assert set(p.inputs.adata.obsm) <= {"spatial", "grid"} and not p.inputs.adata.layers
        if split == "dropout30":
            assert (p.solution[m] > 0).all()
            assert m.sum() / (p.solution > 0).sum() == pytest.approx(rate, abs=0.03)
        else:
            assert m.mean() == pytest.approx(rate, abs=0.03)


def test_denoising_gaussian_keeps_zeros_and_thinning_halves_depth(tiny):
    task = get_task("denoising")
    p = task.make_problem(tiny, "slice0", "gaussian", 0)
    X = np.asarray(p.inputs.adata.X)
    assert (X[p.solution == 0] == 0).all() and (X >= 0).all()
    assert not np.allclose(X, p.solution)
    arrays = task.make_split(tiny, "slice0", "thinning", 0)
    counts = tiny.slice("slice0").X
    assert arrays["data"].sum() / counts.sum() == pytest.approx(0.5, abs=0.02)


def test_denoising_mcv_splits_molecules_and_scores_against_the_held_out_half(tiny):
    """mcv: the method sees x' ~ Binomial(x, 0.5) log-normalised; the target is the other half
    x'' = x - x' on the same scale; x' + x'' = x; the view holds nothing of x''."""
    from stbench.datasets.preprocessing import log_normalize

    task = get_task("denoising")
    p = task.make_problem(tiny, "slice0", "mcv", 0)
    arrays = task.make_split(tiny, "slice0", "mcv", 0)
    counts = sp.csr_matrix(tiny.slice("slice0").X)
    seen = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=counts.shape)
    held = counts - seen
    assert (held.data >= 0).all() and seen.sum() / counts.sum() == pytest.approx(0.5, abs=0.02)
    genes = [list(tiny.adata.var_names).index(g) for g in p.inputs.adata.var_names]
    assert np.allclose(p.inputs.adata.X, log_normalize(seen)[:, genes].toarray(), atol=1e-6)
    assert np.allclose(p.solution, log_normalize(held)[:, genes].toarray(), atol=1e-6)
    assert np.allclose(p.scoring["target_counts"], held[:, genes].toarray())
    assert set(p.inputs.adata.obsm) <= {"spatial", "grid"} and not p.inputs.adata.layers
    # the positive control (the target itself) has deviance 0; the identity pays the noise of both halves
    ok = task.checked_scores(p, p.solution)
    ident = task.checked_scores(p, np.asarray(p.inputs.adata.X, float))
    assert ok["poisson_deviance"] == pytest.approx(0, abs=1e-6) and ident["poisson_deviance"] > 0.1


def test_denoising_is_scored_against_true_rates_on_the_synthetic_tissue():
    """The registered synthetic tissue stores its true expression; gaussian and thinning are
    scored against it (and ranked), whereas a dataset without it is scored against the clean
    sample and its gaussian cells are not ranked."""
    from stbench.datasets.loading import load_dataset
    from stbench.datasets.preprocessing import log_normalize

    ds = load_dataset("synthetic")
    task = get_task("denoising")
    p = task.make_problem(ds, "slice1", "gaussian", 0)
    a = ds.slice("slice1")
    genes = [list(a.var_names).index(g) for g in p.inputs.adata.var_names]
    rates = log_normalize(sp.csr_matrix(a.layers["rates"]))[:, genes].toarray()
    assert np.allclose(p.solution, rates, atol=1e-5) and p.unranked == ""
    assert not np.allclose(p.solution, log_normalize(a.X)[:, genes].toarray(), atol=1e-2)
    assert "rates" not in p.inputs.adata.layers and not p.inputs.adata.layers


def test_domain_view_has_no_labels_but_k(tiny):
    p = get_task("domain_identification").make_problem(tiny, "slice0", "whole_slice", 0)
    assert not TRUTH_COLUMNS & set(p.inputs.adata.obs.columns)
    assert p.inputs.n_domains == 7 and "counts" in p.inputs.adata.layers


def test_alignment_query_is_moved_shuffled_and_anonymous(tiny):
    task = get_task("alignment")
    p = task.make_problem(tiny, "slice0>slice1", "rigid", 0)
    q = p.inputs.query
    assert q.obs_names[0] == "q00000" and not TRUTH_COLUMNS & set(q.obs.columns)
    assert set(q.obsm) == {"spatial"}
    true_xy = p.solution["query_true_spatial"]
    assert np.sqrt(((q.obsm["spatial"] - true_xy) ** 2).sum(axis=1)).mean() > 100  # identity is no answer
    # the recorded transform maps the original coordinates onto what the method sees
    orig = p.solution["query_original_spatial"]
    th = np.radians(p.solution["transform"]["rotation_deg"])
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    c = orig.mean(axis=0)
    assert np.allclose((orig - c) @ R.T + c + p.solution["transform"]["translation"], q.obsm["spatial"], atol=1e-5)


def test_splits_are_deterministic_and_seed_dependent(tiny):
    task = get_task("spatial_imputation")
    a = task.split_sha256(tiny, "slice0", "random20", 0)
    assert a == task.split_sha256(tiny, "slice0", "random20", 0)
    assert a != task.split_sha256(tiny, "slice0", "random20", 1)
    with pytest.raises(UnknownNameError, match="split"):
        task.make_split(tiny, "slice0", "random99", 0)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 3)), "shape"),
    ("nan", "NaN"),
    ("negative", "negative expression"),
])
def test_expression_contract(tiny, bad, message):
    task = get_task("spatial_imputation")
    p = task.make_problem(tiny, "slice0", "random20", 0)
    out = p.solution.copy()
    if isinstance(bad, str) and bad == "nan":
        out[0, 0] = np.nan
    elif isinstance(bad, str):
        out[0, 0] = -1
    else:
        out = bad
    with pytest.raises(ContractError, match=message) as err:
        task.check_output(p, out)
    assert "Expected: a non-negative finite matrix of shape (n_query, n_genes)" in str(err.value)


def test_label_contract_rejects_unknown_and_missing_spots(tiny):
    task = get_task("domain_identification")
    p = task.make_problem(tiny, "slice0", "whole_slice", 0)
    names = p.inputs.adata.obs_names
    good = pd.Series(np.zeros(len(names), int), index=names[::-1])  # any order is fine
    assert (task.check_output(p, good)["labels"] == "0").all()
    with pytest.raises(ContractError, match="not in the input"):
        task.check_output(p, pd.concat([good, pd.Series([1], index=["ghost"])]))
    with pytest.raises(ContractError, match="have no label"):
        task.check_output(p, good.iloc[1:])
    with pytest.raises(ContractError, match="shape"):
        task.check_output(p, np.zeros(3))


def test_alignment_and_integration_contracts(tiny):
    t = get_task("alignment")
    p = t.make_problem(tiny, "slice0>slice1", "rigid", 0)
    with pytest.raises(ContractError, match="aligned coordinates have shape"):
        t.check_output(p, np.zeros((2, 2)))
    with pytest.raises(ContractError, match="plan has shape"):
        t.check_output(p, {"aligned": p.inputs.query.obsm["spatial"], "plan": np.ones((2, 2))})
    t = get_task("multislice_integration")
    p = t.make_problem(tiny, "slice0+slice1+slice2", "all_slices", 0)
    with pytest.raises(ContractError, match="no 'embedding'"):
        t.check_output(p, {"emb": 1})
    with pytest.raises(ContractError, match="NaN"):
        t.check_output(p, np.full((p.inputs.adata.n_obs, 2), np.nan))


def test_every_task_scores_exactly_its_declared_metrics(tiny, monkeypatch):
    """One list per task: score() returns exactly ``metrics`` (primary first), bookkeeping goes to
    annotate(), and the runner's check refuses a task that reports anything else."""
    from stbench.benchmark.inprocess import run_cell
    from stbench.methods import METHODS
    from stbench.tasks import TASKS
    from stbench.tasks.metrics import METRICS

    for task in TASKS.values():
        assert task.metrics[0] == task.primary_metric and len(set(task.metrics)) == len(task.metrics)
        assert set(task.metrics) <= set(METRICS), f"{task.name} declares unregistered metrics"
        decl = task.declaration()
        assert [m["name"] for m in decl["metrics"]] == list(task.metrics) and set(decl["splits"]) == set(task.splits)
        instance = task.instances(tiny.spec)[0]
        p = task.make_problem(tiny, instance, task.splits[0], 0)
        row = run_cell(p, METHODS["positive_control"])
        assert row["status"] == "ok", (task.name, row["error"])
        assert {m for m in METRICS if m in row} == set(task.metrics), task.name
    task = get_task("domain_identification")
    p = task.make_problem(tiny, "slice0", "whole_slice", 0)
    original = task.score
    monkeypatch.setattr(task, "score", lambda problem, output: {**original(problem, output), "n_clusters": 7.0})
    with pytest.raises(TypeError, match="must return exactly its declared metrics"):
        task.checked_scores(p, task.check_output(p, np.zeros(p.inputs.adata.n_obs, int)))


def test_a_declared_unranked_split_is_recorded_with_its_reason(tiny, monkeypatch):
    """A task may declare a split unranked (``UNRANKED``); every cell of it carries the reason,
    which the board shows and keeps out of rankings. Ranked cells carry ""."""
    from stbench.benchmark.inprocess import run_cell
    from stbench.methods import METHODS

    task = get_task("gene_imputation")
    p = task.make_problem(tiny, "slice0", "mute70", 0)
    assert run_cell(p, METHODS["gene_mean"])["unranked"] == ""
    monkeypatch.setattr(type(task), "UNRANKED", {"mute70": "a trivial fill wins"})
    assert run_cell(p, METHODS["gene_mean"])["unranked"] == "a trivial fill wins"
