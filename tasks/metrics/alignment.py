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
    ("argmax_pi"); a query spot whose row of pi is empty (a partial plan left it
    unmatched) gets partner -1 and is scored out of LTARI, as in the reference
    LTARI code (anchors §4c). Otherwise the partner is the nearest reference spot
    in the aligned coordinates ("nearest_neighbour").
    """
    if plan is not None:
        p = plan.tocsr() if sp.issparse(plan) else np.asarray(plan)
        partner = np.asarray(p.argmax(axis=1)).ravel()
        partner[np.asarray(p.max(axis=1).toarray() if sp.issparse(p) else p.max(axis=1)).ravel() <= 0] = -1
        return partner, "argmax_pi"
    nn = NearestNeighbors(n_neighbors=1).fit(np.asarray(ref_coords, float))
    return nn.kneighbors(np.asarray(query_aligned, float), return_distance=False)[:, 0], "nearest_neighbour"


@metric("ltari", higher_is_better=True, range=(-0.5, 1))
def ltari(ref_labels, query_labels, partner) -> float:
    """ARI(query true labels, ref_labels[partner]) over query spots that have a partner (partner >= 0)
    and whose own and partner's labels are known."""
    partner = np.asarray(partner)
    ref = np.asarray(ref_labels, dtype=object)[np.maximum(partner, 0)]
    q = np.asarray(query_labels, dtype=object)
    known = np.array([_known(a) and _known(b) for a, b in zip(q, ref)], dtype=bool) & (partner >= 0)
    if known.sum() < 2:
        return float("nan")
    return ari(q[known].astype(str), ref[known].astype(str))


@metric("ltari_nn", higher_is_better=True, range=(-0.5, 1))
def ltari_nn(ref_labels, query_labels, ref_coords, query_aligned) -> float:
    """LTARI with every query spot's partner its nearest reference spot in aligned coordinates (plan ignored)."""
    partner, _ = transfer_partner(ref_coords, query_aligned)
    return ltari(ref_labels, query_labels, partner)


@metric("ltari_mapped", higher_is_better=True, range=(0, 1))
def ltari_mapped(partner) -> float:
    """Share of query spots that have a partner (partner >= 0); below 1 only for partial plans."""
    return float(np.mean(np.asarray(partner) >= 0))


def _known(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v))


def _rmse(reference, aligned) -> float:
    d = np.asarray(reference, float) - np.asarray(aligned, float)
    sq = np.sum(d**2, axis=1)
    sq = sq[np.isfinite(sq)]  # spots without a reference position are scored out
    return float(np.sqrt(np.mean(sq))) if sq.size else float("nan")


@metric("coord_rmse", higher_is_better=False, range=(0, INF))
def coord_rmse(true_coords, aligned) -> float:
    """sqrt(mean_i |x_i - xhat_i|^2): distance of aligned query spots to their true reference-frame position
    (over spots whose true position is known)."""
    return _rmse(true_coords, aligned)


@metric("registration_rmse", higher_is_better=False, range=(0, INF))
def registration_rmse(registered_coords, aligned) -> float:
    """sqrt(mean_i |r_i - xhat_i|^2) against an external registration r (e.g. the HER2ST authors'), over
    spots it places; agreement with another method's answer, not with ground truth."""
    return _rmse(registered_coords, aligned)
