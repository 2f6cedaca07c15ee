"""A user's new method, defined in a file of their own (the board's user flow in test_board.py)."""

import numpy as np
import scanpy as sc
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from stbench.methods import Method

smoothed_kmeans = Method(name="my_smoothed_kmeans", kind="peer", uses_true_k=True,
                         summary="k-means on 20 PCs averaged over each spot's 8 spatial neighbours")


@smoothed_kmeans.solves("domain_identification")
def _cluster(inputs, ctx):
    adata = inputs.adata.copy()
    sc.pp.pca(adata, n_comps=20, random_state=ctx.seed)
    pcs = adata.obsm["X_pca"]
    idx = NearestNeighbors(n_neighbors=8).fit(adata.obsm["spatial"]).kneighbors(return_distance=False)
    smoothed = pcs[np.c_[np.arange(len(pcs)), idx]].mean(axis=1)  # each spot with its 8 neighbours
    return KMeans(inputs.n_domains, n_init=10, random_state=ctx.seed).fit_predict(smoothed)
