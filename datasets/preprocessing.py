"""Preprocessing that is part of the task, not the method (SPEC §2.4).

Defaults: library-size normalisation to 1e4, ``log1p``, top-3,000 highly
variable genes (scanpy's ``seurat_v3`` on counts). Whatever is *fitted* on data
(the HVG ranking) is fitted on the part of the data the method is allowed to
see; the tasks pass exactly that part.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

TARGET_SUM = 1e4
N_TOP_GENES = 3000


def log_normalize(counts) -> sp.csr_matrix:
    """``log1p(normalize_total(counts, 1e4))`` with scanpy, as float32 CSR.

    Per-spot normalisation uses only that spot's own counts, so it can be applied
    to held-out spots without leaking anything between spots.
    """
    tmp = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32))
    sc.pp.normalize_total(tmp, target_sum=TARGET_SUM)
    sc.pp.log1p(tmp)
    return sp.csr_matrix(tmp.X, dtype=np.float32)


def select_hvg(visible_counts, n_top: int = N_TOP_GENES) -> np.ndarray:
    """Indices (sorted) of the top ``n_top`` highly variable genes of ``visible_counts``.

    ``visible_counts`` must be only what the method may see. With ``n_top`` at
    least the number of genes every gene is kept (small targeted panels).
    """
    n_genes = visible_counts.shape[1]
    if n_top >= n_genes:
        return np.arange(n_genes)
    tmp = ad.AnnData(X=sp.csr_matrix(visible_counts, dtype=np.float32))
    with warnings.catch_warnings():
        # seurat_v3 warns on non-integer input (MERFISH volume-normalised values); it is fine.
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(tmp, flavor="seurat_v3", n_top_genes=n_top)
    return np.flatnonzero(tmp.var["highly_variable"].to_numpy())
