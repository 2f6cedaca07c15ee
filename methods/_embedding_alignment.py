"""Alignment from a joint embedding, shared by every embedding method (STAligner; Spotscape when it lands).

Data flow: embeddings of the query and reference spots (one model, one space)
-> mutual nearest neighbours by cosine similarity -> a rigid transform
estimated robustly from the matched pairs' coordinates (RANSAC on minimal
2-pair samples, refitted on the inliers) -> optionally refined by trimmed ICP
on the coordinates from that start -> aligned query coordinates. The matching
is also returned as a plan pi (query x reference, mass 1/n_q per matched
query spot, spread over its mutual partners), so LTARI can use it.

Why RANSAC: many mutual neighbours in expression space are wrong in space
(repeated layers, symmetric structures); a least-squares fit over all of them
is pulled towards the slice centre, while the consensus of the correct pairs
is a rigid motion that most of them agree on.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from stbench.methods._rigid import icp, kabsch
from stbench.methods._spatial import spot_spacing


def _unit(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, float)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def mutual_nearest_neighbours(z_a: np.ndarray, z_b: np.ndarray, k: int) -> np.ndarray:
    """(m, 2) index pairs (i in a, j in b) that are within each other's k nearest by cosine similarity."""
    a, b = _unit(z_a), _unit(z_b)
    k_ab, k_ba = min(k, len(b)), min(k, len(a))
    nn_ab = NearestNeighbors(n_neighbors=k_ab).fit(b).kneighbors(a, return_distance=False)
    nn_ba = NearestNeighbors(n_neighbors=k_ba).fit(a).kneighbors(b, return_distance=False)
    ab = sp.csr_matrix((np.ones(nn_ab.size), (np.repeat(np.arange(len(a)), k_ab), nn_ab.ravel())),
                       shape=(len(a), len(b)))
    ba = sp.csr_matrix((np.ones(nn_ba.size), (nn_ba.ravel(), np.repeat(np.arange(len(b)), k_ba))),
                       shape=(len(a), len(b)))
    both = ab.multiply(ba).tocoo()
    return np.column_stack([both.row, both.col]).astype(np.int64)


def ransac_rigid(src: np.ndarray, dst: np.ndarray, threshold: float, iterations: int, seed: int):
    """Rigid (R, t) with src @ R.T + t ~ dst for the largest consensus of rows, and its inlier mask."""
    rng = np.random.default_rng(seed)
    n = len(src)
    if n < 2:
        raise ValueError("RANSAC needs at least 2 matched pairs. Expected embeddings with mutual neighbours")
    best = np.zeros(n, bool)
    for _ in range(iterations):
        i, j = rng.choice(n, size=2, replace=False)
        if np.linalg.norm(src[i] - src[j]) < threshold:
            continue  # too close to fix a rotation
        R, t = kabsch(src[[i, j]], dst[[i, j]])
        inliers = np.linalg.norm(src @ R.T + t - dst, axis=1) < threshold
        if inliers.sum() > best.sum():
            best = inliers
    if best.sum() < 2:
        best[:] = True  # no consensus: fall back to least squares over every pair
    R, t = kabsch(src[best], dst[best])
    # Wrong pairs that happen to land within the threshold still pull the fit: refit on
    # the pairs within a third of it (kept only while enough pairs remain).
    tight = np.linalg.norm(src @ R.T + t - dst, axis=1) < threshold / 3
    if tight.sum() >= max(2, best.sum() // 2):
        R, t = kabsch(src[tight], dst[tight])
    return R, t, best


def align_by_embedding(query_xy, ref_xy, query_z, ref_z, seed: int, k: int = 50, threshold_spots: float = 3.0,
                       iterations: int = 2000, refine: bool = True) -> dict:
    """Aligned query coordinates from a joint embedding; see the module docstring.

    ``threshold_spots``: RANSAC inlier distance in reference spot spacings.
    Returns {"aligned", "plan", "pairs", "inliers"}.
    """
    query_xy, ref_xy = np.asarray(query_xy, float), np.asarray(ref_xy, float)
    pairs = mutual_nearest_neighbours(query_z, ref_z, k)
    threshold = threshold_spots * spot_spacing(ref_xy)
    R, t, inliers = ransac_rigid(query_xy[pairs[:, 0]], ref_xy[pairs[:, 1]], threshold, iterations, seed)
    if refine:
        R, t, _ = icp(query_xy, ref_xy, R, t)
    n_q = len(query_xy)
    counts = np.bincount(pairs[:, 0], minlength=n_q)
    plan = sp.csr_matrix((1.0 / (n_q * counts[pairs[:, 0]]), (pairs[:, 0], pairs[:, 1])), shape=(n_q, len(ref_xy)))
    return {"aligned": query_xy @ R.T + t, "plan": plan, "pairs": pairs, "inliers": inliers}


def align_pair_by_embedding(inputs, embed, seed: int, k: int) -> np.ndarray:
    """An embedding method's alignment: embed the reference (code 0) and the query (code 1) together
    with ``embed(X, xy, slice_codes) -> z``, then align the query by the embedding (see above).

    Each slice's coordinates stay in its own frame: the methods build their graphs per slice, so
    the query's unknown placement does not matter."""
    ref, query = inputs.reference, inputs.query
    X = sp.vstack([sp.csr_matrix(ref.X), sp.csr_matrix(query.X)], format="csr")
    ref_xy, q_xy = np.asarray(ref.obsm["spatial"], float), np.asarray(query.obsm["spatial"], float)
    codes = np.r_[np.zeros(ref.n_obs, int), np.ones(query.n_obs, int)]
    z = embed(X, np.vstack([ref_xy, q_xy]), codes)
    return align_by_embedding(q_xy, ref_xy, z[ref.n_obs:], z[:ref.n_obs], seed, k=k)["aligned"]
