"""Initial weights of every model, to compare two versions of the package bit for bit.

    PYTHONPATH=OLD_TREE python scripts/init_identity.py --out old.pt
    PYTHONPATH=NEW_TREE python scripts/init_identity.py --out new.pt
    python scripts/init_identity.py --compare old.pt new.pt

Builds, through each task's own `build_network` (as the engine does: float32, then cast), the MLP
and every image model at several shapes, widths, initialisations, scales and seeds, and saves
their state dicts; --compare reports every tensor that differs (exit status 1).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch


def build_all() -> dict[str, dict[str, torch.Tensor]]:
    from plasticity.models import build_model
    from plasticity.network import MLP

    out: dict[str, dict[str, torch.Tensor]] = {}
    inits = ("torch", "he_normal", "xavier_uniform", "lecun_normal")
    for init, scale, seed in itertools.product(inits, (1.0, 0.3), (0, 1, 2)):
        for sizes in ([64, 64, 64, 10], [784, 400, 200, 100, 50, 10], [3072, 1000, 10], [784, 8192, 10]):
            net = MLP(sizes, "tanh", init=init, init_scale=scale, generator=torch.Generator().manual_seed(seed))
            out[f"mlp {sizes} {init} x{scale} s{seed}"] = net.state_dict()
        for name, shape, width in [("lenet", (1, 28, 28), 0), ("lenet", (1, 32, 32), 0), ("lenet", (3, 32, 32), 0),
                                   ("lenet", (3, 32, 32), 16), ("resnet20", (3, 32, 32), 0),
                                   ("resnet20", (1, 8, 8), 4), ("resnet56", (3, 32, 32), 8),
                                   ("resnet9", (3, 32, 32), 0), ("resnet9", (3, 32, 32), 8)]:
            net = build_model(name, shape, 10, "relu", width, init, scale, torch.Generator().manual_seed(seed))
            out[f"{name} {shape} w{width} {init} x{scale} s{seed}"] = net.state_dict()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--compare", nargs=2, type=Path)
    args = p.parse_args(argv)
    if args.out:
        models = build_all()
        torch.save(models, args.out)
        print(f"{len(models)} models, {sum(len(m) for m in models.values())} tensors -> {args.out}")
        return 0
    if not args.compare:
        p.error("give --out FILE or --compare A B")
    a, b = (torch.load(f) for f in args.compare)
    differ = [f"{k} {t}" for k in sorted(set(a) | set(b)) for t in sorted(set(a.get(k, {})) | set(b.get(k, {})))
              if k not in a or k not in b or t not in a[k] or t not in b[k] or not torch.equal(a[k][t], b[k][t])]
    for line in differ:
        print("differs:", line)
    n = sum(len(m) for m in a.values())
    print(f"{len(a)} models, {n} tensors compared: " + ("all equal" if not differ else f"{len(differ)} differ"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
