"""Seconds per update and peak memory of Expectation Reflection against backprop on the same MLP.

Each measurement runs in a fresh process (so that memory one run freed does not hide another's):
it builds the task's data and network, records the resident memory, resets the kernel's
high-water mark (/proc/self/clear_refs) on the CPU or torch's peak statistics on CUDA, runs one
warm-up and then `--updates` timed updates, and reports the median seconds per update and the
peak memory above the starting point. Ratios are ER over BP at the same batch size.

    PLASTICITY_DATA=../shared/data python benchmarks/er_cost.py [--task mnist] [--hidden 1024]
        [--batches 100 0] [--device cpu]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from pathlib import Path


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(task_name: str, hidden: tuple[int, ...], batch: int, rule_name: str, updates: int,
            device_name: str, threads: int) -> tuple[float, float]:
    """Median seconds per update and peak memory (MB) above the start, in this process."""
    import torch

    from plasticity import registry
    from plasticity.engine import resolve_device
    from plasticity.optimizers import build_optimizer

    torch.set_num_threads(threads)
    registry.load_plugins()
    device = resolve_device(device_name)
    task_cls = registry.get_task(task_name)
    task = task_cls(task_cls.Params(hidden=hidden, activation="tanh", batch_size=batch))
    data = task.data(device, torch.float32)
    net = task.build_network(data.n_inputs, data.n_classes, torch.Generator().manual_seed(0)).to(device)
    cls = registry.get_rule(rule_name)
    optimizer = None
    if cls.uses_optimizer:
        name, values = cls.default_optimizer
        optimizer = build_optimizer(name, values, net.parameters())
    rule = cls(net, cls.Params(), optimizer, torch.Generator(device=device).manual_seed(0))
    n = len(data.train)
    bs = n if batch == 0 else batch
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(device)
    batches = [order[(i * bs) % n:(i * bs) % n + bs] for i in range(updates + 1)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start_mem = torch.cuda.memory_allocated() / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start_mem = _rss_mb("VmRSS")
    times = []
    for i, idx in enumerate(batches):
        x, y = (data.train.x, data.train.y) if bs == n else (data.train.x[idx], data.train.y[idx])
        t0 = time.perf_counter()
        rule.update(x, y)
        sync()
        if i > 0:  # the first update is a warm-up
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb("VmHWM")
    return statistics.median(times), peak - start_mem


def _child(args: tuple, queue) -> None:
    queue.put(measure(*args))


def run_isolated(*args) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist")
    ap.add_argument("--hidden", type=int, nargs="*", default=[1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 0], help="0 = full batch")
    ap.add_argument("--updates", type=int, default=None, help="timed updates (default 30, 3 at full batch)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    hidden = tuple(args.hidden)
    arch = "-".join(map(str, ("in", *hidden, "10")))
    print(f"task {args.task}, MLP {arch} tanh, float32, device {args.device}, {args.threads} threads; "
          f"ER defaults: Algorithm 2, eta 0.5, alpha 0.1; BP: SGD momentum")
    print(f"{'batch':>8} {'rule':>4} {'s/update':>10} {'peak MB':>9}   ER/BP time   ER/BP memory")
    for batch in args.batches:
        updates = args.updates or (3 if batch == 0 else 30)
        res = {r: run_isolated(args.task, hidden, batch, r, updates, args.device, args.threads) for r in ("bp", "er")}
        label = "full" if batch == 0 else str(batch)
        for r in ("bp", "er"):
            print(f"{label:>8} {r:>4} {res[r][0]:10.4f} {res[r][1]:9.1f}", end="")
            if r == "er":
                print(f"   {res['er'][0] / res['bp'][0]:10.2f}x  {res['er'][1] / max(res['bp'][1], 1e-9):11.2f}x")
            else:
                print()


if __name__ == "__main__":
    main()
