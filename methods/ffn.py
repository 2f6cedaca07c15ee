"""FFN: a Fourier-feature network from coordinates straight to expression (peer, SUICA's table).

Gaussian random Fourier features (256; sigma = 10 in the paper configuration,
1 in the fast profile; on coordinates scaled to [-1, 1]) -> ReLU MLP -> genes
with a final ReLU; L1 + MSE, AdamW, full batch.
It solves the three expression tasks the way SUICA does (fit the spots it may
see, predict the spots it must), with no embedding in between.

Deviations (from SUICA's ``inr_raw`` configuration, which stands in for the FFN row):

* **ReLU between the hidden layers** (the official network has none between them).
* **Profiles.** ``paper``: 12 hidden layers of width 2048, lr 1e-5, 2000 epochs.
  ``fast`` (default; chosen on a validation split of DLPFC 151673's observed
  spots, ``scripts/tune_suica_fast.py``): 3 layers of width 256, lr 1e-3, 300
  epochs, and sigma = 1 (validation cosine 0.633 with sigma 1, 0.615 with 3, 0.550
  with the paper's 10: on a Visium slice, ~70 spots across, sigma 10 puts
  frequencies near the spot pitch and the network fits noise between spots).
"""

from stbench.methods import Method, deviations_section, resolve_profile
from stbench.methods._inr import fit_coordinate_regressor, training_view

PROFILES = {"paper": {"width": 2048, "depth": 12, "lr": 1e-5, "epochs": 2000, "sigma": 10.0},
            "fast": {"width": 256, "depth": 3, "lr": 1e-3, "epochs": 300, "sigma": 1.0}}

ffn = Method(
    name="ffn", kind="peer", version="1",
    summary="Fourier-feature network: coordinates -> expression directly (SUICA's vanilla INR baseline).",
    paper="Tancik et al., Fourier Features Let Networks Learn High Frequency Functions (NeurIPS 2020); "
          "as configured in SUICA (arXiv 2412.01124)",
    paper_url="https://arxiv.org/abs/2006.10739", code_url="https://github.com/Szym29/SUICA", gpu=True,
    smoke={"epochs": 2},  # a seconds-long run for the conformance test
    params={"profile": "fast", "epochs": None},
    deviations=deviations_section(__doc__),
)


@ffn.solves("spatial_imputation", "gene_imputation", "denoising")
def solve(inputs, ctx):
    xy, X, query_xy = training_view(inputs, ctx.task)
    return fit_coordinate_regressor("ffn", xy, X, query_xy, resolve_profile("ffn", PROFILES, ctx.params), ctx.seed,
                                    ctx.device)
