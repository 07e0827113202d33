"""Run a suite: skip complete cells, run the rest here or in `--jobs N` worker processes.

Progress: one overall bar (cells) and one bar per running cell (updates). Each cell's results
land in `<out>/runs/` as they are produced (see results.py), so Ctrl-C loses at most the cells
in flight, and rerunning the same command resumes.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import registry
from .engine import Progress, resolve_device, run_cell
from .fingerprint import suite_manifest
from .provenance import provenance
from .results import needs_run, write_json
from .suite import Cell, Suite


@dataclass
class RunSummary:
    total: int
    skipped: int
    finished: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class _CellBar:
    """A tqdm bar of one cell's updates, created on the first progress call (when the total is known)."""

    def __init__(self, desc: str, position: int, enabled: bool, file: Any = None) -> None:
        self.desc, self.position, self.enabled, self.file = desc, position, enabled, file
        self.bar: tqdm | None = None
        self.shown = 0

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=p.total_updates, desc=self.desc[:48], unit="upd", position=self.position,
                            leave=False, dynamic_ncols=True, mininterval=0.5, file=self.file)
        self.bar.update(p.updates - self.shown)
        self.shown = p.updates

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _describe(cell: Cell) -> str:
    return f"{cell.task.name} {cell.labels.get('variant', cell.rule.name)} s{cell.seed}"


def run_suite(suite: Suite, out_dir: Path, device: str = "auto", jobs: int = 1,
              data_dir: Path | None = None, progress: bool = True, keep_stale: bool = False) -> RunSummary:
    """Run every cell of `suite` not already complete in `out_dir` with the same fingerprint (any
    finished one with `keep_stale`); return counts and errors."""
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    unique: dict[str, Cell] = {}
    for cell in suite.cells:
        unique.setdefault(cell.cell_id, cell)
    manifest = suite_manifest(unique.values())  # the cells the report counts, with their fingerprints
    write_json(out_dir / "suite.json", {**suite.meta(), "cells": manifest, "keep_stale": keep_stale,
                                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    todo = [c for c in unique.values() if needs_run(runs_dir, c.cell_id, manifest[c.cell_id]["hash"], keep_stale)]
    summary = RunSummary(total=len(unique), skipped=len(unique) - len(todo))
    if not todo:
        return summary
    dtypes = sorted({c.dtype for c in todo})
    prov = provenance(dev, ",".join(dtypes))
    overall = tqdm(total=len(todo), desc=f"suite {suite.name}", unit="cell", position=0,
                   disable=not progress, dynamic_ncols=True)

    def done(cell: Cell, final: dict[str, Any]) -> None:
        status = final["status"]
        summary.finished[status] = summary.finished.get(status, 0) + 1
        if status == "error":
            summary.errors.append(f"{_describe(cell)}: {final.get('message')}")
        overall.set_postfix_str(f"last: {_describe(cell)} -> {status}", refresh=False)
        overall.update(1)

    try:
        if jobs <= 1:
            for cell in todo:
                bar = _CellBar(_describe(cell), 1, progress)
                try:
                    final = run_cell(cell, runs_dir, dev, prov, data_dir, bar)
                finally:
                    bar.close()
                done(cell, final)
        else:
            _run_parallel(todo, runs_dir, dev, prov, data_dir, jobs, suite.plugins, progress, done)
    finally:
        overall.close()
    return summary


# ---- worker processes -------------------------------------------------------------------------

_worker_slot = 1
_worker_progress = True


def _init_worker(plugin_dirs: list[Path], threads: int, slots: Any, show: bool) -> None:
    global _worker_slot, _worker_progress
    torch.set_num_threads(threads)
    registry.load_plugins(plugin_dirs)
    _worker_slot = slots.get()
    _worker_progress = show


def _work(cell: Cell, runs_dir: Path, device: str, prov: dict[str, Any], data_dir: Path | None) -> dict[str, Any]:
    bar = _CellBar(_describe(cell), _worker_slot, _worker_progress)
    try:
        return run_cell(cell, runs_dir, torch.device(device), prov, data_dir, bar)
    finally:
        bar.close()


def _run_parallel(todo: list[Cell], runs_dir: Path, dev: torch.device, prov: dict[str, Any],
                  data_dir: Path | None, jobs: int, plugin_dirs: list[Path], show: bool, done) -> None:
    ctx = mp.get_context("spawn")  # fork after torch threads start can deadlock
    slots = ctx.Queue()
    for i in range(jobs):
        slots.put(i + 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    prov = {**prov, "torch_threads": threads, "jobs": jobs}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(list(plugin_dirs), threads, slots, show))
    pending: dict[Future, Cell] = {}
    try:
        for cell in todo:
            pending[pool.submit(_work, cell, runs_dir, str(dev), prov, data_dir)] = cell
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                cell = pending.pop(fut)
                done(cell, fut.result())
    except BaseException:
        for fut in pending:
            fut.cancel()
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()  # workers leave only .part files behind: nothing reads as complete
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    print(file=sys.stderr)
