"""Spotscape: a Siamese GCN trained so that two augmented views agree on every spot-spot similarity (seed method).

Data flow, per training step:

1. Two views of the spatial graph and the expression: each drops 20 % of the
   edges (PyG ``dropout_edge``) and 20 % of the gene *columns* (for every spot).
2. One GCN encoder embeds both: GCN(genes -> 256) + BatchNorm + ReLU ->
   GCN(256 -> 64) + BatchNorm + ReLU (a non-negative 64-d embedding); a decoder
   Linear(64 -> 256) + BatchNorm + ReLU + Linear(256 -> genes).
3. Losses (weights 0.1 / 1 / 1 / 0.01, as the official code):
   * reconstruction: MSE of each view's decoding against the *clean* input;
   * **Similarity Telescope**: S = norm(z1) norm(z2)^T over the spots of the
     batch, L_SC = MSE(S, S^T): spot i must see spot j in view 2 as spot j sees
     spot i in view 2 -- the relations, not the coordinates, are matched
     (computed from d x d products, ``telescope_loss``);
   * with several slices, **similarity scale matching**: for each ordered pair
     of slices (a, b), the mean of each a-spot's top-5 similarities within a
     and within b must agree (MSE), so no slice forms its own island;
   * with several slices and after the warm-up, **prototypical contrastive
     learning**: k-means prototypes of view 2 at K, ceil(1.5K) and ceil(2K)
     clusters, and a cross-entropy pulling view 1 to view 2's prototype
     (cosine / tau, tau = 0.75), averaged over the granularities.

The embedding is the encoder's output on the clean input with the whole graph.
Domain identification and integration return it and the task clusters it
(k-means with the true k). Alignment trains on the two slices together and
matches their embeddings (``methods/_embedding_alignment.py``: mutual nearest
neighbours -> RANSAC -> trimmed ICP); LTARI then uses the nearest neighbour in
aligned coordinates.

Scale: the expression enters the first layer as a sparse matrix (a dense one
when most entries are non-zero, ``DENSE_ABOVE``), and a gene column drop is
applied to the first layer's weight rows instead of to the data (the same
product, (x * m) W = x (m W), without copying x). The reconstruction loss is
computed from the sparse x and (hidden x hidden) products, never forming the
spots x genes prediction (``reconstruction_mse``); the telescope loss never
forms S (``telescope_loss``). So one slice trains full batch with memory
linear in its spots, up to ``ONE_SLICE_FULL_BATCH_MAX``. Several slices need
S's slice-pair blocks for scale matching, so they train full batch only up to
``full_batch_max`` spots. Above the limit, each epoch cuts a random
permutation of the spots into batches of ``batch_size`` seed spots; a batch is
the seeds plus every spot within two edges of them (``methods/_graphs.py``),
with GCN weights normalised once on the whole graph, so the seeds get exactly
their full-graph embeddings and S is batch x batch.

Deviations (from yunhak0/Spotscape, as described in the seed-methods notes §2):

* **Input**: the task's log-normalised HVGs (the same input every method gets),
  not Spotscape's own 5,000 seurat_v3 HVGs.
* **Graph**: a radius graph of 1.5 spot spacings (at most 50 neighbours) built
  per slice, in place of STAGATE's radius 150 in DLPFC pixels (the same six
  Visium neighbours, on any platform and unit).
* **Clustering**: the task's scikit-learn k-means (true k, 10 restarts), not
  faiss k-means (niter 20, nredo 10); PCL's prototypes use scikit-learn k-means
  (20 iterations, one start per epoch).
* **Scale matching** implements the intended "within a vs within b" for any
  number of slices; the official masks equal it only for two slices.
* **Number of prototypes**: K = the task's number of domains where it gives one
  (integration: k of the union, as the official); alignment gives no k, so
  ``n_prototypes`` = 10 there.
* **Final embedding**: BatchNorm statistics are re-estimated on the clean input
  before the embedding is read (eval mode); the official code's choice is not
  recorded in the notes.
* **Profiles**: ``paper`` = 1,000 epochs, PCL from epoch 500, Adam weight decay
  1e-4, learning rate by setting (one slice 1e-4, several slices 5e-4,
  alignment 1e-3: the official DLPFC and mouse-embryo configs). ``fast``
  (default, for 2 CPU cores) = 300 epochs, PCL from epoch 150, same learning
  rates; not tuned on any test split.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from stbench.methods import Method, deviations_section, resolve_profile
from stbench.methods._embedding_alignment import align_pair_by_embedding
from stbench.methods._graphs import (adjacency, block_radius_edges, gcn_weights, seed_batches, seed_subgraph,
                                     sparse_times_dense, torch_sparse)

PROFILES = {"paper": {"epochs": 1000, "warmup_epochs": 500},
            "fast": {"epochs": 300, "warmup_epochs": 150}}
LEARNING_RATES = {"one_slice": 1e-4, "several_slices": 5e-4, "alignment": 1e-3}
LOSS_WEIGHTS = {"reconstruction": 0.1, "telescope": 1.0, "scale_matching": 1.0, "prototypes": 0.01}

spotscape = Method(
    name="spotscape", kind="seed", version="1", uses_true_k=True,
    summary="Spotscape: Siamese GCN with the Similarity Telescope loss (plus prototype contrast and similarity "
            "scale matching across slices); the task clusters its embedding.",
    paper="Kim Y, et al. Global and Local Structure Learning for Spatial Transcriptomics (Spotscape), ICML (2025)",
    paper_url="https://arxiv.org/abs/2506.15698",
    code_url="https://github.com/yunhak0/Spotscape", gpu=True,
    smoke={"epochs": 2, "warmup_epochs": 1},  # a seconds-long run for the conformance test
    params={"profile": "fast", "epochs": None, "warmup_epochs": None, "lr": None, "hidden": 256, "latent": 64,
            "drop_edge": 0.2, "drop_feature": 0.2, "tau": 0.75, "sim_k": 5, "weight_decay": 1e-4,
            "radius_spacings": 1.5, "max_neighbors": 50, "n_prototypes": 10, "full_batch_max": 16000,
            "batch_size": 4096, "mnn_k": 50},
    deviations=deviations_section(__doc__),
)


class SpotscapeNet(nn.Module):
    def __init__(self, n_genes: int, hidden: int, latent: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(n_genes, hidden))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.lin2 = nn.Linear(hidden, latent)
        nn.init.xavier_uniform_(self.w1)  # GCNConv's glorot initialisation
        nn.init.xavier_uniform_(self.lin2.weight)
        nn.init.zeros_(self.lin2.bias)
        self.bn1, self.bn2 = nn.BatchNorm1d(hidden, momentum=0.99), nn.BatchNorm1d(latent, momentum=0.99)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.BatchNorm1d(hidden, momentum=0.99), nn.ReLU(),
                                     nn.Linear(hidden, n_genes))

    def encode(self, x: "ExpressionBatch", adj: torch.Tensor, gene_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: the spots' expression; adj: sparse normalised (n, n); gene_keep: 0/1 per gene (a column drop)."""
        w1 = self.w1 if gene_keep is None else self.w1 * gene_keep[:, None]
        h = F.relu(self.bn1(torch.sparse.mm(adj, x.times(w1)) + self.b1))
        # GCN layer 2: propagate the linear map (bias after propagation, as PyG's GCNConv)
        h = torch.sparse.mm(adj, h @ self.lin2.weight.T) + self.lin2.bias
        return F.relu(self.bn2(h))


# One slice's full-batch step forms nothing quadratic, so its memory grows with the spots alone:
# 2.5 GB and 5.9 s per epoch at 100,000 spots on one thread, against 50 s per epoch in 2-hop
# mini-batches (``python scripts/bench_spotscape.py``). Mini-batches only above this.
ONE_SLICE_FULL_BATCH_MAX = 200_000

# Above this fraction of non-zero entries the first layer multiplies a dense copy of x: a CSR
# product costs in proportion to the non-zeros, a dense one does not, and on one core they break
# even near 20 % (``python scripts/bench_spotscape.py --crossover``). DLPFC's HVGs are 9 % non-zero
# (CSR); MERFISH panels and the synthetic tissue are mostly non-zero (dense).
DENSE_ABOVE = 0.2


class ExpressionBatch:
    """A batch's expression x (and x^T) for the first layer, with its column sums and squared norm.

    Stored as sparse CSR tensors when x is sparse, as one dense tensor otherwise (``DENSE_ABOVE``);
    the products are the same up to rounding either way.
    """

    def __init__(self, X: sp.spmatrix, device):
        X = sp.csr_matrix(X, dtype=np.float32)
        self.dense = X.nnz > DENSE_ABOVE * X.shape[0] * X.shape[1]
        if self.dense:
            self.x = torch.as_tensor(X.toarray(), device=device)
            self.xt = self.x.T
        else:
            self.x = torch_sparse(X, device)
            self.xt = torch_sparse(X.T, device)
        self.colsum = torch.as_tensor(np.asarray(X.sum(axis=0)).ravel(), dtype=torch.float32, device=device)
        self.sq = float(X.multiply(X).sum())

    def times(self, w: torch.Tensor) -> torch.Tensor:
        """x @ w"""
        return self.x @ w if self.dense else sparse_times_dense(self.x, self.xt, w)

    def t_times(self, h: torch.Tensor) -> torch.Tensor:
        """x^T @ h"""
        return self.xt @ h if self.dense else sparse_times_dense(self.xt, self.x, h)


def reconstruction_mse(batch: ExpressionBatch, hidden: torch.Tensor, out: nn.Linear) -> torch.Tensor:
    """MSE(x, out(hidden)) over all n x genes entries, without forming the n x genes prediction.

    With P = H W + b (W = out.weight^T): sum (x - P)^2 = |x|^2 - 2 <x, P> + |P|^2, where
    <x, P> = <x^T H, W> + <colsum(x), b> uses the sparse x, and |P|^2 = <H^T H, W W^T> +
    2 (1^T H) W b + n |b|^2 uses only (hidden x hidden) products. Exact up to rounding, and the
    gradients are those of the dense loss; it removes the largest product of the step.
    """
    W, b = out.weight.T, out.bias
    n, g = hidden.shape[0], W.shape[1]
    cross = (batch.t_times(hidden) * W.T).sum() + (batch.colsum * b).sum()
    pred_sq = ((hidden.T @ hidden) * (W @ W.T)).sum() + 2 * (hidden.sum(0) @ W) @ b + n * (b @ b)
    return (batch.sq - 2 * cross + pred_sq) / (n * g)


def prototype_sizes(k: int) -> list[int]:
    """K, then ceil(1.5K), then ceil(2K), each at least one more than the last (K = 7 -> 7, 11, 14)."""
    sizes = [max(1, math.floor(k))]
    for f in (1.5, 2.0):
        sizes.append(max(sizes[-1] + 1, math.ceil(f * k)))
    return sizes


def telescope_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """MSE(S, S^T) for S = A B^T, A = norm(z1), B = norm(z2), without forming the n x n S:
    |S - S^T|^2 = 2 |S|^2 - 2 tr(S S) = 2 <A^T A, B^T B> - 2 tr((B^T A)^2), all d x d products."""
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    ba = b.T @ a
    return 2 * (((a.T @ a) * (b.T @ b)).sum() - (ba * ba.T).sum()) / len(a) ** 2


def similarity(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """S = norm(z1) norm(z2)^T (n x n); training never forms it (see the two losses), the checks do."""
    return F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T


def scale_matching_loss(z1: torch.Tensor, z2: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
    """Sum over ordered slice pairs (a, b) of MSE(mean top-k similarity within a, within b), per a-spot.

    The similarities are S = norm(z1) norm(z2)^T (negative ones count as 0), taken one slice-pair
    block at a time, never the whole n x n S; the top k are taken before the clamp at 0, which gives
    the same values (the clamp is monotone) and keeps no block alive for the backward pass.
    """
    a_all, b_all = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    present = torch.unique(codes)

    def mean_top_k(rows: torch.Tensor, b) -> torch.Tensor:
        cols = b_all[codes == b]
        return torch.topk(rows @ cols.T, min(k, len(cols)), dim=1).values.clamp_min(0).mean(1)

    loss = z1.new_zeros(())
    for a in present:
        rows = a_all[codes == a]
        within = mean_top_k(rows, a)
        for b in present:
            if b != a:
                loss = loss + F.mse_loss(within, mean_top_k(rows, b))
    return loss


def prototype_loss(z1: torch.Tensor, z2: torch.Tensor, sizes: list[int], tau: float, seed: int) -> torch.Tensor:
    """Cross-entropy of view 1 against view 2's k-means prototypes (cosine / tau), mean over granularities."""
    target_z = F.normalize(z2.detach(), dim=1).cpu().numpy()
    z1n = F.normalize(z1, dim=1)
    losses = []
    for k in sizes:
        if k >= len(target_z):
            continue
        km = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=seed).fit(target_z)
        protos = F.normalize(torch.as_tensor(km.cluster_centers_, dtype=z1.dtype, device=z1.device), dim=1)
        assign = torch.as_tensor(km.labels_, dtype=torch.long, device=z1.device)
        losses.append(F.cross_entropy(z1n @ protos.T / tau, assign))
    return torch.stack(losses).mean() if losses else z1.new_zeros(())


class Trainer:
    """Holds the graph, the data and the model; ``step_loss`` is one batch's loss (full batch: all spots)."""

    def __init__(self, X, xy, slice_codes, params: dict, n_prototypes: int, lr: float, seed: int, device: str):
        self.p, self.device, self.seed = params, device, seed
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.X = sp.csr_matrix(X, dtype=np.float32)
        self.n = self.X.shape[0]
        self.codes = torch.as_tensor(np.array(slice_codes), dtype=torch.long, device=device)  # copy: read-only codes
        self.several = len(np.unique(slice_codes)) > 1
        self.edges = block_radius_edges(np.asarray(xy, float), np.asarray(slice_codes),
                                        float(params["radius_spacings"]), int(params["max_neighbors"])).to(device)
        self.sizes = prototype_sizes(n_prototypes)
        self.model = SpotscapeNet(self.X.shape[1], int(params["hidden"]), int(params["latent"])).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=float(params["weight_decay"]))
        self.full_batch = self.n <= (int(params["full_batch_max"]) if self.several else ONE_SLICE_FULL_BATCH_MAX)
        self.batch_all = ExpressionBatch(self.X, device) if self.full_batch else None

    def _rows(self, nodes: torch.Tensor) -> ExpressionBatch:
        return ExpressionBatch(self.X[nodes.cpu().numpy()], self.device)

    def view(self, seeds: torch.Tensor | None):
        """One augmented view's embedding of the seeds (all spots when seeds is None)."""
        from torch_geometric.utils import dropout_edge

        edges, _ = dropout_edge(self.edges, p=float(self.p["drop_edge"]), training=True)
        edges, weight = gcn_weights(edges, self.n)
        keep = (torch.rand(self.X.shape[1], generator=self.gen) >= float(self.p["drop_feature"])).float()
        keep = keep.to(self.device)
        if seeds is None:
            return self.model.encode(self.batch_all, adjacency(edges, weight, self.n), keep)
        nodes, sub_edges, sub_w = seed_subgraph(seeds, edges, weight, self.n, hops=2)
        z = self.model.encode(self._rows(nodes), adjacency(sub_edges, sub_w, len(nodes)), keep)
        return z[:len(seeds)]

    def step_loss(self, seeds: torch.Tensor | None, with_prototypes: bool, epoch: int) -> dict:
        z1, z2 = self.view(seeds), self.view(seeds)
        idx = slice(None) if seeds is None else seeds
        batch = self.batch_all if seeds is None else self._rows(seeds)
        hidden, out = self.model.decoder[:-1], self.model.decoder[-1]
        terms = {"reconstruction": 0.5 * (reconstruction_mse(batch, hidden(z1), out) +
                                          reconstruction_mse(batch, hidden(z2), out)),
                 "telescope": telescope_loss(z1, z2)}
        codes = self.codes[idx]
        if self.several:
            terms["scale_matching"] = scale_matching_loss(z1, z2, codes, int(self.p["sim_k"]))
            if with_prototypes:
                terms["prototypes"] = prototype_loss(z1, z2, self.sizes, float(self.p["tau"]), self.seed + epoch)
        terms["total"] = sum(LOSS_WEIGHTS[k] * v for k, v in terms.items())
        return terms

    def fit(self, epochs: int, warmup: int) -> None:
        self.model.train()
        for epoch in range(epochs):
            batches = [None] if self.full_batch else [b.to(self.device) for b in
                                                      seed_batches(self.n, int(self.p["batch_size"]), self.gen)]
            for seeds in batches:
                loss = self.step_loss(seeds, self.several and epoch >= warmup, epoch)["total"]
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()

    @torch.no_grad()
    def embed(self) -> np.ndarray:
        """The clean input through the whole graph; BatchNorm statistics re-estimated on it first."""
        edges, weight = gcn_weights(self.edges, self.n)
        batches = [None] if self.full_batch else [b.to(self.device) for b in
                                                  torch.arange(self.n).split(int(self.p["batch_size"]))]

        def run(seeds):
            if seeds is None:
                return self.model.encode(self.batch_all, adjacency(edges, weight, self.n))
            nodes, sub_edges, sub_w = seed_subgraph(seeds, edges, weight, self.n, hops=2)
            return self.model.encode(self._rows(nodes), adjacency(sub_edges, sub_w, len(nodes)))[:len(seeds)]

        for bn in (self.model.bn1, self.model.bn2):
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the re-estimation pass
        self.model.train()
        for seeds in batches:
            run(seeds)
        self.model.eval()
        return torch.cat([run(seeds) for seeds in batches]).cpu().numpy()


def train_spotscape(X, xy, slice_codes, params: dict, n_prototypes: int, setting: str, seed: int,
                    device: str) -> np.ndarray:
    p = {**params, **resolve_profile("spotscape", PROFILES, params)}
    lr = float(p["lr"]) if p.get("lr") is not None else LEARNING_RATES[setting]
    trainer = Trainer(X, xy, slice_codes, p, n_prototypes, lr, seed, device)
    trainer.fit(int(p["epochs"]), int(p["warmup_epochs"]))
    return trainer.embed()


@spotscape.solves("domain_identification")
def identify_domains(inputs, ctx):
    a = inputs.adata
    z = train_spotscape(a.X, a.obsm["spatial"], np.zeros(a.n_obs, int), ctx.params, inputs.n_domains, "one_slice",
                        ctx.seed, ctx.device)
    return {"embedding": z}


@spotscape.solves("multislice_integration")
def integrate(inputs, ctx):
    a = inputs.adata
    codes = a.obs["slice"].astype("category").cat.codes.to_numpy()
    return train_spotscape(a.X, a.obsm["spatial"], codes, ctx.params, inputs.n_domains, "several_slices",
                           ctx.seed, ctx.device)


@spotscape.solves("alignment")
def align(inputs, ctx):
    def embed(X, xy, codes):
        return train_spotscape(X, xy, codes, ctx.params, int(ctx.params["n_prototypes"]), "alignment", ctx.seed,
                               ctx.device)

    return align_pair_by_embedding(inputs, embed, ctx.seed, int(ctx.params["mnn_k"]))
