"""The one pool of worker processes, and the signal handling of a run.

`WorkerPool` starts `jobs` spawned processes, each with its own progress-bar line and its share
of the CPU threads, that run cells through the one worker function (plasticity.worker.work) and
end with the run however it ends (Ctrl-C, SIGTERM, SIGKILL of the parent). The local executor
(plasticity.executors.local) runs a suite's cells and a search's trials on it.
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
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from . import registry
from .cells import Cell
from .worker import CellBar, describe, work

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_PARENT_SECONDS = 1.0


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
def signals_ignored() -> Iterator[None]:
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


def die_with_parent(parent_pid: int) -> None:
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


# What each worker process knows of itself (set once by `_init_worker`).
_slot = 1
_show = True


def _init_worker(plugin_dirs: list[Path], threads: int, slots: Any, show: bool, parent_pid: int) -> None:
    global _slot, _show
    die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    registry.load_plugins(plugin_dirs)
    _slot = slots.get()
    _show = show


def _pool_work(cell: Cell, runs_dir: Path, device: str, prov: dict[str, Any], data_dir: Path | None,
               fp: dict[str, Any]) -> dict[str, Any]:
    """`work` in a worker process, with its bar on the worker's own line."""
    return work(cell, runs_dir, torch.device(device), prov, data_dir, fp, CellBar(describe(cell), _slot, _show))


def _pool_trial(cell: Cell, runs_dir: Path, device: str, prov: dict[str, Any], data_dir: Path | None,
                fp: dict[str, Any], trial: Any) -> dict[str, Any]:
    """A search trial in a worker process (plasticity.search.objective.work_trial)."""
    from .search.objective import work_trial

    return work_trial(cell, runs_dir, torch.device(device), prov, data_dir, fp, trial)


class WorkerPool:
    """`jobs` spawned worker processes, each with its bar line, ended with the run however it ends."""

    def __init__(self, jobs: int, plugin_dirs: list[Path], show: bool) -> None:
        ctx = mp.get_context("spawn")  # fork after torch threads start can deadlock
        slots = ctx.Queue()
        for i in range(jobs):
            slots.put(i + 1)
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                        initargs=(list(plugin_dirs), self.threads, slots, show, os.getpid()))

    def submit(self, cell: Cell, runs_dir: Path, device: torch.device, prov: dict[str, Any],
               data_dir: Path | None, fp: dict[str, Any]) -> Future:
        """Run `work` on one cell in a worker process."""
        return self.pool.submit(_pool_work, cell, runs_dir, str(device), prov, data_dir, fp)

    def submit_trial(self, cell: Cell, runs_dir: Path, device: torch.device, prov: dict[str, Any],
                     data_dir: Path | None, fp: dict[str, Any], trial: Any) -> Future:
        """Run a search trial (`trial`: its RemoteTrial) through `work` in a worker process."""
        return self.pool.submit(_pool_trial, cell, runs_dir, str(device), prov, data_dir, fp, trial)

    def stop(self) -> None:
        """Stop every worker now and wait until each has exited: only `.part` files remain."""
        with signals_ignored():
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
