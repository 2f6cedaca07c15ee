"""k-NN inverse-distance interpolation in space (scikit-learn's distance-weighted regressor)."""

import numpy as np
from sklearn.neighbors import KNeighborsRegressor

from stbench.methods import Method

knn_interpolation = Method(
    name="knn_interpolation", kind="baseline", params={"k": 6},
    summary="Each held-out spot = inverse-distance weighted mean of its k nearest observed spots.",
)


@knn_interpolation.solves("spatial_imputation")
def impute(inputs, ctx):
    obs = inputs.observed
    k = min(int(ctx.params["k"]), obs.n_obs)
    model = KNeighborsRegressor(n_neighbors=k, weights="distance").fit(obs.obsm["spatial"], np.asarray(obs.X))
    return model.predict(inputs.query.obsm["spatial"])
