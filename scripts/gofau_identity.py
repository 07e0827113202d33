"""Bit-identity of two versions of plasticity/gofau.py: every optimizer over a grid of settings.

    python scripts/gofau_identity.py OLD_GOFAU_PY [NEW_GOFAU_PY]

Loads both files as standalone modules (gofau.py imports nothing of the package), runs each
optimizer class of the new file with the same settings, parameters and gradients (20 steps on a
few tensors of mixed shapes, float32 and float64, parameters with and without gradients) in both,
and compares every parameter and state tensor with torch.equal. Prints the number of settings
compared and any that differ (exit status 1).
"""
from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from typing import Any

import torch

SHAPES = [(7, 5), (5,), (3, 2, 3, 3)]
STEPS = 20

BASE = {  # per base optimizer: settings of its own, crossed with the GOFAU settings below
    "GofauSGD": [{"lr": 0.05}, {"lr": 0.05, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9, "nesterov": True},
                 {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3},
                 {"lr": 0.05, "momentum": 0.9, "tanh_momentum": True}],
    "GofauAdam": [{"lr": 1e-3}, {"lr": 2e-3, "weight_decay": 1e-2, "betas": (0.8, 0.99)},
                  {"lr": 1e-3, "bias_correction": "outside"},
                  {"lr": 1e-3, "bias_correction": "outside", "weight_decay": 1e-3, "eps": 1e-6}],
    "GofauAdagrad": [{"lr": 1e-2}, {"lr": 1e-2, "weight_decay": 1e-3}],
    "GofauRMSprop": [{"lr": 1e-3}, {"lr": 1e-3, "momentum": 0.9, "alpha": 0.9}],
}
GOFAU = [{"update": u} for u in ("additive", "multiplicative")] + [
    {"update": "hybrid", "gamma": g, "eta_in": ei, "eta_out": eo, "gamma_schedule": s, "gamma_patience": 3,
     "gamma_decay": 0.9, "seed": 5}
    for g, ei, eo, s in itertools.product((0.0, 0.5, 1.0), (1.0, 30.0), (None, 0.01), ("constant", "decay", "random"))]
MULT_ETA = [{"update": "multiplicative", "eta_in": 3.0, "eta_out": 0.05}]


def load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing look modules up here
    spec.loader.exec_module(module)
    return module


def run(module: Any, cls_name: str, settings: dict[str, Any], dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in SHAPES]
    opt = getattr(module, cls_name)(params, **settings)
    for step in range(STEPS):
        for i, p in enumerate(params):
            # the last parameter skips every third step: a parameter without a gradient is left alone
            p.grad = None if (i == len(params) - 1 and step % 3 == 2) else torch.randn(p.shape, generator=gen,
                                                                                      dtype=dtype)
        opt.step()
    state = [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor)]
    return [p.detach().clone() for p in params] + state


def main(argv: list[str]) -> int:
    old_path = Path(argv[0])
    new_path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "plasticity" / "gofau.py"
    old, new = load(old_path, "gofau_old"), load(new_path, "gofau_new")
    compared, differ = 0, []
    for cls_name, bases in BASE.items():
        for base, gofau, dtype in itertools.product(bases, GOFAU + MULT_ETA, (torch.float32, torch.float64)):
            settings = {**base, **gofau}
            try:
                a = run(old, cls_name, settings, dtype)
            except ValueError as exc:  # a setting the optimizer refuses (e.g. eta_out bound)
                try:
                    run(new, cls_name, settings, dtype)
                except ValueError as exc2:
                    assert str(exc) == str(exc2), (str(exc), str(exc2))
                    continue
                differ.append(f"{cls_name} {settings}: refused by the old file only")
                continue
            b = run(new, cls_name, settings, dtype)
            compared += 1
            if len(a) != len(b) or not all(torch.equal(x, y) for x, y in zip(a, b)):
                differ.append(f"{cls_name} {settings} {dtype}")
    for line in differ:
        print("differs:", line)
    print(f"{compared} settings compared ({STEPS} steps each), {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
