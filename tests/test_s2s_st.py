"""Sparser2Sparse (s2s_st): the data-consistency layer, the leak-free training pairs, and that it
beats bicubic interpolation on a smooth field sampled with Poisson noise."""

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

from stbench.errors import MethodNotApplicable
from stbench.methods import RunContext, get_method
from stbench.methods.s2s_st import (CascadedDCNet, data_consistency, lattice_mask, training_pairs, upleft)
from stbench.tasks.spatial_imputation import SpatialImputationInput

SENTINEL = 99.0  # stands for held-out truth: it must never reach a training input or target


def test_data_consistency_returns_the_observed_values_exactly():
    g = torch.Generator().manual_seed(0)
    pred, observed = torch.rand(2, 1, 10, 12, generator=g), torch.rand(2, 1, 10, 12, generator=g)
    mask = lattice_mask(10, 12)
    out = data_consistency(pred, observed, mask)
    on = mask.bool().expand_as(out)
    assert torch.equal(out[on], observed[on]) and torch.equal(out[~on], pred[~on])
    # inside the cascade, every stage but the first starts from the observed values put back
    net = CascadedDCNet(2, features=4, blocks=1, layers=1, growth=4, heads=1)
    seen = []
    net.stages[1].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    x = upleft(torch.rand(1, 1, 8, 8, generator=g))
    net(x, lattice_mask(16, 16))
    on = lattice_mask(16, 16).bool().expand_as(x)
    assert torch.equal(seen[0][on], x[on])


def _raster_with_heldout_truth(genes=3, size=24, seed=0):
    """A full-resolution raster: observed (even, even) values in (0, 1), held-out positions = SENTINEL."""
    rng = np.random.default_rng(seed)
    raster = torch.full((genes, size, size), SENTINEL)
    raster[:, ::2, ::2] = torch.from_numpy(rng.uniform(0.01, 1.0, (genes, size // 2, size // 2))).float()
    observed = lattice_mask(size, size)
    return raster, observed


def test_no_training_input_or_target_holds_a_heldout_position():
    raster, observed = _raster_with_heldout_truth()
    rng = np.random.default_rng(1)
    for _ in range(200):
        for x, y, _w in training_pairs(raster, observed, size=8, batch=4, rng=rng):
            assert x.max() < SENTINEL and y.max() < SENTINEL


def test_the_official_augmentation_order_would_fail_that_check():
    """Flipping the dense patch before taking [::2, ::2] (the official code) moves odd positions onto
    the lattice: the check above would catch it."""
    raster, _ = _raster_with_heldout_truth()
    dense_patch = raster[0, :16, :16]
    flipped_then_subsampled = dense_patch.flip(-1)[::2, ::2]
    assert flipped_then_subsampled.max() == SENTINEL


def _smooth_poisson_field(n=32, genes=8, seed=0):
    """log1p of Poisson counts whose rate is a smooth random field: what a lattice imputer must recover."""
    rng = np.random.default_rng(seed)
    rr, cc = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    rates = [3.0 * np.exp(sum(np.sin(2 * np.pi * (rr * rng.uniform(-0.1, 0.1) + cc * rng.uniform(-0.1, 0.1))
                                     + rng.uniform(0, 6)) for _ in range(3)) / 2) for _ in range(genes)]
    X = np.log1p(rng.poisson(np.stack(rates, -1).reshape(-1, genes))).astype(np.float32)
    grid = np.column_stack([rr.ravel(), cc.ravel()])
    seen = (grid[:, 0] % 2 == 0) & (grid[:, 1] % 2 == 0)
    observed = ad.AnnData(X[seen])
    observed.obsm["grid"], observed.obsm["spatial"] = grid[seen], grid[seen].astype(float)
    query = ad.AnnData(np.zeros((int((~seen).sum()), 0), dtype=np.float32))
    query.obsm["grid"], query.obsm["spatial"] = grid[~seen], grid[~seen].astype(float)
    return SpatialImputationInput(observed, query, "lattice2x"), X[~seen]


def _run(name, inputs, **params):
    m = get_method(name)
    ctx = RunContext(seed=0, device="cpu", scratch_dir=Path("."), params={**m.params, **params},
                     task="spatial_imputation", split="lattice2x")
    torch.manual_seed(0)
    return m.run("spatial_imputation", inputs, ctx)


@pytest.mark.slow
def test_s2s_beats_bicubic_on_a_smooth_poisson_field():
    inputs, truth = _smooth_poisson_field()
    bicubic = np.abs(_run("bicubic", inputs) - truth).mean()
    s2s = _run("s2s_st", inputs, steps=150, natural_images=False)
    assert s2s.shape == truth.shape and (s2s >= 0).all()
    assert np.abs(s2s - truth).mean() < 0.97 * bicubic


def test_random20_is_skipped_with_the_reason():
    inputs, _ = _smooth_poisson_field(n=8, genes=2)
    with pytest.raises(MethodNotApplicable, match="stride-2 lattice"):
        _run("s2s_st", SpatialImputationInput(inputs.observed, inputs.query, "random20"))


def test_per_gene_mode_trains_the_listed_marker_its_own_model():
    inputs, _ = _smooth_poisson_field(n=16, genes=3)
    inputs.observed.var_names = ["ERBB2", "ESR1", "PGR"]
    shared = _run("s2s_st", inputs, steps=2, natural_images=False)
    marker = _run("s2s_st", inputs, steps=2, natural_images=False, per_gene=["ESR1"])
    # same seed, same shared model: only the marker's column changes
    assert np.allclose(shared[:, [0, 2]], marker[:, [0, 2]]) and not np.allclose(shared[:, 1], marker[:, 1])
    with pytest.raises(ValueError, match="not among the task's genes"):
        _run("s2s_st", inputs, steps=1, natural_images=False, per_gene=["MDM2"])
