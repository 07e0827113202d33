"""Run a suite: skip complete cells, run the rest here or in `--jobs N` worker processes.

Progress: one overall bar (cells) and one bar per running cell (updates), the latter redrawn
from the engine's progress state on a clock. Each cell's results land in `<out>/runs/` as they
are produced (see results.py), so Ctrl-C, SIGTERM or SIGHUP lose at most the cells in flight, and
rerunning the same command resumes. Worker processes end with the run, even when it is killed.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import registry
from .cells import Cell
from .claims import describe_holder
from .engine import DTYPES, resolve_device
from .errors import PlasticityError, not_a_folder
from .executors import CellContext, Execution, open_executor
from .fingerprint import fingerprint
from .params import make_params
from .pool import Interrupted, signals_as_interrupt, signals_ignored
from .provenance import provenance
from .results import MalformedRun, finished_cell, printable, read_suite_json, warn_malformed
from .suite import Suite
from .task import default_data_dir
from .worker import HELD, describe
from .writer import write_json

__all__ = ["HELD", "Interrupted", "RunSummary", "check_data", "check_data_dir", "check_out_folder", "run_suite",
           "signals_as_interrupt"]

POLL_SECONDS = 1.0  # how often a run retries the cells another run holds


@dataclass
class RunSummary:
    total: int
    skipped: int
    finished: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    by_other_run: int = 0  # cells another run finished while this one waited for them
    malformed: list[str] = field(default_factory=list)  # damaged run files of this suite, rerun


def run_suite(suite: Suite, out_dir: Path, device: str = "auto", jobs: int | None = None,
              data_dir: Path | None = None, progress: bool = True, keep_stale: bool = False,
              execution: Execution | None = None) -> RunSummary:
    """Run every cell of `suite` not already complete in `out_dir` with the same fingerprint (any
    finished one with `keep_stale`); return counts and errors.

    `execution` (default: the suite's `[execution]` table) says where the cells run: here, in
    `jobs` worker processes (default 1), or on Ray or Slurm with at most `jobs` cells at once
    (default: as many as the cluster takes); see `plasticity.executors`.

    Cells are claimed one by one (claims.py), so several runs of one folder share the work: a
    cell another live run holds is skipped, named on stderr, retried every `POLL_SECONDS` once
    this run has nothing else to do, and counted as `by_other_run` when that run finished it
    (or run here when that run died). SIGTERM and SIGHUP raise `Interrupted`, as Ctrl-C raises
    KeyboardInterrupt: workers are stopped and only `.part` files are left.

    Nothing is written into `out_dir` until the run can start: a folder holding another suite's
    results, a data folder that is a file, missing data (local runs) or an executor that cannot
    start stop it first.
    """
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    execution = execution or suite.execution
    remote = execution.executor != "local"
    # Everything that can refuse the run is checked before anything is written into `out_dir`.
    check_out_folder(out_dir, suite.name)
    if execution.executor != "ray":  # Ray nodes read their own disks, not the driver's
        check_data_dir(data_dir)
    dev = torch.device("cpu") if remote else resolve_device(device)  # a remote cell resolves it where it runs
    unique: dict[str, Cell] = {}
    for cell in suite.cells:
        unique.setdefault(cell.cell_id, cell)
    # Each cell's fingerprint, computed once here: it goes into suite.json (the cells the report
    # counts), decides what is finished, and travels with the cell to whichever worker runs it.
    fingerprints = {cid: fingerprint(cell) for cid, cell in unique.items()}
    manifest = {cid: {"hash": fp["hash"], "parts": fp["parts"]} for cid, fp in fingerprints.items()}
    meta = {**suite.meta(), "cells": manifest, "keep_stale": keep_stale,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    malformed: list[MalformedRun] = []
    todo = [cell for cid, cell in unique.items()
            if finished_cell(runs_dir, cid, fingerprints[cid]["hash"], keep_stale, malformed) is None]
    summary = RunSummary(total=len(unique), skipped=len(unique) - len(todo), malformed=[str(m) for m in malformed])
    if not todo:
        warn_malformed(malformed, action="treated as incomplete and rerun")
        _write_suite_json(out_dir, meta)
        return summary
    if not remote:
        check_data(todo, data_dir)
    dtypes = sorted({c.dtype for c in todo})
    prov = provenance(dev, ",".join(dtypes))
    overall: tqdm | None = None

    def done(cell: Cell, final: dict[str, Any]) -> None:
        status = final["status"]
        summary.finished[status] = summary.finished.get(status, 0) + 1
        summary.by_other_run += bool(final.get("by_other_run"))
        if status == "error":
            summary.errors.append(f"{describe(cell)}: {final.get('message')}")
        overall.set_postfix_str(f"last: {describe(cell)} -> {status}", refresh=False)
        overall.update(1)

    told: set[str] = set()
    # a remote cell resolves its device where it runs, and reads its data there
    ctx = CellContext(runs_dir, device if remote else str(dev), prov,
                      (Path(data_dir).resolve() if data_dir else None) if remote else data_dir, suite.plugins,
                      fingerprints, progress)
    try:
        with signals_as_interrupt(), _executor(execution, ctx, jobs if remote else jobs or 1) as run:
            # The executor is up (its package installed, srun found, Ray reached): only now is the
            # folder written, so that a refused run leaves nothing behind.
            warn_malformed(malformed, action="treated as incomplete and rerun")
            _write_suite_json(out_dir, meta)
            overall = tqdm(total=len(todo), desc=f"suite {suite.name}", unit="cell", position=0,
                           disable=not progress, dynamic_ncols=True)
            queue = todo
            while queue:
                held: list[tuple[Cell, Any]] = []
                for cell, outcome in run(queue):
                    if outcome["status"] == HELD:
                        held.append((cell, outcome.get("holder")))
                    else:
                        done(cell, outcome)
                _tell_held(held, told)
                if held:
                    _pause(POLL_SECONDS)
                queue = [cell for cell, _ in held]
    finally:
        if overall is not None:
            overall.close()
    return summary


def _write_suite_json(out_dir: Path, meta: dict[str, Any]) -> None:
    """`runs/` and `suite.json`: the cells the report counts, with their fingerprints."""
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "suite.json", meta)


def check_out_folder(out_dir: Path, name: str) -> None:
    """Refuse an output folder that is a file, or that holds another suite's results: running
    suite `name` there would replace its `suite.json`, and its cells would drop out of its report
    and results.csv. The same suite (by name), edited or not, may run there again."""
    problem = not_a_folder(Path(out_dir))
    if problem:
        raise PlasticityError(f"output folder {out_dir} (--out) {problem}; give a folder for the results")
    meta = read_suite_json(out_dir, action="whose suite it holds is unknown; a run that starts writes a new one")
    other = meta.get("name") if meta is not None else None
    if isinstance(other, str) and other != name:
        raise PlasticityError(
            f"output folder {out_dir} (--out) holds the results of suite '{printable(other)}' (its suite.json); "
            f"running suite '{name}' there would replace that suite.json and drop the cells of "
            f"'{printable(other)}' from its report and results.csv: give suite '{name}' another --out, "
            f"e.g. reports/{name}")


def data_dir_source(data_dir: Path | None) -> tuple[Path, str]:
    """The data folder cells read, and what named it (--data-dir, PLASTICITY_DATA or the default)."""
    if data_dir:
        return Path(data_dir), "--data-dir"
    return default_data_dir(), ("PLASTICITY_DATA" if os.environ.get("PLASTICITY_DATA") else "the default data folder")


def check_data_dir(data_dir: Path | None) -> None:
    """Refuse a data folder that is a file (or lies under one), before any cell starts; a folder
    that does not exist yet is fine (downloads create it)."""
    path, source = data_dir_source(data_dir)
    problem = not_a_folder(path)
    if problem:
        raise PlasticityError(f"data folder {path} ({source}) {problem}; give --data-dir DIR or "
                              f"PLASTICITY_DATA=DIR a folder holding mnist/, fashion-mnist/ and "
                              f"cifar-10-batches-py/")


def check_data(cells: list[Cell], data_dir: Path | None, warm: torch.device | None = None) -> None:
    """Read the data of every task of `cells` that needs files, once per task, before anything is
    written: missing or damaged data stops the run with the loader's message (a download happens
    here rather than in the first cell). Other failures are left to the cells, which record them.
    `warm`: load the tensors onto that device, as a cell in this process will, which then finds
    them in the task's cache (once per task setting and dtype); else only the files' arrays."""
    seen: set[tuple[str, ...]] = set()
    for cell in cells:
        key = (cell.task.name,) if warm is None else (
            cell.task.name, json.dumps(cell.task.params, sort_keys=True, default=str), cell.dtype)
        if key in seen:
            continue
        seen.add(key)
        task_cls = registry.get_task(cell.task.name)
        if not getattr(task_cls, "needs_files", True):
            continue
        try:
            task = task_cls(make_params(task_cls.Params, cell.task.params, f"task '{cell.task.name}'"), data_dir)
            if warm is None:
                task.load_arrays(task.data_dir)
            else:
                task.data(warm, DTYPES[cell.dtype])
        except PlasticityError:
            raise
        except Exception:  # noqa: BLE001  a task's own failure belongs in its cells' error lines
            continue


def _pause(seconds: float) -> None:
    """Wait before retrying the cells another run holds (a seam for tests)."""
    time.sleep(seconds)


def _tell_held(held: list[tuple[Cell, Any]], told: set[str]) -> None:
    """One stderr line per holder not named before: which run holds how many cells."""
    by_holder: dict[str, list[Cell]] = {}
    for cell, holder in held:
        by_holder.setdefault(describe_holder(holder), []).append(cell)
    for who, cells in by_holder.items():
        if who in told:
            continue
        told.add(who)
        names = ", ".join(describe(c) for c in cells[:3]) + (", ..." if len(cells) > 3 else "")
        tqdm.write(f"{len(cells)} cell{'s are' if len(cells) != 1 else ' is'} being run by another run "
                   f"({who}): {names}; this run waits for {'them' if len(cells) != 1 else 'it'} "
                   f"and reruns any that run leaves unfinished", file=sys.stderr)


@contextlib.contextmanager
def _executor(execution: Execution, ctx: CellContext, jobs: int | None) -> Iterator[
        Callable[[list[Cell]], Iterator[tuple[Cell, dict[str, Any]]]]]:
    """A function that runs a list of cells on the executor `execution` names (here, the local
    pool, Ray or Slurm) and yields (cell, outcome) as each ends; stopped on any exception."""
    executor = open_executor(execution, ctx, jobs)
    try:
        yield executor.run
    except BaseException:
        with signals_ignored():
            executor.stop()
        raise
    executor.close()
