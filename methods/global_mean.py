"""Global mean: every held-out spot gets the mean profile of the observed spots."""

import numpy as np

from stbench.methods import Method

global_mean = Method(name="global_mean", kind="baseline",
                     summary="Mean expression of the observed spots, for every held-out spot.")


@global_mean.solves("spatial_imputation")
def impute(inputs, ctx):
    mean = np.asarray(inputs.observed.X, dtype=np.float64).mean(axis=0)
    return np.tile(mean, (inputs.query.n_obs, 1))
