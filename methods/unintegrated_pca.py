"""Unintegrated PCA: 30 PCs of the pooled slices, no batch correction (the integration floor)."""

from stbench.methods import Method
from stbench.methods._spatial import pca

unintegrated_pca = Method(name="unintegrated_pca", kind="baseline", params={"n_pcs": 30},
                          summary="30 PCs of the pooled, uncorrected expression.")


@unintegrated_pca.solves("multislice_integration")
def embed(inputs, ctx):
    return pca(inputs.adata.X, int(ctx.params["n_pcs"]), ctx.seed)
