"""Rigid 2-D geometry that a task needs for its reference answer and methods reuse."""

from __future__ import annotations

import numpy as np


def kabsch(P: np.ndarray, Q: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (det +1) and translation t minimising sum w |R p + t - q|^2 over matched rows."""
    w = np.full(len(P), 1.0 / len(P)) if weights is None else np.asarray(weights, float) / np.sum(weights)
    pc, qc = w @ P, w @ Q
    U, _, Vt = np.linalg.svd((P - pc).T @ ((Q - qc) * w[:, None]))
    d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    R = Vt.T @ np.diag([1.0, d]) @ U.T
    return R, qc - R @ pc


def spot_spacing(xy: np.ndarray) -> float:
    """Median distance of a spot to its nearest neighbour: the slice's natural length unit (its pitch)."""
    from sklearn.neighbors import NearestNeighbors

    d = NearestNeighbors(n_neighbors=2).fit(xy).kneighbors(xy)[0][:, 1]
    return float(np.median(d))
