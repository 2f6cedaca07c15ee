"""Spatial graphs and mini-batches for the graph methods (STAGATE, STAligner, Spotscape, GraphST, SpaceFlow).

PyG's ``knn_graph``, ``radius_graph`` and ``NeighborLoader`` need pyg-lib,
which cannot be installed here, so graphs are built with scikit-learn and
mini-batches are sampled here. Every graph is built within each slice (one
block per slice, no edge across slices) in the slice's own coordinates, so an
unknown placement of one slice relative to another never matters.

Mini-batches (``seed_subgraph``): a batch is a set of seed spots plus every
spot within ``hops`` edges of them, with the edges among those spots. With
GCN weights normalised once on the whole graph (``gcn_weights``), a ``hops``-
layer GCN gives the seeds exactly the embedding the whole graph gives them,
so the loss on the seeds is an unbiased piece of the full-batch loss.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.neighbors import NearestNeighbors

from stbench.methods._spatial import spot_spacing


def _symmetric_edges(rows: np.ndarray, cols: np.ndarray, n: int) -> torch.Tensor:
    adj = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)).tocsr()
    adj = ((adj + adj.T) > 0).tocoo()
    return torch.as_tensor(np.vstack([adj.row, adj.col]), dtype=torch.long)


def block_knn_edges(xy: np.ndarray, slice_codes: np.ndarray, k: int) -> torch.Tensor:
    """Edge index (2, E) of a k-NN graph built within each slice (both directions), none across slices."""
    rows, cols = [], []
    for s in np.unique(slice_codes):
        idx = np.flatnonzero(slice_codes == s)
        kk = min(k, len(idx) - 1)
        nn_idx = NearestNeighbors(n_neighbors=kk + 1).fit(xy[idx]).kneighbors(xy[idx], return_distance=False)[:, 1:]
        rows.append(np.repeat(idx, kk))
        cols.append(idx[nn_idx.ravel()])
    return _symmetric_edges(np.concatenate(rows), np.concatenate(cols), len(xy))


def block_radius_edges(xy: np.ndarray, slice_codes: np.ndarray, radius_spacings: float,
                       max_neighbors: int = 50) -> torch.Tensor:
    """Edge index (2, E) of a radius graph within each slice, none across slices (STAGATE's
    ``Cal_Spatial_Net``). The radius is in units of the slice's spot spacing, so 1.5 keeps the six
    touching Visium spots (150 px on DLPFC) on any coordinate unit; at most ``max_neighbors`` nearest
    neighbours per spot; no self-loops (the GCN adds them)."""
    rows, cols = [], []
    for s in np.unique(slice_codes):
        idx = np.flatnonzero(slice_codes == s)
        radius = radius_spacings * spot_spacing(xy[idx])
        kk = min(max_neighbors, len(idx) - 1)
        dist, nn_idx = NearestNeighbors(n_neighbors=kk + 1).fit(xy[idx]).kneighbors(xy[idx])
        dist, nn_idx = dist[:, 1:], nn_idx[:, 1:]
        keep = dist <= radius
        rows.append(np.repeat(idx, kk)[keep.ravel()])
        cols.append(idx[nn_idx[keep]])
    return _symmetric_edges(np.concatenate(rows), np.concatenate(cols), len(xy))


def gcn_weights(edge_index: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges with self-loops and their GCN weights 1/sqrt(d_i d_j), normalised on this whole graph."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm  # pure torch; lazy keeps `stbench list` fast

    return gcn_norm(edge_index, None, n, add_self_loops=True)


def torch_sparse(X, device) -> torch.Tensor:
    """A scipy/numpy matrix as a torch sparse CSR float32 tensor.

    Built straight from scipy's CSR arrays: no COO sort and coalesce (the costly part for per-batch rows).
    """
    csr = sp.csr_matrix(X, dtype=np.float32)
    csr.sum_duplicates()  # canonical form (sorted, unique columns per row), as torch expects
    with warnings.catch_warnings():  # torch's "CSR support is in beta" notice, once per process, says nothing to act on
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.as_tensor(csr.indptr, dtype=torch.long),
                                       torch.as_tensor(csr.indices, dtype=torch.long), torch.as_tensor(csr.data),
                                       csr.shape, check_invariants=False).to(device)


class _SparseTimesDense(torch.autograd.Function):
    """x @ w for a constant sparse CSR x; the backward uses x's stored transpose (x^T @ grad), which
    is much faster than torch's own backward through a sparse product on CPU."""

    @staticmethod
    def forward(ctx, x, xt, w):
        ctx.xt = xt
        return x @ w

    @staticmethod
    def backward(ctx, grad):
        return None, None, ctx.xt @ grad


def sparse_times_dense(x: torch.Tensor, xt: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w with gradient for w only; x (CSR) is data, xt its transpose (CSR)."""
    return _SparseTimesDense.apply(x, xt, w)


def adjacency(edge_index: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """Messages flow source -> target: row = target (PyG's convention), so A @ h aggregates into targets."""
    return torch.sparse_coo_tensor(edge_index.flip(0), weight, (n, n), check_invariants=False).coalesce()


def seed_subgraph(seeds: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor | None, n: int,
                  hops: int):
    """The batch around ``seeds``: (nodes with the seeds first, its edges relabelled, their weights).

    ``nodes[:len(seeds)]`` are the seeds, in order; a ``hops``-layer message-passing network on
    the returned subgraph gives them the embedding the whole graph gives them.
    """
    from torch_geometric.utils import k_hop_subgraph

    subset, _, _, edge_mask = k_hop_subgraph(seeds, hops, edge_index, relabel_nodes=False, num_nodes=n)
    is_seed = torch.zeros(n, dtype=torch.bool, device=seeds.device)
    is_seed[seeds] = True
    nodes = torch.cat([seeds, subset[~is_seed[subset]]])
    relabel = torch.full((n,), -1, dtype=torch.long, device=seeds.device)
    relabel[nodes] = torch.arange(len(nodes), device=seeds.device)
    sub_edges = relabel[edge_index[:, edge_mask]]
    return nodes, sub_edges, None if edge_weight is None else edge_weight[edge_mask]


def seed_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's seed batches: a random permutation of the n spots cut into ``batch_size`` pieces."""
    return list(torch.randperm(n, generator=generator).split(batch_size))
