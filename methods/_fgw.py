"""Fused Gromov-Wasserstein slice alignment shared by ``paste`` and ``paste2``.

Data flow: expression cost M (query x reference) + each slice's spatial distance
matrix -> POT's conditional-gradient (Frank-Wolfe) FGW solver -> plan pi ->
a rigid transform fitted to pi (weighted Procrustes, as PASTE's
``generalized_procrustes_analysis``) -> aligned query coordinates.

Two choices here decide whether the solver moves at all (the trap in the
issue: on DLPFC pixel coordinates with alpha = 0.1 the official code stops
after one Frank-Wolfe step on a poor plan):

* **Scale** (``rescale``). Spatial distances of both slices are divided by one
  common constant, so that the result does not depend on the coordinate units
  (microns, pixels, array indices); one constant for both slices keeps their
  distances comparable, which is what GW compares.
  ``"pitch"``: the constant is the reference's spot spacing (median
  nearest-neighbour distance), i.e. distances in spot pitches, the regime of
  PASTE's own Visium array coordinates; the expression cost is left as is.
  ``"median"``: the constant is the larger median pairwise distance and the
  expression cost is divided by its median, so ``alpha`` weighs two terms of
  order one (space then weighs far less than in pitch units at equal alpha).
  ``"none"``: raw distances and cost, as the official code.
* **Start.** ``init="expression"`` starts Frank-Wolfe from the exact OT plan of
  the expression cost alone (``ot.emd``) instead of the uniform product plan.

Memory is O(n_q * n_r) dense float64 (cost, plan, gradient), and each
Frank-Wolfe step costs two n^3 matrix products, so slices above ``max_spots``
are subsampled (seeded, uniform) to that many spots. Unsampled query spots
take the plan row of their nearest sampled query spot (in the query's own
coordinates, which the rigid transform does not change); unsampled reference
spots get no mass. The rigid transform, fitted on the subsample, moves every
query spot.
"""

from __future__ import annotations

import numpy as np
import ot
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from stbench.methods._rigid import kabsch
from stbench.methods._spatial import pca, spot_spacing

PSEUDOCOUNT = 0.01  # PASTE's KL: counts + 0.01, then each spot normalised to a distribution
# POT's network simplex stops at 100,000 iterations by default: on 4,000 x 4,000
# plans that returns non-optimal start plans and Frank-Wolfe directions (a warning),
# and the partial start plan fails outright ("increase the number of dummy points").
EMD_MAX_ITER = 10_000_000
RESCALE_MODES = ("pitch", "median", "none")


def expression_cost(query, reference, kind: str, seed: int) -> np.ndarray:
    """(n_q, n_r) dissimilarity of expression profiles.

    ``kl``: PASTE's default, KL(query spot || reference spot) on the counts plus
    a pseudocount. ``pca``: Euclidean distance in a 30-PC space of the
    log-normalised expression fitted on both slices (the role GLM-PCA plays in
    PASTE2; GLM-PCA is not in our stack).
    """
    if kind == "kl":
        X = np.asarray(_dense(query.layers["counts"]), float) + PSEUDOCOUNT
        Y = np.asarray(_dense(reference.layers["counts"]), float) + PSEUDOCOUNT
        X /= X.sum(axis=1, keepdims=True)
        Y /= Y.sum(axis=1, keepdims=True)
        return (X * np.log(X)).sum(axis=1)[:, None] - X @ np.log(Y).T
    if kind == "pca":
        z = pca(sp.vstack([sp.csr_matrix(query.X), sp.csr_matrix(reference.X)]), 30, seed)
        return ot.dist(z[:query.n_obs], z[query.n_obs:], metric="euclidean")
    raise ValueError(f"expression cost {kind!r} is unknown. Expected 'kl' or 'pca'")


def _dense(a) -> np.ndarray:
    return a.toarray() if sp.issparse(a) else np.asarray(a)


def subsample(n: int, max_spots: int, rng) -> np.ndarray:
    """Sorted indices of at most ``max_spots`` of ``n`` spots (all of them when n is small enough)."""
    return np.arange(n) if n <= max_spots else np.sort(rng.choice(n, size=max_spots, replace=False))


def fgw_plan(M, query_xy, ref_xy, alpha: float, init: str, overlap: float | None = None, rescale: str = "pitch"):
    """The FGW plan (n_q, n_r) between two slices, and POT's log (``loss`` per Frank-Wolfe step).

    ``overlap`` None: balanced FGW with uniform marginals (PASTE).
    ``overlap`` s in (0, 1]: partial FGW moving mass s (PASTE2).
    ``rescale``: one of ``RESCALE_MODES`` (module docstring); ``"none"`` keeps raw
    distances and cost, as the official PASTE does.
    """
    if rescale not in RESCALE_MODES:
        raise ValueError(f"rescale {rescale!r} is unknown. Expected one of {RESCALE_MODES}")
    Dq, Dr = ot.dist(query_xy, query_xy, metric="euclidean"), ot.dist(ref_xy, ref_xy, metric="euclidean")
    if rescale == "pitch":
        scale = spot_spacing(ref_xy)
        Dq, Dr = Dq / scale, Dr / scale
    elif rescale == "median":
        scale = max(np.median(Dq), np.median(Dr))
        Dq, Dr = Dq / scale, Dr / scale
        M = M / np.median(M)
    a, b = ot.unif(len(query_xy)), ot.unif(len(ref_xy))
    if init == "expression":
        G0 = (ot.emd(a, b, M, numItermax=EMD_MAX_ITER) if overlap is None
              else ot.partial.partial_wasserstein(a, b, M, m=overlap, numItermax=EMD_MAX_ITER))
        if overlap is not None:
            G0 *= 1 - 1e-9  # POT asserts G0's marginals <= p, q exactly; the LP returns them to rounding
    elif init == "product":
        G0 = None if overlap is None else np.outer(a, b) * overlap
    else:
        raise ValueError(f"init {init!r} is unknown. Expected 'expression' or 'product'")
    if overlap is None:
        G, log = ot.gromov.fused_gromov_wasserstein(M, Dq, Dr, a, b, loss_fun="square_loss", alpha=alpha,
                                                    G0=G0, log=True, numItermaxEmd=EMD_MAX_ITER)
    else:
        G, log = ot.gromov.partial_fused_gromov_wasserstein(M, Dq, Dr, a, b, m=overlap, loss_fun="square_loss",
                                                            alpha=alpha, G0=G0, log=True, warn=False,
                                                            # POT's partial solver gives its inner linear
                                                            # programs the outer loop's iteration cap
                                                            numItermax=EMD_MAX_ITER)
    log["G0"] = G0
    return np.asarray(G), log


def rigid_from_plan(query_xy, ref_xy, G) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Procrustes on the plan: sum_ij G_ij |R q_i + t - r_j|^2 is minimised by Kabsch on
    each query spot against the barycentre of its partners, weighted by its mass."""
    mass = G.sum(axis=1)
    used = mass > 0
    barycentres = (G[used] @ ref_xy) / mass[used, None]
    return kabsch(query_xy[used], barycentres, weights=mass[used])


def full_plan(G, q_idx, r_idx, query_xy_all, n_ref) -> sp.csr_matrix:
    """The subsample's plan as an (n_query, n_reference) sparse matrix: unsampled query spots copy
    the row of their nearest sampled query spot; unsampled reference spots get no mass."""
    G = sp.csr_matrix(G)
    if len(q_idx) < len(query_xy_all):
        nearest = NearestNeighbors(n_neighbors=1).fit(query_xy_all[q_idx]).kneighbors(
            query_xy_all, return_distance=False)[:, 0]
        G = G[nearest]
    cols = sp.csr_matrix((np.ones(len(r_idx)), (np.arange(len(r_idx)), r_idx)), shape=(len(r_idx), n_ref))
    return sp.csr_matrix(G @ cols)


def align(inputs, ctx, overlap: float | None, report: dict | None = None):
    """PASTE (overlap None) or PASTE2 (overlap s): {"aligned": coordinates, "plan": sparse pi}.

    ``report``, when given, receives the solver's trace (Frank-Wolfe steps, loss at
    the start and the end, the share of plan mass that moved from the start)."""
    p = ctx.params
    q, r = inputs.query, inputs.reference
    rng = np.random.default_rng(ctx.seed)
    q_idx, r_idx = subsample(q.n_obs, int(p["max_spots"]), rng), subsample(r.n_obs, int(p["max_spots"]), rng)
    qs, rs = q[q_idx], r[r_idx]
    q_xy, r_xy = np.asarray(q.obsm["spatial"], float), np.asarray(r.obsm["spatial"], float)
    M = expression_cost(qs, rs, p["expression_cost"], ctx.seed)
    G, log = fgw_plan(M, q_xy[q_idx], r_xy[r_idx], float(p["alpha"]), p["init"], overlap,
                      rescale=p["rescale"])
    if report is not None:
        G0 = np.outer(*(np.full(n, 1.0 / n) for n in G.shape)) if log["G0"] is None else log["G0"]
        report.update(subsampled=(len(q_idx), len(r_idx)), fw_steps=len(log.get("loss", [])) - 1,
                      loss_start=float(log["loss"][0]) if log.get("loss") else float("nan"),
                      loss_end=float(log["loss"][-1]) if log.get("loss") else float("nan"),
                      mass_moved=float(0.5 * np.abs(G - G0).sum()))
    R, t = rigid_from_plan(q_xy[q_idx], r_xy[r_idx], G)
    return {"aligned": q_xy @ R.T + t, "plan": full_plan(G, q_idx, r_idx, q_xy, r.n_obs)}
