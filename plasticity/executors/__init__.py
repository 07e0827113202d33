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

from ..execution import EXECUTORS, Execution, check_device_name, parse_execution, parse_slurm_option
from .base import CellContext, CellExecutor, failure, require

__all__ = ["EXECUTORS", "CellContext", "CellExecutor", "Execution", "check_device_name", "failure",
           "open_executor", "parse_execution", "parse_slurm_option", "require"]


def open_executor(execution: Execution, ctx: CellContext, jobs: int | None) -> CellExecutor:
    """The executor `execution` names, behind the one interface: here or the local pool
    (`local`), Ray or Slurm; `plasticity run` and a search take them from here."""
    if execution.executor == "ray":
        from .ray import RayExecutor
        return RayExecutor(execution, ctx, jobs)
    if execution.executor == "slurm":
        from .slurm import SlurmExecutor
        return SlurmExecutor(execution, ctx, jobs)
    from .local import LocalExecutor
    return LocalExecutor(ctx, jobs)
