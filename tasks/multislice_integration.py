"""Multi-slice integration: a joint embedding of several slices of one donor.

The method sees all slices of the group in one AnnData (``obs["slice"]``
names the slice; log-normalised HVG expression in ``X``, chosen on the pooled
counts; raw counts in ``layers["counts"]``; ``obsm["spatial"]`` in each
slice's own frame) and ``n_domains``.

Output: an embedding (n_spots x d, input order), either as an array or as
``{"embedding": array, "labels": optional labels}``. The task clusters every
embedding the same way (k-means, k = true domains, 10 restarts, fixed seed):
ARI of that joint clustering is primary, with NMI, CA, ARI per slice, batch
ASW and label ASW. The same embedding is also clustered by a tied-covariance
Gaussian mixture (mclust's EEE): ``ari_gmm`` / ``nmi_gmm`` / ``ca_gmm``, as in
domain identification. Labels a method returns are scored as
``ari_method_labels`` (NaN when it returns none).
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from stbench.datasets.preprocessing import log_normalize, select_hvg
from stbench.tasks.base import ALL_SLICES, Built, Problem, Task, known, label_array, make_view, n_label_classes
from stbench.tasks.domain_identification import check_embedding, labels_in_order
from stbench.tasks.metrics.integration import ari_method_labels, integration_scores


@dataclass
class IntegrationInput:
    adata: ad.AnnData
    n_domains: int


class MultisliceIntegration(Task):
    name = "multislice_integration"
    input_view = IntegrationInput  # what a method receives (rebuilt from the exchange file in the cell)
    version = "2"  # 2: the _gmm metrics
    splits = ("all_slices",)
    metrics = ("ari", "nmi", "ca", "ari_gmm", "nmi_gmm", "ca_gmm", "ari_per_slice", "batch_asw", "label_asw",
               "ari_method_labels")
    provides_true_k = True
    instance_unit = "group"
    summary = "Embed several slices of one donor jointly so that domains match across slices."
    split_summaries = {"all_slices": "every slice of one donor, with the number of annotated domains"}
    # no spatial baseline integrates: the simple baseline that does the task's point is batch correction
    TRIVIAL_BASELINE = "unintegrated_pca"
    SPATIAL_BASELINES = ("harmony",)
    input_summary = ("inputs.adata: AnnData of every slice of one donor (X log-normalised, layers['counts'], "
                     "obsm['spatial'] in each slice's own frame, obs['slice'] categorical); inputs.n_domains: int "
                     '(declare uses_true_k=True to use it)')
    output_contract = ("an embedding of shape (n_spots, d) with d >= 1, finite, rows in inputs.adata order; "
                       "or a dict {'embedding': that array, 'labels': optional labels as for domain_identification}")
    # instance = the slices of the group joined by '+'
    DATASETS = {
        "synthetic": ALL_SLICES,
        "dlpfc": ALL_SLICES,
        "starmap_mpfc": ALL_SLICES,
    }

    def applies(self, spec, split):
        return spec.label_key is not None

    def make_split(self, dataset, instance, split, seed):
        """All slices of the group: the split is the spot names and k."""
        self.check_split(split)
        adata = dataset.slices(instance.split("+"))
        k = n_label_classes(label_array(adata.obs, dataset.spec.label_key))
        return {"obs_names": adata.obs_names.to_numpy(dtype=object), "k": np.array([k])}

    def build(self, dataset, instance, split, seed, arrays) -> Built:
        spec = dataset.spec
        adata = dataset.slices(instance.split("+"))
        counts = sp.csr_matrix(adata.X)
        genes = select_hvg(counts)
        labels = label_array(adata.obs, spec.label_key)
        k = n_label_classes(labels)
        view = make_view(adata.obs_names, adata.obsm["spatial"], None, adata.obs["slice"].astype(str).to_numpy(),
                         X=log_normalize(counts)[:, genes].toarray().astype(np.float32),
                         var=pd.DataFrame(index=adata.var_names[genes]), counts=counts[:, genes])
        view.obs["slice"] = view.obs["slice"].astype("category")
        return Built(
            inputs=IntegrationInput(view, k),
            solution=labels,
            scoring={"batches": adata.obs["slice"].astype(str).to_numpy()},
        )

    def random_output(self, inputs, seed: int):
        """The negative control's output: a standard-normal 16-dimensional embedding."""
        return np.random.default_rng(seed).normal(size=(inputs.adata.n_obs, 16))

    def check_output(self, problem, output):
        labels = None
        if isinstance(output, dict):
            if "embedding" not in output:
                self.fail(f"the output dict has keys {sorted(output)} but no 'embedding'")
            labels, output = output.get("labels"), output["embedding"]
        emb = check_embedding(self, output, problem.inputs.adata.n_obs)
        if labels is not None:
            labels = labels_in_order(self, labels, problem.inputs.adata.obs_names)
        return {"embedding": emb, "labels": labels}

    def reference_output(self, problem: Problem):
        """A one-hot embedding of the true labels (an unlabelled spot is all zeros)."""
        labels = np.array(["" if v is None else str(v) for v in problem.solution])
        names = sorted(set(labels) - {""})
        return (labels[:, None] == np.array(names)[None, :]).astype(float)

    def score(self, problem, output) -> dict[str, float]:
        ok = known(problem.solution)
        t = problem.solution[ok].astype(str)
        scores = integration_scores(output["embedding"][ok], t, problem.scoring["batches"][ok],
                                    problem.inputs.n_domains)
        scores["ari_method_labels"] = ari_method_labels(t, output["labels"][ok]) if output["labels"] is not None else float("nan")
        return scores


task = MultisliceIntegration()
