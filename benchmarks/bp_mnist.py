"""BP on the MNIST MLP 784-256-256-10, batch 100, 10 epochs, SGD (momentum 0.9, lr 0.05, cosine decay):
test accuracy, updates to 97 % validation accuracy, training seconds and peak memory, per seed.

    PLASTICITY_DATA=../shared/data python benchmarks/bp_mnist.py [--seeds 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import torch

from plasticity import registry
from plasticity.engine import resolve_device
from plasticity.suite import parse_suite
from plasticity.worker import run_cell

SUITE = '''seeds = {seeds}
[budget]
epochs = 10
[[tasks]]
name = "mnist"
params = {{ hidden = [256, 256], batch_size = 100 }}
[[rules]]
name = "bp"
optimizers = [{{ name = "sgd", params = {{ lr = 0.05, momentum = 0.9 }}, schedule = "cosine" }}]
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    registry.load_plugins()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in parse_suite(SUITE.format(seeds=args.seeds)).cells:
            f = run_cell(cell, Path(tmp), device, {})
            rows.append(f)
            print(f"seed {cell.seed}: status {f['status']}, test accuracy {100 * f['test_accuracy']:.2f} %, "
                  f"updates to 97 % val {f['updates_to']['0.97']}, to 98 % {f['updates_to']['0.98']}, "
                  f"{f['updates']} updates, {f['train_seconds']:.1f} s training, {f['wall_seconds']:.1f} s wall")
    accs = torch.tensor([100 * r["test_accuracy"] for r in rows], dtype=torch.float64)
    print(f"test accuracy: mean {accs.mean():.2f} %, min {accs.min():.2f} %, max {accs.max():.2f} % "
          f"over {len(rows)} seeds")
    # ru_maxrss is in KiB on Linux: the whole process (Python, torch, MNIST tensors, model).
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
