"""Rigid 2-D geometry shared by the alignment baselines: Kabsch fits, principal axes, ICP."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from stbench.tasks.geometry import kabsch  # noqa: F401  (the alignment baselines' fits)


def principal_axes_candidates(query: np.ndarray, ref: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two proper rotations that map the query's principal axes onto the reference's
    (axes have no sign, so 2 of the 4 sign choices are rotations), each with its translation."""
    qc, rc = query.mean(axis=0), ref.mean(axis=0)
    _, _, Vq = np.linalg.svd(query - qc, full_matrices=False)
    _, _, Vr = np.linalg.svd(ref - rc, full_matrices=False)
    out = []
    for signs in ([1, 1], [1, -1], [-1, 1], [-1, -1]):
        R = Vr.T @ np.diag(signs) @ Vq
        if np.linalg.det(R) > 0:
            out.append((R, rc - R @ qc))
    return out


def mean_nn_distance(points: np.ndarray, ref_nn: NearestNeighbors) -> float:
    return float(ref_nn.kneighbors(points, return_distance=True)[0].mean())


def icp(query: np.ndarray, ref: np.ndarray, R: np.ndarray, t: np.ndarray, iterations: int = 50,
        trim: float = 0.9, tol: float = 1e-6):
    """Trimmed point-to-point ICP from (R, t): match each moved query point to its nearest
    reference point, refit on the ``trim`` closest matches, repeat. Returns (R, t, mean NN distance)."""
    nn = NearestNeighbors(n_neighbors=1).fit(ref)
    prev = np.inf
    for _ in range(iterations):
        moved = query @ R.T + t
        dist, idx = nn.kneighbors(moved)
        dist, idx = dist[:, 0], idx[:, 0]
        keep = dist <= np.quantile(dist, trim)
        R, t = kabsch(query[keep], ref[idx[keep]])
        err = dist[keep].mean()
        if abs(prev - err) <= tol * max(err, 1e-12):
            break
        prev = err
    return R, t, mean_nn_distance(query @ R.T + t, nn)
