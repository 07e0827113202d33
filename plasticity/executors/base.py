"""The interface every executor offers (`CellExecutor`), what the cells of one run share
(`CellContext`), and what an executor needs besides: its optional package, the outcome of a
cell whose worker died."""
from __future__ import annotations

import importlib
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PlasticityError

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
    #: {cell_id: fingerprint}: each cell's fingerprint as the driver computed it, once (a node running
    #: other code is refused); a full one (with "files") goes into the cell's header as it is
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

    from ..worker import describe

    message = f"{what}: {' '.join(reason.split())[:300]}"
    name = describe(cell)
    tqdm.write(f"cell {name} ({cell.cell_id}) failed, {message}\n{detail.rstrip()}", file=sys.stderr)
    return {"status": "error", "message": message, "traceback": detail, "remote_failure": True}


