"""Optimizer step time of the GOFAU optimizers against torch.optim.SGD / Adam on the same model.

Times `optimizer.step()` alone (gradients filled once, reused), alternating the optimizers in
each repeat so that machine noise hits all alike; prints the median per step and the ratio to
torch's own optimizer (foreach implementation) measured in the same process. Then the same for a
whole training step (forward, backward and step on a batch of 100), which is what a run pays.
Models: the MNIST MLP 784-256-256-10 and the cifar10-cnn ResNet-9 (width 16).

    python benchmarks/gofau_step.py [--repeats 7] [--steps 200] [--device cpu]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.nn import functional as F

from plasticity import MLP, registry
from plasticity.gofau import GofauAdam, GofauSGD, HybridAdam, HybridSGD, MultAdam, MultSGD
from plasticity.params import make_params


def models(device: torch.device) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    registry.load_plugins()
    cnn_cls = registry.get_task("cifar10-cnn")
    cnn = cnn_cls(make_params(cnn_cls.Params, {"width": 16}, "task")).build_network(3072, 10, torch.Generator())
    mlp = MLP([784, 256, 256, 10], generator=torch.Generator())
    return {"mlp 784-256-256-10": (mlp.to(device), torch.randn(100, 784, device=device)),
            "cnn resnet9 width 16": (cnn.to(device), torch.randn(100, 3072, device=device))}


OPTIMIZERS = {  # name: (constructor, baseline name)
    "torch SGD(momentum)": (lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, foreach=True), None),
    "additive SGD": (lambda ps: GofauSGD(ps, lr=0.05, momentum=0.9, update="additive"), "torch SGD(momentum)"),
    "mult-sgd": (lambda ps: MultSGD(ps, lr=0.05, momentum=0.9), "torch SGD(momentum)"),
    "hybrid-sgd": (lambda ps: HybridSGD(ps, lr=0.05, momentum=0.9), "torch SGD(momentum)"),
    "torch Adam": (lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True), None),
    "additive Adam": (lambda ps: GofauAdam(ps, lr=1e-3, update="additive"), "torch Adam"),
    "mult-adam": (lambda ps: MultAdam(ps, lr=1e-3), "torch Adam"),
    "hybrid-adam": (lambda ps: HybridAdam(ps, lr=1e-3), "torch Adam"),
}


def time_steps(opt: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def time_train_steps(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                     steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.repeats} repeats x {args.steps} steps, median per step")
    for model_name, (net, x) in models(device).items():
        n_params = sum(p.numel() for p in net.parameters())
        F.cross_entropy(net(x), torch.zeros(len(x), dtype=torch.long, device=device)).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        start = [p.detach().clone() for p in net.parameters()]
        # One copy of the model per optimizer, with the same gradients, so optimizer state is its own.
        opts = {}
        for name, (make, _) in OPTIMIZERS.items():
            params = [torch.nn.Parameter(s.clone()) for s in start]
            for p, g in zip(params, grads):
                p.grad = g.clone() * 1e-3  # small: the weights stay finite over all the steps
            opts[name] = make(params)
            time_steps(opts[name], 5, device)  # warm-up: state allocated
        times: dict[str, list[float]] = {n: [] for n in OPTIMIZERS}
        for _ in range(args.repeats):
            for name, opt in opts.items():
                times[name].append(time_steps(opt, args.steps, device))
        print(f"\n{model_name} ({n_params:,} parameters in {len(start)} tensors)")
        for name, (_, baseline) in OPTIMIZERS.items():
            t = statistics.median(times[name])
            ratio = f"{t / statistics.median(times[baseline]):.2f}x {baseline}" if baseline else "baseline"
            print(f"  {name:22s} {t * 1e6:9.1f} us/step   {ratio}")
        # Whole training steps: a fresh copy of the model per optimizer, same batch.
        y = torch.randint(0, 10, (len(x),), generator=torch.Generator().manual_seed(0)).to(device)
        nets, train_opts = {}, {}
        for name, (make, _) in OPTIMIZERS.items():
            nets[name] = copy.deepcopy(net)
            train_opts[name] = make(list(nets[name].parameters()))
            time_train_steps(nets[name], train_opts[name], x, y, 2, device)
        train_times: dict[str, list[float]] = {n: [] for n in OPTIMIZERS}
        for _ in range(args.repeats):
            for name in OPTIMIZERS:
                train_times[name].append(time_train_steps(nets[name], train_opts[name], x, y,
                                                          max(1, args.steps // 10), device))
        print("  whole training step (forward + backward + step, batch 100):")
        for name, (_, baseline) in OPTIMIZERS.items():
            t = statistics.median(train_times[name])
            ratio = f"{t / statistics.median(train_times[baseline]):.2f}x {baseline}" if baseline else "baseline"
            print(f"  {name:22s} {t * 1e3:9.2f} ms/step   {ratio}")


if __name__ == "__main__":
    main()
