"""PCA + k-means: 30 principal components of the log-normalised HVGs, k-means with the given k."""

from sklearn.cluster import KMeans

from stbench.methods import Method
from stbench.methods._spatial import pca

pca_kmeans = Method(name="pca_kmeans", kind="baseline", uses_true_k=True, params={"n_pcs": 30},
                    summary="k-means (true k, 10 restarts) on 30 PCs of the expression.")


@pca_kmeans.solves("domain_identification")
def cluster(inputs, ctx):
    pcs = pca(inputs.adata.X, int(ctx.params["n_pcs"]), ctx.seed)
    return KMeans(n_clusters=inputs.n_domains, n_init=10, random_state=ctx.seed).fit_predict(pcs)
