"""PCA reconstruction: project the corrupted matrix on its top principal components and back."""

import numpy as np
from sklearn.decomposition import PCA

from stbench.methods import Method

pca_reconstruction = Method(name="pca_reconstruction", kind="baseline", params={"n_components": 30},
                            summary="Rank-30 PCA reconstruction of the corrupted matrix, clipped at 0.")


@pca_reconstruction.solves("denoising")
def denoise(inputs, ctx):
    X = np.asarray(inputs.adata.X, dtype=np.float64)
    n = max(1, min(int(ctx.params["n_components"]), min(X.shape) - 1))
    model = PCA(n_components=n, random_state=ctx.seed).fit(X)
    return np.clip(model.inverse_transform(model.transform(X)), 0, None)
