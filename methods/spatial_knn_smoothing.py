"""Spatial k-NN smoothing.

Gene imputation: a zero entry becomes the mean of that gene over the spot's k
spatial neighbours (non-zero entries are kept: they were measured).
Denoising: every entry becomes the mean over the spot and its k neighbours.
"""

import numpy as np

from stbench.methods import Method
from stbench.methods._spatial import knn_average_matrix

spatial_knn_smoothing = Method(
    name="spatial_knn_smoothing", kind="baseline", params={"k": 6},
    summary="Average over the k spatial nearest neighbours (zeros only for imputation; all entries for denoising).",
)


@spatial_knn_smoothing.solves("gene_imputation")
def impute(inputs, ctx):
    X = np.asarray(inputs.adata.X, dtype=np.float64)
    smooth = knn_average_matrix(inputs.adata.obsm["spatial"], int(ctx.params["k"]), include_self=False) @ X
    return np.where(X == 0, smooth, X)


@spatial_knn_smoothing.solves("denoising")
def denoise(inputs, ctx):
    X = np.asarray(inputs.adata.X, dtype=np.float64)
    return knn_average_matrix(inputs.adata.obsm["spatial"], int(ctx.params["k"])) @ X
