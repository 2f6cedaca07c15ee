"""Denoising: recover the expression a noisy measurement hides.

Splits
  ``mcv``       molecular cross-validation (Batson, Royer & Webber 2019; the
                protocol of Open Problems' denoising task): every count x is
                split binomially into a visible part x' ~ Binomial(x, 0.5) and a
                held-out part x'' = x - x'. The method sees x', log-normalised
                (HVGs chosen on x'); its output is scored against x'' after
                normalising x'' to the same scale (``log1p(1e4 * x'' / L'')``,
                L'' the spot's held-out library size over all genes). Given the
                true expression, x' and x'' are independent, so no method can
                gain by reproducing the noise of its input: returning x' itself
                (the identity) pays the noise of both halves, a good denoiser only
                that of x''. Needs counts: MERFISH's volume-normalised values are
                rounded first (its data README's advice for count models).
  ``gaussian``  N(0, sigma=1) noise on the non-zero entries of the
                log-normalised matrix, clipped at 0 (SUICA's protocol: the matrix
                stays zero-inflated). HVGs are chosen on ``expm1`` of the
                corrupted matrix (what the method sees).
  ``thinning``  binomial thinning of the counts to 50 % depth; the method sees
                the log-normalised thinned counts. Needs integer counts.

What ``gaussian`` and ``thinning`` are scored against: on the synthetic tissue,
the simulator's true expression (``layers["rates"]``: expected counts before any
sampling, log-normalised the same way), which a denoiser can approach. On real
data, the clean matrix, itself a Poisson sample of the tissue. For
``gaussian`` that sample's noise is all in the input and no method can remove
it, so returning the input unchanged is hard to beat (the validity rule, run
on the synthetic tissue scored this way, fails: identity 0.36 vs k-NN smoothing
0.84 Poisson deviance; MERFISH 0.96 vs 2.38; DLPFC 151673 cosine 0.944 vs 0.775):
real-data ``gaussian`` cells are kept for comparison with SUICA's paper and
shown, but not ranked (``unranked_reason``). ``thinning``'s input holds only half
of the clean sample's molecules, and under the Poisson deviance the rule holds
on the synthetic tissue scored this way (identity 2.17, k-NN smoothing 1.57):
it stays ranked (``tests/test_validity.py`` keeps both verdicts true).

Output: the full (spots x genes) non-negative matrix on the log-normalised
scale of the input.

Scoring (version 2): primary ``poisson_deviance``, the Poisson deviance of
the target counts (mcv: x''; synthetic gaussian / thinning: the true expected
counts; real gaussian / thinning: the clean counts) under the output rescaled
to their depth: Open Problems' Poisson loss minus its minimum, 0 for a perfect
prediction. Beside it MSE on the log scale (Open Problems' other denoising
metric), MAE, RMSE per gene, per-spot and per-gene correlations, imputation
ARI (ceiling as an annotation). Why not MSE first: on the synthetic tissue,
whose counts carry per-spot overdispersion that both halves of an mcv split
share, log-MSE ranks the identity (1.99) above k-NN smoothing (2.32) and PCA
(2.16), while the deviance ranks them identity 4.50 > k-NN 3.31 > PCA 2.94; on
DLPFC and MERFISH the two agree. Version 1 ranked cosine per spot against the
clean sample, which the identity won on every dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.datasets.preprocessing import log_normalize, select_hvg
from stbench.tasks.base import (EVERY_SLICE, Built, Task, expression_map, imputation_ari_annotation,
                                imputation_ari_score, label_array, make_view, split_rng, square_grid)
from stbench.tasks.metrics.expression import EXPRESSION_METRICS, expression_scores, poisson_deviance

SIGMA = 1.0
THINNING_DEPTH = 0.5
MCV_VISIBLE = 0.5  # the share of each count the method sees; the rest is the held-out target

NOISY_TARGET = ("scored against the clean matrix, itself a Poisson sample whose noise is also in the input: "
                "returning the input unchanged is not beaten (the validity rule on the synthetic tissue scored this "
                "way: identity Poisson deviance 0.36 vs k-NN smoothing 0.84; MERFISH 0.96 vs 2.38); ranked only on "
                "the synthetic tissue, scored against its true rates")


@dataclass
class DenoisingInput:
    adata: ad.AnnData  # spots x genes, corrupted (log-normalised)
    split: str


def count_matrix(adata, spec, split: str) -> sp.csr_matrix:
    """The matrix a split corrupts: as stored, or rounded to counts for mcv where it holds no integers."""
    counts = sp.csr_matrix(adata.X, dtype=np.float32)
    if split == "mcv" and not spec.integer_counts:
        counts = counts.copy()
        counts.data = np.rint(counts.data)
        counts.eliminate_zeros()
    return counts


def binomial_part(counts: sp.csr_matrix, p: float, rng) -> sp.csr_matrix:
    """Binomial(x, p) of every count, as CSR on the same structure (zeros dropped)."""
    part = counts.copy()
    part.data = rng.binomial(np.rint(part.data).astype(np.int64), p).astype(np.float32)
    part.eliminate_zeros()
    return part


class Denoising(Task):
    name = "denoising"
    input_view = DenoisingInput  # what a method receives (rebuilt from the exchange file in the cell)
    version = "2"  # 2: the mcv split; MSE primary; gaussian/thinning vs true rates on the synthetic tissue
    splits = ("mcv", "gaussian", "thinning")
    metrics = ("poisson_deviance",) + EXPRESSION_METRICS + ("imputation_ari",)
    summary = "Recover the expression hidden by sampling noise or added noise."
    split_summaries = {
        "mcv": "molecular cross-validation: half of each count seen, scored against the other half",
        "gaussian": "N(0, 1) noise on the non-zero log-normalised entries (SUICA's protocol)",
        "thinning": "counts thinned to 50 % depth",
    }
    input_summary = ("inputs.adata: AnnData spots x genes, the corrupted matrix log-normalised (obsm['spatial'], "
                     "obsm['grid'] where known); inputs.split: str")
    output_contract = ("a non-negative finite matrix of shape (n_spots, n_genes) of inputs.adata: the "
                       "denoised matrix on the input's log-normalised scale, rows and columns in the input order")
    DATASETS = {
        "synthetic": EVERY_SLICE,
        "dlpfc": EVERY_SLICE,
        "dlpfc_7k": EVERY_SLICE,
        "merfish_hypothalamus": ["bregma_0.26"],
    }
    TRIVIAL_BASELINE = "identity"
    SPATIAL_BASELINES = ("spatial_knn_smoothing",)

    def applies(self, spec, split):
        return split != "thinning" or spec.integer_counts

    def unranked_reason(self, dataset, split):
        if split == "gaussian" and "rates" not in dataset.adata.layers:
            return NOISY_TARGET
        return ""

    def make_split(self, dataset, instance, split, seed):
        """gaussian: the noise on each non-zero entry (CSR order); thinning / mcv: the visible counts."""
        self.check_split(split)
        counts = count_matrix(dataset.slice(instance), dataset.spec, split)
        rng = split_rng(dataset.sha256, self.name, split, instance, seed)
        if split == "gaussian":
            return {"noise": rng.normal(0.0, SIGMA, size=counts.nnz).astype(np.float32)}
        seen = binomial_part(counts, THINNING_DEPTH if split == "thinning" else MCV_VISIBLE, rng)
        return {"indptr": seen.indptr.astype(np.int64), "indices": seen.indices.astype(np.int64), "data": seen.data}

    def build(self, dataset, instance, split, seed, arrays) -> Built:
        spec = dataset.spec
        adata = dataset.slice(instance)
        counts = count_matrix(adata, spec, split)
        scoring = {"labels": label_array(adata.obs, spec.label_key)}
        if split == "gaussian":
            noisy = log_normalize(counts)  # keeps the CSR structure of the counts: noise per non-zero
            noisy.data = np.maximum(noisy.data + arrays["noise"], 0)
            genes = select_hvg(noisy.expm1())
            shown = noisy[:, genes]
        else:
            seen = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=counts.shape)
            genes = select_hvg(seen)
            shown = log_normalize(seen)[:, genes]
        if split == "mcv":  # the held-out molecules
            target_counts = counts - seen
            target_counts.eliminate_zeros()
        elif "rates" in adata.layers:  # the synthetic tissue: its true expression (expected counts)
            target_counts = sp.csr_matrix(np.asarray(adata.layers["rates"], dtype=np.float32))
        else:  # real data: the clean matrix, a noisy sample (these cells are not ranked)
            target_counts = counts
        target = log_normalize(target_counts)[:, genes].toarray()
        scoring.update(target_counts=target_counts[:, genes].toarray(),
                       target_depth=np.asarray(target_counts.sum(axis=1), dtype=np.float64).ravel())
        view = make_view(adata.obs_names, adata.obsm["spatial"], square_grid(adata.obs, spec), instance,
                         X=shown.toarray().astype(np.float32), var=pd.DataFrame(index=adata.var_names[genes]))
        return Built(inputs=DenoisingInput(view, split), solution=target, scoring=scoring)

    def random_output(self, inputs, seed: int):
        """The negative control's output: each gene's values permuted across spots."""
        return np.random.default_rng(seed).permuted(np.asarray(inputs.adata.X, dtype=np.float64), axis=0)

    def check_output(self, problem, output):
        return self.check_matrix(output, problem.solution.shape)

    def score(self, problem, output) -> dict[str, float]:
        s = problem.scoring
        scores = expression_scores(problem.solution, output)
        scores["poisson_deviance"] = poisson_deviance(s["target_counts"], output, s["target_depth"])
        scores["imputation_ari"] = imputation_ari_score(s["labels"], output, problem.solution,
                                                        np.ones(len(output), bool), s)
        return scores

    def annotate(self, problem, output):
        return imputation_ari_annotation(problem)

    def spatial_map(self, problem, output):
        view = problem.inputs.adata
        return expression_map(view.obsm["spatial"], problem.solution, output, view.var_names, "denoised")


task = Denoising()
