"""Recirculation on a fixed random W: relative error ‖B − W⁺‖/‖W⁺‖ against updates.

Two white drives, both with the step normalised by λ_max(WWᵀ) (as rule "rf" does):
- "orthonormal probes": one fixed probe set whose second moment is exactly I, every update;
  the iteration is deterministic and converges geometrically to W⁺;
- "fresh noise": a new batch of N(0, I) samples per update (what rule "rf" uses in training);
  the null-space part of each sample keeps B jittering around W⁺ at a floor ∝ sqrt(lr / batch).

    python benchmarks/recirculation.py [--out 200 --in 400] [--lr 0.5] [--batch 100] [--updates 3000]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from plasticity.linalg import pinv, recirculate, relative_error

CHECKPOINTS = (1, 10, 30, 100, 300, 1000, 3000, 10000, 30000)


def run(w: torch.Tensor, lr: float, updates: int, probes: torch.Tensor | None, batch: int,
        gen: torch.Generator, b0: torch.Tensor) -> tuple[dict[int, float], int | None]:
    target = pinv(w.double())
    lam = float(torch.linalg.eigvalsh(w.double() @ w.double().T)[-1])  # λ_max(WΣWᵀ) for Σ = I
    b = b0.clone()
    curve, hit = {}, None
    for t in range(1, updates + 1):
        x = probes if probes is not None else torch.randn(batch, w.shape[1], generator=gen, dtype=w.dtype)
        recirculate(w, b, x, lr / lam)
        if t in CHECKPOINTS or t == updates or hit is None:
            err = relative_error(b, target)
            if hit is None and err <= 1e-2:
                hit = t
            if t in CHECKPOINTS or t == updates:
                curve[t] = err
    return curve, hit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=int, default=200, help="rows of W (the layer's width)")
    ap.add_argument("--in", dest="inp", type=int, default=400, help="columns of W (its input width)")
    ap.add_argument("--lr", type=float, default=0.5, help="normalised feedback step (stable below 2)")
    ap.add_argument("--batch", type=int, default=100, help="noise samples per update (fresh-noise drive)")
    ap.add_argument("--updates", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    w = torch.randn(a.out, a.inp, generator=g, dtype=torch.float64) * math.sqrt(2 / a.inp)  # He init
    b0 = torch.randn(a.inp, a.out, generator=g, dtype=torch.float64) * math.sqrt(2 / a.inp)  # like FA's B
    s = torch.linalg.svdvals(w)
    print(f"W: {a.out}×{a.inp} He-normal, condition number of WWᵀ {float(s[0] / s[-1]) ** 2:.1f}; "
          f"normalised step lr = {a.lr}")
    q, _ = torch.linalg.qr(torch.randn(a.inp, a.inp, generator=g, dtype=torch.float64))
    drives = {"orthonormal probes": (math.sqrt(a.inp) * q, a.inp),
              f"fresh noise, batch {a.batch}": (None, a.batch)}
    for lr_factor in (1.0, 0.2):
        for name, (probes, batch) in drives.items():
            if probes is not None and lr_factor != 1.0:
                continue
            lr = a.lr * lr_factor
            start = time.perf_counter()
            curve, hit = run(w, lr, a.updates, probes, batch, torch.Generator().manual_seed(a.seed + 1), b0)
            took = time.perf_counter() - start
            print(f"\n{name} (lr {lr:g}, {batch} samples per update, {took:.1f} s):")
            print("  updates   rel. error to W⁺")
            for t, err in curve.items():
                print(f"  {t:>7}   {err:.3e}")
            print(f"  first update with error ≤ 1e-2: {hit if hit is not None else f'not within {a.updates}'}")


if __name__ == "__main__":
    main()
