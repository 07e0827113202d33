"""Cells here: in this process (`jobs` 1) or on the one pool of worker processes
(plasticity.pool), behind the `CellExecutor` interface. This is the local path of
`plasticity run` (and of anything that hands out cells one at a time): each cell goes through
the one worker function (claimed, checked, trained, written into `runs/`), its worker ended
with the run."""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..engine import resolve_device
from ..errors import PlasticityError
from ..pool import WorkerPool
from ..worker import CellBar, describe, work
from .base import CellContext, CellExecutor


class LocalExecutor(CellExecutor):
    def __init__(self, ctx: CellContext, jobs: int | None) -> None:
        self.ctx = ctx
        self.slots = jobs or 1
        self.device = resolve_device(ctx.device)
        self.pool = WorkerPool(self.slots, ctx.plugin_dirs, ctx.show) if self.slots > 1 else None
        self.provenance = (ctx.provenance if self.pool is None
                           else {**ctx.provenance, "torch_threads": self.pool.threads, "jobs": self.slots})
        self.pending: dict[Future, Any] = {}
        self.ready: list[tuple[Any, dict[str, Any]]] = []

    @property
    def in_flight(self) -> int:
        return len(self.pending) + len(self.ready)

    def submit(self, cell: Any, trial: Any = None) -> None:
        """Run `cell` (a search trial's, with its `RemoteTrial`) here now or on the pool."""
        fp = self.ctx.manifest[cell.cell_id]
        where = (self.ctx.runs_dir, self.device, self.provenance, self.ctx.data_dir, fp)
        if self.pool is None:  # here, now: the bar on the line below the run's
            if trial is not None:
                from ..search.objective import work_trial
                self.ready.append((cell, work_trial(cell, *where, trial)))
            else:
                self.ready.append((cell, work(cell, *where, CellBar(describe(cell), 1, self.ctx.show))))
            return
        fut = self.pool.submit_trial(cell, *where, trial) if trial is not None else self.pool.submit(cell, *where)
        self.pending[fut] = cell

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        if self.ready:
            out, self.ready = self.ready, []
            return out
        if not self.pending:
            return []
        done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            cell = self.pending.pop(fut)
            try:
                out.append((cell, fut.result()))
            except BrokenProcessPool:
                raise PlasticityError(
                    f"a worker process died while running {describe(cell)} or another cell (killed from "
                    f"outside, or out of memory?); finished cells are kept in {self.ctx.runs_dir}: run the same "
                    f"command again to resume") from None
        return out

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
