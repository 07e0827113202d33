"""The local worker processes behind the `CellExecutor` interface, for callers that hand out
cells one at a time (a search asking for its next trial). `plasticity run` keeps driving the
runner's pool directly; this wraps the same pool (`runner._WorkerPool`), so a cell runs here
exactly as it does there: claimed, written into `runs/`, its worker ended with the run."""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import PlasticityError
from . import CellContext, CellExecutor


class LocalExecutor(CellExecutor):
    def __init__(self, ctx: CellContext, jobs: int | None) -> None:
        from ..engine import resolve_device
        from ..runner import _WorkerPool

        self.ctx = ctx
        self.slots = jobs or 1
        self.device = resolve_device(ctx.device)
        self.pool = _WorkerPool(self.slots, ctx.plugin_dirs, ctx.show)
        self.provenance = {**ctx.provenance, "torch_threads": self.pool.threads, "jobs": self.slots}
        self.pending: dict[Future, Any] = {}

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, cell: Any, trial: Any = None) -> None:
        from ..runner import _work

        if trial is not None:
            raise PlasticityError("a local search runs its trials in its own processes (plasticity.search.study), "
                                  "not through the local pool")
        fut = self.pool.pool.submit(_work, cell, self.ctx.runs_dir, str(self.device), self.provenance,
                                    self.ctx.data_dir)
        self.pending[fut] = cell

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        if not self.pending:
            return []
        done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            cell = self.pending.pop(fut)
            try:
                out.append((cell, fut.result()))
            except BrokenProcessPool:
                raise PlasticityError(f"a worker process died while running cell {cell.cell_id} or another "
                                      f"(killed from outside, or out of memory?); finished cells are kept in "
                                      f"{self.ctx.runs_dir}") from None
        return out

    def stop(self) -> None:
        self.pool.stop()

    def close(self) -> None:
        self.pool.shutdown()
