"""Centroid + principal axes: move the query's centroid onto the reference's and turn its
principal axes onto the reference's, choosing between the two rotations that do so by the
mean nearest-neighbour distance (geometry only, no expression)."""

from sklearn.neighbors import NearestNeighbors

from stbench.methods import Method
from stbench.methods._rigid import mean_nn_distance, principal_axes_candidates

centroid_pca = Method(name="centroid_pca", kind="baseline",
                      summary="Rigid alignment of centroids and principal axes of the spot clouds.")


@centroid_pca.solves("alignment")
def align(inputs, ctx):
    q, r = inputs.query.obsm["spatial"], inputs.reference.obsm["spatial"]
    nn = NearestNeighbors(n_neighbors=1).fit(r)
    best = min(principal_axes_candidates(q, r), key=lambda Rt: mean_nn_distance(q @ Rt[0].T + Rt[1], nn))
    return q @ best[0].T + best[1]
