"""PASTE: align a query slice to a reference by fused Gromov-Wasserstein optimal transport (peer).

The plan pi (query x reference, uniform marginals) minimises
(1 - alpha) <pi, M> + alpha * sum (D_q[i,k] - D_r[j,l])^2 pi_ij pi_kl, where M is
the KL divergence between the spots' expression profiles and D_q, D_r are each
slice's spatial distances; a rigid transform fitted to pi (weighted Procrustes)
gives the aligned coordinates. LTARI uses argmax pi. The solver is POT's
``ot.gromov.fused_gromov_wasserstein`` (``paste-bio`` 1.4 breaks with POT >= 0.9.5,
so it is not wrapped). Shared machinery: ``methods/_fgw.py``.

Deviations (from paste-bio's ``pairwise_align``):

* **Scale.** Spatial distances are divided by one constant common to both
  slices and the expression cost by its median, so alpha = 0.1 weighs terms of
  order one in any coordinate unit. PASTE uses raw distances; on DLPFC pixel
  coordinates its solver stops after one Frank-Wolfe step on a poor plan.
* **Start.** Frank-Wolfe starts from the exact OT plan of the expression cost
  (``init="expression"``) rather than the uniform product plan; ``init="product"``
  restores PASTE's start.
* **Size.** Above ``max_spots`` spots a slice is subsampled (seeded) for the
  solver; unsampled query spots take the plan row of their nearest sampled
  neighbour, and the fitted rigid transform moves every spot.
"""

from stbench.methods import Method
from stbench.methods._fgw import align

paste = Method(
    name="paste", kind="peer", version="1",
    summary="PASTE: fused Gromov-Wasserstein OT between expression and spatial distances; rigid fit to the plan.",
    paper="Zeira et al., Alignment and integration of spatial transcriptomics data, Nat Methods (2022)",
    paper_url="https://doi.org/10.1038/s41592-022-01459-6",
    code_url="https://github.com/raphael-group/paste",
    params={"alpha": 0.1, "expression_cost": "kl", "init": "expression", "rescale": True, "max_spots": 4000},
    deviations=__doc__.split("Deviations (from paste-bio's ``pairwise_align``):")[1].strip(),
)


@paste.solves("alignment")
def solve(inputs, ctx):
    return align(inputs, ctx, overlap=None)
