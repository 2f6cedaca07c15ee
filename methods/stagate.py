"""STAGATE: a graph-attention autoencoder over the spatial graph; its latent space is the embedding (peer).

Data flow, as STAGATE builds it (hidden sizes [512, 30]):

1. The spatial graph: every spot within 1.5 spot spacings of another (the
   six touching Visium spots; STAGATE's ``Cal_Spatial_Net`` radius), plus a
   self-loop on every spot (STAGATE adds the identity to the graph).
2. Encoder: H = X W1; attention on the graph edges j -> i,
   alpha_ij = softmax_j(sigmoid(a_src . H_j + a_dst . H_i)) (STAGATE's sigmoid
   where GAT has a leaky ReLU); h1 = ELU(sum_j alpha_ij H_j); z = h1 W2
   (the 30-d embedding; no bias anywhere).
3. Decoder, tied to the encoder: h3 = ELU(sum_j alpha_ij (z W2^T)_j) with the
   encoder's own attention alpha; reconstruction = h3 W1^T.
4. Loss: MSE of the reconstruction against the log-normalised input; Adam with
   weight decay and gradient clipping 5.

The embedding z is returned and the task clusters it (k-means with the true
k) as it does every embedding.

Deviations (from STAGATE_pyG, as described in the seed-methods notes §4):

* **Tying**: the decoder uses the encoder's weights themselves (W^T), so the
  reconstruction's gradient reaches them through both paths, as in the
  original TensorFlow STAGATE. STAGATE_pyG copies the transposes into separate
  decoder parameters before each step, which carries no gradient through the
  decoder's weights.
* **Graph**: a radius of 1.5 spot spacings (at most 50 neighbours) in place
  of a radius in the data's pixel units (150 on DLPFC): the same six Visium
  neighbours, on any platform and unit.
* **Clustering** is the task's k-means with the true k, not mclust (R).
* **Input**: the task's log-normalised HVGs, not STAGATE's own 3,000 HVGs.
* **Profiles**: ``paper`` = 1,000 epochs, Adam lr 1e-3, weight decay 1e-4,
  gradient clipping 5 (the PyG version's defaults). ``fast`` (default, for
  CPU) = 300 epochs; not tuned on any test split.

Version 2 replaced version 1's untied model (PyG ``GATConv`` encoder and
decoder, leaky-ReLU attention, a 6-NN graph without self-loops), whose
embedding clustered worse than PCA's under the same Gaussian mixture
(``scripts/diagnose_domain_clustering.py``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from stbench.methods import Method, deviations_section, resolve_profile
from stbench.methods._graphs import block_radius_edges

PROFILES = {"paper": {"epochs": 1000}, "fast": {"epochs": 300}}

stagate = Method(
    name="stagate", kind="peer", version="2", uses_true_k=True,
    summary="STAGATE: graph-attention autoencoder on the spatial graph; the task clusters its 30-d latent space.",
    paper="Dong K, Zhang S. Deciphering spatial domains from spatially resolved transcriptomics with an adaptive "
          "graph attention auto-encoder. Nat Commun 13, 1739 (2022).",
    paper_url="https://doi.org/10.1038/s41467-022-29439-6",
    code_url="https://github.com/QIFEIDKN/STAGATE_pyG", gpu=True,
    smoke={"epochs": 2},  # a seconds-long run for the conformance test
    params={"profile": "fast", "epochs": None, "radius_spacings": 1.5, "max_neighbors": 50, "hidden": 512,
            "latent": 30, "lr": 1e-3, "weight_decay": 1e-4},
    deviations=deviations_section(__doc__, until="\n\nVersion 2"),
)


class TiedGraphAttentionAutoencoder(nn.Module):
    """STAGATE's backbone: one attention layer and one linear layer each way, decoder tied to the encoder."""

    def __init__(self, n_genes: int, hidden: int, latent: int):
        super().__init__()
        self.w1 = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_genes, hidden)))
        self.w2 = nn.Parameter(nn.init.xavier_uniform_(torch.empty(hidden, latent)))
        # the attention vectors, initialised as PyG's GATConv initialises its own (glorot)
        self.att_src = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, hidden)))
        self.att_dst = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, hidden)))

    @staticmethod
    def propagate(h: torch.Tensor, edges: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """sum over edges j -> i of alpha_ij h_j, into i."""
        src, dst = edges
        return torch.zeros_like(h).index_add_(0, dst, h[src] * alpha[:, None])

    def attention(self, h: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """alpha_ij = softmax over i's incoming edges of sigmoid(a_src . h_j + a_dst . h_i)."""
        from torch_geometric.utils import softmax  # pure torch scatter; lazy keeps `stbench list` fast

        src, dst = edges
        score = torch.sigmoid((h @ self.att_src.T).squeeze(1)[src] + (h @ self.att_dst.T).squeeze(1)[dst])
        return softmax(score, dst, num_nodes=len(h))

    def encode(self, x: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, alpha): the latent embedding and the first layer's attention, which the decoder reuses."""
        h = x @ self.w1
        alpha = self.attention(h, edges)
        return F.elu(self.propagate(h, edges, alpha)) @ self.w2, alpha

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, alpha = self.encode(x, edges)
        h3 = F.elu(self.propagate(z @ self.w2.T, edges, alpha))
        return z, h3 @ self.w1.T


def stagate_graph(xy: np.ndarray, slice_codes: np.ndarray, params: dict) -> torch.Tensor:
    """The radius graph within each slice, both directions, plus every spot's self-loop."""
    edges = block_radius_edges(xy, slice_codes, float(params["radius_spacings"]), int(params["max_neighbors"]))
    loops = torch.arange(len(xy)).repeat(2, 1)
    return torch.cat([edges, loops], dim=1)


def train_stagate(X, xy: np.ndarray, slice_codes: np.ndarray, params: dict, seed: int, device: str) -> np.ndarray:
    """Fit the autoencoder on reconstruction alone; return the (n_spots, latent) embedding."""
    p = {**params, **resolve_profile("stagate", PROFILES, params)}
    torch.manual_seed(seed)
    x = torch.as_tensor(X.toarray() if sp.issparse(X) else np.asarray(X), dtype=torch.float32, device=device)
    edges = stagate_graph(xy, slice_codes, p).to(device)
    model = TiedGraphAttentionAutoencoder(x.shape[1], int(p["hidden"]), int(p["latent"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    model.train()
    for _ in range(int(p["epochs"])):
        _, recon = model(x, edges)
        loss = F.mse_loss(recon, x)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
    with torch.no_grad():
        return model.encode(x, edges)[0].cpu().numpy()


@stagate.solves("domain_identification")
def identify_domains(inputs, ctx):
    a = inputs.adata
    codes = np.zeros(a.n_obs, int)
    return {"embedding": train_stagate(a.X, np.asarray(a.obsm["spatial"], float), codes, ctx.params, ctx.seed,
                                       ctx.device)}
