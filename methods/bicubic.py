"""Bicubic interpolation of the observed stride-2 lattice (Sparser2Sparse's baseline).

Only for ``lattice2x``: the observed spots sit on the even rows and columns of
the square array grid, i.e. a regular lattice of half the resolution. Lattice
nodes outside the tissue are filled with their nearest observed node so that
the cubic spline does not dive to 0 at the tissue edge; predictions are
clipped at 0 (cubic splines overshoot).
"""

import numpy as np
from scipy.interpolate import NearestNDInterpolator, RegularGridInterpolator

from stbench.errors import MethodNotApplicable
from stbench.methods import Method

bicubic = Method(name="bicubic", kind="baseline",
                 summary="Cubic spline interpolation of the observed stride-2 lattice, read at held-out spots.",
                 splits={"spatial_imputation": ("lattice2x",)})  # it interpolates a lattice: no lattice, no run


@bicubic.solves("spatial_imputation")
def impute(inputs, ctx):
    obs, query = inputs.observed, inputs.query
    if inputs.split != "lattice2x" or "grid" not in obs.obsm:
        raise MethodNotApplicable("bicubic needs the lattice2x split on an array grid")
    lattice = obs.obsm["grid"] // 2
    lo = lattice.min(axis=0)
    lattice = lattice - lo
    shape = lattice.max(axis=0) + 1
    if (shape < 4).any():
        raise MethodNotApplicable(f"bicubic needs a lattice of at least 4 x 4 nodes, got {tuple(shape)}")
    X = np.asarray(obs.X, dtype=np.float64)
    rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    nodes = np.column_stack([rr.ravel(), cc.ravel()])
    values = NearestNDInterpolator(lattice, X)(nodes).reshape(shape[0], shape[1], -1)
    spline = RegularGridInterpolator((np.arange(shape[0]), np.arange(shape[1])), values, method="cubic")
    at = query.obsm["grid"] / 2.0 - lo
    at = np.clip(at, 0, shape - 1)
    return np.clip(spline(at), 0, None)
