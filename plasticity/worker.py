"""The one worker function: claim a cell, check it is not finished with its fingerprint, train
it, write it. Every executor (this process, the local pool, a Ray task, a Slurm task) and the
search run cells through `work`; they only decide where and when it runs.

The engine yields a cell's records (plasticity.engine.train_cell); `run_cell` writes them through
the results store (`CellWriter`: the `.part` file, the claim, the final rename). A cell's
fingerprint is computed once, on the driver, and handed to `work` (a remote node computes it once
more, only to prove it runs the same code: plasticity.executors.remote).
"""
from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .cells import Cell
from .claims import CellHeld, Claim, claim_cell
from .engine import Progress, train_cell
from .errors import PlasticityError
from .fingerprint import fingerprint
from .provenance import machine_load
from .results import finished_cell
from .writer import CellWriter

HELD = "held"  # an outcome, not a status: another live run holds the cell
BAR_REFRESH_SECONDS = 0.5


def describe(cell: Cell) -> str:
    """A cell in a few words: task, variant, seed (progress bars, messages)."""
    return f"{cell.task.name} {cell.labels.get('variant', cell.rule.name)} s{cell.seed}"


class CellBar:
    """A tqdm bar of one cell's updates, redrawn from the engine's `Progress` on a clock.

    The engine hands over its Progress object at the start, at evaluations and at the end; a
    daemon thread reads `updates` every `interval` seconds, so the training loop pays nothing
    per update for the bar.
    """

    def __init__(self, desc: str, position: int, enabled: bool, file: Any = None,
                 interval: float = BAR_REFRESH_SECONDS) -> None:
        self.desc, self.position, self.enabled, self.file = desc, position, enabled, file
        self.interval = interval
        self.bar: tqdm | None = None
        self.shown = 0
        self._state: Progress | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        self._state = p
        if self.bar is None:
            self.bar = tqdm(total=p.total_updates, desc=self.desc[:48], unit="upd", position=self.position,
                            leave=False, dynamic_ncols=True, mininterval=0, file=self.file)
            self._thread = threading.Thread(target=self._refresh, name="plasticity-bar", daemon=True)
            self._thread.start()
        self.sync()

    def sync(self) -> None:
        """Move the bar to the state's update count."""
        with self._lock:
            if self.bar is None or self._state is None:
                return
            updates = self._state.updates
            if updates != self.shown:
                self.bar.update(updates - self.shown)
                self.shown = updates

    def _refresh(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sync()
        if self.bar is not None:
            self.bar.close()


def cell_header(cell: Cell, fp: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """The header facts known before the cell trains: its id, configuration, fingerprint, provenance."""
    return {"type": "header", "cell_id": cell.cell_id, "config": cell.config(), "labels": cell.labels,
            "fingerprint": fp, "provenance": provenance,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_start": machine_load()}


def write_records(records: Iterator[dict[str, Any]], writer: CellWriter, header: dict[str, Any]) -> dict[str, Any]:
    """Write the engine's records through `writer` (the header facts merged into `header`); return
    the final line (without its type), the file then renamed into place."""
    for rec in records:
        kind = rec["type"]
        if kind == "header":
            writer.write({**header, **{k: v for k, v in rec.items() if k != "type"}})
        elif kind == "eval":
            writer.write(rec)
        else:
            final = {k: v for k, v in rec.items() if k != "type"}
            writer.finish(final)
            return final
    raise RuntimeError("the engine's records ended without a final line")


def run_cell(cell: Cell, runs_dir: Path, device: torch.device, provenance: dict[str, Any],
             data_dir: Path | None = None, on_progress: Callable[[Progress], None] | None = None,
             fp: dict[str, Any] | None = None, claim: Claim | None = None) -> dict[str, Any]:
    """Train a cell into `runs_dir`; an exception becomes an `error` final line (Ctrl-C does not).
    `fp`: the cell's fingerprint as the driver computed it (else computed here); `claim`: the
    cell's claim when the caller holds it (else the writer claims the cell)."""
    writer = CellWriter(runs_dir, cell.cell_id, claim)
    header = cell_header(cell, fp if fp is not None else fingerprint(cell), provenance)
    try:
        return write_records(train_cell(cell, device, data_dir, on_progress), writer, header)
    except (KeyboardInterrupt, SystemExit):
        writer.close()  # leaves only the .part file: the cell reruns next time
        raise
    except PlasticityError:
        # Missing data, a bad parameter: every later cell would fail the same way, so stop the
        # suite with the message rather than file one error cell per seed.
        writer.close()
        writer.part.unlink(missing_ok=True)
        raise
    except Exception as exc:
        if not writer.is_open:
            raise
        if not writer.part.exists() or writer.part.stat().st_size == 0:
            writer.write({**header, "thresholds": []})
        final = {"status": "error", "message": f"{type(exc).__name__}: {exc}",
                 "traceback": traceback.format_exc(), "updates": 0,
                 "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        writer.finish(final)
        return final


def claim_unfinished(runs_dir: Path, cell_id: str, expected_hash: str) -> tuple[Claim | None, dict[str, Any] | None]:
    """Claim a cell to run it: (claim, None) when it is to run here; (None, outcome) when another
    live run holds it (`{"status": HELD, "holder": ...}`) or finished it with `expected_hash`
    (its file's final line plus `"by_other_run": True`)."""
    Path(runs_dir).mkdir(parents=True, exist_ok=True)  # the claim's lock file lives there
    try:
        claim = claim_cell(runs_dir, cell_id)
    except CellHeld as held:
        return None, {"status": HELD, "holder": held.holder}
    rec = finished_cell(runs_dir, cell_id, expected_hash)  # another run may have finished it meanwhile
    if rec is not None:
        claim.release()
        return None, {**rec.final, "by_other_run": True}
    return claim, None


def work(cell: Cell, runs_dir: Path, device: torch.device, prov: dict[str, Any], data_dir: Path | None,
         fp: dict[str, Any], bar: CellBar | None = None,
         train: Callable[[Path, Claim | None], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one worker function: claim the cell, check that no run finished it with fingerprint
    `fp` meanwhile, train it and write it (with `train(runs_dir, claim)` when given: a search
    trial, written under this one claim);
    else return what `claim_unfinished` found: another run holds it or finished it."""
    claim, outcome = claim_unfinished(runs_dir, cell.cell_id, fp["hash"])
    if claim is None:
        return outcome
    with claim:
        try:
            if train is not None:
                return train(runs_dir, claim)
            # a manifest entry without its files (built by hand) is not a header's fingerprint
            return run_cell(cell, runs_dir, device, prov, data_dir, bar, fp if "files" in fp else None, claim)
        finally:
            if bar is not None:
                bar.close()
