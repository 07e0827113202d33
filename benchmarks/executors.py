"""Executor overhead and scaling: wall time of the same suite on local, Ray and Slurm executors.

Each run is a fresh `plasticity run` command (its Ray start-up and job start-ups included, as a
user pays them) into its own folder, with the same `--jobs` for every executor; the executors
alternate so that drifting machine load hits each alike. Slurm is submitit's LocalExecutor
(`--slurm backend=local`): jobs as processes on this machine, so its figure is the cost of a
fresh Python per job, not a cluster's queue wait. Each cell gets the same torch threads on every
executor (local's share: CPUs // jobs). Prints:

  overhead  the quick suite with --jobs 2: wall time of each executor over local's, and the
            extra seconds per cell
  scaling   a 12-cell digits suite with --jobs 1 and 2: wall time per executor, and 1 -> 2 speed-up

and the load average before and after (figures from a busy machine mean little).

    python benchmarks/executors.py [--only overhead|scaling] [--repeats 1] [--executors local ray slurm]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's plasticity, as the commands it starts use
SCALING_SUITE = """name = "scaling12"
description = "12 digits cells: bp, fa and dfa x 4 seeds, 100 epochs (seconds each: workers, not start-up, decide)"
seeds = 4
[budget]
epochs = 100
[[tasks]]
name = "digits"
[[rules]]
name = "bp"
[[rules]]
name = "fa"
[[rules]]
name = "dfa"
"""
EXECUTOR_FLAGS = {"local": [], "ray": ["--executor", "ray"],
                  "slurm": ["--executor", "slurm", "--slurm", "backend=local"]}


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def with_threads(suite: str, jobs: int, folder: Path) -> str:
    """The suite file with `[execution]` CPUs per cell set to local's share (cpu_count // jobs
    torch threads per cell; a serial local run uses them all), so every executor computes each
    cell with the same number of threads. Where a cell runs is not part of its identity."""
    from plasticity.suite import resolve_suite_path

    threads = max(1, (os.cpu_count() or 1) // jobs)
    path = folder / f"{Path(suite).stem}-t{threads}.toml"
    text = resolve_suite_path(suite).read_text()
    path.write_text(text + f"\n[execution.ray]\ncpus = {threads}\n[execution.slurm]\ncpus = {threads}\n")
    return str(path)


def timed_run(suite: str, executor: str, jobs: int, folder: Path) -> float:
    """Wall seconds of one `plasticity run` command; a failed run stops the benchmark."""
    out = folder / f"{executor}-j{jobs}-{time.monotonic_ns()}"
    suite = with_threads(suite, jobs, folder)
    command = [sys.executable, "-m", "plasticity.cli", "run", suite, "--out", str(out), "--jobs", str(jobs),
               "--device", "cpu", "--no-report", "--no-progress", *EXECUTOR_FLAGS[executor]]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def measure(suite: str, executors: list[str], jobs: int, repeats: int, folder: Path) -> dict[str, float]:
    """Best wall time of `repeats` runs per executor, the executors alternating."""
    walls: dict[str, list[float]] = {e: [] for e in executors}
    for _ in range(repeats):
        for executor in executors:
            walls[executor].append(timed_run(suite, executor, jobs, folder))
            print(f"  {executor:<6} --jobs {jobs}: {walls[executor][-1]:7.1f} s   (load {load()})", flush=True)
    return {e: min(w) for e, w in walls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("overhead", "scaling"), default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--executors", nargs="+", default=list(EXECUTOR_FLAGS), choices=list(EXECUTOR_FLAGS))
    args = parser.parse_args()
    executors = ["local"] + [e for e in args.executors if e != "local"]
    print(f"load average before: {load()}  ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="plasticity-executors-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "overhead"):
            from plasticity import registry
            from plasticity.suite import load_suite
            registry.load_plugins()
            cells = len({c.cell_id for c in load_suite("quick").cells})
            print(f"overhead: the quick suite ({cells} cells), --jobs 2")
            best = measure("quick", executors, 2, args.repeats, folder)
            for executor in executors[1:]:
                extra = (best[executor] - best["local"]) / cells
                print(f"  {executor:<6} / local: {best[executor] / best['local']:.2f}x wall time, "
                      f"{extra:+.2f} s per cell ({best[executor]:.1f} s against {best['local']:.1f} s)")
        if args.only in (None, "scaling"):
            suite = folder / "scaling12.toml"
            suite.write_text(SCALING_SUITE)
            print("scaling: a 12-cell digits suite (bp, fa, dfa x 4 seeds, 100 epochs)")
            one = measure(str(suite), executors, 1, args.repeats, folder)
            two = measure(str(suite), executors, 2, args.repeats, folder)
            for executor in executors:
                print(f"  {executor:<6} 1 worker {one[executor]:6.1f} s, 2 workers {two[executor]:6.1f} s, "
                      f"speed-up {one[executor] / two[executor]:.2f}x")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
