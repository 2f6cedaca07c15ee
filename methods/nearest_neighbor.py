"""Nearest neighbour: each held-out spot copies the closest observed spot (SUICA's griddata baseline)."""

import numpy as np
from sklearn.neighbors import KNeighborsRegressor

from stbench.methods import Method

nearest_neighbor = Method(name="nearest_neighbor", kind="baseline",
                          summary="Each held-out spot copies the expression of the nearest observed spot.")


@nearest_neighbor.solves("spatial_imputation")
def impute(inputs, ctx):
    obs = inputs.observed
    model = KNeighborsRegressor(n_neighbors=1).fit(obs.obsm["spatial"], np.asarray(obs.X))
    return model.predict(inputs.query.obsm["spatial"])
