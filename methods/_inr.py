"""Shared pieces of the coordinate-network family (SUICA, FFN, SIREN, STAGE).

All four learn a map from a spot's coordinates to (an embedding of) its
expression, so one function reads the training and prediction spots from any
of the three expression tasks (``training_view``), one normalises coordinates
the way SUICA does, and one loop optimises a loss over mini-batches of spots.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stbench.methods._spatial import spot_spacing


def training_view(inputs, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coordinates, expression) the method may fit, and the coordinates it must predict.

    ``spatial_imputation``: fit the observed spots, predict the query spots (their
    expression never reaches the method). ``gene_imputation`` / ``denoising``:
    fit the corrupted matrix at every spot and predict every spot back.
    """
    if task == "spatial_imputation":
        obs = inputs.observed
        return (np.asarray(obs.obsm["spatial"], float), _dense(obs.X),
                np.asarray(inputs.query.obsm["spatial"], float))
    xy = np.asarray(inputs.adata.obsm["spatial"], float)
    return xy, _dense(inputs.adata.X), xy


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def normalise_coordinates(fit_xy: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Min-max to [-1, 1] on the longer axis with the aspect kept (SUICA's ``_normalize_coordinates``).

    The frame is fixed by the fitted spots only; prediction spots use the same map.
    """
    lo, hi = fit_xy.min(axis=0), fit_xy.max(axis=0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-12)
    return [((xy - centre) / half).astype(np.float32) for xy in (fit_xy, *others)]


def spots_across(xy: np.ndarray) -> float:
    """How many spot pitches fit across the slice: its longer extent / median nearest-neighbour distance."""
    return float((xy.max(axis=0) - xy.min(axis=0)).max()) / max(spot_spacing(xy), 1e-12)


DENSE_SPOTS_ACROSS = 150


def inr_for(xy: np.ndarray) -> str:
    """SUICA's rule: SIREN for spatially sparse platforms, Fourier features for dense ones.

    A slice is *dense* when at least ``DENSE_SPOTS_ACROSS`` spot pitches fit across
    it (Stereo-seq bins, Slide-seq beads); Visium (~80 across a 6.5 mm capture
    area), legacy ST and a single MERFISH field are sparse.
    """
    return "ffn" if spots_across(xy) >= DENSE_SPOTS_ACROSS else "siren"


class FourierFeatures(nn.Module):
    """Gaussian random Fourier features: x -> [sin(2 pi x B), cos(2 pi x B)], B ~ N(0, sigma^2), fixed."""

    def __init__(self, n: int = 256, sigma: float = 10.0, dim_in: int = 2):
        super().__init__()
        self.register_buffer("B", torch.randn(dim_in, n) * sigma)

    def forward(self, x):
        proj = 2 * math.pi * x @ self.B
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class Sine(nn.Module):
    """A SIREN layer: sin(w0 (W x + b)), with the SIREN initialisation (Sitzmann et al. 2020)."""

    def __init__(self, dim_in: int, dim_out: int, first: bool, w0: float = 30.0):
        super().__init__()
        self.w0, self.linear = w0, nn.Linear(dim_in, dim_out)
        bound = 1 / dim_in if first else math.sqrt(6 / dim_in) / w0
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x):
        return torch.sin(self.w0 * self.linear(x))


def coordinate_network(kind: str, dim_out: int, width: int, depth: int, final_relu: bool,
                       fourier_features: int = 256, sigma: float = 10.0) -> nn.Module:
    """Coordinates (n x 2) -> ``dim_out``; ``depth`` hidden layers of ``width``.

    ``ffn``: Fourier features then ReLU layers. ``siren``: sine layers. A final
    ReLU when the target is non-negative expression.
    """
    if kind == "ffn":
        layers = [FourierFeatures(fourier_features, sigma), nn.Linear(2 * fourier_features, width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.ReLU()]
    elif kind == "siren":
        layers = [Sine(2, width, first=True)] + [Sine(width, width, first=False) for _ in range(depth - 1)]
    else:
        raise ValueError(f"coordinate network must be 'ffn' or 'siren', got {kind!r}")
    layers.append(nn.Linear(width, dim_out))
    if final_relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def optimise(parameters, loss_of, n: int, epochs: int, lr: float, batch: int | None, seed: int,
             optimizer: str = "adam", clip: float | None = None) -> list[float]:
    """Minimise ``loss_of(index_tensor)`` over mini-batches of the ``n`` spots.

    ``batch=None`` is one full-batch step per epoch (SUICA's INR stage accumulates
    every batch into one step, which is the same thing). Returns the mean loss of
    each epoch, for the tests and for a look at convergence.
    """
    params = [p for p in parameters if p.requires_grad]
    opt = (torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam)(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen) if batch and batch < n else torch.arange(n)
        chunks = list(order.split(batch)) if batch and batch < n else [order]
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # BatchNorm cannot train on a batch of one spot
            chunks[-2:] = [torch.cat(chunks[-2:])]
        total = 0.0
        for idx in chunks:
            opt.zero_grad(set_to_none=True)
            loss = loss_of(idx)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / n)
    return history


def l1_plus_mse(pred, target):
    """The INR stages' regression loss (SUICA's ``L1 + MSE``)."""
    return F.l1_loss(pred, target) + F.mse_loss(pred, target)


@torch.no_grad()
def predict_rows(fn, x: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """``fn`` over the rows of ``x`` in chunks, as a float64 numpy array (the task's dtype)."""
    return torch.cat([fn(x[i:i + chunk]) for i in range(0, len(x), chunk)]).double().cpu().numpy()


def fit_coordinate_regressor(kind: str, xy, X, query_xy, prof: dict, seed: int, device: str) -> np.ndarray:
    """Vanilla INR (SUICA's ``inr_raw`` baseline): coordinates -> expression directly, L1 + MSE,
    full batch, final ReLU; predictions at ``query_xy``."""
    dev = torch.device(device)
    fit_xy, query_n = normalise_coordinates(xy, query_xy)
    P, Xt = torch.from_numpy(fit_xy).to(dev), torch.from_numpy(X).to(dev)
    net = coordinate_network(kind, X.shape[1], prof["width"], prof["depth"], final_relu=True,
                             sigma=prof.get("sigma", 10.0)).to(dev)
    optimise(net.parameters(), lambda i: l1_plus_mse(net(P[i]), Xt[i]), len(X), int(prof["epochs"]), prof["lr"],
             None, seed, optimizer="adamw")
    return predict_rows(net, torch.from_numpy(query_n).to(dev))
