"""A cell's fingerprint: a hash of everything that decides its result, recorded in its header.

A cell's id already hashes its resolved configuration (every parameter with its default, the
budget, the evaluation schedule, the seed, the dtype), so a new default or budget makes a new
cell. The fingerprint adds what the id cannot see: the code that ran and the versions it ran on.
A rerun whose fingerprint differs from the finished file's reruns the cell (see
`results.needs_run`), and the report never mixes cells of different fingerprints silently.

Its parts (each compared on its own, so a report can say what changed):
  config            the cell's resolved configuration (as in its id)
  rule_source       the files the rule class's code reaches: its module, its base classes' and its
                    Params' modules and everything they import (plugin files included)
  task_source       the same for the task class
  optimizer_source  the same for the optimizer spec ("none" for closed-form rules)
  engine            the engine module that trains the cell and everything it imports
  plasticity        the package version
  torch             the torch version
  dtype             the cell's floating-point type

Which files count is found, not listed: `plasticity.sources` follows the imports from those roots
and hashes each file's syntax tree without docstrings, so a comment, docstring or formatting edit
reruns nothing and any edit of code that runs reruns exactly the cells whose code reaches it.
Modules that only store, schedule, judge or present results are never entered
(`plasticity.sources.NOT_NUMBERS`): editing the report reruns nothing. Files are named relative to
their package or plugin folder, so a clone and an installed copy give the same fingerprint.
Sources are hashed once per process, when first needed: after the plugins were imported, so the
hash is of the code this process runs (`forget_sources` clears the cache); a cell's fingerprint is
kept once computed.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from . import registry, sources
from .suite import NO_OPTIMIZER, Cell
from .version import __version__

PACKAGE_DIR = sources.PACKAGE_DIR
PARTS = ("config", "rule_source", "task_source", "optimizer_source", "engine", "plasticity", "torch", "dtype")

_prints: dict[tuple[str, Any, Any, Any], dict[str, Any]] = {}


def forget_sources() -> None:
    """Drop the cached source hashes and fingerprints (a long-lived process that reloaded its plugins)."""
    sources.forget()
    _prints.clear()


def class_sources(cls: type) -> dict[str, str]:
    """{file: hash} of every file the class's code reaches (its module, its base classes' and its
    Params' modules, and what they import), leaving out the standard library and torch."""
    return sources.class_reach(cls)


def engine_sources() -> dict[str, str]:
    """{file: hash} of the engine module and every module it reaches (hashed once per process)."""
    return sources.engine_reach()


def _combined(files: dict[str, str]) -> str:
    return sources.digest(json.dumps(files, sort_keys=True).encode())


def fingerprint(cell: Cell) -> dict[str, Any]:
    """{"hash", "parts": {part: value}, "files": {file: hash}} of one cell (see the module doc);
    computed once per process and cell, a copy returned each time."""
    rule_cls, task_cls = registry.get_rule(cell.rule.name), registry.get_task(cell.task.name)
    opt_cls = None if cell.optimizer.name == NO_OPTIMIZER else registry.get_optimizer(cell.optimizer.name)
    key = (cell.cell_id, rule_cls, task_cls, opt_cls)  # the classes too: a test may re-register a name
    if key not in _prints:
        _prints[key] = _fingerprint(cell, rule_cls, task_cls, opt_cls)
    return copy.deepcopy(_prints[key])


def _fingerprint(cell: Cell, rule_cls: type, task_cls: type, opt_cls: type | None) -> dict[str, Any]:
    import torch  # here, not at the top: the report reads fingerprints without torch

    config = cell.config()
    config.pop("suite")
    rule_files = class_sources(rule_cls)
    task_files = class_sources(task_cls)
    opt_files = {} if opt_cls is None else class_sources(opt_cls)
    engine_files = engine_sources()
    parts = {
        "config": sources.digest(json.dumps(config, sort_keys=True).encode()),
        "rule_source": _combined(rule_files),
        "task_source": _combined(task_files),
        "optimizer_source": _combined(opt_files) if opt_files else NO_OPTIMIZER,
        "engine": _combined(engine_files),
        "plasticity": __version__,
        "torch": torch.__version__,
        "dtype": cell.dtype,
    }
    return {"hash": sources.digest(json.dumps(parts, sort_keys=True).encode()), "parts": parts,
            "files": {**engine_files, **rule_files, **task_files, **opt_files}}


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
