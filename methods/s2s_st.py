"""Sparser2Sparse (S2S-ST): single-shot self-supervised lattice imputation (seed method).

Protocol (``spatial_imputation`` / ``lattice2x``; seed-methods.md §3):

* **Rasterise.** Every gene becomes an image on the square array grid (Visium's
  hexagonal array is first mapped to (row, col // 2) by the task, see
  ``tasks.base.square_grid``; HER2ST's legacy ST grid and the synthetic grid are
  square). The observed spots are the (even, even) lattice: the "sparse" image,
  stored compactly at half resolution. The loss is masked to observed tissue
  spots; predictions are read at the query spots' grid cells.
* **Single-shot self-supervision.** Step 1: from a crop of the sparse image,
  take its stride-2 lattice again ("sparser"), replicate it back to the crop's
  size (``upleft``: each value fills its 2 x 2 block) and learn sparser -> sparse.
  Step 2 ("two-step"): replicate the sparse crop to full resolution, predict,
  and score the prediction on the sparse lattice only. At test time the whole
  sparse slide is replicated to full resolution and predicted: sparse -> dense.
* **Network.** The Cascaded Data-Consistent Imputation Network: K stages, each a
  residual dense network with hybrid attention blocks (window self-attention +
  channel attention), x <- RDN(x) + x, followed by a data-consistency layer that
  puts the observed values back (not after the last stage). The loss is the
  stage-weighted, tissue-masked L1, sum_k (k+1)/K * L1(stage k).
* **Natural-image co-learning.** Grayscale natural images get the same masks and
  stage-weighted L1, at full size (step 2) and half size (step 1), summed with
  the gene terms (genes enter as log1p / 10 and their loss is multiplied by 10,
  so both carry weight 1 in their own units, as in the official configuration).

Deviations (from the paper and its official code):

* **Natural images**: scikit-image's bundled images (camera, moon, coins, page,
  text, grass, gravel, brick, cell, and the grayscale of astronaut, coffee,
  chelsea, rocket, immunohistochemistry) instead of DIV2K, which cannot be
  downloaded here.
* **Augmentation after subsampling (honesty fix).** The official code flips and
  rotates the full-resolution patch *before* taking ``[::2, ::2]``; a flip of an
  even-sized axis maps odd (held-out) positions onto even ones, so its training
  targets contain held-out truth. Here the training pairs are built from the
  sparse lattice alone (``training_pairs``): the dense image never enters
  training, and flips/rotations act on sparse crops.
* **No checkpoint selection**: the last step's weights are used (the official
  code saves a checkpoint chosen on the held-out loss, though it evaluates the
  last epoch).
* **All genes, one shared model.** The paper trains one model per marker gene;
  the task scores the whole panel (up to 3,000 genes). One single-channel model
  is trained with the panel's genes as samples (``per_gene`` lists genes that
  get their own model as in the paper, trained after the shared one with the
  same schedule; cost: one more training run per listed gene).
* **Whole-slide inference.** The network is fully convolutional (window
  attention pads to whole windows), so the replicated sparse slide is predicted
  in one pass instead of averaging overlapping 64 x 64 patches.
* **Shifted windows** are rolled without the attention mask Swin uses at the
  wrap-around border (the border windows mix both ends of the crop).
* **Profiles.** ``paper``: G0 = 32, D = 8 blocks of C = 4 layers with growth
  32, 4 heads, Adam lr 1e-4 betas (0.5, 0.999), batch 16, 3000 epochs' worth of
  steps. ``fast`` (default; a CPU-practical schedule): G0 = 16, D = 1, C = 3,
  growth 16, 2 heads, lr 1e-3, batch 8, 300 steps on 32 x 32 full-resolution crops
  (16 x 16 on the sparse lattice) instead of 64 x 64. The profile is a recorded parameter.
* ``random20`` is not served (``skipped``): its observed spots are not a
  stride-2 lattice, which the sparser -> sparse self-supervision needs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stbench.errors import MethodNotApplicable
from stbench.methods import Method, deviations_section, resolve_profile

PROFILES = {
    "paper": {"features": 32, "blocks": 8, "layers": 4, "growth": 32, "heads": 4, "lr": 1e-4, "steps": 3000 * 4,
              "batch": 16, "crop": 32},
    "fast": {"features": 16, "blocks": 1, "layers": 3, "growth": 16, "heads": 2, "lr": 1e-3, "steps": 300,
             "batch": 8, "crop": 16},
}
GENE_SCALE = 10.0  # genes enter as log1p / 10; their loss is multiplied back by 10 (official gene_loss_rate)
WINDOW = 8

s2s_st = Method(
    name="s2s_st", kind="seed", version="1",
    summary="Sparser2Sparse: self-supervised sparser->sparse training of a cascaded data-consistent RDN with "
            "hybrid attention, co-learned on natural images; predicts the dense lattice from the stride-2 one.",
    paper="Sparser2Sparse: Single-shot Sparser-to-Sparse Learning for Spatial Transcriptomics Imputation with "
          "Natural Image Co-learning (arXiv 2507.16886)",
    paper_url="https://arxiv.org/abs/2507.16886", code_url="https://github.com/flyfyyfyy/S2S-ST", gpu=True,
    smoke={"steps": 2, "stages": 1, "natural_images": False},  # a seconds-long run for the conformance test
    params={"profile": "fast", "stages": 3, "natural_images": True, "steps": None, "per_gene": []},
    # its self-supervision subsamples a stride-2 lattice; random20's observed spots are not one
    splits={"spatial_imputation": ("lattice2x",)},
    deviations=deviations_section(__doc__),
)


# ---------------------------------------------------------------- network

class ChannelAttention(nn.Module):
    """Convolution then squeeze-and-excitation (HAT's channel attention block)."""

    def __init__(self, c: int, compress: int = 4, squeeze: int = 8):
        super().__init__()
        mid = max(1, c // compress)
        self.body = nn.Sequential(nn.Conv2d(c, mid, 3, padding=1), nn.GELU(), nn.Conv2d(mid, c, 3, padding=1))
        hidden = max(1, c // squeeze)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, hidden, 1), nn.ReLU(),
                                nn.Conv2d(hidden, c, 1), nn.Sigmoid())

    def forward(self, x):
        y = self.body(x)
        return y * self.se(y)


class HybridAttention(nn.Module):
    """x + window self-attention(LN x) + 0.01 * channel attention(LN x), then x + MLP(LN x)."""

    def __init__(self, c: int, heads: int, shift: int, conv_scale: float = 0.01, mlp_ratio: int = 4):
        super().__init__()
        self.shift, self.conv_scale = shift, conv_scale
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.heads = heads
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.cab = ChannelAttention(c)
        self.mlp = nn.Sequential(nn.Linear(c, c * mlp_ratio), nn.GELU(), nn.Linear(c * mlp_ratio, c))

    def _windows(self, y):  # (B, H, W, C) -> (B * windows, WINDOW * WINDOW, C)
        b, h, w, c = y.shape
        y = y.view(b, h // WINDOW, WINDOW, w // WINDOW, WINDOW, c).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(-1, WINDOW * WINDOW, c)

    def forward(self, x):
        b, c, h, w = x.shape
        ph, pw = (-h) % WINDOW, (-w) % WINDOW
        y = F.pad(x, (0, pw, 0, ph)).permute(0, 2, 3, 1)  # (B, H', W', C)
        normed = self.norm1(y)
        n = torch.roll(normed, (-self.shift, -self.shift), dims=(1, 2)) if self.shift else normed
        win = self._windows(n)  # (windows, tokens, C)
        nw, t, _ = win.shape
        q, k, v = self.qkv(win).view(nw, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        # plain batched matmuls: faster on CPU than the fused kernel for 64-token windows and tiny heads
        weights = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        att = self.proj((weights @ v).transpose(1, 2).reshape(nw, t, c))
        hh, ww = h + ph, w + pw
        att = att.view(b, hh // WINDOW, ww // WINDOW, WINDOW, WINDOW, c).permute(0, 1, 3, 2, 4, 5)
        att = att.reshape(b, hh, ww, c)
        if self.shift:
            att = torch.roll(att, (self.shift, self.shift), dims=(1, 2))
        conv = self.cab(normed.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = y + att + self.conv_scale * conv
        y = y + self.mlp(self.norm2(y))
        return y[:, :h, :w].permute(0, 3, 1, 2)


class ResidualDenseBlock(nn.Module):
    """C densely connected 3x3 convolutions, a 1x1 local fusion, a local residual, then two hybrid
    attention blocks (unshifted and shifted by half a window)."""

    def __init__(self, c: int, growth: int, layers: int, heads: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c + i * growth, growth, 3, padding=1) for i in range(layers))
        self.fuse = nn.Conv2d(c + layers * growth, c, 1)
        self.attention = nn.Sequential(HybridAttention(c, heads, 0), HybridAttention(c, heads, WINDOW // 2))

    def forward(self, x):
        feats = [x]
        for conv in self.convs:
            feats.append(F.relu(conv(torch.cat(feats, 1))))
        return self.attention(self.fuse(torch.cat(feats, 1)) + x)


class RDNHybridAttention(nn.Module):
    """Shallow features, D residual dense blocks with hybrid attention, global fusion, one output channel."""

    def __init__(self, features: int, blocks: int, layers: int, growth: int, heads: int):
        super().__init__()
        self.sfe1 = nn.Conv2d(1, features, 3, padding=1)
        self.sfe2 = nn.Conv2d(features, features, 3, padding=1)
        self.blocks = nn.ModuleList(ResidualDenseBlock(features, growth, layers, heads) for _ in range(blocks))
        self.gff = nn.Sequential(nn.Conv2d(blocks * features, features, 1),
                                 nn.Conv2d(features, features, 3, padding=1))
        self.out = nn.Conv2d(features, 1, 3, padding=1)

    def forward(self, x):
        f1 = self.sfe1(x)
        h = self.sfe2(f1)
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        return self.out(self.gff(torch.cat(outs, 1)) + f1)


def data_consistency(pred: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put the observed values back: (1 - m) * pred + m * observed, m = 1 on the observed lattice."""
    return (1 - mask) * pred + mask * observed


class CascadedDCNet(nn.Module):
    """K stages x <- RDN_k(x) + x, each but the last followed by data consistency; returns every stage."""

    def __init__(self, stages: int, **rdn):
        super().__init__()
        self.stages = nn.ModuleList(RDNHybridAttention(**rdn) for _ in range(stages))

    def forward(self, x, mask):
        observed, outs = x, []
        for k, stage in enumerate(self.stages):
            x = stage(x) + x
            outs.append(x)
            if k < len(self.stages) - 1:
                x = data_consistency(x, observed, mask)
        return outs


# ---------------------------------------------------------------- lattices and training pairs

def upleft(sparse: torch.Tensor) -> torch.Tensor:
    """Replicate each value of a stride-2 lattice into its 2 x 2 block: (..., h, w) -> (..., 2h, 2w)."""
    return sparse.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def lattice_mask(h: int, w: int) -> torch.Tensor:
    """1 at the (even, even) positions of an h x w image: where the stride-2 lattice was observed."""
    m = torch.zeros(h, w)
    m[::2, ::2] = 1
    return m


def stage_weighted_l1(outs, target, weight) -> torch.Tensor:
    """sum_k (k+1)/K * masked L1 between stage k's output and the target."""
    K = len(outs)
    denom = weight.sum().clamp_min(1.0)
    return sum((k + 1) / K * ((o - target).abs() * weight).sum() / denom for k, o in enumerate(outs))


def _augment(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random flip and rotation by a multiple of 90 degrees of (..., h, w) square crops."""
    if rng.random() < 0.5:
        images = images.flip(-1)
    return torch.rot90(images, int(rng.integers(4)), dims=(-2, -1))


def training_pairs(raster: torch.Tensor, observed: torch.Tensor, size: int, batch: int,
                   rng: np.random.Generator):
    """Step-1 and step-2 training samples, built from the observed lattice only.

    ``raster``: (genes, H, W) full-resolution image in which only ``observed``
    positions (the (even, even) lattice inside the tissue) carry data; they are
    also the loss weights (the tissue-masked L1 of the paper). The sparse image
    ``raster[:, ::2, ::2]`` is taken *first*, and
    crops of it are flipped and rotated afterwards, so no target ever holds a
    value from a held-out position (the official code augments the dense patch
    first, which moves odd positions onto the lattice).

    Returns (sparser_input, sparse_target, sparse_weight) for step 1 (size x size)
    and (sparse_input_full, sparse_target, sparse_weight) for step 2 (2 size x 2 size).
    """
    sparse = raster[:, ::2, ::2] * observed[::2, ::2]
    weight_all = observed[::2, ::2]
    g, h, w = sparse.shape
    sparse = F.pad(sparse, (0, max(0, size - w), 0, max(0, size - h)))
    weight_all = F.pad(weight_all, (0, max(0, size - w), 0, max(0, size - h)))
    h, w = sparse.shape[1:]
    genes = rng.integers(0, g, batch)
    targets, weights = [], []
    for gene in genes:
        for _ in range(20):  # prefer crops that hold tissue
            i, j = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            wt = weight_all[i:i + size, j:j + size]
            if wt.mean() > 0.25:
                break
        pair = _augment(torch.stack([sparse[gene, i:i + size, j:j + size], wt]), rng)
        targets.append(pair[0])
        weights.append(pair[1])
    target = torch.stack(targets)[:, None]  # (B, 1, size, size)
    weight = torch.stack(weights)[:, None]
    sparser = upleft(target[..., ::2, ::2] * weight[..., ::2, ::2])
    return (sparser, target, weight), (upleft(target), target, weight)


_NATURAL: list[np.ndarray] | None = None


def natural_images() -> list[np.ndarray]:
    """scikit-image's bundled images as grayscale float in [0, 1] (DIV2K's stand-in)."""
    global _NATURAL
    if _NATURAL is None:
        from skimage import data
        from skimage.color import rgb2gray
        from skimage.util import img_as_float

        images = []
        for name in ("camera", "moon", "coins", "page", "text", "grass", "gravel", "brick", "cell", "astronaut",
                     "coffee", "chelsea", "rocket", "immunohistochemistry"):
            try:
                im = getattr(data, name)()
            except Exception:  # an image that would need a download: go without it
                continue
            im = img_as_float(rgb2gray(im) if im.ndim == 3 else im)
            images.append(im.astype(np.float32))
        _NATURAL = images
    return _NATURAL


def natural_batch(size: int, batch: int, rng: np.random.Generator) -> torch.Tensor:
    """Random (2 size)^2 grayscale crops, flipped and rotated: (batch, 1, 2 size, 2 size)."""
    images, crops = natural_images(), []
    for _ in range(batch):
        im = images[int(rng.integers(len(images)))]
        i, j = int(rng.integers(0, im.shape[0] - 2 * size)), int(rng.integers(0, im.shape[1] - 2 * size))
        crops.append(_augment(torch.from_numpy(im[i:i + 2 * size, j:j + 2 * size].copy()), rng))
    return torch.stack(crops)[:, None].clamp(0, 1)


# ---------------------------------------------------------------- training and prediction

def train(net: CascadedDCNet, raster, observed, steps: int, batch: int, lr: float, natural: bool,
          rng: np.random.Generator, genes: np.ndarray | None = None, size: int = 32,
          betas=(0.5, 0.999)) -> list[float]:
    """Adam on the summed step-1 + step-2 (+ natural-image) stage-weighted L1; last weights kept."""
    device = next(net.parameters()).device
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
    source = raster if genes is None else raster[genes]
    m_half, m_full = lattice_mask(size, size).to(device), lattice_mask(2 * size, 2 * size).to(device)
    losses = []
    net.train()
    for _ in range(steps):
        (x1, y1, w1), (x2, y2, w2) = training_pairs(source, observed, size, batch, rng)
        x1, y1, w1, x2, y2, w2 = (t.to(device) for t in (x1, y1, w1, x2, y2, w2))
        loss = stage_weighted_l1(net(x1, m_half), y1, w1)
        outs = net(x2, m_full)
        loss = loss + stage_weighted_l1([o[..., ::2, ::2] for o in outs], y2, w2)
        loss = GENE_SCALE * loss  # genes are in log1p / 10 units: weight 1 in log units
        if natural:
            full = natural_batch(size, batch, rng).to(device)
            half = full[..., ::2, ::2]
            ones_full, ones_half = torch.ones_like(full), torch.ones_like(half)
            loss = loss + stage_weighted_l1(net(upleft(full[..., ::2, ::2]), m_full), full, ones_full)
            loss = loss + stage_weighted_l1(net(upleft(half[..., ::2, ::2]), m_half), half, ones_half)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def predict(net: CascadedDCNet, raster, observed, chunk: int = 64) -> torch.Tensor:
    """Sparse -> dense on the whole slide: (genes, H, W) with the observed lattice in ``raster``."""
    device = next(net.parameters()).device
    net.eval()
    h, w = raster.shape[1:]
    mask = lattice_mask(h, w).to(device)
    out = torch.empty_like(raster)
    for start in range(0, raster.shape[0], chunk):
        x = raster[start:start + chunk, None].to(device)
        sparse = x[..., ::2, ::2] * observed[::2, ::2].to(device)
        out[start:start + chunk] = net(upleft(sparse)[..., :h, :w], mask)[-1][:, 0].cpu()
    return out


def rasterize(obs_grid: np.ndarray, query_grid: np.ndarray, X: np.ndarray):
    """Full-resolution gene images with the observed spots placed, the observed mask, and the query
    spots' pixels (grid offsets are even, so the observed lattice stays (even, even))."""
    allpos = np.vstack([obs_grid, query_grid])
    lo = (allpos.min(axis=0) // 2) * 2
    shape = allpos.max(axis=0) - lo + 1
    shape = shape + shape % 2  # even, so the stride-2 lattice tiles it
    o, q = obs_grid - lo, query_grid - lo
    if ((o % 2) != 0).any():
        raise MethodNotApplicable("s2s_st needs the observed spots on the (even, even) lattice of the grid")
    raster = torch.zeros(X.shape[1], *shape.tolist())
    raster[:, o[:, 0], o[:, 1]] = torch.from_numpy(np.ascontiguousarray(X.T, dtype=np.float32))
    observed = torch.zeros(*shape.tolist())
    observed[o[:, 0], o[:, 1]] = 1
    return raster, observed, q


def _network(profile: dict, stages: int) -> CascadedDCNet:
    return CascadedDCNet(stages, features=profile["features"], blocks=profile["blocks"], layers=profile["layers"],
                         growth=profile["growth"], heads=profile["heads"])


@s2s_st.solves("spatial_imputation")
def impute(inputs, ctx):
    obs, query = inputs.observed, inputs.query
    if inputs.split != "lattice2x" or "grid" not in obs.obsm:
        raise MethodNotApplicable("s2s_st needs the lattice2x split on an array grid (its self-supervision "
                                  "subsamples a stride-2 lattice; random20's observed spots are not one)")
    p = ctx.params
    profile = resolve_profile("s2s_st", PROFILES, p)
    profile["steps"] = int(profile["steps"])
    X = np.asarray(obs.X.todense() if hasattr(obs.X, "todense") else obs.X, dtype=np.float32)
    raster, observed, q = rasterize(np.asarray(obs.obsm["grid"]), np.asarray(query.obsm["grid"]), X)
    raster = raster / GENE_SCALE
    rng = np.random.default_rng(ctx.seed)
    torch.manual_seed(ctx.seed)
    device = torch.device(ctx.device)

    net = _network(profile, int(p["stages"])).to(device)
    train(net, raster, observed, profile["steps"], profile["batch"], profile["lr"],
          bool(p["natural_images"]), rng, size=profile["crop"])
    dense = predict(net, raster, observed)
    genes = list(obs.var_names)
    for name in p.get("per_gene") or []:  # the paper's mode: a model of its own for a marker gene
        if name not in genes:
            raise ValueError(f"s2s_st: per_gene lists {name!r}, which is not among the task's genes")
        g = genes.index(name)
        own = _network(profile, int(p["stages"])).to(device)
        train(own, raster, observed, profile["steps"], profile["batch"], profile["lr"],
              bool(p["natural_images"]), rng, genes=np.array([g]), size=profile["crop"])
        dense[g] = predict(own, raster[g:g + 1], observed)[0]
    pred = dense[:, q[:, 0], q[:, 1]].T.numpy() * GENE_SCALE
    return np.clip(pred, 0, None).astype(np.float64)
