"""SUICA and its coordinate-network peers (FFN, SIREN, STAGE): each beats the global mean on the
synthetic tissue after a few seconds of training, SUICA's graph holds no held-out spot, and the
loss pieces and coordinate rules give hand-computed values."""

import anndata as ad
import numpy as np
import pytest
import torch

from stbench.methods import RunContext, get_method
from stbench.methods import suica as suica_module
from stbench.methods._inr import inr_for, normalise_coordinates
from stbench.tasks import get_task
from stbench.tasks.denoising import DenoisingInput
from stbench.tasks.metrics.expression import cosine
from stbench.tasks.spatial_imputation import SpatialImputationInput

# a few seconds each on 2 cores: 640 observed spots x 30 genes
QUICK = {"suica": {"gae_epochs": 60, "inr_epochs": 300, "finetune_epochs": 100},
         "ffn": {"epochs": 300}, "siren": {"epochs": 300}, "stage": {"epochs": 40}}


def _run(name, inputs, task="spatial_imputation", **extra):
    m = get_method(name)
    ctx = RunContext(seed=0, device="cpu", scratch_dir=None, params={**m.params, **QUICK[name], **extra},
                     task=task, split=getattr(inputs, "split", ""))
    torch.manual_seed(0)
    return m.run(task, inputs, ctx)


def smooth_tissue(n=800, genes=30, seed=0):
    """Poisson counts (log1p) whose rates are smooth random fields over scattered spots, 20 % held out:
    data with spatial signal, where a coordinate network has something to learn."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 3000, (n, 2))
    freqs, phases = rng.normal(0, 1 / 1500, (genes, 3, 2)), rng.uniform(0, 2 * np.pi, (genes, 3))
    log_rate = 2.0 + np.sin(2 * np.pi * np.einsum("nd,gkd->ngk", xy, freqs) + phases).sum(-1) / 1.5
    X = np.log1p(rng.poisson(np.exp(log_rate))).astype(np.float32)
    held = np.zeros(n, bool)
    held[rng.choice(n, n // 5, replace=False)] = True
    observed = ad.AnnData(X[~held])
    observed.obsm["spatial"] = xy[~held]
    query = ad.AnnData(np.zeros((int(held.sum()), 0), np.float32))
    query.obsm["spatial"] = xy[held]
    return SpatialImputationInput(observed, query, "random20"), X[held]


@pytest.fixture(scope="module")
def field():
    return smooth_tissue()


@pytest.fixture(scope="module")
def random20(tiny):
    return get_task("spatial_imputation").make_problem(tiny, "slice0", "random20", 0)


@pytest.mark.parametrize("name", ["suica", "ffn", "siren", "stage"])
def test_beats_the_global_mean_on_held_out_spots(field, name):
    inputs, truth = field
    mean = np.tile(np.asarray(inputs.observed.X).mean(axis=0), (len(truth), 1))
    pred = _run(name, inputs)
    assert pred.shape == truth.shape and np.isfinite(pred).all() and (pred >= 0).all()
    assert np.abs(pred - truth).mean() < 0.9 * np.abs(mean - truth).mean()
    assert cosine(truth, pred) > cosine(truth, mean)


def test_suica_denoises_better_than_the_noisy_input(field):
    """The denoising task's corruption (N(0, 1) on the non-zero log entries, clipped at 0) on the smooth
    tissue: SUICA's reconstruction from coordinates is closer to the clean matrix than its input."""
    inputs, _ = field
    clean = np.asarray(inputs.observed.X)
    noisy = np.clip(clean + np.random.default_rng(1).normal(size=clean.shape) * (clean > 0), 0, None)
    adata = ad.AnnData(noisy.astype(np.float32))
    adata.obsm["spatial"] = inputs.observed.obsm["spatial"]
    pred = _run("suica", DenoisingInput(adata, "gaussian"), task="denoising")
    assert pred.shape == noisy.shape
    assert np.abs(pred - clean).mean() < 0.7 * np.abs(noisy - clean).mean()


def test_suica_graph_is_built_on_observed_spots_only(random20, monkeypatch):
    seen = []
    real = suica_module.spatial_graph

    def recording(xy, k):
        A = real(xy, k)
        seen.append((np.array(xy), A))
        return A

    monkeypatch.setattr(suica_module, "spatial_graph", recording)
    _run("suica", random20.inputs, gae_epochs=1, inr_epochs=1, finetune_epochs=1)
    (xy, A), = seen
    observed, query = random20.inputs.observed.obsm["spatial"], random20.inputs.query.obsm["spatial"]
    assert np.array_equal(xy, observed) and A.shape == (len(observed), len(observed))
    # no node of the graph sits at a held-out spot's position
    assert not (xy[:, None, :] == query[None, :, :]).all(axis=2).any()
    # each spot averages itself and its 4 nearest observed neighbours
    assert np.allclose(A.sum(axis=1), 1) and (A.getnnz(axis=1) == 5).all()


def test_dice_loss_hand_computed():
    truth = torch.tensor([[1.0, 0.0]])
    # p = 2 sigmoid(0) - 1 = 0 everywhere: 1 - (0 + 1) / (0 + 1 + 1) = 0.5
    assert float(suica_module.dice_loss(torch.zeros(1, 2), truth)) == pytest.approx(0.5)
    # p = [1, 0] on g = [1, 0]: 1 - (2 + 1) / (1 + 1 + 1) = 0
    assert float(suica_module.dice_loss(torch.tensor([[60.0, 0.0]]), truth)) == pytest.approx(0.0, abs=1e-6)


def test_coordinates_keep_their_aspect_and_the_query_uses_the_fit_frame():
    fit = np.array([[0.0, 0.0], [10.0, 5.0]])
    a, b = normalise_coordinates(fit, np.array([[20.0, 2.5]]))
    assert np.allclose(a, [[-1, -0.5], [1, 0.5]]) and np.allclose(b, [[3, 0]])


def test_inr_rule_siren_for_sparse_ffn_for_dense_slices():
    def grid(n):
        return np.stack(np.meshgrid(np.arange(n), np.arange(n)), -1).reshape(-1, 2) * 100.0

    assert inr_for(grid(78)) == "siren"  # a Visium-like capture area
    assert inr_for(grid(200)) == "ffn"  # Stereo-seq-like bins


def test_stage_sliced_w2_is_pots_distance_with_the_same_projections():
    """STAGE's fast equal-size W2 against POT's general one, fed the projections it drew."""
    import ot

    from stbench.methods.stage import sliced_w2

    gen = torch.Generator().manual_seed(3)
    u, v = torch.randn(64, 2, generator=gen, dtype=torch.float64), torch.rand(64, 2, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    ours = sliced_w2(u, v, n_projections=50)
    torch.manual_seed(0)
    P = torch.randn(2, 50, dtype=torch.float64)
    P = P / P.norm(dim=0, keepdim=True)
    assert float(ours) == pytest.approx(float(ot.sliced_wasserstein_distance(u, v, projections=P)), rel=1e-10)
    # by hand: v = u shifted by t moves every projection onto theta by t.theta, so the squared
    # W2 averaged over directions on the circle is |t|^2 / 2: 25 / 2 for t = (3, 4)
    torch.manual_seed(0)
    shifted = sliced_w2(u, u + torch.tensor([3.0, 4.0], dtype=torch.float64), n_projections=200_000)
    assert float(shifted) == pytest.approx((25 / 2) ** 0.5, rel=0.01)
    with pytest.raises(ValueError, match="equal-sized"):
        sliced_w2(u, v[:10], 5)
