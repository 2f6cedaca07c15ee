"""Wall time per stage of suica on one DLPFC slice, for the ``fast`` and ``paper`` profiles.

Builds the real ``spatial_imputation / random20`` problem (seed 0; 3,000 HVGs
chosen on the observed spots) and times, in this process, the three stages
(graph autoencoder, INR, decoder fine-tuning) and prediction, on the CPU and,
when one is present, on the GPU.

The ``fast`` profile runs in full. The ``paper`` profile (2048-wide layers,
1,000-epoch stages) would take hours on 2 CPU cores, so on the CPU it runs
``--paper-epochs`` epochs of each stage and prints the measured time *and* the
projection to the profile's epochs (time per epoch x epochs), labelled as such;
``--paper-full`` runs it in full.

    STBENCH_DATA=../shared/data python scripts/bench_suica.py [--slice 151673] [--paper-epochs 5] [--paper-full]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from stbench.datasets.loading import load_dataset
from stbench.methods.suica import PROFILES, fit_predict, suica
from stbench.methods._inr import inr_for, training_view
from stbench.tasks import get_task

STAGE_EPOCHS = {"graph autoencoder": "gae_epochs", "INR": "inr_epochs", "decoder fine-tuning": "finetune_epochs"}


def run(profile: str, epochs: dict, inputs, device: str) -> dict:
    xy, X, query_xy = training_view(inputs, "spatial_imputation")
    timings: dict = {}
    torch.manual_seed(0)
    fit_predict(xy, X, query_xy, {**suica.params, "profile": profile, **epochs}, 0, device, timings)
    return timings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slice", default="151673")
    p.add_argument("--paper-epochs", type=int, default=5)
    p.add_argument("--paper-full", action="store_true")
    args = p.parse_args()
    problem = get_task("spatial_imputation").make_problem(load_dataset("dlpfc"), args.slice, "random20", 0)
    inputs = problem.inputs
    xy = np.asarray(inputs.observed.obsm["spatial"])
    print(f"DLPFC {args.slice}: {inputs.observed.n_obs} observed + {inputs.query.n_obs} held-out spots, "
          f"{inputs.observed.n_vars} genes; INR rule -> {inr_for(xy)}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        threads = f"{torch.get_num_threads()} threads" if device == "cpu" else torch.cuda.get_device_name()
        for profile in ("fast", "paper"):
            full = profile == "fast" or args.paper_full or device == "cuda"
            epochs = {} if full else {k: args.paper_epochs for k in STAGE_EPOCHS.values()}
            t = run(profile, epochs, inputs, device)
            print(f"\n{device} ({threads}), profile {profile}"
                  + ("" if full else f": {args.paper_epochs} epochs per stage measured, full profile projected"))
            for stage, secs in t.items():
                key = STAGE_EPOCHS.get(stage)
                n = PROFILES[profile][key] if key else None
                line = f"  {stage:20s} {secs:8.2f} s"
                if key and full:
                    line += f"  ({n} epochs, {1000 * secs / n:.0f} ms/epoch)"
                elif key:
                    per = secs / args.paper_epochs
                    line += f"  ({1000 * per:.0f} ms/epoch) -> projected {per * n:,.0f} s for {n} epochs"
                print(line)
            total = sum(t.values()) if full else sum(
                t[s] / args.paper_epochs * PROFILES[profile][k] for s, k in STAGE_EPOCHS.items()) + t["prediction"]
            print(f"  {'total':20s} {total:8.1f} s" + ("" if full else " (projected)"))


if __name__ == "__main__":
    main()
