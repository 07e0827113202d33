"""What a remote worker (a Ray task, a Slurm task) does with one cell.

`run_remote_cell` loads the plugins, takes its share of CPU threads and its GPU, refuses to run
a cell whose fingerprint differs from the driver's (the node runs other code), records where it
ran, and then either

- writes the cell into the shared `runs/` folder under the cell's claim, exactly as a local
  worker does (`runs_dir` given: Slurm, on the cluster's shared file system); or
- runs it into a private temporary folder and hands its lines back (`runs_dir` None: Ray,
  where the driver writes them through the results store, so nothing half-written ever
  reaches the driver's folder).

A `PlasticityError` (missing data, a bad parameter) comes back as a `fatal` outcome that stops
the run with its message, as it does locally.

A search trial travels the same way with a `RemoteTrial` beside its cell: the worker trains it
as `run_trial_cell` does locally, reporting each evaluation to the study's pruner through the
search's storage (which every node must reach: `--storage`), and the driver tells the study the
outcome. A trial that raises comes back as an `error` outcome (no finished file), as a trial
that raises locally is told FAIL.
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import registry
from ..cells import Cell
from ..engine import resolve_device
from ..errors import PlasticityError
from ..fingerprint import differing_parts, fingerprint
from ..provenance import usable_cpus
from ..worker import run_cell, work

FATAL = "fatal"  # an outcome, not a status: the run stops with the message


@dataclass(frozen=True)
class RemoteTrial:
    """A search trial sent with its cell: where its study lives and how the pruner hears it.

    `pruner` None: the trial runs its whole budget without reporting (no pruning), so the worker
    needs no connection to the storage."""
    storage_url: str
    study_name: str
    trial_id: int
    objective: str
    threshold: float | None
    budget: dict[str, Any]
    prune_after: float
    pruner: Any = None


@dataclass(frozen=True)
class RemoteJob:
    """Everything a remote worker needs besides the cell (picklable; sent with every cell)."""
    device: str
    provenance: dict[str, Any]
    data_dir: Path | None
    plugin_dirs: tuple[Path, ...]
    executor: str
    #: torch threads of this cell: its share of the CPUs of its node or job
    threads: int
    cells_per_gpu: int = 1
    #: the shared `runs/` folder, or None to hand the lines back to the driver
    runs_dir: Path | None = None


def worker_device(name: str, gpu_slot: int | None) -> torch.device:
    """The device on the worker: 'auto' and 'cuda' resolved there (not on the driver, which may
    have no GPU), and a task of a packed Slurm job placed on GPU `gpu_slot` of its job."""
    dev = resolve_device(name)
    if dev.type == "cuda" and dev.index is None and gpu_slot is not None:
        dev = resolve_device(f"cuda:{gpu_slot % torch.cuda.device_count()}")
    return dev


def worker_provenance(base: dict[str, Any], dev: torch.device, job: RemoteJob, threads: int) -> dict[str, Any]:
    """The driver's provenance with what only the worker knows: its node, device, GPU model,
    threads and how many cells shared its GPU."""
    on_gpu = dev.type == "cuda"
    return {**base, "hostname": socket.gethostname(), "node": socket.gethostname(), "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if on_gpu else platform.processor() or "cpu",
            "gpu_model": torch.cuda.get_device_name(dev) if on_gpu else None,
            "cells_per_gpu": job.cells_per_gpu if on_gpu else None,
            "executor": job.executor, "torch_threads": threads, "cpu_count": os.cpu_count(),
            "usable_cpus": usable_cpus(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def run_remote_cell(cell: Cell, job: RemoteJob, expected: dict[str, Any], gpu_slot: int | None = None,
                    bar: Any = None, trial: RemoteTrial | None = None) -> dict[str, Any]:
    """Run one cell (a search trial's, with `trial`) on this worker; the outcome (final line,
    held, fatal), plus `lines` (the cell's JSON lines) when there is no shared `runs_dir`."""
    try:
        registry.load_plugins(list(job.plugin_dirs))
        torch.set_num_threads(job.threads)
        mine = fingerprint(cell)  # once here, only to prove that this node runs the driver's code
        if mine["hash"] != expected.get("hash"):
            parts = ", ".join(differing_parts(mine, expected))
            return {"status": "error", "node": socket.gethostname(),
                    "message": f"not run: node {socket.gethostname()} runs other code or versions than the "
                               f"driver (fingerprint differs in: {parts}); install the same checkout and "
                               f"packages on every node"}
        dev = worker_device(job.device, gpu_slot)
        prov = worker_provenance(job.provenance, dev, job, job.threads)
        if trial is not None:
            return _run_trial(cell, job, dev, prov, trial, bar, mine)
        return _run(cell, job, dev, prov, bar, mine,
                    lambda folder, claim: run_cell(cell, folder, dev, prov, job.data_dir, fp=mine, claim=claim))
    except PlasticityError as exc:
        return {"status": FATAL, "message": str(exc), "node": socket.gethostname()}


def _run(cell: Cell, job: RemoteJob, dev: torch.device, prov: dict[str, Any], bar: Any, fp: dict[str, Any],
         train: Callable[[Path, Any], dict[str, Any]]) -> dict[str, Any]:
    """Train the cell with `train(folder, claim)`: into the shared `runs_dir` through the one worker
    function (claim, finished-by-another-run check), or into a private folder on this node whose
    lines go back with the final line (the driver holds the claim)."""
    if job.runs_dir is not None:
        return {**work(cell, job.runs_dir, dev, prov, job.data_dir, fp, bar, train), "node": prov["node"]}
    folder = Path(tempfile.mkdtemp(prefix="plasticity-cell-"))
    try:
        final = train(folder, None)  # a private folder: the driver holds the cell's claim
        suffix = ".error.jsonl" if final["status"] == "error" else ".jsonl"
        lines = (folder / f"{cell.cell_id}{suffix}").read_text(encoding="utf-8").splitlines()
        return {**final, "node": prov["node"], "lines": lines}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_trial(cell: Cell, job: RemoteJob, dev: torch.device, prov: dict[str, Any], trial: RemoteTrial,
               bar: Any, fp: dict[str, Any]) -> dict[str, Any]:
    """A search trial on this worker, reporting to its pruner; an exception other than Ctrl-C is an
    `error` outcome (no finished file), which the driver tells as FAIL."""
    import traceback

    from ..search.objective import run_trial_cell, trial_reporter

    node = prov["node"]
    on_eval = trial_reporter(trial)
    try:
        return _run(cell, job, dev, prov, bar, fp,
                    lambda folder, claim: run_trial_cell(cell, folder, dev, prov, job.data_dir, on_eval, fp, claim))
    except PlasticityError:
        raise
    except Exception as exc:  # noqa: BLE001  told FAIL by the driver, as a local trial that raises
        return {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:500],
                "traceback": traceback.format_exc(), "node": node}
