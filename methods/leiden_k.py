"""Leiden searched to k: bisect the resolution until Leiden returns the given number of domains.

Uses a 15-NN graph on 30 PCs and the igraph Leiden flavour. The
search is told the true k, so the method is flagged ``uses_true_k``; if no
resolution gives exactly k, the closest count found is returned.
"""

import anndata as ad
import numpy as np
import scanpy as sc
from sklearn.neighbors import kneighbors_graph

from stbench.methods import Method
from stbench.methods._spatial import pca

leiden_k = Method(
    name="leiden_k", kind="baseline", uses_true_k=True,
    params={"n_pcs": 30, "n_neighbors": 15, "max_steps": 20},
    summary="Leiden clustering with its resolution bisected until it yields the true k.",
)


@leiden_k.solves("domain_identification")
def cluster(inputs, ctx):
    pcs = pca(inputs.adata.X, int(ctx.params["n_pcs"]), ctx.seed)
    # A symmetric k-NN connectivity graph from scikit-learn (scanpy's umap-based
    # neighbours would JIT-compile for ~20 s on first use).
    graph = kneighbors_graph(pcs, n_neighbors=int(ctx.params["n_neighbors"]), mode="connectivity")
    graph = graph.maximum(graph.T)
    tmp = ad.AnnData(obs=inputs.adata.obs[[]].copy())
    k = inputs.n_domains
    lo, hi = 0.01, 3.0
    best, best_gap = None, np.inf
    for _ in range(int(ctx.params["max_steps"])):
        res = (lo + hi) / 2
        sc.tl.leiden(tmp, resolution=res, flavor="igraph", n_iterations=2, random_state=ctx.seed,
                     adjacency=graph, key_added="leiden")
        found = tmp.obs["leiden"].nunique()
        if abs(found - k) < best_gap:
            best, best_gap = tmp.obs["leiden"].to_numpy().copy(), abs(found - k)
        if found == k:
            break
        lo, hi = (res, hi) if found < k else (lo, res)
    return best
