"""PASTE: align a query slice to a reference by fused Gromov-Wasserstein optimal transport (peer).

The plan pi (query x reference, uniform marginals) minimises
(1 - alpha) <pi, M> + alpha * sum (D_q[i,k] - D_r[j,l])^2 pi_ij pi_kl, where M is
the KL divergence between the spots' expression profiles and D_q, D_r are each
slice's spatial distances; a rigid transform fitted to pi (weighted Procrustes)
gives the aligned coordinates. LTARI uses argmax pi. The solver is POT's
``ot.gromov.fused_gromov_wasserstein`` (``paste-bio`` 1.4 breaks with POT >= 0.9.5,
so it is not wrapped). Shared machinery: ``methods/_fgw.py``.

Deviations (from paste-bio's ``pairwise_align``):

* **Scale.** Spatial distances of both slices are measured in spot pitches
  (divided by the reference's median nearest-neighbour distance), whatever the
  coordinate unit (pixels, microns, array indices); the KL cost is left as is.
  PASTE uses raw distances, so its alpha means something different on every
  platform; on Visium array coordinates (PASTE's own) raw and pitch units are
  the same regime. Version 1 divided distances by the median pairwise distance
  and the cost by its median, which at alpha = 0.1 let the noisy expression
  cost dominate: on synthetic tissues outside the board (``simulate_tissue``
  seeds 7 and 8, ``scripts/bench_paste.py --select``) argmax-pi LTARI was
  0.800 / 0.860 for version 1 and 0.893 / 0.935 in pitch units at alpha 0.1
  (coordinate RMSE 16.7 / 8.1 vs 6.5 / 7.4 um). alpha stays PASTE's 0.1.
* **Start.** Frank-Wolfe starts from the exact OT plan of the expression cost
  (``init="expression"``) rather than the uniform product plan; ``init="product"``
  restores PASTE's start.
* **Exact linear programs.** POT's network simplex gets 10^7 iterations instead
  of 10^5, so the start plan and every Frank-Wolfe direction are optimal.
* **Size.** Above ``max_spots`` spots a slice is subsampled (seeded) for the
  solver; unsampled query spots take the plan row of their nearest sampled
  neighbour, and the fitted rigid transform moves every spot.
"""

from stbench.methods import Method, deviations_section
from stbench.methods._fgw import align

paste = Method(
    name="paste", kind="peer", version="2",
    summary="PASTE: fused Gromov-Wasserstein OT between expression and spatial distances; rigid fit to the plan.",
    paper="Zeira et al., Alignment and integration of spatial transcriptomics data, Nat Methods (2022)",
    paper_url="https://doi.org/10.1038/s41592-022-01459-6",
    code_url="https://github.com/raphael-group/paste",
    params={"alpha": 0.1, "expression_cost": "kl", "init": "expression", "rescale": "pitch",
            "max_spots": 4000},
    deviations=deviations_section(__doc__),
)


@paste.solves("alignment")
def solve(inputs, ctx):
    return align(inputs, ctx, overlap=None)
