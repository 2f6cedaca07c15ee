"""STAGE's training step with POT's sliced Wasserstein (version 1) and ``sliced_w2`` (version 2),
side by side (a benchmark script, not a test: it prints figures, asserts nothing).

One torch thread, as a board cell has; a 512-spot batch (STAGE's) at MERFISH's gene count
(155) and DLPFC's (3,000). Also prints both distances on one batch with the same projections.

Usage: python scripts/bench_stage.py
"""

import time

import ot
import torch
import torch.nn.functional as F

from stbench.methods.stage import CoordinateAutoencoder, sliced_w2


def step_ms(model, opt, x, xy, distance, repeats=15) -> float:
    def step():
        opt.zero_grad()
        z = model.encoder(x)
        recon = model.decoder(z)
        latent = F.l1_loss(z, xy) + 0.1 * distance(z, xy)
        loss = 0.1 * latent + 0.01 * (F.mse_loss(recon, x) + 0.1 * F.l1_loss(recon, x))
        loss.backward()
        opt.step()
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pot = lambda z, xy: ot.sliced_wasserstein_distance(z, xy, n_projections=1000)  # noqa: E731
    ours = lambda z, xy: sliced_w2(z, xy, n_projections=1000)  # noqa: E731
    for genes in (155, 3000):
        model = CoordinateAutoencoder(genes)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, xy = torch.rand(512, genes), torch.rand(512, 2) * 2 - 1
        a, b = step_ms(model, opt, x, xy, pot), step_ms(model, opt, x, xy, ours)
        print(f"{genes:5d} genes, 512-spot batch: POT {a:6.1f} ms/step, sliced_w2 {b:6.1f} ms/step ({a / b:.2f}x)")
    z, xy = torch.randn(512, 2), torch.rand(512, 2)
    torch.manual_seed(1)
    mine = float(sliced_w2(z, xy, 1000))
    torch.manual_seed(1)
    P = torch.randn(2, 1000)
    P = P / P.norm(dim=0, keepdim=True)
    print(f"same projections: POT {float(ot.sliced_wasserstein_distance(z, xy, projections=P)):.6f}, "
          f"sliced_w2 {mine:.6f}")


if __name__ == "__main__":
    main()
