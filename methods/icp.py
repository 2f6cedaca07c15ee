"""ICP (rigid): trimmed iterative closest point on the spot coordinates, started from both
principal-axes rotations and from evenly spaced angles; the fit with the smallest mean
nearest-neighbour distance wins. Geometry only: symmetric tissue shapes stay ambiguous."""

import numpy as np

from stbench.methods import Method
from stbench.methods._rigid import icp as run_icp
from stbench.methods._rigid import principal_axes_candidates

icp = Method(name="icp", kind="baseline", params={"iterations": 50, "trim": 0.9, "n_angles": 8},
             summary="Trimmed rigid ICP from several starting rotations.")


@icp.solves("alignment")
def align(inputs, ctx):
    q, r = inputs.query.obsm["spatial"], inputs.reference.obsm["spatial"]
    starts = principal_axes_candidates(q, r)
    qc, rc = q.mean(axis=0), r.mean(axis=0)
    for a in np.linspace(0, 2 * np.pi, int(ctx.params["n_angles"]), endpoint=False):
        R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        starts.append((R, rc - R @ qc))
    fits = [run_icp(q, r, R, t, int(ctx.params["iterations"]), float(ctx.params["trim"])) for R, t in starts]
    R, t, _ = min(fits, key=lambda f: f[2])
    return q @ R.T + t
