"""Identity: change nothing (the corrupted matrix as is; the query where it lies)."""

import numpy as np

from stbench.methods import Method

identity = Method(name="identity", kind="baseline",
                  summary="Returns the input unchanged: no denoising / no alignment.")


@identity.solves("denoising")
def no_denoising(inputs, ctx):
    return np.asarray(inputs.adata.X, dtype=np.float64)


@identity.solves("alignment")
def no_alignment(inputs, ctx):
    return np.asarray(inputs.query.obsm["spatial"], dtype=np.float64)
