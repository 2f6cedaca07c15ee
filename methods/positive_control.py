"""Positive controls: the one place where truth is given on purpose (``uses_truth``).

They fix the 1 of the scaled scores and check that each metric can reach its
best value. The runner hands ``ctx.solution`` only to methods marked
``uses_truth``.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from stbench.methods import Method
from stbench.methods._rigid import kabsch

positive_control = Method(
    name="positive_control", kind="control", label="Positive control", uses_truth=True,
    summary="Returns the truth: held-out or clean expression, true labels, a one-hot label embedding, "
    "the true placement with a same-label matching plan.",
)


@positive_control.solves("spatial_imputation", "gene_imputation", "denoising")
def true_expression(inputs, ctx):
    return np.array(ctx.solution, dtype=np.float64)


@positive_control.solves("domain_identification")
def true_labels(inputs, ctx):
    return np.array(["unlabelled" if v is None else str(v) for v in ctx.solution])


@positive_control.solves("multislice_integration")
def one_hot_labels(inputs, ctx):
    labels = np.array(["" if v is None else str(v) for v in ctx.solution])
    names = sorted(set(labels) - {""})
    return (labels[:, None] == np.array(names)[None, :]).astype(float)


@positive_control.solves("alignment")
def true_placement(inputs, ctx):
    """True coordinates (where known; else the external registration where the dataset has one;
    else the query's own frame), and a plan sending each query spot to the nearest reference
    spot of the same true label."""
    sol = ctx.solution
    xy = sol["query_true_spatial"]
    registered = sol.get("query_registered_spatial")
    if xy is None and registered is not None:
        # the registration's own positions; spots it leaves out (NaN) follow its best rigid fit
        placed = np.isfinite(registered).all(axis=1)
        R, t = kabsch(sol["query_original_spatial"][placed], registered[placed])
        xy = sol["query_original_spatial"] @ R.T + t
        xy[placed] = registered[placed]
    if xy is None:
        xy = sol["query_original_spatial"]
    ref_xy, ref_lab, q_lab = sol["reference_spatial"], sol["reference_labels"], sol["query_labels"]
    partner = NearestNeighbors(n_neighbors=1).fit(ref_xy).kneighbors(xy, return_distance=False)[:, 0]
    for label in {v for v in q_lab if v is not None}:
        ref_idx = np.flatnonzero([v == label for v in ref_lab])
        q_idx = np.flatnonzero([v == label for v in q_lab])
        if ref_idx.size:
            nn = NearestNeighbors(n_neighbors=1).fit(ref_xy[ref_idx])
            partner[q_idx] = ref_idx[nn.kneighbors(xy[q_idx], return_distance=False)[:, 0]]
    n_q = len(xy)
    plan = sp.csr_matrix((np.full(n_q, 1.0 / n_q), (np.arange(n_q), partner)), shape=(n_q, len(ref_xy)))
    return {"aligned": xy, "plan": plan}
