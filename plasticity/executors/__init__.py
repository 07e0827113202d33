"""Where a suite's cells run: `local` (worker processes here, the default), `ray` or `slurm`.

The executor is chosen with `plasticity run --executor NAME` or a suite's `[execution]` table
(the command line wins):

    [execution]
    executor = "slurm"            # local | ray | slurm
    cells_per_gpu = 4             # pack small cells onto one GPU, each in its own process

    [execution.ray]
    address = "ray://head:10001"  # else $RAY_ADDRESS, else a local Ray is started
    cpus = 1                      # CPUs (torch threads) per cell

    [execution.slurm]
    partition = "gpu"
    time = 120                    # minutes per job
    cpus = 4                      # CPUs (torch threads) per cell, that is per Slurm task
    gpus = 1                      # GPUs per job; a job runs gpus x cells_per_gpu cells
    mem = "16G"                   # per job
    array_parallelism = 64        # jobs of the array running at once (--jobs N: N cells at once)
    sbatch = { account = "lab", qos = "normal" }   # any sbatch option no key here sets (time, cpus-per-task,
                                                   # mem, ... are refused: give the key instead)
    setup = ["module load cuda", "source ~/venv/bin/activate"]
    requeues = 3                  # how often a preempted or timed-out job is requeued
    folder = "slurm-jobs"         # submitit's job folder (default: <out>/slurm; relative to the current
                                  # folder), on the shared file system
    backend = "slurm"             # "local": submitit's LocalExecutor, jobs as processes on this machine

An executor takes cells and hands back each one's final line (`CellExecutor.submit` /
`CellExecutor.wait`, or `run` for a whole list); nothing else knows where a cell ran. Every
cell keeps the results store's rules: a worker, job or node killed mid-cell leaves nothing that
reads as complete, and the same command resumes. See the README, "Run on a cluster".
"""
from __future__ import annotations

import importlib
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PlasticityError
from ..execution import EXECUTORS, Execution, check_device_name, parse_execution, parse_slurm_option

__all__ = ["EXECUTORS", "CellContext", "CellExecutor", "Execution", "check_device_name", "failure",
           "open_executor", "parse_execution", "parse_slurm_option", "require"]

#: how a missing optional dependency is installed, by executor
EXTRAS = {"ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}


def require(executor: str) -> Any:
    """Import the optional dependency of `executor`, or say which extra installs it."""
    module, extra = EXTRAS[executor]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PlasticityError(f"--executor {executor} needs the '{module}' package, which is not installed "
                              f"({exc}): pip install -e '.[{extra}]'") from None


# ---- the interface every executor offers ------------------------------------------------------

@dataclass
class CellContext:
    """What every cell of one run shares, wherever it runs."""
    runs_dir: Path
    device: str
    provenance: dict[str, Any]
    data_dir: Path | None
    plugin_dirs: list[Path]
    #: {cell_id: {"hash", "parts"}}: the fingerprints the driver expects (a node running other code is refused)
    manifest: dict[str, dict[str, Any]]
    show: bool = True


class CellExecutor:
    """Runs cells somewhere and hands back each one's final line.

    `submit(cell)` starts a cell (at most `slots` run at once: `run` keeps that many in flight);
    `wait()` blocks until at least one submitted cell has ended and returns (cell, outcome)
    pairs, [] when nothing is in flight. An outcome is the cell's final line, or
    `{"status": "held", "holder": ...}` when another run holds it, or a final line with
    `"by_other_run": True` when another run finished it. A search submits its trials (cells)
    the same way, one at a time, as it asks for them, each with its `RemoteTrial` (Ray and
    Slurm; a local search runs trials in its own processes).
    """

    slots: int = 1

    def submit(self, cell: Any, trial: Any = None) -> None:
        raise NotImplementedError

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        raise NotImplementedError

    def run(self, cells: Iterable[Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Every cell of `cells`, `slots` at a time; yield (cell, outcome) as each ends."""
        queue = deque(cells)
        while queue or self.in_flight:
            while queue and self.in_flight < self.slots:
                self.submit(queue.popleft())
            yield from self.wait()

    def stop(self) -> None:
        """Interrupted: cancel the cells in flight (they leave only `.part` files) and let go."""

    def close(self) -> None:
        """Every cell has ended: let go of what the executor holds."""


def failure(cell: Any, what: str, reason: str, detail: str) -> dict[str, Any]:
    """The outcome of a cell whose worker or job died before the cell could end (no file was
    written): an error whose message says `what` failed and why (`reason`, one line), shown at
    once with `detail` (the traceback or the job's log), as a local cell's error keeps its traceback."""
    from tqdm.auto import tqdm

    from ..runner import _describe

    message = f"{what}: {' '.join(reason.split())[:300]}"
    name = _describe(cell)
    tqdm.write(f"cell {name} ({cell.cell_id}) failed, {message}\n{detail.rstrip()}", file=sys.stderr)
    return {"status": "error", "message": message, "traceback": detail, "remote_failure": True}


def open_executor(execution: Execution, ctx: CellContext, jobs: int | None) -> CellExecutor:
    """The executor `execution` names, behind the one interface (`plasticity run` drives the
    local pool itself; a search takes any of them from here)."""
    if execution.executor == "ray":
        from .ray import RayExecutor
        return RayExecutor(execution, ctx, jobs)
    if execution.executor == "slurm":
        from .slurm import SlurmExecutor
        return SlurmExecutor(execution, ctx, jobs)
    from .local import LocalExecutor
    return LocalExecutor(ctx, jobs)
