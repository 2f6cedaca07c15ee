"""Spatially smoothed PCA + k-means: PCs averaged over each spot and its 6 spatial
neighbours before k-means, the simplest way to use space for domains."""

from sklearn.cluster import KMeans

from stbench.methods import Method
from stbench.methods._spatial import knn_average_matrix, pca

smoothed_pca_kmeans = Method(
    name="smoothed_pca_kmeans", kind="baseline", uses_true_k=True, params={"n_pcs": 30, "k_spatial": 6},
    summary="k-means (true k) on 30 PCs averaged over each spot's 6 spatial neighbours.",
)


@smoothed_pca_kmeans.solves("domain_identification")
def cluster(inputs, ctx):
    pcs = pca(inputs.adata.X, int(ctx.params["n_pcs"]), ctx.seed)
    smooth = knn_average_matrix(inputs.adata.obsm["spatial"], int(ctx.params["k_spatial"])) @ pcs
    return KMeans(n_clusters=inputs.n_domains, n_init=10, random_state=ctx.seed).fit_predict(smooth)
