"""Denoising: recover the clean expression matrix from a corrupted one.

Splits
  ``gaussian``  N(0, sigma=1) noise on the non-zero entries of the
                log-normalised matrix, clipped at 0: the matrix stays
                zero-inflated, as SUICA's authors require. HVGs are chosen on
                ``expm1`` of the corrupted matrix (what the method sees).
  ``thinning``  binomial thinning of the counts to 50 % depth; the method sees
                the log-normalised thinned counts (HVGs chosen on them) and is
                scored against the full-depth log-normalised matrix (the
                molecular cross-validation idea). Needs integer counts.

Output: the full (spots x genes) non-negative matrix. Primary metric: cosine
per spot against the clean matrix; the other expression metrics and
imputation ARI beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.datasets.preprocessing import log_normalize, select_hvg
from stbench.tasks.base import (Problem, Task, expression_map, hash_arrays, imputation_ari_scores, label_array, make_view,
                                split_rng, square_grid)
from stbench.tasks.metrics.expression import expression_scores

SIGMA = 1.0
THINNING_DEPTH = 0.5


@dataclass
class DenoisingInput:
    adata: ad.AnnData  # spots x genes, corrupted (log-normalised)
    split: str


class Denoising(Task):
    name = "denoising"
    version = "1"
    splits = ("gaussian", "thinning")
    primary_metric = "cosine"
    summary = "Recover the clean log-normalised matrix from a noisy or thinned one."
    output_contract = ("a non-negative finite matrix of shape (n_spots, n_genes) of inputs.adata: the "
                       "denoised matrix, rows and columns in the input order")
    DATASETS = {
        "synthetic": ["slice0", "slice1", "slice2"],
        "dlpfc": ["151673", "151674", "151675", "151676"],
        "dlpfc_7k": ["151673", "151675", "151676"],
        "merfish_hypothalamus": ["bregma_0.26"],
    }

    def applies(self, spec, split):
        return split != "thinning" or spec.integer_counts

    def make_split(self, dataset, instance, split, seed):
        """gaussian: the noise on each non-zero entry (CSR order); thinning: the thinned counts."""
        self.check_split(split)
        counts = sp.csr_matrix(dataset.slice(instance).X)
        rng = split_rng(dataset.sha256, self.name, split, instance, seed)
        if split == "gaussian":
            return {"noise": rng.normal(0.0, SIGMA, size=counts.nnz).astype(np.float32)}
        thin = counts.copy()
        thin.data = rng.binomial(np.rint(thin.data).astype(np.int64), THINNING_DEPTH).astype(np.float32)
        thin.eliminate_zeros()
        return {"indptr": thin.indptr.astype(np.int64), "indices": thin.indices.astype(np.int64), "data": thin.data}

    def make_problem(self, dataset, instance, split, seed) -> Problem:
        spec = dataset.spec
        adata = dataset.slice(instance)
        counts = sp.csr_matrix(adata.X)
        arrays = self.make_split(dataset, instance, split, seed)
        clean = log_normalize(counts)
        if split == "gaussian":
            noisy = clean.copy()  # log_normalize keeps the CSR structure of the counts
            noisy.data = np.maximum(noisy.data + arrays["noise"], 0)
            genes = select_hvg(noisy.expm1())
            shown = noisy[:, genes]
        else:
            thin = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=counts.shape)
            genes = select_hvg(thin)
            shown = log_normalize(thin)[:, genes]
        view = make_view(adata.obs_names, adata.obsm["spatial"], square_grid(adata.obs, spec), instance,
                         X=shown.toarray().astype(np.float32), var=pd.DataFrame(index=adata.var_names[genes]))
        return Problem(
            task=self.name, split=split, dataset=spec.name, instance=instance, seed=seed,
            inputs=DenoisingInput(view, split), solution=clean[:, genes].toarray(),
            split_sha256=hash_arrays(*arrays.values()), dataset_sha256=dataset.sha256,
            scoring={"labels": label_array(adata.obs, spec.label_key)},
        )

    def check_output(self, problem, output):
        return self.check_matrix(output, problem.solution.shape)

    def score(self, problem, output) -> dict[str, float]:
        scores = expression_scores(problem.solution, output)
        scores.update(imputation_ari_scores(problem.scoring["labels"], output, problem.solution,
                                            np.ones(len(output), bool), problem.scoring))
        return scores

    def spatial_map(self, problem, output):
        view = problem.inputs.adata
        return expression_map(view.obsm["spatial"], problem.solution, output, view.var_names, "denoised")


task = Denoising()
