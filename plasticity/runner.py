"""Run a suite: skip complete cells, run the rest here or in `--jobs N` worker processes.

Progress: one overall bar (cells) and one bar per running cell (updates), the latter redrawn
from the engine's progress state on a clock. Each cell's results land in `<out>/runs/` as they
are produced (see results.py), so Ctrl-C, SIGTERM or SIGHUP lose at most the cells in flight, and
rerunning the same command resumes. Worker processes end with the run, even when it is killed.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
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
from .errors import PlasticityError, not_a_folder
from .executors import CellContext, Execution
from .fingerprint import fingerprint, suite_manifest
from .params import make_params
from .provenance import provenance
from .results import (
    MalformedRun,
    finished_record,
    needs_run,
    printable,
    read_suite_json,
    recorded_fingerprint,
    warn_malformed,
    write_json,
)
from .suite import Cell, Suite
from .task import default_data_dir

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
    manifest = suite_manifest(unique.values())  # the cells the report counts, with their fingerprints
    meta = {**suite.meta(), "cells": manifest, "keep_stale": keep_stale,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    todo, malformed = [], []
    for cell in unique.values():
        try:
            if not needs_run(runs_dir, cell.cell_id, manifest[cell.cell_id]["hash"], keep_stale):
                continue
        except MalformedRun as bad:
            malformed.append(bad)
        todo.append(cell)
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
            summary.errors.append(f"{_describe(cell)}: {final.get('message')}")
        overall.set_postfix_str(f"last: {_describe(cell)} -> {status}", refresh=False)
        overall.update(1)

    told: set[str] = set()
    ctx = (CellContext(runs_dir, device, prov, Path(data_dir).resolve() if data_dir else None, suite.plugins,
                       manifest, progress) if remote else None)
    try:
        with signals_as_interrupt(), _executor(jobs or 1, runs_dir, dev, prov, data_dir, suite.plugins, progress,
                                               execution, ctx, jobs) as run:
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
    from .engine import DTYPES

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
