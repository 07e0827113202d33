"""The results store: one JSON-lines file per cell under `reports/<suite>/runs/`.

A cell's lines are written to `<id>.jsonl.part` and flushed as they come; only when the final
line is written is the file renamed to `<id>.jsonl` (os.replace is atomic), so a crash or Ctrl-C
never leaves a file that reads as complete. A cell that raised is kept as `<id>.error.jsonl`
for the report and retried on the next run.

Which files count is decided here too (`select_cells`): the cells `suite.json` lists (the suite
as `plasticity run` last expanded it) with the fingerprint it recorded for each; see
`plasticity.fingerprint` for what a fingerprint covers.

Line types:
  {"type": "header", "cell_id", "config", "labels", "fingerprint": {"hash", "parts", "files"},
   "thresholds", "provenance", "started"}
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
    """True when the cell has a finished file (complete or diverged), whatever its fingerprint."""
    path = Path(runs_dir) / f"{cell_id}.jsonl"
    if not path.exists():
        return False
    rec = read_cell(path)
    return rec is not None and rec.status in FINISHED


def recorded_fingerprint(rec: CellRecord) -> str | None:
    """The fingerprint hash a cell's header recorded (None: written before fingerprints existed)."""
    fp = rec.header.get("fingerprint")
    return fp.get("hash") if isinstance(fp, dict) else None


def needs_run(runs_dir: Path, cell_id: str, fingerprint: str, keep_stale: bool = False) -> bool:
    """Whether `plasticity run` must (re)run a cell: no finished file, or one whose fingerprint
    differs from `fingerprint` (the code, versions or parameters changed), unless `keep_stale`.

    A stale file is not moved: the rerun replaces it when it finishes, and until then the report
    counts it under "not part of this suite".
    """
    path = Path(runs_dir) / f"{cell_id}.jsonl"
    if not path.exists():
        return True
    rec = read_cell(path)
    if rec is None or rec.status not in FINISHED:
        return True
    return not keep_stale and recorded_fingerprint(rec) != fingerprint


def read_runs(suite_dir: Path, include_partial: bool = True) -> list[CellRecord]:
    """Every readable file of a suite folder's `runs/` (finished, errored, interrupted), unselected."""
    runs = Path(suite_dir) / "runs"
    if not runs.is_dir():
        return []
    patterns = ["*.jsonl"] + (["*.jsonl.part"] if include_partial else [])
    records = []
    for pattern in patterns:
        for path in sorted(runs.glob(pattern)):
            rec = read_cell(path)
            if rec is not None:
                records.append(rec)
    return records


def cell_identity(rec: CellRecord) -> tuple[str, str, Any]:
    """(task, variant, seed) of a cell: what a report row and a mean are keyed by."""
    config = rec.header.get("config") or {}
    labels = rec.header.get("labels") or {}
    rule = (config.get("rule") or {}).get("name") or labels.get("rule") or "?"
    optimizer = (config.get("optimizer") or {}).get("name") or labels.get("optimizer") or "?"
    task = str((config.get("task") or {}).get("name", "?"))
    return task, str(labels.get("variant") or f"{rule} + {optimizer}"), config.get("seed")


@dataclass
class Placement:
    """One file of `runs/` and whether it counts: part of the suite as it expands now, or not and why."""
    record: CellRecord
    in_suite: bool
    #: fingerprint parts that differ from the suite's (empty: current); an in-suite cell with
    #: stale parts was kept by `plasticity run --keep-stale`
    stale: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class Selection:
    """The files of a suite folder, placed: exactly one per cell of the suite, the rest set aside."""
    placements: list[Placement]
    #: cell ids of the suite with no file yet
    missing: list[str]
    #: False when `suite.json` has no cell list (runs of an older version): every cell counts
    has_manifest: bool
    keep_stale: bool = False

    @property
    def cells(self) -> list[CellRecord]:
        """The cells of the suite (current, or kept stale), one per cell id and per (task, variant, seed)."""
        return [p.record for p in self.placements if p.in_suite]

    @property
    def outside(self) -> list[Placement]:
        return [p for p in self.placements if not p.in_suite]

    @property
    def kept_stale(self) -> list[Placement]:
        return [p for p in self.placements if p.in_suite and p.stale]


_RANK = {"complete": 2, "diverged": 2, "error": 1, "incomplete": 0}


def _newest_best(records: list[CellRecord]) -> CellRecord:
    """A finished file over an error file over an interrupted one; then the most recently started."""
    return max(records, key=lambda r: (_RANK.get(r.status, 0), str(r.header.get("started") or ""),
                                       r.path.stat().st_mtime if r.path.exists() else 0.0))


def read_manifest(suite_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """The cell list {cell_id: {"hash", "parts"}} of `suite.json` (None if absent) and its keep_stale flag."""
    try:
        meta = json.loads((Path(suite_dir) / "suite.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, False
    if not isinstance(meta, dict) or not isinstance(meta.get("cells"), dict):
        return None, False
    cells = {str(k): v if isinstance(v, dict) else {} for k, v in meta["cells"].items()}
    return cells, bool(meta.get("keep_stale"))


def select_cells(suite_dir: Path) -> Selection:
    """Place every file of `runs/` against the suite as `plasticity run` last expanded it (`suite.json`).

    A cell of the suite is represented by its file with the expected fingerprint (finished over
    errored over interrupted); a finished file with another fingerprint stands in only when the
    run was told `--keep-stale`, and is marked stale. Everything else (cells the suite no longer
    has, stale files, superseded files) is not part of the suite and enters no table. Without a
    cell list (older runs) every cell id counts. Either way no (task, variant, seed) counts twice.
    """
    from .fingerprint import differing_parts

    manifest, keep_stale = read_manifest(suite_dir)
    by_id: dict[str, list[CellRecord]] = {}
    for rec in read_runs(suite_dir):
        by_id.setdefault(str(rec.header.get("cell_id", "")), []).append(rec)
    placements: list[Placement] = []
    chosen: list[Placement] = []
    for cid, records in by_id.items():
        if manifest is not None and cid not in manifest:
            placements += [Placement(r, False, [], "not in the suite as it expands now (its parameters, "
                                                    "defaults, budget, seeds or rules changed)") for r in records]
            continue
        expected = manifest.get(cid) if manifest is not None else None
        stale = {id(r): differing_parts(r.header.get("fingerprint"), expected) if expected else [] for r in records}
        current = [r for r in records if not stale[id(r)]]
        if current:
            best = _newest_best(current)
        else:
            finished = [r for r in records if r.status in FINISHED]
            best = _newest_best(finished) if keep_stale and finished else None
        for r in records:
            if r is best:
                chosen.append(Placement(r, True, stale[id(r)]))
            elif stale[id(r)]:
                placements.append(Placement(r, False, stale[id(r)], "stale: " + ", ".join(stale[id(r)])
                                            + " changed since it ran; the next `plasticity run` reruns it"))
            else:
                placements.append(Placement(r, False, [], "superseded by a newer file of the same cell"))
    # A (task, variant, seed) that two cell ids claim (runs of several suite versions without a
    # cell list): the newest counts, so that no seed is ever averaged in twice.
    by_key: dict[tuple, list[Placement]] = {}
    for p in chosen:
        by_key.setdefault(repr(cell_identity(p.record)), []).append(p)
    for group in by_key.values():
        best = _newest_best([p.record for p in group])
        for p in group:
            if p.record is best:
                placements.append(p)
            else:
                placements.append(Placement(p.record, False, p.stale, "an older result of the same "
                                            "variant and seed"))
    placements.sort(key=lambda p: p.record.path.name)
    missing = sorted(set(manifest or {}) - {str(p.record.header.get("cell_id")) for p in placements if p.in_suite})
    return Selection(placements, missing, manifest is not None, keep_stale)


def load_cells(suite_dir: Path, include_partial: bool = True) -> list[CellRecord]:
    """The cells of a suite folder that count: one per cell of the suite as it expands now
    (see `select_cells`), finished, errored and (optionally) interrupted."""
    cells = select_cells(suite_dir).cells
    return cells if include_partial else [c for c in cells if not c.path.name.endswith(".part")]


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)
