"""PASTE2: partial alignment of a query slice to a reference by partial fused Gromov-Wasserstein (peer).

As PASTE (``methods/paste.py``), but the plan moves only a fraction s
(``overlap``) of the mass, so spots of either slice outside the shared region
can stay unmatched: row sums <= 1/n_q, column sums <= 1/n_r, total mass s.
Solver: POT's ``ot.gromov.partial_fused_gromov_wasserstein``. Query spots whose
plan row is empty get no partner for LTARI; the rigid transform fitted to the
matched mass still moves every spot.

Deviations (from the ``paste2`` package's ``partial_pairwise_align``):

* **Overlap is a parameter** (default 0.7), not chosen by PASTE2's model
  selection over s (not implemented here).
* **Expression cost**: Euclidean distance in 30 principal components of the
  log-normalised expression of both slices (``expression_cost="pca"``), standing
  in for PASTE2's GLM-PCA, which is not in our stack; ``"kl"`` is available.
* **alpha = 0.5** (PASTE2's default is 0.1): on a synthetic pair outside the
  board (``simulate_tissue(800 spots, seed 7, overlap 0.6)``), with our cost
  scaling, alpha 0.1 / 0.3 / 0.5 / 0.8 gave coordinate RMSE 211 / 107 / 76 / 86 um
  (spot pitch 100 um); on the same tissue at full overlap 0.5 is as good as 0.1.
* **Scale** ``rescale="median"``: distances divided by the larger median
  pairwise distance and the cost by its median, the scale alpha = 0.5 was
  chosen in (PASTE uses spot pitches; see ``methods/_fgw.py``).
* Start, exact linear programs (version 2; version 1 stopped POT's simplex at
  10^5 iterations, which failed the start plan on DLPFC 151673>151674) and
  subsampling as in our PASTE (see its deviations).
"""

from stbench.methods import Method, deviations_section
from stbench.methods._fgw import align

paste2 = Method(
    name="paste2", kind="peer", version="2",
    summary="PASTE2: partial fused Gromov-Wasserstein OT moving a fraction s of the mass; rigid fit to the plan.",
    paper="Liu, Zeira & Raphael, Partial alignment of multislice spatially resolved transcriptomics data, "
          "Genome Research (2023)",
    paper_url="https://doi.org/10.1101/gr.277670.123",
    code_url="https://github.com/raphael-group/paste2",
    params={"alpha": 0.5, "overlap": 0.7, "expression_cost": "pca", "init": "expression", "rescale": "median",
            "max_spots": 4000},
    deviations=deviations_section(__doc__),
)


@paste2.solves("alignment")
def solve(inputs, ctx):
    return align(inputs, ctx, overlap=float(ctx.params["overlap"]))
