"""The cell writer of the results store: one JSON-lines file per cell under `reports/<suite>/runs/`.

A cell's lines are written to `<id>.jsonl.part` and flushed as they come; only when the final
line is written is the file renamed to `<id>.jsonl` (os.replace is atomic), so a crash or Ctrl-C
never leaves a file that reads as complete. A cell that raised is kept as `<id>.error.jsonl`
for the report and retried on the next run. What the lines hold, and how they are read back
and refused when damaged: plasticity.results.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import IO, Any

from .claims import Claim, claim_cell
from .errors import PlasticityError


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
    """Appends lines to a cell's `.part` file; `finish` renames it into place.

    The writer holds the cell's claim (claims.py) from opening the `.part` file until it is
    renamed or left behind, so no two processes ever write one `.part` file; `CellHeld` is
    raised when another live process holds the cell. A caller that claimed the cell already
    (the worker function) hands its `claim` over: the writer then takes none and leaves that
    one to its owner. The final line records how many evaluation lines precede it, so a reader
    notices lines deleted by hand.
    """

    def __init__(self, runs_dir: Path, cell_id: str, claim: Claim | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.cell_id = cell_id
        self.part = self.runs_dir / f"{cell_id}.jsonl.part"
        self.evals_written = 0
        self._claim: Claim | None = claim_cell(self.runs_dir, cell_id) if claim is None else None
        try:
            if os.path.lexists(self.part) and not _is_regular(self.part):
                _set_aside(self.part)
            # O_NOFOLLOW: a symlink planted at the .part name is never followed (and truncated)
            fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
            self._fh: IO[str] | None = open(fd, "w", encoding="utf-8")
        except BaseException:
            self._release()
            raise

    @property
    def is_open(self) -> bool:
        """Whether lines can still be written (neither finished nor closed)."""
        return self._fh is not None

    def write(self, record: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps(_clean(record), allow_nan=False) + "\n")
        self._fh.flush()
        if record.get("type") == "eval":
            self.evals_written += 1

    def finish(self, final: dict[str, Any]) -> Path:
        """Write the final line, fsync, and move the file to its complete (or error) name."""
        self.write({"type": "final", **final, "evals": self.evals_written})
        assert self._fh is not None
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        suffix = ".error.jsonl" if final["status"] == "error" else ".jsonl"
        target = self.runs_dir / f"{self.cell_id}{suffix}"
        try:
            if os.path.lexists(target) and os.path.isdir(target) and not os.path.islink(target):
                _set_aside(target)  # os.replace cannot overwrite a directory
            os.replace(self.part, target)
            if suffix == ".jsonl":
                stale = self.runs_dir / f"{self.cell_id}.error.jsonl"
                if os.path.lexists(stale):
                    if os.path.isdir(stale) and not os.path.islink(stale):
                        _set_aside(stale)
                    else:
                        stale.unlink(missing_ok=True)
        finally:
            self._release()
        return target

    def close(self) -> None:
        """Leave the `.part` file as it is (an interrupted cell): never reads as complete."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._release()

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None


def store_lines(runs_dir: Path, cell_id: str, lines: list[str], claim: Claim | None = None) -> Path:
    """Write a cell's lines that were produced elsewhere (a remote worker without a shared file
    system) through a `CellWriter`: the same claim (`claim`, when the caller holds it), `.part`
    file and final rename as a cell run here, and the same bytes (each line is a record the
    writer serialises again). Lines that do not end in a final line are refused before anything
    is written."""
    try:
        records = [json.loads(line) for line in lines]
    except ValueError as exc:
        raise PlasticityError(f"cell {cell_id}: a line handed back by its worker is not JSON ({exc})") from None
    if (not records or not all(isinstance(r, dict) for r in records) or records[0].get("type") != "header"
            or records[-1].get("type") != "final"):
        raise PlasticityError(f"cell {cell_id}: its worker handed back {len(records)} lines that do not run "
                              f"from a header to a final line")
    writer = CellWriter(runs_dir, cell_id, claim)
    try:
        for record in records[:-1]:
            writer.write(record)
        final = {k: v for k, v in records[-1].items() if k not in ("type", "evals")}
        return writer.finish(final)
    except BaseException:
        writer.close()  # the .part file stays, never read as complete
        raise


def _is_regular(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


def _set_aside(path: Path) -> Path:
    """Rename something that is in the way (a directory named like a run file) out of the way."""
    for n in range(1000):
        aside = path.with_name(f"{path.name}.malformed{n or ''}")
        if not os.path.lexists(aside):
            os.replace(path, aside)
            return aside
    raise PlasticityError(f"cannot move {path} out of the way: remove it by hand")


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)
