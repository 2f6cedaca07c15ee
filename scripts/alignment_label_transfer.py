"""Can an alignment that ignores space win LTARI? The measurement behind alignment task version 3.

A space-blind "aligner": embed both slices' task inputs (PCA 30 of the log-normalised HVGs,
cosine), send each query spot to its most similar reference spot, return that as the plan
and put the query spot on its partner's coordinates. No rotation, no translation, no
spatial reasoning. Printed beside it, per real pair (seed 0): the positive control's LTARI
(the true placement, or the authors' registration on HER2ST, or the query's own frame on
DLPFC).

Columns: ltari_plan = the papers' rule (argmax pi, task version 2's primary); ltari = version
3's primary (the rigid part of the coordinates, plan unused); ltari_nn = the coordinates as
they are (here: every query spot sits on its expression partner).

    STBENCH_DATA=../shared/data python scripts/alignment_label_transfer.py
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from stbench.datasets.loading import load_dataset
from stbench.tasks import get_task

PAIRS = {"merfish_hypothalamus": 1, "dlpfc": 2, "her2st": 3}  # how many of each dataset's pairs


def expression_partner_output(inputs) -> dict:
    """The space-blind answer: each query spot's cosine nearest reference spot in a joint PCA."""
    ref, query = inputs.reference, inputs.query
    z = PCA(30, random_state=0).fit_transform(np.vstack([ref.X, query.X]))
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    partner = NearestNeighbors(n_neighbors=1).fit(z[:ref.n_obs]).kneighbors(z[ref.n_obs:], return_distance=False)
    n = query.n_obs
    plan = sp.csr_matrix((np.full(n, 1 / n), (np.arange(n), partner[:, 0])), shape=(n, ref.n_obs))
    return {"aligned": np.asarray(ref.obsm["spatial"], float)[partner[:, 0]], "plan": plan}


def main() -> None:
    task = get_task("alignment")
    print("| pair | space-blind ltari_plan | space-blind ltari | space-blind ltari_nn | positive control ltari |")
    print("|---|---|---|---|---|")
    for name, n_pairs in PAIRS.items():
        dataset = load_dataset(name)
        for pair in task.DATASETS[name][:n_pairs]:
            problem = task.make_problem(dataset, pair, "rigid", 0)
            blind = task.score(problem, task.check_output(problem, expression_partner_output(problem.inputs)))
            truth = task.score(problem, task.check_output(problem, task.reference_output(problem)))
            print(f"| {name} {pair} | {blind['ltari_plan']:.3f} | {blind['ltari']:.3f} | {blind['ltari_nn']:.3f} "
                  f"| {truth['ltari']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
