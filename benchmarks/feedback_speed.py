"""Seconds per update of the feedback-family rules against backprop on the same MLP, in one process.

Random inputs of the task's shape (speed does not depend on the values), batch 100, SGD with
momentum and a tiny step, the rules' default parameters. Rules are timed in alternating rounds so that machine
noise hits all alike; each figure is the median over rounds of (seconds for `--updates` updates).

    python benchmarks/feedback_speed.py [--arch mnist|cifar10] [--updates 100] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from plasticity import MLP, registry
from plasticity.optimizers import build_optimizer

ARCHS = {"mnist": [784, 400, 200, 100, 50, 10], "cifar10": [3072, 1000, 500, 100, 10]}
RULES = ("bp", "fa", "dfa", "rf", "pinv-feedback")


def make(rule: str, sizes: list[int], device: torch.device):
    net = MLP(sizes, hidden_activation="leaky_relu", init="he_normal",
              generator=torch.Generator().manual_seed(0)).to(device)
    cls = registry.get_rule(rule)
    # A tiny step: the cost of an update does not depend on it, and random labels with a large
    # step would drive FA's weights to huge values (slow denormal/inf arithmetic), timing numerics.
    opt = build_optimizer("sgd", {"lr": 1e-4, "momentum": 0.9}, net.parameters())
    return cls(net, cls.Params(), opt, torch.Generator(device=device).manual_seed(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=ARCHS, default="mnist")
    ap.add_argument("--updates", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    registry.load_plugins()
    device = torch.device(a.device)
    sizes = ARCHS[a.arch]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, sizes[0], generator=g).to(device)
    y = torch.randint(0, sizes[-1], (a.batch,), generator=g).to(device)
    rules = {r: make(r, sizes, device) for r in RULES}
    times: dict[str, list[float]] = {r: [] for r in RULES}
    for rule in rules.values():  # warm-up
        for _ in range(3):
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
    print(f"MLP {'-'.join(map(str, sizes))}, batch {a.batch}, {device}, torch threads {torch.get_num_threads()}, "
          f"median of {a.rounds} rounds × {a.updates} updates")
    print(f"{'rule':<14} {'ms/update':>10} {'× bp':>6}")
    for name in RULES:
        t = statistics.median(times[name])
        print(f"{name:<14} {t * 1e3:>10.2f} {t / base:>6.2f}")


if __name__ == "__main__":
    main()
