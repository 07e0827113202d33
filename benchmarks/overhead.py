"""Harness overhead: training seconds per epoch in the engine over a bare PyTorch loop.

Same data tensors, model, initial weights, optimizer, batch size and batch order, in one
process, alternating engine and bare epochs so that machine noise hits both alike. Prints the
ratios to the bare loop (target with the progress bar: <= 1.03) and the machine's load average
before and after, since figures taken on a busy machine mean little.

    PLASTICITY_DATA=../shared/data python benchmarks/overhead.py [--task mnist] [--repeats 3]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from plasticity import registry
from plasticity.engine import build_cell, resolve_device
from plasticity.suite import parse_suite
from plasticity.worker import CellBar, run_cell


def bare_epoch(net, opt, x, y, batch, gen, device) -> float:
    """The loop a researcher would write by hand: permutation, slice, forward, backward, step."""
    n = len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    perm = torch.randperm(n, generator=gen).to(device)
    for s in range(0, n, batch):
        idx = perm[s:s + batch]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    registry.load_plugins()
    device = resolve_device(args.device)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    suite = parse_suite(f'[budget]\nepochs = 1\n[evaluation]\nper_decade = 6\n'
                        f'[[tasks]]\nname = "{args.task}"\n[[rules]]\nname = "bp"\n'
                        f'optimizers = [{{ name = "sgd", params = {{ lr = 0.05, momentum = 0.9 }} }}]\n')
    cell = suite.cells[0]
    task, data, net, rule = build_cell(cell, device, None)
    batch = task.params.batch_size
    engine_s, engine_bar_s, bare_s = [], [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            final = run_cell(cell, Path(tmp), device, {})
            engine_s.append(final["train_seconds"])
            bar = CellBar("bench", 1, True, file=io.StringIO())  # the real bar, drawn nowhere
            final_bar = run_cell(cell, Path(tmp) / "b", device, {}, on_progress=bar)
            engine_bar_s.append(final_bar["train_seconds"])
        _, _, net, _ = build_cell(cell, device, None)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, foreach=True)
        gen = torch.Generator().manual_seed(r)
        bare_s.append(bare_epoch(net, opt, data.train.x, data.train.y, batch, gen, device))
    e, eb, b = statistics.median(engine_s), statistics.median(engine_bar_s), statistics.median(bare_s)
    print(f"task {args.task}, device {device}, batch {batch}, {len(data.train)} training examples, "
          f"{torch.get_num_threads()} threads, {args.repeats} repeats (medians)")
    print(f"bare loop              {b:8.3f} s/epoch")
    print(f"engine (no bar)        {e:8.3f} s/epoch   ratio {e / b:.3f}")
    print(f"engine (progress bar)  {eb:8.3f} s/epoch   ratio {eb / b:.3f}")
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load_before and load_after:
        print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
              f"on {os.cpu_count()} CPUs" + ("  (busy machine: ratios unreliable)"
                                             if max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1)
                                             else ""))
    print(f"all runs: bare {['%.3f' % v for v in bare_s]}, engine {['%.3f' % v for v in engine_s]}, "
          f"engine+bar {['%.3f' % v for v in engine_bar_s]}")


if __name__ == "__main__":
    main()
