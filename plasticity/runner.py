"""Run a suite: skip complete cells, run the rest here or in `--jobs N` worker processes.

Progress: one overall bar (cells) and one bar per running cell (updates), the latter redrawn
from the engine's progress state on a clock. Each cell's results land in `<out>/runs/` as they
are produced (see results.py), so Ctrl-C, SIGTERM or SIGHUP lose at most the cells in flight, and
rerunning the same command resumes. Worker processes end with the run, even when it is killed.
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import registry
from .claims import CellHeld, Claim, claim_cell, describe_holder
from .engine import Progress, resolve_device, run_cell
from .errors import PlasticityError
from .executors import CellContext, Execution
from .fingerprint import fingerprint, suite_manifest
from .provenance import provenance
from .results import MalformedRun, finished_record, needs_run, recorded_fingerprint, warn_malformed, write_json
from .suite import Cell, Suite

HELD = "held"  # an outcome, not a status: another live run holds the cell
POLL_SECONDS = 1.0  # how often a run retries the cells another run holds
BAR_REFRESH_SECONDS = 0.5


@dataclass
class RunSummary:
    total: int
    skipped: int
    finished: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    by_other_run: int = 0  # cells another run finished while this one waited for them
    malformed: list[str] = field(default_factory=list)  # damaged run files of this suite, rerun


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is: workers stopped, `.part` files left, no final lines."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """While running, turn SIGTERM and SIGHUP into `Interrupted` in the main thread (once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    fired = []

    def handler(signum: int, frame: Any) -> None:
        if not fired:  # a second signal while stopping must not cut the cleanup short
            fired.append(signum)
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let a cleanup run to its end whatever the user presses meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (getattr(signal, n) for n in names if hasattr(signal, n))}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _CellBar:
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


def _describe(cell: Cell) -> str:
    return f"{cell.task.name} {cell.labels.get('variant', cell.rule.name)} s{cell.seed}"


def claim_unfinished(runs_dir: Path, cell_id: str, expected_hash: str) -> tuple[Claim | None, dict[str, Any] | None]:
    """Claim a cell to run it: (claim, None) when it is to run here; (None, outcome) when another
    live run holds it (`{"status": HELD, "holder": ...}`) or finished it with `expected_hash`
    (its file's final line plus `"by_other_run": True`)."""
    try:
        claim = claim_cell(runs_dir, cell_id)
    except CellHeld as held:
        return None, {"status": HELD, "holder": held.holder}
    try:  # another run may have finished it, with the code and parameters this run has
        rec = finished_record(runs_dir, cell_id)
    except MalformedRun:
        rec = None
    if rec is not None and recorded_fingerprint(rec) == expected_hash:
        claim.release()
        return None, {**rec.final, "by_other_run": True}
    return claim, None


def _attempt(cell: Cell, runs_dir: Path, device: torch.device, prov: dict[str, Any], data_dir: Path | None,
             bar: _CellBar, train: Callable[[Path], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Claim the cell and run it (with `train(runs_dir)` when given: a search trial on a remote
    worker), or return what `claim_unfinished` found: another run holds it or finished it."""
    claim, outcome = claim_unfinished(runs_dir, cell.cell_id, fingerprint(cell)["hash"])
    if claim is None:
        return outcome
    with claim:
        try:
            return train(runs_dir) if train is not None else run_cell(cell, runs_dir, device, prov, data_dir, bar)
        finally:
            bar.close()


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
    """
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    execution = execution or suite.execution
    remote = execution.executor != "local"
    dev = torch.device("cpu") if remote else resolve_device(device)  # a remote cell resolves it where it runs
    unique: dict[str, Cell] = {}
    for cell in suite.cells:
        unique.setdefault(cell.cell_id, cell)
    manifest = suite_manifest(unique.values())  # the cells the report counts, with their fingerprints
    write_json(out_dir / "suite.json", {**suite.meta(), "cells": manifest, "keep_stale": keep_stale,
                                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    todo, malformed = [], []
    for cell in unique.values():
        try:
            if not needs_run(runs_dir, cell.cell_id, manifest[cell.cell_id]["hash"], keep_stale):
                continue
        except MalformedRun as bad:
            malformed.append(bad)
        todo.append(cell)
    warn_malformed(malformed, action="treated as incomplete and rerun")
    summary = RunSummary(total=len(unique), skipped=len(unique) - len(todo), malformed=[str(m) for m in malformed])
    if not todo:
        return summary
    dtypes = sorted({c.dtype for c in todo})
    prov = provenance(dev, ",".join(dtypes))
    overall = tqdm(total=len(todo), desc=f"suite {suite.name}", unit="cell", position=0,
                   disable=not progress, dynamic_ncols=True)

    def done(cell: Cell, final: dict[str, Any]) -> None:
        status = final["status"]
        summary.finished[status] = summary.finished.get(status, 0) + 1
        summary.by_other_run += bool(final.get("by_other_run"))
        if status == "error":
            summary.errors.append(f"{_describe(cell)}: {final.get('message')}")
        overall.set_postfix_str(f"last: {_describe(cell)} -> {status}", refresh=False)
        overall.update(1)

    told: set[str] = set()
    ctx = (CellContext(runs_dir, device, prov, Path(data_dir).resolve() if data_dir else None, suite.plugins,
                       manifest, progress) if remote else None)
    try:
        with signals_as_interrupt(), _executor(jobs or 1, runs_dir, dev, prov, data_dir, suite.plugins, progress,
                                               execution, ctx, jobs) as run:
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
        overall.close()
    return summary


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
        names = ", ".join(_describe(c) for c in cells[:3]) + (", ..." if len(cells) > 3 else "")
        tqdm.write(f"{len(cells)} cell{'s are' if len(cells) != 1 else ' is'} being run by another run "
                   f"({who}): {names}; this run waits for {'them' if len(cells) != 1 else 'it'} "
                   f"and reruns any that run leaves unfinished", file=sys.stderr)


@contextlib.contextmanager
def _executor(jobs: int, runs_dir: Path, dev: torch.device, prov: dict[str, Any], data_dir: Path | None,
              plugin_dirs: list[Path], show: bool, execution: Execution | None = None, ctx: CellContext | None = None,
              remote_jobs: int | None = None) -> Iterator[Callable[[list[Cell]], Iterator[tuple[Cell, dict]]]]:
    """A function that runs a list of cells here (jobs 1), in worker processes or on a remote
    executor (Ray, Slurm) and yields (cell, outcome) as each ends."""
    if execution is not None and ctx is not None and execution.executor != "local":
        from .executors import open_executor
        remote = open_executor(execution, ctx, remote_jobs)
        try:
            yield remote.run
        except BaseException:
            with _signals_ignored():
                remote.stop()
            raise
        remote.close()
        return
    if jobs <= 1:
        def serial(cells: list[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
            for cell in cells:
                yield cell, _attempt(cell, runs_dir, dev, prov, data_dir, _CellBar(_describe(cell), 1, show))
        yield serial
        return
    pool = _WorkerPool(jobs, plugin_dirs, show)
    try:
        yield lambda cells: pool.run(cells, runs_dir, dev, {**prov, "torch_threads": pool.threads, "jobs": jobs},
                                     data_dir)
    except BaseException:
        pool.stop()
        raise
    pool.shutdown()


# ---- worker processes -------------------------------------------------------------------------

_worker_slot = 1
_worker_progress = True
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_PARENT_SECONDS = 1.0


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker end when the run that started it ends, however it ends (even SIGKILL):
    the kernel's parent-death signal on Linux, and a watchdog thread everywhere."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(128 + signal.SIGTERM)
    threading.Thread(target=watch_parent, args=(parent_pid,), name="plasticity-watchdog", daemon=True).start()


def watch_parent(parent_pid: int, interval: float = WATCH_PARENT_SECONDS,
                 getppid: Callable[[], int] = os.getppid, sleep: Callable[[float], None] = time.sleep,
                 exit: Callable[[int], None] = os._exit) -> None:
    """Poll the parent PID; once it changes (the parent died and the worker was re-parented),
    exit at once: the cell's `.part` file is left, its claim dropped by the kernel."""
    while getppid() == parent_pid:
        sleep(interval)
    exit(128 + signal.SIGTERM)


def _init_worker(plugin_dirs: list[Path], threads: int, slots: Any, show: bool, parent_pid: int) -> None:
    global _worker_slot, _worker_progress
    _die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    registry.load_plugins(plugin_dirs)
    _worker_slot = slots.get()
    _worker_progress = show


def _work(cell: Cell, runs_dir: Path, device: str, prov: dict[str, Any], data_dir: Path | None) -> dict[str, Any]:
    bar = _CellBar(_describe(cell), _worker_slot, _worker_progress)
    return _attempt(cell, runs_dir, torch.device(device), prov, data_dir, bar)


class _WorkerPool:
    """`jobs` spawned worker processes, each with its bar line, ended with the run however it ends."""

    def __init__(self, jobs: int, plugin_dirs: list[Path], show: bool) -> None:
        ctx = mp.get_context("spawn")  # fork after torch threads start can deadlock
        slots = ctx.Queue()
        for i in range(jobs):
            slots.put(i + 1)
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                        initargs=(list(plugin_dirs), self.threads, slots, show, os.getpid()))

    def run(self, cells: list[Cell], runs_dir: Path, dev: torch.device, prov: dict[str, Any],
            data_dir: Path | None) -> Iterator[tuple[Cell, dict[str, Any]]]:
        pending: dict[Future, Cell] = {self.pool.submit(_work, c, runs_dir, str(dev), prov, data_dir): c
                                       for c in cells}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                cell = pending.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    raise PlasticityError(
                        f"a worker process died while running {_describe(cell)} or another cell (killed from "
                        f"outside, or out of memory?); finished cells are kept in {runs_dir}: run the same "
                        f"command again to resume") from None
                yield cell, outcome

    def stop(self) -> None:
        """Stop every worker now and wait until each has exited: only `.part` files remain."""
        with _signals_ignored():
            procs = list(getattr(self.pool, "_processes", {}).values())
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
            self.pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True)
        print(file=sys.stderr)
