"""Alignment metrics: label-transfer ARI (LTARI) and coordinate RMSE."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from stbench.tasks.metrics import metric
from stbench.tasks.metrics.labels import ari

INF = float("inf")


def transfer_partner(ref_coords, query_aligned, plan=None) -> tuple[np.ndarray, str]:
    """Index of each query spot's reference partner, and the rule used.

    With a plan pi (n_query x n_ref) the partner is argmax_j pi[i, j]
    ("argmax_pi"); otherwise the nearest reference spot in the aligned
    coordinates ("nearest_neighbour").
    """
    if plan is not None:
        p = plan.tocsr() if sp.issparse(plan) else np.asarray(plan)
        return np.asarray(p.argmax(axis=1)).ravel(), "argmax_pi"
    nn = NearestNeighbors(n_neighbors=1).fit(np.asarray(ref_coords, float))
    return nn.kneighbors(np.asarray(query_aligned, float), return_distance=False)[:, 0], "nearest_neighbour"


@metric("ltari", higher_is_better=True, range=(-0.5, 1))
def ltari(ref_labels, query_labels, partner) -> float:
    """ARI(query true labels, ref_labels[partner]) over query spots whose own and partner's labels are known."""
    ref = np.asarray(ref_labels, dtype=object)[partner]
    q = np.asarray(query_labels, dtype=object)
    known = np.array([_known(a) and _known(b) for a, b in zip(q, ref)], dtype=bool)
    if known.sum() < 2:
        return float("nan")
    return ari(q[known].astype(str), ref[known].astype(str))


def _known(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v))


@metric("coord_rmse", higher_is_better=False, range=(0, INF))
def coord_rmse(true_coords, aligned) -> float:
    """sqrt(mean_i |x_i - xhat_i|^2): distance of aligned query spots to their true reference-frame position."""
    d = np.asarray(true_coords, float) - np.asarray(aligned, float)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))
