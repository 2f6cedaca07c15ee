"""The built-in synthetic tissue: the embedded default and the scale benchmark.

Data flow (all deterministic in ``seed``):

1. A tissue lives in continuous *tissue coordinates* (micrometres): a
   notched rounded-square shape cut into 5 curved layers, with 2 round blobs on top
   (7 domains, ``obs["domain"]``).
2. Each slice samples that tissue on its own square spot grid (integer
   ``array_row``/``array_col``, 100 um pitch) placed by a rigid transform, so
   slices are related by *known* rigid transforms and alignment has an exact
   answer. ``obsm["spatial"]`` is in the slice's own frame;
   ``obsm["spatial_warped"]`` is the same spots in slice 0's frame (truth).
3. Expression: log-mean = gene baseline + domain marker effects + smooth
   spatial programs (random low-frequency Fourier fields) + a per-slice batch
   effect + log library size; counts are negative-binomial (gamma-Poisson) with
   gene-wise zero inflation. With ``rates=True`` the expected counts
   (1 - zero inflation) * negative-binomial mean, i.e. the true expression before
   any sampling, are kept in ``layers["rates"]``: denoising is scored against
   them on this tissue.

Counts are generated in chunks of spots with their own random streams, so a
million-spot slice fits in memory and the result does not depend on chunking.
"""

from __future__ import annotations

import hashlib
import math

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

PITCH_UM = 100.0
CHUNK = 100_000
_SHAPE_AREA = 3.45  # area of the notched rounded square (|x|^4 + |y|^4 <= 1 is about 3.708)


def _domains(u: np.ndarray, radius: float, layer_phase: float, blobs: np.ndarray) -> np.ndarray:
    """Domain index per point: layers 0-4 along a wavy axis, blobs 5-6 on top."""
    x, y = u[:, 0] / radius, u[:, 1] / radius
    t = y + 0.15 * np.sin(2.5 * x + layer_phase)
    layer = np.digitize(t, [-0.55, -0.2, 0.15, 0.5])
    for b, (bx, by, br) in enumerate(blobs):
        inside = (x - bx) ** 2 + (y - by) ** 2 <= br**2
        layer = np.where(inside, 5 + b, layer)
    return layer


def _in_tissue(u: np.ndarray, radius: float) -> np.ndarray:
    """A rounded square with a round notch in one corner: no rotational symmetry, so
    the tissue outline alone can in principle be aligned."""
    x, y = u[:, 0] / radius, u[:, 1] / radius
    notch = (x - 0.8) ** 2 + (y - 0.8) ** 2 <= 0.5**2
    return (np.abs(x) ** 4 + np.abs(y) ** 4 <= 1.0) & ~notch


def _fields(u: np.ndarray, freqs: np.ndarray, phases: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Smooth spatial programs: sums of random low-frequency cosines, one column per program."""
    # freqs: (P, F, 2) in cycles per um; phases, amps: (P, F)
    arg = np.einsum("nd,pfd->npf", u, freqs) * 2 * np.pi + phases[None]
    return (np.cos(arg) * amps[None]).sum(-1)


def simulate_tissue(
    n_spots: int = 1600,
    n_genes: int = 300,
    n_slices: int = 3,
    seed: int = 0,
    overlap: float = 1.0,
    n_programs: int = 6,
    batch_strength: float = 0.35,
    marker_effect: float = 1.4,
    depth: float = 1.0,
    rates: bool = False,
) -> ad.AnnData:
    """Simulate ``n_slices`` slices of about ``n_spots`` spots each.

    ``overlap`` < 1 cuts every slice after the first with a random half-plane
    so that it keeps about that fraction of the tissue (partial overlap).
    Returns raw counts (int32 CSR) with ``obs`` slice, domain, array_row,
    array_col; ``obsm`` spatial (slice frame) and spatial_warped (slice 0
    frame); ``uns["transforms"]``: per slice the rotation (degrees) and the
    translation that map its frame onto slice 0's frame. ``rates``: also
    ``layers["rates"]`` (float32, dense-sized: leave it off for the scale benchmark).
    """
    if n_spots < 50 or n_genes < 10 or n_slices < 1:
        raise ValueError("simulate_tissue needs n_spots >= 50, n_genes >= 10 and n_slices >= 1")
    if not 0.2 <= overlap <= 1.0:
        raise ValueError(f"overlap must lie in [0.2, 1], got {overlap}")
    rng = np.random.default_rng(seed)
    radius = PITCH_UM * math.sqrt(n_spots / _SHAPE_AREA)

    # --- the tissue (shared by every slice) -----------------------------------
    layer_phase = rng.uniform(0, 2 * np.pi)
    blobs = np.array([[rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.18, 0.26)]
                      for _ in range(2)])
    n_domains = 7
    freqs = rng.normal(0, 1.2 / (2 * radius), size=(n_programs, 8, 2))
    phases = rng.uniform(0, 2 * np.pi, size=(n_programs, 8))
    amps = rng.uniform(0.5, 1.0, size=(n_programs, 8)) / math.sqrt(4.0)
    base = rng.normal(math.log(3.0), 1.0, size=n_genes)
    effect = np.zeros((n_domains, n_genes))
    for d in range(n_domains):
        markers = rng.choice(n_genes, size=max(2, n_genes // 10), replace=False)
        effect[d, markers] = rng.normal(marker_effect, 0.3, size=markers.size)
    loadings = rng.normal(0, 0.45, size=(n_programs, n_genes)) * (rng.random((n_programs, n_genes)) < 0.3)
    dispersion = rng.uniform(2.0, 6.0, size=n_genes)
    dropout = rng.uniform(0.05, 0.3, size=n_genes)
    batch = rng.normal(0, batch_strength, size=(n_slices, n_genes))
    batch[0] = 0.0

    # --- one slice at a time --------------------------------------------------
    blocks, rate_blocks, obs_frames, spatial, warped, transforms = [], [], [], [], [], {}
    half = int(math.ceil(1.2 * radius / PITCH_UM)) + 1
    centre = np.array([half * PITCH_UM, half * PITCH_UM])
    for s in range(n_slices):
        angle = 0.0 if s == 0 else rng.uniform(-np.pi, np.pi)
        shift = np.zeros(2) if s == 0 else rng.normal(0, 0.05 * radius, size=2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        # Grid positions of this slice, in its own frame.
        rows, cols = np.meshgrid(np.arange(2 * half + 1), np.arange(2 * half + 1), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        q = np.column_stack([cols, rows]).astype(float) * PITCH_UM
        u = (q - centre) @ rot.T + shift  # tissue coordinates
        keep = _in_tissue(u, radius)
        if s > 0 and overlap < 1.0:
            direction = rng.normal(size=2)
            proj = u @ (direction / np.linalg.norm(direction))
            keep &= proj <= np.quantile(proj[keep], overlap)
        q, u, rows, cols = q[keep], u[keep], rows[keep], cols[keep]
        # Slice 0's frame: q0 = u + centre (slice 0 has no rotation nor shift).
        transforms[f"slice{s}"] = {
            "rotation_deg": float(np.degrees(angle)),
            "translation": (centre + shift - rot @ centre).tolist(),
        }
        domain = _domains(u, radius, layer_phase, blobs)
        n = len(u)
        parts, rate_parts = [], []
        for c0 in range(0, n, CHUNK):
            crng = np.random.default_rng([seed, s, c0 // CHUNK])
            uu, dd = u[c0:c0 + CHUNK], domain[c0:c0 + CHUNK]
            programs = _fields(uu, freqs, phases, amps)
            log_mu = base + effect[dd] + programs @ loadings + batch[s]
            log_mu += crng.normal(0, 0.2, size=(len(uu), 1)) + math.log(depth)  # library size
            mu = np.exp(log_mu)
            lam = crng.gamma(dispersion, mu / dispersion)
            counts = crng.poisson(lam)
            counts[crng.random(counts.shape) < dropout] = 0
            parts.append(sp.csr_matrix(counts.astype(np.int32)))
            if rates:  # computed from what was drawn already: the random streams are unchanged
                rate_parts.append((mu * (1.0 - dropout)).astype(np.float32))
        blocks.append(sp.vstack(parts, format="csr"))
        if rates:
            rate_blocks.append(np.vstack(rate_parts))
        names = [f"slice{s}_{r}_{c}" for r, c in zip(rows, cols)]
        obs_frames.append(pd.DataFrame({
            "slice": f"slice{s}",
            "domain": np.array(["L1", "L2", "L3", "L4", "L5", "Blob1", "Blob2"])[domain],
            "array_row": rows.astype(np.int64),
            "array_col": cols.astype(np.int64),
        }, index=names))
        spatial.append(q)
        warped.append(u + centre)

    obs = pd.concat(obs_frames)
    obs["slice"] = pd.Categorical(obs["slice"], categories=[f"slice{s}" for s in range(n_slices)])
    obs["domain"] = pd.Categorical(obs["domain"])
    var = pd.DataFrame(index=[f"gene{g:04d}" for g in range(n_genes)])
    adata = ad.AnnData(X=sp.vstack(blocks, format="csr"), obs=obs, var=var)
    adata.obsm["spatial"] = np.vstack(spatial)
    adata.obsm["spatial_warped"] = np.vstack(warped)
    if rates:
        adata.layers["rates"] = np.vstack(rate_blocks)
    adata.uns["transforms"] = transforms
    adata.uns["source"] = {"simulator": "stbench.datasets.synthetic.simulate_tissue",
                           "params": dict(n_spots=n_spots, n_genes=n_genes, n_slices=n_slices,
                                          seed=seed, overlap=overlap)}
    return adata


def content_sha256(adata: ad.AnnData) -> str:
    """A sha256 of what defines a generated dataset: counts, coordinates, labels, names."""
    h = hashlib.sha256()
    X = sp.csr_matrix(adata.X)
    for arr in (X.indptr, X.indices, X.data, np.ascontiguousarray(adata.obsm["spatial"])):
        h.update(np.ascontiguousarray(arr).tobytes())
    for col in ("slice", "domain"):
        if col in adata.obs:
            h.update("\x1f".join(map(str, adata.obs[col])).encode())
    h.update("\x1f".join(adata.obs_names).encode())
    h.update("\x1f".join(adata.var_names).encode())
    return h.hexdigest()
