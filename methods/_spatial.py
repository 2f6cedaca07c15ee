"""Helpers several baselines share: spatial k-NN graphs and PCA of expression."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from stbench.tasks.geometry import spot_spacing  # noqa: F401 (the methods' import path)


def knn_average_matrix(coords: np.ndarray, k: int = 6, include_self: bool = True) -> sp.csr_matrix:
    """Row-stochastic (n x n) matrix averaging each spot over its k spatial neighbours (and itself)."""
    n = len(coords)
    k = min(k, n - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)
    if not include_self:
        idx = idx[:, 1:]
    rows = np.repeat(np.arange(n), idx.shape[1])
    return sp.csr_matrix((np.full(rows.size, 1.0 / idx.shape[1]), (rows, idx.ravel())), shape=(n, n))


def pca(X, n_components: int = 30, seed: int = 0) -> np.ndarray:
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    n = max(1, min(n_components, X.shape[0] - 1, X.shape[1] - 1))
    return PCA(n_components=n, random_state=seed).fit_transform(X)
