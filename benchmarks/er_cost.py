"""Seconds and peak memory per full-batch ER update, per hidden width (and test accuracy per update).

Each configuration (width × dtype × hidden trained or frozen) runs in a fresh process, so memory
one run freed cannot hide another's. The child loads MNIST (or `--task`), keeps the first
`--n-train` training images, builds the 784-W-10 tanh network, records its resident memory,
resets the kernel's high-water mark (/proc/self/clear_refs, Linux) and runs `--updates`
full-batch updates of Algorithm 2 (η = 1, α = 0: the paper's full-batch form). It prints per
update the seconds and the test accuracy, and the peak resident memory of the whole process
(`ru_maxrss`: data included) and its rise above the start (the update's own peak: what torch
allocated, which tracemalloc would not see). On CUDA the peak is torch's allocator statistic.

Reduced scale (what a shared 2-core machine allows):
    PLASTICITY_DATA=../shared/data python benchmarks/er_cost.py --n-train 10000 --widths 1024 2048 4096
The full-scale sweep (a quiet machine; up to minutes per update at 8192):
    PLASTICITY_DATA=../shared/data python benchmarks/er_cost.py --n-train 0 --widths 1024 2048 4096 8192 \\
        --dtypes float64 float32 --hidden trained frozen --updates 3
Timings are only figures on a quiet machine: the header prints the load average beside them.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queue_module
import resource
import time
from pathlib import Path


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current RSS
        return True
    except OSError:
        return False


def measure(task_name: str, width: int, n_train: int, dtype_name: str, train_hidden: bool, updates: int,
            device_name: str, threads: int, layers: int = 1, rule_params: dict | None = None) -> dict:
    """Per update seconds and test accuracy, and peak memory (MB), in this process.

    `n_train` 0 trains on all the task's training images, the validation split put back (MNIST:
    all 60,000, as the paper). `layers` hidden layers of `width` each; `rule_params` override ER's.
    """
    import torch

    from plasticity import registry
    from plasticity.engine import evaluate, resolve_device

    torch.set_num_threads(threads)
    registry.load_plugins()
    device = resolve_device(device_name)
    dtype = getattr(torch, dtype_name)
    task_cls = registry.get_task(task_name)
    task = task_cls(task_cls.Params(hidden=(width,) * layers, activation="tanh", batch_size=0))
    data = task.data(device, dtype)
    if n_train <= 0:  # the whole training set: validation goes back in (nothing here is tuned on it)
        x, y = torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y])
    else:
        x, y = data.train.x[:n_train], data.train.y[:n_train]
    net = task.build_network(data.n_inputs, data.n_classes, torch.Generator().manual_seed(0)).to(device, dtype)
    rule_cls = registry.get_rule("er")
    params = {"eta": 1.0, "alpha": 0.0, "train_hidden": train_hidden, **(rule_params or {})}
    rule = rule_cls(net, rule_cls.Params(**params), None,
                    torch.Generator(device=device).manual_seed(0))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated() / 2**20
    else:
        start = _rss_mb("VmRSS")
        reset = _reset_peak()
    seconds, accuracy = [], []
    for _ in range(updates):
        t0 = time.perf_counter()
        rule.update(x, y)
        sync()
        seconds.append(time.perf_counter() - t0)
        accuracy.append(evaluate(net, data.test)[0])
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        total = peak
    else:
        total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak = _rss_mb("VmHWM") if reset else total
    return {"n": len(y), "seconds": seconds, "accuracy": accuracy, "peak_total_mb": total,
            "peak_above_start_mb": peak - start}


def _child(args: tuple, queue) -> None:
    queue.put(measure(*args))


def run_isolated(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(args, queue))
    proc.start()
    while True:  # a child that dies (missing data, out of memory) puts nothing: do not wait forever
        try:
            result = queue.get(timeout=1.0)
        except queue_module.Empty:
            if not proc.is_alive():
                raise SystemExit(f"the measuring process failed (exit code {proc.exitcode}); see its error above")
            continue
        proc.join()
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="mnist")
    ap.add_argument("--widths", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--n-train", type=int, default=10000, help="first N training images; 0 = all")
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    ap.add_argument("--hidden", nargs="+", default=["trained"], choices=["trained", "frozen"],
                    help="frozen: only the output layer is solved (ER's train_hidden = false)")
    ap.add_argument("--updates", type=int, default=1)
    ap.add_argument("--layers", type=int, default=1, help="hidden layers, each --widths wide")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="ER parameters other than eta 1, alpha 0 (e.g. target_bound=0.05 alpha=1e-3)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rule_params = {}
    for item in args.set:
        key, _, value = item.partition("=")
        rule_params[key] = value if value.isalpha() else float(value)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    net = "784-" + "-".join(["W"] * args.layers) + "-10"
    print(f"task {args.task}, first {args.n_train or 'all'} training images, {net} tanh, ER Algorithm 2 full batch "
          f"eta 1 alpha 0 {' '.join(args.set)}, device {args.device}, {args.threads} threads; "
          f"load average before: {load}")
    print(f"{'width':>6} {'dtype':>8} {'hidden':>8} {'s/update':>22} {'peak MB':>8} {'upd. MB':>8}"
          f"   test acc. % per update")
    for width in args.widths:
        for dtype in args.dtypes:
            for hidden in args.hidden:
                r = run_isolated(args.task, width, args.n_train, dtype, hidden == "trained", args.updates,
                                 args.device, args.threads, args.layers, rule_params)
                secs = " ".join(f"{s:.1f}" for s in r["seconds"])
                accs = " ".join(f"{100 * a:.2f}" for a in r["accuracy"])
                print(f"{width:>6} {dtype:>8} {hidden:>8} {secs:>22} {r['peak_total_mb']:8.0f} "
                      f"{r['peak_above_start_mb']:8.0f}   {accs}", flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
