"""SpaceFlow: Deep Graph Infomax on the spatial graph, with a spatial-consistency regulariser (peer).

Data flow: a spatial k-NN graph (scikit-learn) -> encoder GCNConv(genes -> 50)
+ PReLU, trained with PyG's ``DeepGraphInfomax`` (positive: the real graph;
negative: the same graph with the spots' expression rows shuffled; summary:
sigmoid of the mean embedding; bilinear discriminator). The regulariser
samples random spot pairs and adds strength * mean((1 - d_z) * d_xy), with
both distances divided by their maximum over the sample: spots far apart in
the tissue are pushed apart in the embedding. Training stops when the loss
has not improved for ``patience`` epochs (after ``min_epochs``). The 50-d
embedding is handed to the task, which clusters it (k-means, true k).

Deviations (from SpaceFlow 1.0.4, as described in the seed-methods notes §4):

* **Graph**: k-NN with k = 6 (symmetrised) instead of SpaceFlow's alpha-complex
  graph, which needs a package outside our stack.
* **Clustering**: the task's k-means with the true k, not Leiden at a given
  resolution.
* **Input**: the task's log-normalised HVGs (SpaceFlow selects 3,000 HVGs).
* **Pairs**: 100,000 random pairs per epoch (SpaceFlow's default draws up to 10^6).
* **Profiles**: ``paper`` = at most 1,000 epochs, patience 50, at least 100
  (SpaceFlow's defaults, lr 1e-3, strength 0.1). ``fast`` (default, for CPU) =
  at most 300 epochs, same patience; not tuned on any test split.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from stbench.methods import Method, deviations_section, resolve_profile
from stbench.methods._graphs import block_knn_edges

PROFILES = {"paper": {"epochs": 1000}, "fast": {"epochs": 300}}

spaceflow = Method(
    name="spaceflow", kind="peer", version="1", uses_true_k=True,
    summary="SpaceFlow: Deep Graph Infomax on the spatial graph with a spatial-consistency regulariser; the task "
            "clusters its 50-d embedding.",
    paper="Ren H, et al. Identifying multicellular spatiotemporal organization of cells with SpaceFlow. "
          "Nat Commun 13, 4076 (2022).",
    paper_url="https://doi.org/10.1038/s41467-022-31739-w",
    code_url="https://github.com/hongleir/SpaceFlow", gpu=True,
    smoke={"epochs": 2, "min_epochs": 1, "pairs": 1000},  # a seconds-long run for the conformance test
    params={"profile": "fast", "epochs": None, "k_graph": 6, "latent": 50, "lr": 1e-3, "strength": 0.1,
            "pairs": 100_000, "patience": 50, "min_epochs": 100},
    deviations=deviations_section(__doc__),
)


class GCNEncoder(nn.Module):
    def __init__(self, n_genes: int, latent: int):
        super().__init__()
        from torch_geometric.nn import GCNConv  # lazy: keeps `stbench list` fast

        self.conv, self.act = GCNConv(n_genes, latent), nn.PReLU(latent)

    def forward(self, x, edges):
        return self.act(self.conv(x, edges))


def spatial_regularisation(z: torch.Tensor, xy: torch.Tensor, n_pairs: int, gen: torch.Generator) -> torch.Tensor:
    """mean((1 - d_z) * d_xy) over random spot pairs, each distance divided by its sample maximum."""
    i = torch.randint(0, len(z), (n_pairs,), generator=gen).to(z.device)
    j = torch.randint(0, len(z), (n_pairs,), generator=gen).to(z.device)
    d_z, d_xy = (z[i] - z[j]).norm(dim=1), (xy[i] - xy[j]).norm(dim=1)
    return ((1 - d_z / d_z.max().clamp_min(1e-12)) * (d_xy / d_xy.max().clamp_min(1e-12))).mean()


def train_spaceflow(X, xy: np.ndarray, params: dict, seed: int, device: str) -> np.ndarray:
    from torch_geometric.nn import DeepGraphInfomax

    p = {**params, **resolve_profile("spaceflow", PROFILES, params)}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(X.toarray() if sp.issparse(X) else np.asarray(X), dtype=torch.float32, device=device)
    edges = block_knn_edges(xy, np.zeros(len(xy), int), int(p["k_graph"])).to(device)
    coords = torch.as_tensor(xy, dtype=torch.float32, device=device)
    latent = int(p["latent"])
    model = DeepGraphInfomax(
        hidden_channels=latent, encoder=GCNEncoder(x.shape[1], latent),
        summary=lambda z, *args, **kwargs: torch.sigmoid(z.mean(dim=0)),
        corruption=lambda x, edges: (x[torch.randperm(x.size(0), generator=gen).to(x.device)], edges),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(p["lr"]))
    best, since_best = np.inf, 0
    model.train()
    for epoch in range(int(p["epochs"])):
        pos, neg, summary = model(x, edges)
        loss = model.loss(pos, neg, summary) + float(p["strength"]) * spatial_regularisation(
            pos, coords, int(p["pairs"]), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < best:
            best, since_best = loss.item(), 0
        else:
            since_best += 1
        if epoch + 1 >= int(p["min_epochs"]) and since_best >= int(p["patience"]):
            break
    model.eval()
    with torch.no_grad():
        return model.encoder(x, edges).cpu().numpy()


@spaceflow.solves("domain_identification")
def identify_domains(inputs, ctx):
    a = inputs.adata
    return {"embedding": train_spaceflow(a.X, np.asarray(a.obsm["spatial"], float), ctx.params, ctx.seed,
                                         ctx.device)}
