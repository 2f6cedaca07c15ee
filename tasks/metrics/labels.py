"""Label metrics: ARI, NMI, Hungarian accuracy, boundary accuracy, imputation ARI.

Labels are 1-d arrays of equal length; spots whose true label is missing
(NaN / None) are scored out by the task before these functions are called.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.neighbors import NearestNeighbors

from stbench.tasks.metrics import metric
from stbench.tasks.metrics.expression import dense

CLUSTER_SEED = 0  # metric-side clustering uses one fixed seed, whatever the run seed


@metric("ari", higher_is_better=True, range=(-0.5, 1))
def ari(truth, pred) -> float:
    """Adjusted Rand index (sklearn ``adjusted_rand_score``)."""
    return float(adjusted_rand_score(np.asarray(truth).astype(str), np.asarray(pred).astype(str)))


@metric("nmi", higher_is_better=True, range=(0, 1))
def nmi(truth, pred) -> float:
    """NMI with the arithmetic mean of the entropies (sklearn ``normalized_mutual_info_score``)."""
    return float(normalized_mutual_info_score(np.asarray(truth).astype(str), np.asarray(pred).astype(str),
                                              average_method="arithmetic"))


def hungarian_map(truth, pred) -> dict:
    """The one-to-one map predicted label -> true label maximising the matches."""
    t, p = np.asarray(truth).astype(str), np.asarray(pred).astype(str)
    t_names, t_idx = np.unique(t, return_inverse=True)
    p_names, p_idx = np.unique(p, return_inverse=True)
    cont = contingency_matrix(t_idx, p_idx)  # true x pred
    rows, cols = linear_sum_assignment(cont, maximize=True)
    return {p_names[c]: t_names[r] for r, c in zip(rows, cols)}


@metric("ca", higher_is_better=True, range=(0, 1))
def ca(truth, pred) -> float:
    """Clustering accuracy: (1/n) sum_i 1[m(pred_i) = truth_i], m the Hungarian one-to-one map."""
    t, p = np.asarray(truth).astype(str), np.asarray(pred).astype(str)
    mapping = hungarian_map(t, p)
    return float(np.mean([mapping.get(x) == y for x, y in zip(p, t)]))


def boundary_mask(truth, coords, k: int = 6) -> np.ndarray:
    """Spots with at least one of their k spatial nearest neighbours carrying another true label."""
    t = np.asarray(truth).astype(str)
    nn = NearestNeighbors(n_neighbors=min(k + 1, len(t))).fit(coords)
    _, idx = nn.kneighbors(coords)
    return (t[idx[:, 1:]] != t[:, None]).any(axis=1)


@metric("boundary_ca", higher_is_better=True, range=(0, 1))
def boundary_ca(truth, pred, coords, k: int = 6) -> float:
    """CA on boundary spots only (6-NN carry another true label); the Hungarian map is fitted on all spots."""
    t, p = np.asarray(truth).astype(str), np.asarray(pred).astype(str)
    mask = boundary_mask(t, coords, k)
    if not mask.any():
        return float("nan")
    mapping = hungarian_map(t, p)
    return float(np.mean([mapping.get(x) == y for x, y in zip(p[mask], t[mask])]))


def cluster_embedding(embedding, k: int, seed: int = CLUSTER_SEED) -> np.ndarray:
    """k-means (k clusters, 10 restarts, fixed seed) on an embedding as given: one label per row.
    The clustering every embedding gets, whichever method made it (SPEC §4)."""
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(np.asarray(embedding, dtype=np.float64))


def cluster_embedding_gmm(embedding, k: int, seed: int = CLUSTER_SEED) -> np.ndarray:
    """A Gaussian mixture with one covariance matrix shared by its k components (mclust's EEE
    model, which STAGATE and GraphST publish with), k-means initialised, fixed seed: one label
    per row. The second clustering every embedding gets, beside ``cluster_embedding``."""
    x = np.asarray(embedding, dtype=np.float64)
    return GaussianMixture(n_components=k, covariance_type="tied", init_params="kmeans", n_init=1,
                           random_state=seed).fit_predict(x)


@metric("ari_gmm", higher_is_better=True, range=(-0.5, 1))
def ari_gmm(truth, pred_gmm) -> float:
    """ARI of the tied-covariance Gaussian-mixture clustering (mclust EEE) of the embedding; = ari for returned labels."""
    return ari(truth, pred_gmm)


@metric("nmi_gmm", higher_is_better=True, range=(0, 1))
def nmi_gmm(truth, pred_gmm) -> float:
    """NMI of the tied-covariance Gaussian-mixture clustering of the embedding; = nmi for returned labels."""
    return nmi(truth, pred_gmm)


@metric("ca_gmm", higher_is_better=True, range=(0, 1))
def ca_gmm(truth, pred_gmm) -> float:
    """CA of the tied-covariance Gaussian-mixture clustering of the embedding; = ca for returned labels."""
    return ca(truth, pred_gmm)


def expression_pcs(matrix, n_pcs: int = 30, seed: int = CLUSTER_SEED) -> np.ndarray:
    """The expression's first principal components (at most 30, fewer on tiny inputs)."""
    x = dense(matrix)
    n_comp = max(1, min(n_pcs, x.shape[0] - 1, x.shape[1] - 1))
    return PCA(n_components=n_comp, random_state=seed).fit_transform(x) if x.shape[1] > 1 else x


def cluster_expression(matrix, k: int, n_pcs: int = 30, seed: int = CLUSTER_SEED) -> np.ndarray:
    """PCA (30 components) then k-means (k clusters, 10 restarts, fixed seed): one label per row."""
    return cluster_embedding(expression_pcs(matrix, n_pcs, seed), k, seed)


@metric("imputation_ari", higher_is_better=True, range=(-0.5, 1))
def imputation_ari(truth_labels, matrix, k: int, scored: np.ndarray | None = None) -> float:
    """ARI between the true labels and ``cluster_expression(matrix, k)``, on the ``scored`` rows.

    The task reports beside it ``imputation_ari_reference``: the same pipeline
    on the true expression, i.e. the ceiling this metric can reach.
    """
    labels = cluster_expression(matrix, k)
    t = np.asarray(truth_labels)
    scored = np.ones(len(t), bool) if scored is None else scored
    return ari(t[scored], labels[scored])
