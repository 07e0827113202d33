"""Seconds per update of kp, weight-mirror, drtp and pepita against backprop (and FA, DFA), side by
side in one process, and the cost of their extra phases: weight-mirror's mirror phase (`mirror()`
alone) and pepita's second forward pass (one forward trace of the batch alone).

Random inputs of MNIST's shape (speed does not depend on the values), batch 100, SGD momentum with a
tiny step, each rule's default parameters; rounds alternate between rules so that machine noise hits
all alike; each figure is the median over rounds of the mean over `--updates` updates.

    python benchmarks/learned_feedback_cost.py [--model mlp|lenet] [--updates 50] [--rounds 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch

from plasticity import MLP, registry
from plasticity.models import build_model
from plasticity.optimizers import build_optimizer

RULES = ("bp", "fa", "dfa", "kp", "weight-mirror", "drtp", "pepita")


def make(rule: str, model: str):
    gen = torch.Generator().manual_seed(0)
    net = (MLP([784, 256, 256, 10], hidden_activation="tanh", generator=gen) if model == "mlp"
           else build_model("lenet", (1, 28, 28), 10, activation="tanh", init="xavier_uniform", generator=gen))
    cls = registry.get_rule(rule)
    opt = build_optimizer("sgd", {"lr": 1e-4, "momentum": 0.9}, net.parameters())
    return cls(net, cls.Params(), opt, torch.Generator().manual_seed(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("mlp", "lenet"), default="mlp")
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    registry.load_plugins()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 784, generator=g)
    y = torch.randint(0, 10, (a.batch,), generator=g)
    jobs: dict[str, Callable[[], object]] = {}
    for name in RULES:
        if a.model != "mlp" and registry.get_rule(name).layer_types == (torch.nn.Linear,):
            continue  # no conv form (pepita)
        rule = make(name, a.model)
        jobs[name] = lambda rule=rule: rule.update(x, y)
        if name == "weight-mirror":
            jobs["  mirror phase"] = rule.mirror
        if name == "pepita":
            def second_pass(net=rule.net):
                with torch.no_grad():
                    net.forward_trace(x)
            jobs["  one forward"] = second_pass
    for job in jobs.values():  # warm-up
        job()
        job()
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(a.rounds):
        for name, job in jobs.items():
            start = time.perf_counter()
            for _ in range(a.updates):
                job()
            times[name].append((time.perf_counter() - start) / a.updates)
    base = statistics.median(times["bp"])
    net = "MLP 784-256-256-10 tanh" if a.model == "mlp" else "LeNet (MNIST, tanh)"
    print(f"{net}, batch {a.batch}, torch threads {torch.get_num_threads()}, median of {a.rounds} rounds × "
          f"{a.updates} updates; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'rule / phase':<16} {'ms':>8} {'× bp':>6}")
    for name in jobs:
        t = statistics.median(times[name])
        print(f"{name:<16} {t * 1e3:>8.2f} {t / base:>6.2f}")


if __name__ == "__main__":
    main()
