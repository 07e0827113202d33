"""The results store: one JSON-lines file per cell under `reports/<suite>/runs/`.

A cell's lines are written to `<id>.jsonl.part` and flushed as they come; only when the final
line is written is the file renamed to `<id>.jsonl` (os.replace is atomic), so a crash or Ctrl-C
never leaves a file that reads as complete. A cell that raised is kept as `<id>.error.jsonl`
for the report and retried on the next run.

Line types:
  {"type": "header", "cell_id", "config", "labels", "thresholds", "provenance", "started"}
  {"type": "eval", "updates", "epoch", "examples", "train_seconds", "train_loss",
   "val_accuracy", "val_loss", "test_accuracy", "diagnostics": {...}, "feedback": {...}}
  {"type": "final", "status": "complete" | "diverged" | "error", "updates", "examples",
   "train_seconds", "val_accuracy", "test_accuracy", "updates_to": {thr: n | null},
   "examples_to", "seconds_to", "message", "finished", "wall_seconds"}
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, IO

FINISHED = ("complete", "diverged")


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every line parses with any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class CellWriter:
    """Appends lines to a cell's `.part` file; `finish` renames it into place."""

    def __init__(self, runs_dir: Path, cell_id: str) -> None:
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.cell_id = cell_id
        self.part = self.runs_dir / f"{cell_id}.jsonl.part"
        self._fh: IO[str] | None = open(self.part, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps(_clean(record), allow_nan=False) + "\n")
        self._fh.flush()

    def finish(self, final: dict[str, Any]) -> Path:
        """Write the final line, fsync, and move the file to its complete (or error) name."""
        self.write({"type": "final", **final})
        assert self._fh is not None
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        suffix = ".error.jsonl" if final["status"] == "error" else ".jsonl"
        target = self.runs_dir / f"{self.cell_id}{suffix}"
        os.replace(self.part, target)
        if suffix == ".jsonl":
            (self.runs_dir / f"{self.cell_id}.error.jsonl").unlink(missing_ok=True)
        return target

    def close(self) -> None:
        """Leave the `.part` file as it is (an interrupted cell): never reads as complete."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class CellRecord:
    """One cell read back: header, evaluation lines and the final line (None if absent)."""
    path: Path
    header: dict[str, Any]
    evals: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return self.final["status"] if self.final else "incomplete"

    @property
    def config(self) -> dict[str, Any]:
        return self.header["config"]


def read_cell(path: Path) -> CellRecord | None:
    """Parse one runs file; None if it has no readable header. A torn last line is ignored."""
    header, evals, final = None, [], None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a crash: everything before it is still good
            kind = rec.get("type")
            if kind == "header":
                header = rec
            elif kind == "eval":
                evals.append(rec)
            elif kind == "final":
                final = rec
    if header is None:
        return None
    return CellRecord(Path(path), header, evals, final)


def is_complete(runs_dir: Path, cell_id: str) -> bool:
    """True when the cell has a finished file (complete or diverged) to skip on rerun."""
    path = Path(runs_dir) / f"{cell_id}.jsonl"
    if not path.exists():
        return False
    rec = read_cell(path)
    return rec is not None and rec.status in FINISHED


def load_cells(suite_dir: Path, include_partial: bool = True) -> list[CellRecord]:
    """Every cell of a suite folder: finished, errored, and (optionally) interrupted ones."""
    runs = Path(suite_dir) / "runs"
    if not runs.is_dir():
        return []
    patterns = ["*.jsonl"] + (["*.jsonl.part"] if include_partial else [])
    cells: dict[str, CellRecord] = {}
    for pattern in patterns:
        for path in sorted(runs.glob(pattern)):
            rec = read_cell(path)
            if rec is None:
                continue
            cid = rec.header["cell_id"]
            # A finished file wins over an error file or a leftover .part of the same cell.
            if cid not in cells or (rec.status in FINISHED and cells[cid].status not in FINISHED):
                cells[cid] = rec
    return list(cells.values())


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)
