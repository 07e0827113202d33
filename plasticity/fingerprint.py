"""A cell's fingerprint: a hash of everything that decides its result, recorded in its header.

A cell's id already hashes its resolved configuration (every parameter with its default, the
budget, the evaluation schedule, the seed, the dtype), so a new default or budget makes a new
cell. The fingerprint adds what the id cannot see: the code that ran and the versions it ran on.
A rerun whose fingerprint differs from the finished file's reruns the cell (see
`results.needs_run`), and the report never mixes cells of different fingerprints silently.

Its parts (each compared on its own, so a report can say what changed):
  config            the cell's resolved configuration (as in its id)
  rule_source       the files that define the rule class and its base classes (plugin files included)
  task_source       the same for the task class
  optimizer_source  the same for the optimizer spec ("none" for closed-form rules)
  engine            the package modules that take part in training and measuring: ENGINE_MODULES
  plasticity        the package version
  torch             the torch version
  dtype             the cell's floating-point type

The engine part deliberately leaves out modules that only read, schedule or present results
(cli, runner, results, report/, suite parsing, provenance): editing the report reruns nothing.
Source files are hashed once per process, when first needed: after the plugins were imported,
so the hash is of the code this process runs (`forget_sources` clears the cache).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import registry
from .suite import NO_OPTIMIZER, Cell

PACKAGE_DIR = Path(__file__).resolve().parent
#: The package's modules that decide a cell's numbers (paths relative to the package folder;
#: a folder stands for every `*.py` in it). Everything else in the package is presentation.
ENGINE_MODULES = ("engine.py", "network.py", "rule.py", "feedback.py", "linalg.py", "losses.py",
                  "optimizers.py", "gofau.py", "task.py", "metrics.py", "data")
PARTS = ("config", "rule_source", "task_source", "optimizer_source", "engine", "plasticity", "torch", "dtype")

_file_hashes: dict[Path, str] = {}
_class_files: dict[type, dict[str, str]] = {}
_engine_files: dict[str, str] = {}


def forget_sources() -> None:
    """Drop the cached source hashes (a long-lived process that reloaded its plugins)."""
    _file_hashes.clear()
    _class_files.clear()
    _engine_files.clear()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    path = path.resolve()
    if path not in _file_hashes:
        _file_hashes[path] = _digest(path.read_bytes())
    return _file_hashes[path]


def _display(path: Path) -> str:
    """A path relative to the checkout when it lies inside it (stable across clones)."""
    try:
        return str(path.resolve().relative_to(registry.REPO_ROOT))
    except ValueError:
        return str(path.resolve())


def class_sources(cls: type) -> dict[str, str]:
    """{file: hash} of every file defining `cls` or one of its base classes, leaving out the
    standard library and torch (their version stands for them)."""
    if cls in _class_files:  # a grid of thousands of cells asks for the same few classes
        return _class_files[cls]
    out: dict[str, str] = {}
    for klass in inspect.getmro(cls):
        top = klass.__module__.split(".")[0]
        if top in ("builtins", "torch") or top in sys.stdlib_module_names:
            continue
        try:
            source = inspect.getsourcefile(klass)
        except TypeError:
            source = None
        if source and Path(source).is_file():
            out[_display(Path(source))] = _file_hash(Path(source))
        else:
            # Defined where no file holds it (an interactive session): its name is all we know.
            out[f"{klass.__module__}.{klass.__qualname__}"] = "unavailable"
    _class_files[cls] = out
    return out


def engine_sources() -> dict[str, str]:
    """{module: hash} of ENGINE_MODULES (hashed once per process)."""
    if not _engine_files:
        for name in ENGINE_MODULES:
            path = PACKAGE_DIR / name
            files = sorted(path.glob("*.py")) if path.is_dir() else [path]
            for f in files:
                _engine_files[f"plasticity/{f.relative_to(PACKAGE_DIR)}"] = _file_hash(f)
    return dict(_engine_files)


def _combined(files: dict[str, str]) -> str:
    return _digest(json.dumps(files, sort_keys=True).encode())


def fingerprint(cell: Cell) -> dict[str, Any]:
    """{"hash", "parts": {part: value}, "files": {file: hash}} of one cell (see the module doc)."""
    import torch  # here, not at the top: the report reads fingerprints without torch

    from . import __version__

    config = cell.config()
    config.pop("suite")
    rule_files = class_sources(registry.get_rule(cell.rule.name))
    task_files = class_sources(registry.get_task(cell.task.name))
    opt_files = ({} if cell.optimizer.name == NO_OPTIMIZER
                 else class_sources(registry.get_optimizer(cell.optimizer.name)))
    parts = {
        "config": _digest(json.dumps(config, sort_keys=True).encode()),
        "rule_source": _combined(rule_files),
        "task_source": _combined(task_files),
        "optimizer_source": _combined(opt_files) if opt_files else NO_OPTIMIZER,
        "engine": _combined(engine_sources()),
        "plasticity": __version__,
        "torch": torch.__version__,
        "dtype": cell.dtype,
    }
    return {"hash": _digest(json.dumps(parts, sort_keys=True).encode()), "parts": parts,
            "files": {**rule_files, **task_files, **opt_files}}


def suite_manifest(cells: Iterable[Cell]) -> dict[str, dict[str, Any]]:
    """{cell_id: {"hash", "parts"}} of a suite's cells as it expands now (for `suite.json`)."""
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if cell.cell_id not in out:
            fp = fingerprint(cell)
            out[cell.cell_id] = {"hash": fp["hash"], "parts": fp["parts"]}
    return out


def differing_parts(recorded: Any, expected: dict[str, Any]) -> list[str]:
    """The parts in which a file's recorded fingerprint differs from the expected one
    (["fingerprint"] when the file recorded none: written before fingerprints existed)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("parts"), dict):
        return ["fingerprint"]
    mine, theirs = recorded["parts"], expected.get("parts") or {}
    parts = [p for p in sorted(set(mine) | set(theirs), key=_part_order) if mine.get(p) != theirs.get(p)]
    if not parts and recorded.get("hash") != expected.get("hash"):
        parts = ["fingerprint"]
    return parts


def _part_order(part: str) -> tuple[int, str]:
    return (PARTS.index(part) if part in PARTS else len(PARTS), part)
