"""GraphST: a GCN autoencoder with a DGI-style contrast against a feature-shuffled graph (peer).

Data flow: a 3-NN spatial graph per slice (scikit-learn, symmetrised, GCN
normalisation with self-loops) -> encoder z = A (x W1) (64-d) -> decoder
h = A (z W2) (genes). The contrast: the same encoder on a corrupted input
(the rows of x shuffled across spots, the graph kept), each spot's local
summary g = sigmoid(normalise(mean of ReLU(z) over its neighbourhood)), and a
bilinear discriminator that must tell (ReLU(z_i), g_i) from (ReLU(z~_i), g_i),
in both directions. Loss = alpha * MSE(x, h) + beta * (the two binary
cross-entropies). Like GraphST's own ``clustering``, the embedding handed to
the task is the first 20 principal components of the reconstruction h; the
task clusters it (k-means with the true k). Several slices: the slices'
graphs side by side (one block each), GraphST's concatenation.

Deviations (from GraphST 1.1.1, as described in the seed-methods notes §4):

* **Clustering**: the task's k-means with the true k, not mclust (R).
* **Input**: the task's log-normalised HVGs (GraphST scales its own 3,000 HVGs).
* **alpha, beta, lr**: GraphST's defaults (10, 1, 1e-3), not Spotscape's DLPFC
  config for GraphST (1, 0.1, 5e-4).
* **Profiles**: ``paper`` = 600 epochs (GraphST's default). ``fast`` (default,
  for CPU) = 300 epochs; not tuned on any test split.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from torch import nn

from stbench.methods import Method, deviations_section, resolve_profile
from stbench.methods._graphs import adjacency, block_knn_edges, gcn_weights

PROFILES = {"paper": {"epochs": 600}, "fast": {"epochs": 300}}

graphst = Method(
    name="graphst", kind="peer", version="1", uses_true_k=True,
    summary="GraphST: GCN autoencoder + DGI-style contrast against a shuffled graph; the task clusters 20 PCs "
            "of its reconstruction.",
    paper="Long Y, et al. Spatially informed clustering, integration, and deconvolution of spatial transcriptomics "
          "with GraphST. Nat Commun 14, 1155 (2023).",
    paper_url="https://doi.org/10.1038/s41467-023-36796-3",
    code_url="https://github.com/JinmiaoChenLab/GraphST", gpu=True,
    smoke={"epochs": 2},  # a seconds-long run for the conformance test
    params={"profile": "fast", "epochs": None, "k_graph": 3, "latent": 64, "lr": 1e-3, "alpha": 10.0, "beta": 1.0,
            "n_pcs": 20},
    deviations=deviations_section(__doc__),
)


class GraphSTNet(nn.Module):
    def __init__(self, n_genes: int, latent: int):
        super().__init__()
        self.w1, self.w2 = nn.Parameter(torch.empty(n_genes, latent)), nn.Parameter(torch.empty(latent, n_genes))
        nn.init.xavier_uniform_(self.w1)
        nn.init.xavier_uniform_(self.w2)
        self.disc = nn.Bilinear(latent, latent, 1)

    def forward(self, x, x_shuffled, adj, neighbourhood):
        z = torch.sparse.mm(adj, x @ self.w1)
        h = torch.sparse.mm(adj, z @ self.w2)
        emb, emb_c = F.relu(z), F.relu(torch.sparse.mm(adj, x_shuffled @ self.w1))
        g, g_c = self.summary(emb, neighbourhood), self.summary(emb_c, neighbourhood)
        real = torch.cat([self.disc(emb, g), self.disc(emb_c, g)])
        corrupt = torch.cat([self.disc(emb_c, g_c), self.disc(emb, g_c)])
        return h, real, corrupt

    @staticmethod
    def summary(emb, neighbourhood):
        """Each spot's local summary: the mean of its neighbourhood's embeddings, L2-normalised, sigmoid."""
        return torch.sigmoid(F.normalize(torch.sparse.mm(neighbourhood, emb), dim=1))


def train_graphst(X, xy: np.ndarray, slice_codes: np.ndarray, params: dict, seed: int, device: str) -> np.ndarray:
    """Fit GraphST; return the first ``n_pcs`` principal components of its reconstruction."""
    p = {**params, **resolve_profile("graphst", PROFILES, params)}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(X.toarray() if sp.issparse(X) else np.asarray(X), dtype=torch.float32, device=device)
    n = x.shape[0]
    edges = block_knn_edges(xy, slice_codes, int(p["k_graph"])).to(device)
    adj = adjacency(*gcn_weights(edges, n), n)
    # unnormalised neighbourhood with self, rows divided by their size: the mean over the neighbourhood
    loops = torch.arange(n, device=device)
    nb_edges = torch.cat([edges, torch.stack([loops, loops])], dim=1)
    deg = torch.bincount(nb_edges[1], minlength=n).float()
    neighbourhood = adjacency(nb_edges, 1.0 / deg[nb_edges[1]], n)
    model = GraphSTNet(x.shape[1], int(p["latent"])).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))
    labels = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)]).to(device)
    model.train()
    for _ in range(int(p["epochs"])):
        x_shuffled = x[torch.randperm(n, generator=gen).to(device)]
        h, real, corrupt = model(x, x_shuffled, adj, neighbourhood)
        contrast = F.binary_cross_entropy_with_logits(real, labels) + F.binary_cross_entropy_with_logits(corrupt, labels)
        loss = float(p["alpha"]) * F.mse_loss(h, x) + float(p["beta"]) * contrast
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        h = model(x, x, adj, neighbourhood)[0].cpu().numpy()
    return PCA(n_components=min(int(p["n_pcs"]), *h.shape), random_state=seed).fit_transform(h)


@graphst.solves("domain_identification")
def identify_domains(inputs, ctx):
    a = inputs.adata
    return {"embedding": train_graphst(a.X, np.asarray(a.obsm["spatial"], float), np.zeros(a.n_obs, int),
                                       ctx.params, ctx.seed, ctx.device)}


@graphst.solves("multislice_integration")
def integrate(inputs, ctx):
    a = inputs.adata
    codes = a.obs["slice"].astype("category").cat.codes.to_numpy()
    return train_graphst(a.X, np.asarray(a.obsm["spatial"], float), codes, ctx.params, ctx.seed, ctx.device)
