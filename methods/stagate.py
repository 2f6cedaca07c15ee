"""STAGATE: a graph-attention autoencoder over the spatial graph; its latent space is the embedding (peer).

Data flow: the slice's spatial k-NN graph (scikit-learn) -> encoder
GATConv(genes -> 512) + ELU + Linear(512 -> 30) -> decoder Linear(30 -> 512) +
ELU + GATConv(512 -> genes); loss = MSE reconstruction of the log-normalised
expression; Adam with weight decay and gradient clipping. The 30-d latent
space is returned, and the task clusters it (k-means with the true k) as it
does every embedding. STAligner (``methods/staligner.py``) trains this same
backbone across slices with mutual-neighbour triplets.

Deviations (from STAGATE_pyG, as described in the seed-methods notes §4):

* **Decoder weights are not tied** to the encoder's, and the decoder's graph
  attention is its own (STAGATE ties the weights and reuses the first layer's
  attention in the last); PyG's ``GATConv`` is used as is.
* **Graph**: k-NN with k = 6 instead of a radius in the data's pixel units
  (150 on DLPFC gives about 6 neighbours on Visium).
* **Clustering** is the task's k-means with the true k, not mclust (R).
* **Input**: the task's log-normalised HVGs, not STAGATE's own 3,000 HVGs.
* **Profiles**: ``paper`` = 1,000 epochs, Adam lr 1e-3, weight decay 1e-4,
  gradient clipping 5 (the PyG version's defaults). ``fast`` (default, for
  CPU) = 300 epochs; not tuned on any test split.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from stbench.methods import Method, resolve_profile
from stbench.methods._graphs import block_knn_edges

PROFILES = {"paper": {"epochs": 1000}, "fast": {"epochs": 300}}

stagate = Method(
    name="stagate", kind="peer", version="1", uses_true_k=True,
    summary="STAGATE: graph-attention autoencoder on the spatial graph; the task clusters its 30-d latent space.",
    paper="Dong K, Zhang S. Deciphering spatial domains from spatially resolved transcriptomics with an adaptive "
          "graph attention auto-encoder. Nat Commun 13, 1739 (2022).",
    paper_url="https://doi.org/10.1038/s41467-022-29439-6",
    code_url="https://github.com/QIFEIDKN/STAGATE_pyG", gpu=True,
    params={"profile": "fast", "epochs": None, "k_graph": 6, "hidden": 512, "latent": 30, "lr": 1e-3,
            "weight_decay": 1e-4},
    deviations=__doc__.split("Deviations (from STAGATE_pyG, as described in the seed-methods notes §4):")[1].strip(),
)


class GraphAttentionAutoencoder(nn.Module):
    """STAGATE's backbone: GAT(genes -> hidden) + ELU + Linear(hidden -> latent), mirrored decoder."""

    def __init__(self, n_genes: int, hidden: int, latent: int):
        super().__init__()
        from torch_geometric.nn import GATConv  # lazy: keeps `stbench list` fast

        self.enc_gat, self.enc_out = GATConv(n_genes, hidden, heads=1, concat=False), nn.Linear(hidden, latent)
        self.dec_in, self.dec_gat = nn.Linear(latent, hidden), GATConv(hidden, n_genes, heads=1, concat=False)

    def encode(self, x, edges):
        return self.enc_out(F.elu(self.enc_gat(x, edges)))

    def forward(self, x, edges):
        z = self.encode(x, edges)
        return z, self.dec_gat(F.elu(self.dec_in(z)), edges)


def train_stagate(X, xy: np.ndarray, slice_codes: np.ndarray, params: dict, seed: int, device: str) -> np.ndarray:
    """Fit the autoencoder on reconstruction alone; return the (n_spots, latent) embedding."""
    p = {**params, **resolve_profile("stagate", PROFILES, params)}
    torch.manual_seed(seed)
    x = torch.as_tensor(X.toarray() if sp.issparse(X) else np.asarray(X), dtype=torch.float32, device=device)
    edges = block_knn_edges(xy, slice_codes, int(p["k_graph"])).to(device)
    model = GraphAttentionAutoencoder(x.shape[1], int(p["hidden"]), int(p["latent"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    model.train()
    for _ in range(int(p["epochs"])):
        _, recon = model(x, edges)
        loss = F.mse_loss(recon, x)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        return model.encode(x, edges).cpu().numpy()


@stagate.solves("domain_identification")
def identify_domains(inputs, ctx):
    a = inputs.adata
    codes = np.zeros(a.n_obs, int)
    return {"embedding": train_stagate(a.X, np.asarray(a.obsm["spatial"], float), codes, ctx.params, ctx.seed,
                                       ctx.device)}
