"""What the search costs beyond training, what pruning saves, and what a second process on one storage buys.

    PYTHONPATH=. python benchmarks/search_overhead.py                      # digits, small: ~2 min on a quiet machine
    PLASTICITY_DATA=~/data PYTHONPATH=. python benchmarks/search_overhead.py --task mnist --updates 300

Three searches of the same suite, side by side in one script, each in a fresh folder:
  A. 1 process, pruner none     -> overhead = wall ÷ Σ trial training seconds (and ÷ Σ trial cell wall seconds)
  B. 1 process, median pruner   -> share of compute saved = updates the pruned trials did not run ÷ all
                                   trials' full budgets (and training seconds against A)
  C. 2 processes, pruner none   -> trials finished per hour against A
The 1-minute load average is printed before and after each: seconds measured on a busy machine
are inflated, ratios less so.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from plasticity import registry
from plasticity.search.study import run_search
from plasticity.suite import parse_suite

SUITE = """
name = "bench-search"
[budget]
updates = {updates}
[evaluation]
per_decade = 5
feedback_metrics = 0
[[tasks]]
name = "{task}"
params = {{ hidden = {hidden}, batch_size = {batch} }}
[[rules]]
name = "bp"
[[rules]]
name = "fa"
[search]
trials = {trials}
budget = {{ updates = {updates} }}
sampler = "random"
pruner = "{pruner}"
prune_after = 0.2
{trial_eval}
[search.optimizer]
lr = {{ log = [1e-4, 3e-1] }}
momentum = {{ uniform = [0.0, 0.95] }}
"""


def load() -> float:
    return os.getloadavg()[0]


def search(args: argparse.Namespace, pruner: str, jobs: int) -> dict:
    trial_eval = f"evaluation = {{ points = {args.points} }}" if args.points else ""
    text = SUITE.format(updates=args.updates, task=args.task, hidden=args.hidden, batch=args.batch,
                        trials=args.trials, pruner=pruner, trial_eval=trial_eval)
    suite = parse_suite(text)
    with tempfile.TemporaryDirectory() as tmp:
        before = load()
        start = time.perf_counter()
        summary = run_search(suite, Path(tmp), device=torch.device("cpu"), jobs=jobs, data_dir=args.data_dir,
                             progress=False)
        wall = time.perf_counter() - start
        cell_walls = []
        for f in (Path(tmp) / "search" / "runs").glob("*.jsonl"):
            final = json.loads(f.read_text().splitlines()[-1])
            cell_walls.append(final.get("wall_seconds") or 0.0)
    trials = [t for s in summary["studies"] for t in s["trials"]]
    return {"wall": wall, "trials": trials, "load": (before, load()), "cell_wall": sum(cell_walls),
            "train": sum(t["train_seconds"] or 0 for t in trials), "updates": sum(t["updates"] or 0 for t in trials),
            "n": sum(t["state"] in ("COMPLETE", "PRUNED") for t in trials),
            "pruned": sum(t["state"] == "PRUNED" for t in trials)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="digits")
    p.add_argument("--hidden", default="[64]", help="hidden widths as TOML, e.g. [400, 200, 100, 50]")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--updates", type=int, default=400, help="per-trial budget in updates")
    p.add_argument("--trials", type=int, default=8, help="trials per rule (two rules: bp, fa)")
    p.add_argument("--points", type=int, default=4,
                   help="a trial's evenly spaced evaluation points, as tuned-mnist sets them; 0: the suite's "
                        "per_decade = 5 schedule")
    p.add_argument("--data-dir", type=Path, default=None)
    args = p.parse_args()
    registry.load_plugins()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"search of {args.task} hidden {args.hidden}, 2 rules x {args.trials} trials x {args.updates} updates, "
          f"trial evaluation {f'{args.points} points' if args.points else 'per_decade 5'}; {os.cpu_count()} CPUs")

    a = search(args, "none", 1)
    print(f"A  1 process, no pruning:  wall {a['wall']:.1f} s, {a['n']} trials, Σ training {a['train']:.1f} s, "
          f"Σ cell wall {a['cell_wall']:.1f} s (load {a['load'][0]:.2f} -> {a['load'][1]:.2f})")
    print(f"   search overhead = wall / Σ training seconds = {a['wall'] / a['train']:.2f}  (goal <= 1.15)")
    print(f"   search machinery alone = wall / Σ trial cell wall seconds = {a['wall'] / a['cell_wall']:.3f}")

    b = search(args, "median", 1)
    full = 2 * args.trials * args.updates
    print(f"B  1 process, median pruner: wall {b['wall']:.1f} s, {b['pruned']} of {b['n']} trials pruned, "
          f"{b['updates']:,} of {full:,} budget updates run (load {b['load'][0]:.2f} -> {b['load'][1]:.2f})")
    print(f"   compute saved by pruning: {1 - b['updates'] / full:.1%} of updates; "
          f"{1 - b['train'] / a['train']:.1%} of training seconds against A")

    c = search(args, "none", 2)
    rate_a, rate_c = a["n"] / a["wall"] * 3600, c["n"] / c["wall"] * 3600
    print(f"C  2 processes, one storage: wall {c['wall']:.1f} s, {c['n']} trials "
          f"(load {c['load'][0]:.2f} -> {c['load'][1]:.2f})")
    print(f"   trials per hour: 2 processes {rate_c:,.0f} against 1 process {rate_a:,.0f} = {rate_c / rate_a:.2f}x")


if __name__ == "__main__":
    main()
