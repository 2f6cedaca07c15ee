"""Harmony (Korsunsky et al. 2019) on 30 PCs with the slice as batch, via harmonypy.

harmonypy is called directly: scanpy's ``harmony_integrate`` wrapper
mis-reads harmonypy >= 2 output (cells x PCs), see ``notes/stack.md``.
"""

import numpy as np
import pandas as pd

from stbench.methods import Method
from stbench.methods._spatial import pca

harmony = Method(
    name="harmony", kind="baseline", params={"n_pcs": 30, "max_iter": 10},
    paper="Korsunsky I et al. Fast, sensitive and accurate integration of single-cell data with Harmony. "
    "Nat Methods 16, 1289-1296 (2019).",
    paper_url="https://doi.org/10.1038/s41592-019-0619-0",
    code_url="https://github.com/slowkow/harmonypy",
    summary="Harmony batch correction (slice as batch) of 30 PCs.",
)


@harmony.solves("multislice_integration")
def embed(inputs, ctx):
    import harmonypy

    pcs = pca(inputs.adata.X, int(ctx.params["n_pcs"]), ctx.seed)
    meta = pd.DataFrame({"slice": inputs.adata.obs["slice"].astype(str).to_numpy()})
    ho = harmonypy.run_harmony(pcs, meta, "slice", max_iter_harmony=int(ctx.params["max_iter"]),
                               random_state=ctx.seed, verbose=False)
    Z = np.asarray(ho.Z_corr)
    return Z if Z.shape[0] == len(pcs) else Z.T  # harmonypy < 2 returned PCs x cells
