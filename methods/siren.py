"""SIREN: a sine-activated network from coordinates straight to expression (peer, SUICA's table).

Sine layers (w0 = 30, SIREN initialisation) on coordinates scaled to [-1, 1]
-> genes with a final ReLU; L1 + MSE, AdamW, full batch; fit the spots the
method may see, predict the spots it must.

Deviations (SUICA's ``siren.py`` is not in its repository):

* **Architecture and schedule** follow SUICA's vanilla INR configuration with
  sine layers in place of Fourier features and ReLUs.
* **Profiles.** ``paper``: 12 hidden layers of width 2048, lr 1e-5, 2000 epochs.
  ``fast`` (default; chosen on a validation split of DLPFC 151673's observed
  spots, ``scripts/tune_suica_fast.py``): 3 layers of width 256, lr 1e-4, 300 epochs
  (validation cosine 0.634; 0.633 with 600).
"""

from stbench.methods import Method, deviations_section, resolve_profile
from stbench.methods._inr import fit_coordinate_regressor, training_view

PROFILES = {"paper": {"width": 2048, "depth": 12, "lr": 1e-5, "epochs": 2000},
            "fast": {"width": 256, "depth": 3, "lr": 1e-4, "epochs": 300}}

siren = Method(
    name="siren", kind="peer", version="1",
    summary="SIREN: a sine-activated network, coordinates -> expression directly.",
    paper="Sitzmann et al., Implicit Neural Representations with Periodic Activation Functions (NeurIPS 2020); "
          "as compared in SUICA (arXiv 2412.01124)",
    paper_url="https://arxiv.org/abs/2006.09661", code_url="https://github.com/vsitzmann/siren", gpu=True,
    smoke={"epochs": 2},  # a seconds-long run for the conformance test
    params={"profile": "fast", "epochs": None},
    deviations=deviations_section(__doc__),
)


@siren.solves("spatial_imputation", "gene_imputation", "denoising")
def solve(inputs, ctx):
    xy, X, query_xy = training_view(inputs, ctx.task)
    return fit_coordinate_regressor("siren", xy, X, query_xy, resolve_profile("siren", PROFILES, ctx.params),
                                    ctx.seed, ctx.device)
