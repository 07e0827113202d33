"""Cells as Slurm job arrays through submitit: `plasticity run SUITE --executor slurm`.

The cells are submitted as one job array (`[execution.slurm] array_parallelism`, or `--jobs N`,
bounds how many run at once). Each array job runs `gpus x cells_per_gpu` Slurm tasks when it
asks for GPUs (several small cells packed onto each GPU, each in its own process with its
`cpus` threads), one task otherwise. Workers write their cells into the shared `runs/` folder
under the same claims as local workers, so a job killed mid-cell leaves only a `.part` file and
the same command resumes; a preempted or timed-out job is requeued by submitit (up to
`requeues` times) and starts its cell again.

`backend = "local"` runs the same jobs as processes on this machine with submitit's
LocalExecutor: the Slurm path, tried without a cluster.
"""
from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PlasticityError
from ..execution import Execution
from ..results import finished_cell
from .base import CellContext, CellExecutor, failure, require
from .remote import FATAL, RemoteJob, run_remote_cell

POLL_SECONDS = {"slurm": 5.0, "local": 0.2}  # submitit's watcher batches the sacct calls behind done()


def tasks_per_job(execution: Execution) -> int:
    """Cells one job runs at once: gpus x cells_per_gpu with GPUs, else 1."""
    s = execution.slurm
    return s.gpus * execution.cells_per_gpu if s.gpus else 1


def slurm_parameters(execution: Execution, jobs: int | None) -> dict[str, Any]:
    """submitit's parameters for the array: what each job asks Slurm for (`jobs`: cells at once)."""
    s = execution.slurm
    tasks = tasks_per_job(execution)
    if s.backend == "local":
        params: dict[str, Any] = {"timeout_min": s.time, "tasks_per_node": tasks, "gpus_per_node": s.gpus}
        if s.setup:
            params["setup"] = list(s.setup)
        return params
    params = {"job_name": "plasticity", "time": s.time, "nodes": 1, "ntasks_per_node": tasks,
              "cpus_per_task": s.cpus}
    if s.gpus:
        params["gpus_per_node"] = s.gpus
    for key in ("partition", "mem"):
        if getattr(s, key) is not None:
            params[key] = getattr(s, key)
    parallel = math.ceil(jobs / tasks) if jobs else s.array_parallelism
    if parallel:
        params["array_parallelism"] = parallel
    if s.setup:
        params["setup"] = list(s.setup)
    if s.sbatch:
        params["additional_parameters"] = dict(s.sbatch)
    return params


@dataclass
class CellTasks:
    """One array job: Slurm task `rank` runs `cells[rank]` (a packed job: on GPU rank // cells_per_gpu).

    `checkpoint` makes submitit requeue the job when it is preempted or times out; the cells
    start again from their beginning (a cell is the unit that resumes)."""
    cells: list[Any]
    expected: list[dict[str, Any]]
    job: RemoteJob
    gpus: int
    #: a search trial's `RemoteTrial` per cell (None for a suite's cells)
    trials: list[Any] | None = None

    def __call__(self) -> dict[str, Any] | None:
        import submitit

        rank = submitit.JobEnvironment().local_rank
        if rank >= len(self.cells):
            return None  # the last job of the array may hold fewer cells than it has tasks
        slot = rank // self.job.cells_per_gpu if self.gpus else None
        trial = self.trials[rank] if self.trials else None
        return run_remote_cell(self.cells[rank], self.job, self.expected[rank], gpu_slot=slot, trial=trial)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class SlurmExecutor(CellExecutor):
    def __init__(self, execution: Execution, ctx: CellContext, jobs: int | None) -> None:
        self.submitit = submitit = require("slurm")
        self.ctx = ctx
        s = execution.slurm
        folder = Path(s.folder) if s.folder else ctx.runs_dir.parent / "slurm"
        self.folder = folder / "%j"
        try:
            if s.backend == "local":
                self.executor = submitit.LocalExecutor(self.folder, max_num_timeout=s.requeues)
            else:
                self.executor = submitit.SlurmExecutor(self.folder, max_num_timeout=s.requeues)
            self.executor.update_parameters(**slurm_parameters(execution, jobs))
        except RuntimeError as exc:  # no srun here, a parameter sbatch does not know
            raise PlasticityError(f"--executor slurm: {exc}") from None
        self.tasks = tasks_per_job(execution)
        self.gpus = s.gpus
        # Slurm throttles the array itself; the local backend runs every job it is given at once
        self.slots = 10**9 if s.backend == "slurm" else (jobs or max(1, (os.cpu_count() or 1) // s.cpus))
        self.poll = POLL_SECONDS[s.backend]
        self.local = s.backend == "local"
        self.job = RemoteJob(ctx.device, ctx.provenance, ctx.data_dir, tuple(ctx.plugin_dirs), "slurm", s.cpus,
                             execution.cells_per_gpu, runs_dir=ctx.runs_dir.resolve())
        self.buffer: list[Any] = []
        self.trials: dict[int, Any] = {}  # id(cell) -> its RemoteTrial, for a search's cells
        self.pending: list[tuple[Any, list[Any]]] = []
        self.ready: list[tuple[Any, dict[str, Any]]] = []

    @property
    def in_flight(self) -> int:
        return len(self.buffer) + sum(len(cells) for _, cells in self.pending) + len(self.ready)

    def submit(self, cell: Any, trial: Any = None) -> None:
        # Claimed once, by the job where it runs (the one worker function); here only a cell
        # another run finished meanwhile is spared its job.
        rec = finished_cell(self.ctx.runs_dir, cell.cell_id, self.ctx.manifest[cell.cell_id]["hash"])
        if rec is not None:
            self.ready.append((cell, {**rec.final, "by_other_run": True}))
            return
        self.buffer.append(cell)
        self.trials[id(cell)] = trial

    def _flush(self) -> None:
        """Submit the buffered cells as one job array."""
        if not self.buffer:
            return
        chunks = [self.buffer[i:i + self.tasks] for i in range(0, len(self.buffer), self.tasks)]
        self.buffer = []
        calls = [CellTasks(chunk, [self.ctx.manifest[c.cell_id] for c in chunk], self.job, self.gpus,
                           [self.trials.pop(id(c), None) for c in chunk]) for chunk in chunks]
        try:
            with self.executor.batch():
                jobs = [self.executor.submit(call) for call in calls]
        except Exception as exc:  # noqa: BLE001  sbatch refused the array: say why, not a traceback
            raise PlasticityError(f"--executor slurm: submitting {len(calls)} jobs failed: {exc}") from None
        self.pending += list(zip(jobs, chunks))

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        self._flush()
        while True:
            out, self.ready = self.ready, []
            still = []
            for job, cells in self.pending:
                if job.done():
                    out += self._collect(job, cells)
                else:
                    still.append((job, cells))
            self.pending = still
            if out or not self.pending:
                return out
            time.sleep(self.poll)

    def _collect(self, job: Any, cells: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        try:
            results = job.results()
        except Exception as exc:  # noqa: BLE001  the job died, was cancelled or ran out of requeues
            what = f"its Slurm job {job.job_id} failed"
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            return [(cell, failure(cell, what, reason, _log_tail(job, exc))) for cell in cells]
        out = []
        for cell, result in zip(cells, results):
            if result is not None and result.get("status") == FATAL:
                raise PlasticityError(f"{result['message']} (on node {result.get('node')}, job {job.job_id})")
            if not isinstance(result, dict):
                result = failure(cell, f"its Slurm job {job.job_id} returned nothing", repr(result)[:100], repr(result))
            out.append((cell, result))
        return out

    def stop(self) -> None:
        for job, _ in self.pending:
            try:
                job.cancel(check=False)  # scancel; for a local job, SIGINT to its controller
            except Exception:  # noqa: BLE001  finished meanwhile, or scancel missing: nothing left to stop
                pass
            if self.local:
                _end_local_job(job)
        self.pending = []

    def close(self) -> None:
        pass


def _end_local_job(job: Any) -> None:
    """Kill a local job's controller and every process under it (its tasks): the controller
    ignores SIGINT when started from a background shell, and its tasks ignore SIGTERM."""
    proc = getattr(job, "_process", None)
    if proc is None or proc.poll() is not None:
        return
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()


def _descendants(pid: int) -> list[int]:
    """The processes below `pid` (from /proc; none found where there is no /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _log_tail(job: Any, exc: BaseException, lines: int = 30) -> str:
    """The exception submitit gives (it carries the worker's traceback) and the job's stderr tail."""
    text = f"{type(exc).__name__}: {exc}"
    try:
        err = Path(job.paths.stderr).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return text
    return text + f"\n--- last lines of {job.paths.stderr} ---\n" + "\n".join(err[-lines:])
