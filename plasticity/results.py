"""The results store: one JSON-lines file per cell under `reports/<suite>/runs/`.

The reader of the results store: a cell's lines are written by plasticity.writer (`<id>.jsonl.part`
while it runs, renamed to `<id>.jsonl` or `<id>.error.jsonl` with its final line) and read back
here, where anything the writer would not write is refused (`MalformedRun`). The one "is this
cell finished with this fingerprint" check is here too (`finished_cell`).

Which files count is decided here too (`select_cells`): the cells `suite.json` lists (the suite
as `plasticity run` last expanded it) with the fingerprint it recorded for each; see
`plasticity.fingerprint` for what a fingerprint covers.

Line types:
  {"type": "header", "cell_id", "config", "labels", "fingerprint": {"hash", "parts", "files"},
   "thresholds", "provenance", "started"}
  {"type": "eval", "updates", "epoch", "examples", "train_seconds", "train_loss",
   "val_accuracy", "val_loss", "test_accuracy", "diagnostics": {...}, "feedback": {...}}
  {"type": "final", "status": "complete" | "diverged" | "error" | "pruned" (search trials), "updates", "examples",
   "train_seconds", "val_accuracy", "test_accuracy", "updates_to": {thr: n | null},
   "examples_to", "seconds_to", "message", "finished", "wall_seconds"}
"""
from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import PlasticityError

FINISHED = ("complete", "diverged")
#: a search trial stopped early by its pruner (plasticity.search): a finished file, never a complete cell
STOPPED = ("pruned",)


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


# ---- reading: every deviation from what CellWriter writes makes a file malformed --------------

MAX_LINE_BYTES = 16 * 2**20  # far above any real line (an evaluation with per-layer metrics is KBs)
MAX_FILE_BYTES = 2**30
_FILE_KINDS = ((".error.jsonl", "error"), (".jsonl.part", "part"), (".jsonl", "complete"))

_NUM, _OPT_NUM, _INT = "number", "number or null", "non-negative integer"
_STR, _OPT_STR, _DICT, _LIST = "string", "string or null", "object", "list of numbers"
_FRAC, _OPT_FRAC = "fraction in [0, 1]", "fraction in [0, 1] or null"  # accuracies as the engine writes them
_SECS, _OPT_SECS = "number >= 0", "number >= 0 or null"
# field: (expected kind, required)
_SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "header": {"cell_id": (_STR, True), "config": (_DICT, True), "labels": (_DICT, False),
               "thresholds": (_LIST, False), "provenance": (_DICT, False), "data": (_DICT, False),
               "started": (_STR, False)},
    "eval": {"updates": (_INT, True), "epoch": (_NUM, False), "examples": (_INT, False),
             "train_seconds": (_SECS, False), "train_loss": (_OPT_NUM, False), "val_accuracy": (_OPT_FRAC, True),
             "val_loss": (_OPT_NUM, False), "test_accuracy": (_OPT_FRAC, True), "diagnostics": (_DICT, False),
             "feedback": (_DICT, False)},
    "final": {"status": (_STR, True), "evals": (_INT, True), "message": (_OPT_STR, False),
              "updates": (_INT, False), "examples": (_INT, False), "epochs": (_OPT_NUM, False),
              "train_seconds": (_OPT_SECS, False), "val_accuracy": (_OPT_FRAC, False),
              "test_accuracy": (_OPT_FRAC, False), "best_val_accuracy": (_OPT_FRAC, False),
              "updates_to": (_DICT, False), "examples_to": (_DICT, False), "seconds_to": (_DICT, False),
              "wall_seconds": (_OPT_SECS, False), "finished": (_STR, False), "traceback": (_STR, False)},
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fits(kind: str, v: Any) -> bool:
    if kind == _NUM:
        return _is_number(v)
    if kind == _OPT_NUM:
        return v is None or _is_number(v)
    if kind == _INT:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if kind in (_FRAC, _OPT_FRAC):
        return (v is None and kind == _OPT_FRAC) or (_is_number(v) and 0 <= v <= 1)
    if kind in (_SECS, _OPT_SECS):
        return (v is None and kind == _OPT_SECS) or (_is_number(v) and v >= 0)
    if kind == _STR:
        return isinstance(v, str)
    if kind == _OPT_STR:
        return v is None or isinstance(v, str)
    if kind == _DICT:
        return isinstance(v, dict)
    return isinstance(v, list) and all(_is_number(x) for x in v)


class MalformedRun(PlasticityError):
    """A runs file that is not what CellWriter writes: it counts as incomplete and its cell reruns."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{printable(self.path.name)}: {reason}")


def printable(text: str) -> str:
    """`text` with control characters and undecodable bytes escaped, so it stays on one line."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def run_file_kind(path: Path) -> tuple[str, str] | None:
    """(cell id, 'complete' | 'error' | 'part') from a runs file's name; None for other names."""
    name = Path(path).name
    for suffix, kind in _FILE_KINDS:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], kind
    return None


def _read_lines(path: Path) -> list[bytes]:
    """The file's lines (bytes, newline kept), refusing non-regular, unreadable or oversized files."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise MalformedRun(path, f"cannot be read ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        raise MalformedRun(path, "is a symbolic link (run files are regular files)")
    if stat.S_ISDIR(st.st_mode):
        raise MalformedRun(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise MalformedRun(path, "is not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise MalformedRun(path, f"is {st.st_size} bytes, above the {MAX_FILE_BYTES} byte limit")
    lines = []
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fh:
            while True:
                line = fh.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return lines
                if len(line) > MAX_LINE_BYTES:
                    raise MalformedRun(path, f"line {len(lines) + 1} is longer than {MAX_LINE_BYTES} bytes")
                lines.append(line)
    except OSError as exc:
        raise MalformedRun(path, f"cannot be read ({exc.strerror})") from None


def read_cell(path: Path) -> CellRecord | None:
    """Parse and check one runs file.

    Raises `MalformedRun` naming the first deviation from what CellWriter writes. Returns None
    only for a `.part` file cut before its header was written. The last line of a `.part` file
    may be torn by a crash (no newline, not JSON): it is ignored; everything before it counts.
    """
    path = Path(path)
    named = run_file_kind(path)
    if named is None:
        raise MalformedRun(path, "is not named <cell id>.jsonl, <cell id>.error.jsonl or <cell id>.jsonl.part")
    cell_id, kind = named
    lines = _read_lines(path)
    if kind == "part" and lines and not lines[-1].endswith(b"\n"):
        lines.pop()  # torn by a crash mid-write
    if not lines:
        if kind == "part":
            return None
        raise MalformedRun(path, "is empty")
    header, evals, final = None, [], None
    for number, raw in enumerate(lines, 1):
        where = f"line {number}"
        try:
            rec = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise MalformedRun(path, f"{where} is not UTF-8 text") from None
        except (ValueError, RecursionError):
            raise MalformedRun(path, f"{where} is not valid JSON") from None
        if not isinstance(rec, dict):
            raise MalformedRun(path, f"{where} is not a JSON object but {type(rec).__name__}")
        line_type = rec.get("type")
        if line_type not in _SCHEMA:
            raise MalformedRun(path, f"{where} has type {printable(repr(line_type))}, "
                                     f"not one of header, eval, final")
        for key, (expected, required) in _SCHEMA[line_type].items():
            if key not in rec:
                if required:
                    why = " (written before plasticity recorded evaluation counts?)" if key == "evals" else ""
                    raise MalformedRun(path, f"{where} ({line_type}) has no '{key}'{why}")
            elif not _fits(expected, rec[key]):
                raise MalformedRun(path, f"{where} ({line_type}): '{key}' is {printable(repr(rec[key]))[:60]}, "
                                         f"not a {expected}")
        if (line_type == "header") != (number == 1):
            raise MalformedRun(path, f"{where}: the header must be the first line and only there")
        if final is not None:
            raise MalformedRun(path, f"{where} follows the final line")
        if line_type == "header":
            header = rec
            if rec["cell_id"] != cell_id:
                raise MalformedRun(path, f"header cell_id {printable(rec['cell_id'])[:40]!r} does not match "
                                         f"the file name")
        elif line_type == "eval":
            if evals and rec["updates"] < evals[-1]["updates"]:
                raise MalformedRun(path, f"{where}: updates go back from {evals[-1]['updates']} to {rec['updates']}")
            evals.append(rec)
        else:
            final = rec
    assert header is not None
    if kind == "part":
        final = None  # written but not renamed: the cell did not finish as far as anyone knows
    else:
        _check_final(path, kind, evals, final)
    return CellRecord(path, header, evals, final)


def _check_final(path: Path, kind: str, evals: list[dict[str, Any]], final: dict[str, Any] | None) -> None:
    """A complete or error file ends in a final line that agrees with its name and its evaluations."""
    if final is None:
        raise MalformedRun(path, "has no final line")
    status = final["status"]
    wanted = ("error",) if kind == "error" else FINISHED + STOPPED
    if status not in wanted:
        raise MalformedRun(path, f"final status {printable(status)[:30]!r} does not fit the file name "
                                 f"(expected {' or '.join(wanted)})")
    if final["evals"] != len(evals):
        raise MalformedRun(path, f"final line records {final['evals']} evaluation lines, the file has {len(evals)}")
    if kind == "complete":
        if not evals:
            raise MalformedRun(path, "has no evaluation lines")
        if final.get("updates") != evals[-1]["updates"]:
            raise MalformedRun(path, f"final line says {final.get('updates')} updates, the last evaluation "
                                     f"{evals[-1]['updates']}")


def recorded_fingerprint(rec: CellRecord) -> str | None:
    """The fingerprint hash a cell's header recorded (None: written before fingerprints existed)."""
    fp = rec.header.get("fingerprint")
    return fp.get("hash") if isinstance(fp, dict) else None


def finished_cell(runs_dir: Path, cell_id: str, fingerprint: str | None, keep_stale: bool = False,
                  damaged: list[MalformedRun] | None = None) -> CellRecord | None:
    """The one "is this cell finished with this fingerprint" check: the cell's finished file
    (status complete or diverged) when its header records `fingerprint` (any fingerprint with
    `keep_stale`); else None, and the cell is to (re)run.

    Everything short of that counts as unfinished, the same for every caller (a run, a claim, a
    search trial): no file; a damaged one (it is appended to `damaged` when given, so the
    caller can name it); a pruned trial; a file without a fingerprint or with another one (the
    code, versions or parameters changed). The reader refuses a finished file without
    evaluation lines (damaged), so a finished cell always has a curve.

    A stale file is not moved: the rerun replaces it when it finishes, and until then the report
    counts it under "not part of this suite".
    """
    path = Path(runs_dir) / f"{cell_id}.jsonl"
    if not os.path.lexists(path):
        return None
    try:
        rec = read_cell(path)
    except MalformedRun as bad:
        if damaged is not None:
            damaged.append(bad)
        return None
    if rec is None or rec.status not in FINISHED or not rec.evals:
        return None
    if not keep_stale and (fingerprint is None or recorded_fingerprint(rec) != fingerprint):
        return None
    return rec


def is_complete(runs_dir: Path, cell_id: str) -> bool:
    """True when the cell has a finished file, whatever its fingerprint (a damaged file is not finished)."""
    return finished_cell(runs_dir, cell_id, None, keep_stale=True) is not None


def scan_runs(suite_dir: Path, include_partial: bool = True) -> tuple[list[CellRecord], list[MalformedRun]]:
    """Every readable file of a suite folder's `runs/` (finished, errored and, optionally,
    interrupted ones), unselected, and every malformed runs file; one bad file never stops the rest."""
    runs = Path(suite_dir) / "runs"
    if not runs.is_dir():
        return [], []
    patterns = ["*.jsonl"] + (["*.jsonl.part"] if include_partial else [])
    records: list[CellRecord] = []
    malformed: list[MalformedRun] = []
    for pattern in patterns:
        for path in sorted(runs.glob(pattern)):
            try:
                rec = read_cell(path)
            except MalformedRun as bad:
                malformed.append(bad)
                continue
            if rec is not None:
                records.append(rec)
    return records, malformed


def read_runs(suite_dir: Path, include_partial: bool = True) -> list[CellRecord]:
    """Every readable file of `runs/`; malformed ones are named in one warning line."""
    records, malformed = scan_runs(suite_dir, include_partial)
    warn_malformed(malformed)
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
    #: runs files that are not what CellWriter writes (named in the report's problems section)
    malformed: list[MalformedRun] = field(default_factory=list)

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


DAMAGED_SUITE_JSON = "read as if the folder had none: every cell in runs/ counts"


def read_suite_json(suite_dir: Path, action: str = DAMAGED_SUITE_JSON,
                    stream: IO[str] | None = None) -> dict[str, Any] | None:
    """The folder's `suite.json` as a dict; None when there is none. A damaged one (not JSON, not
    an object, a cell list that is not one, unreadable) is named in one warning per file, saying
    what is done instead (`action`), and read as absent."""
    path = Path(suite_dir) / "suite.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        problem = ("not a JSON object" if not isinstance(meta, dict) else
                   "its 'cells' is not a table of cells" if "cells" in meta and not isinstance(meta["cells"], dict)
                   else "")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror or exc}"
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        problem = f"not valid JSON: {type(exc).__name__}: {exc}"
    if not problem:
        return meta
    # Silence here would make a damaged folder's report count cells the suite no longer has.
    key = f"suite.json {path.absolute()}"
    if key not in _warned:
        _warned.add(key)
        print(f"plasticity: warning: {printable(str(path))} is damaged ({printable(problem)[:300]}); {action}",
              file=stream or sys.stderr)
    return None


def read_manifest(suite_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """The cell list {cell_id: {"hash", "parts"}} of `suite.json` (None if absent or damaged) and its
    keep_stale flag."""
    meta = read_suite_json(suite_dir)
    if meta is None or not isinstance(meta.get("cells"), dict):
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
    records, malformed = scan_runs(suite_dir)
    warn_malformed(malformed)
    for rec in records:
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
    return Selection(placements, missing, manifest is not None, keep_stale, malformed)


def load_cells(suite_dir: Path, include_partial: bool = True) -> list[CellRecord]:
    """The cells of a suite folder that count: one per cell of the suite as it expands now
    (see `select_cells`), finished, errored and (optionally) interrupted."""
    cells = select_cells(suite_dir).cells
    return cells if include_partial else [c for c in cells if not c.path.name.endswith(".part")]


_warned: set[str] = set()


def warn_malformed(malformed: list[MalformedRun], action: str = "treated as incomplete",
                   stream: IO[str] | None = None) -> None:
    """Name every malformed file not named before in this process, in one line on stderr."""
    new = [m for m in malformed if str(m.path.absolute()) not in _warned]
    if not new:
        return
    _warned.update(str(m.path.absolute()) for m in new)
    folder = printable(str(new[0].path.parent))
    listing = "; ".join(str(m) for m in new)
    print(f"plasticity: warning: {len(new)} malformed run file{'s' if len(new) != 1 else ''} in {folder} "
          f"({action}, listed in the report): {listing}", file=stream or sys.stderr)


