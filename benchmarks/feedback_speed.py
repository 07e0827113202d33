"""Seconds per update of the feedback-family rules against backprop on the same network, in one process.

Random inputs of the task's shape (speed does not depend on the values), batch 100, SGD with
momentum and a tiny step, the rules' default parameters. Rules are timed in alternating rounds so that machine
noise hits all alike; each figure is the median over rounds of (seconds for `--updates` updates).
`--model` picks an image model of plasticity.models instead of the MLP (`--arch` then gives the
image shape: mnist 1×28×28, cifar10 3×32×32); rules that have no form for its layers are skipped.

    python benchmarks/feedback_speed.py [--arch mnist|cifar10] [--model mlp|lenet|resnet20|...] [--updates 100]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from plasticity import MLP, registry
from plasticity.models import MODELS, build_model
from plasticity.optimizers import build_optimizer

ARCHS = {"mnist": [784, 400, 200, 100, 50, 10], "cifar10": [3072, 1000, 500, 100, 10]}
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
RULES = ("bp", "fa", "dfa", "usf", "brsf", "frsf", "rf", "pinv-feedback")


def make(rule: str, sizes: list[int], device: torch.device, model: str = "mlp", arch: str = "mnist"):
    gen = torch.Generator().manual_seed(0)
    if model == "mlp":
        net = MLP(sizes, hidden_activation="leaky_relu", init="he_normal", generator=gen).to(device)
    else:
        net = build_model(model, SHAPES[arch], sizes[-1], generator=gen).to(device)
    cls = registry.get_rule(rule)
    # A tiny step: the cost of an update does not depend on it, and random labels with a large
    # step would drive FA's weights to huge values (slow denormal/inf arithmetic), timing numerics.
    opt = build_optimizer("sgd", {"lr": 1e-4, "momentum": 0.9}, net.parameters())
    return cls(net, cls.Params(), opt, torch.Generator(device=device).manual_seed(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=ARCHS, default="mnist")
    ap.add_argument("--model", choices=MODELS, default="mlp")
    ap.add_argument("--rules", default=",".join(RULES), help="comma-separated rules (bp is always timed)")
    ap.add_argument("--updates", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    registry.load_plugins()
    device = torch.device(a.device)
    sizes = ARCHS[a.arch]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, sizes[0], generator=g).to(device)
    y = torch.randint(0, sizes[-1], (a.batch,), generator=g).to(device)
    names = ["bp"] + [r for r in a.rules.split(",") if r and r != "bp"]
    rules = {r: make(r, sizes, device, a.model, a.arch) for r in names}
    times: dict[str, list[float]] = {r: [] for r in names}
    for rule in rules.values():  # warm-up
        for _ in range(2):
            rule.update(x, y)
    for _ in range(a.rounds):
        for name, rule in rules.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(a.updates):
                rule.update(x, y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / a.updates)
    base = statistics.median(times["bp"])
    net = f"MLP {'-'.join(map(str, sizes))}" if a.model == "mlp" else f"{a.model} on {a.arch} images"
    print(f"{net}, batch {a.batch}, {device}, torch threads {torch.get_num_threads()}, "
          f"median of {a.rounds} rounds × {a.updates} updates")
    print(f"{'rule':<14} {'ms/update':>10} {'× bp':>6}")
    for name in names:
        t = statistics.median(times[name])
        print(f"{name:<14} {t * 1e3:>10.2f} {t / base:>6.2f}")


if __name__ == "__main__":
    main()
