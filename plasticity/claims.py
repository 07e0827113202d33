"""Per-cell claims: at most one process writes a cell, and a dead process never holds one.

A run claims a cell before it opens the cell's `.part` file by taking an exclusive `flock` on
`runs/<id>.lock` and writing its PID, host and start time into that file. The kernel drops the
lock when the holding process exits for any reason (Ctrl-C, SIGKILL, a crash), so a claim is
never left stuck: the next run simply takes it. Two runs of one reports folder therefore share
its cells: each skips the cells the other holds and names the holder (see `CellHeld`).

The lock file is removed on release while the lock is still held; a process that opened the
old file meanwhile notices (the path no longer names the inode it locked) and tries again, so
two processes never both believe they hold one cell.

Claims are reentrant within a process (the runner claims a cell, checks it is not complete
yet, then the cell's writer claims it again), and not inherited by child processes.

Shared file systems: on Linux NFS (v4, or v3 with the lock manager) `flock` is carried out as a
whole-file POSIX lock that other clients see, and a crashed client's locks are dropped when its
lease runs out (about 90 s on NFSv4), so a cell of a crashed machine becomes free only then. A
mount with `local_lock=flock` or `nolock` keeps locks on each client: two machines could then
run the same cell, each writing its own `.part` through a different client cache; give each
machine its own reports folder there. Where `fcntl` is missing (Windows) claims always succeed
and concurrent runs of one folder are not guarded.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import PlasticityError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


def lock_path(runs_dir: Path, cell_id: str) -> Path:
    return Path(runs_dir) / f"{cell_id}{LOCK_SUFFIX}"


def describe_holder(holder: dict[str, Any] | None) -> str:
    """'PID 123 on host since 2026-01-01T10:00:00+00:00' (or 'another process' when unknown)."""
    if not holder:
        return "another process"
    return f"PID {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"


class CellHeld(PlasticityError):
    """Another live process holds the cell; `holder` is what it wrote into the lock file."""

    def __init__(self, cell_id: str, holder: dict[str, Any] | None) -> None:
        self.cell_id, self.holder = cell_id, holder
        super().__init__(f"cell {cell_id} is being run by {describe_holder(holder)}")


def read_holder(path: Path) -> dict[str, Any] | None:
    """The PID, host and start time a holder wrote into a lock file (None if unreadable)."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(4096).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Claim:
    """A held claim on one cell; `release` (or leaving the `with` block) gives it up."""
    path: Path
    fd: int
    holder: dict[str, Any]
    count: int = 1

    def release(self) -> None:
        with _held_lock:
            self.count -= 1
            if self.count > 0:
                return
            _held.pop(self.path, None)
        try:
            self.path.unlink()  # while the lock is still held: see the module docstring
        except OSError:
            pass
        os.close(self.fd)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_held: dict[Path, Claim] = {}
_held_lock = threading.Lock()


def claim_cell(runs_dir: Path, cell_id: str) -> Claim:
    """Claim `cell_id` in `runs_dir` for this process, or raise `CellHeld` naming the holder."""
    path = lock_path(runs_dir, cell_id).absolute()
    with _held_lock:
        mine = _held.get(path)
        if mine is not None and mine.holder.get("pid") == os.getpid():
            mine.count += 1
            return mine
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise CellHeld(cell_id, read_holder(path)) from None
                try:
                    same = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # released and removed by its holder after we opened it: try again
                    os.close(fd)
                    continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(holder).encode("utf-8"))
        except BaseException:
            os.close(fd)
            raise
        claim = Claim(path, fd, holder)
        with _held_lock:
            _held[path] = claim
        return claim

