"""Alignment metrics: label-transfer ARI (LTARI, three partner rules) and coordinate RMSE.

Why three rules. LTARI grades an alignment by how well the query's labels are
recovered from the reference spots it lands on. The papers (PASTE2, Spotscape,
the Hu et al. benchmark) take a method's transport plan when it returns one:
the partner is argmax pi. A plan built from expression similarity then
transfers labels whatever the coordinates are: on MERFISH's cell classes a
space-blind expression 1-NN scores 0.60, above every aligner
(``scripts/alignment_label_transfer.py``). So the primary ``ltari`` uses
coordinates only, and only their rigid part (the task's split is a rigid
motion), so that neither a plan nor a per-spot placement can stand in for the
alignment; ``ltari_plan`` keeps the papers' rule beside it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from stbench.tasks.geometry import kabsch
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


def label_transfer_ari(ref_labels, query_labels, partner) -> float:
    """ARI(query true labels, ref_labels[partner]) over query spots that have a partner (partner >= 0)
    and whose own and partner's labels are known; NaN below two such spots."""
    partner = np.asarray(partner)
    ref = np.asarray(ref_labels, dtype=object)[np.maximum(partner, 0)]
    q = np.asarray(query_labels, dtype=object)
    known = np.array([_known(a) and _known(b) for a, b in zip(q, ref)], dtype=bool) & (partner >= 0)
    if known.sum() < 2:
        return float("nan")
    return ari(q[known].astype(str), ref[known].astype(str))


def rigid_part(query_given, query_aligned) -> np.ndarray:
    """The query's given coordinates moved by the rotation and translation that best map them onto the
    returned ones (least squares, ``kabsch``): a rigid answer is returned as it is, a per-spot
    placement becomes its best rigid fit."""
    given = np.asarray(query_given, float)
    R, t = kabsch(given, np.asarray(query_aligned, float))
    return given @ R.T + t


@metric("ltari", higher_is_better=True, range=(-0.5, 1))
def ltari(ref_labels, query_labels, ref_coords, query_given, query_aligned) -> float:
    """ARI(query labels, labels of the nearest labelled reference spots), the query placed by the answer's rigid part.

    ``rigid_part``: the rotation and translation that best map the query's given coordinates onto
    the returned ones. A plan is not used."""
    return ltari_nn(ref_labels, query_labels, ref_coords, rigid_part(query_given, query_aligned))


@metric("ltari_nn", higher_is_better=True, range=(-0.5, 1))
def ltari_nn(ref_labels, query_labels, ref_coords, query_aligned) -> float:
    """LTARI with each query spot's partner its nearest labelled reference spot in the returned coordinates."""
    # unlabelled reference spots transfer nothing: the partner is the nearest labelled one
    ref_labels = np.asarray(ref_labels, dtype=object)
    labelled = np.array([_known(v) for v in ref_labels], dtype=bool)
    partner, _ = transfer_partner(np.asarray(ref_coords, float)[labelled], query_aligned)
    return label_transfer_ari(ref_labels[labelled], query_labels, partner)


@metric("ltari_plan", higher_is_better=True, range=(-0.5, 1))
def ltari_plan(ref_labels, query_labels, plan) -> float:
    """LTARI by the papers' rule: partner = argmax_j pi[i, j] of the method's plan (NaN without a plan).

    Rows of pi left empty by a partial plan are scored out."""
    if plan is None:
        return float("nan")
    partner, _ = transfer_partner(None, None, plan)
    return label_transfer_ari(ref_labels, query_labels, partner)


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
