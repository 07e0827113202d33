"""Seconds per update of DTP and TP against BP on the same MLP, in one process.

Same network sizes, initial weights, optimizer (Adam), batch size and batches; rules alternate
in rounds so that machine noise hits all alike; the median over rounds is reported. Inputs are
random tensors shaped like the task's (timing does not depend on the pixel values).

    python benchmarks/tp_speed.py                      # MNIST 784-5x256-10 tanh, batch 100
    python benchmarks/tp_speed.py --arch cifar10       # CIFAR-10 3072-3x1024-10 tanh
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from plasticity import MLP, build_optimizer, registry
from plasticity.engine import resolve_device
from plasticity.params import make_params

ARCHS = {"mnist": [784, 256, 256, 256, 256, 256, 10], "cifar10": [3072, 1024, 1024, 1024, 10]}
RULES = [("bp", {}), ("dtp", {}), ("dtp", {"schedule": "parallel"}), ("tp", {}), ("ddtp-linear", {})]


def build(name: str, values: dict, sizes: list[int], device: torch.device):
    cls = registry.get_rule(name)
    net = MLP(sizes, hidden_activation="tanh", generator=torch.Generator().manual_seed(0)).to(device)
    opt = build_optimizer("adam", {"lr": 1e-3}, net.parameters())
    return cls(net, make_params(cls.Params, values, name), opt, torch.Generator(device=device).manual_seed(1))


def time_updates(rule, xs: torch.Tensor, ys: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x, y in zip(xs, ys):
        rule.update(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="mnist")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--updates", type=int, default=50, help="updates per rule per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    registry.load_plugins()
    device = resolve_device(args.device)
    sizes = ARCHS[args.arch]
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(args.updates, args.batch, sizes[0], generator=g).to(device)
    ys = torch.randint(0, sizes[-1], (args.updates, args.batch), generator=g).to(device)
    rules = {f"{n}{'(' + ','.join(f'{k}={v}' for k, v in p.items()) + ')' if p else ''}": build(n, p, sizes, device)
             for n, p in RULES}
    for rule in rules.values():  # warm-up: allocator, Adam state
        time_updates(rule, xs[:5], ys[:5], device)
    times: dict[str, list[float]] = {k: [] for k in rules}
    for _ in range(args.rounds):
        for key, rule in rules.items():
            times[key].append(time_updates(rule, xs, ys, device))
    base = statistics.median(times["bp"])
    print(f"{args.arch} MLP {sizes} tanh, batch {args.batch}, Adam, {device}, torch threads {torch.get_num_threads()}; "
          f"median of {args.rounds} rounds x {args.updates} updates")
    for key, t in times.items():
        med = statistics.median(t)
        print(f"  {key:28s} {1e3 * med:8.2f} ms/update   x{med / base:5.2f} of bp")


if __name__ == "__main__":
    main()
