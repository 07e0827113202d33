"""What every data reader shares: opening a data file safely, reading it with a size cap, and the
error for a bad file.

Only regular files are read. A symlink is followed (datasets are often linked in from shared
storage), but what it points to must be a regular file too: a device (`/dev/zero`), a FIFO, a
socket or a folder is refused after an `os.stat`, before anything opens it, and the open itself
is non-blocking and checked to be the same file that was examined (a FIFO swapped in between
cannot hang the reader). Each message names the file, the problem, and how to supply a good copy.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import DataError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def bad_file(path: Path, problem: str, holding: str | None = None) -> DataError:
    """The error for a file that exists but is unusable; `holding` names what the data dir holds."""
    return DataError(f"{path}: {problem}. Replace it with a good copy (point --data-dir DIR or "
                     f"PLASTICITY_DATA=DIR at a folder holding {holding or 'the files'}), or delete it so it is "
                     f"downloaded again")


def missing_file(path: Path, holding: str | None = None) -> DataError:
    """The error for a file that is not there (a dangling symlink included)."""
    return DataError(f"{path} is missing; point --data-dir DIR or PLASTICITY_DATA=DIR at a "
                     f"folder holding {holding or 'it'}, or let plasticity download it")


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def regular_stat(path: Path, holding: str | None = None) -> os.stat_result:
    """`os.stat` of the file (a symlink followed), refusing anything that is not a regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:  # also a dangling symlink
        raise missing_file(path, holding) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise bad_file(path, f"cannot be read ({exc})", holding) from None
    if not stat.S_ISREG(info.st_mode):
        raise bad_file(path, f"is {_kind(info.st_mode)}, not a regular file; only regular files are read "
                             f"(a symlink must point to one)", holding)
    return info


def open_regular(path: Path, holding: str | None = None) -> BinaryIO:
    """The file opened for reading, when it is (or a symlink points to) a regular file."""
    before = regular_stat(path, holding)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise missing_file(path, holding) from None
    except OSError as exc:
        raise bad_file(path, f"cannot be read ({exc})", holding) from exc
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise bad_file(path, "was replaced while it was being opened", holding)
    return os.fdopen(fd, "rb")


def read_file(path: Path, holding: str | None = None, max_bytes: int | None = None) -> bytes:
    """The file's bytes, refusing a file larger than `max_bytes` before reading it."""
    with open_regular(path, holding) as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise bad_file(path, f"holds {size:,} bytes, more than the {max_bytes:,} this file can hold", holding)
        try:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as exc:
            raise bad_file(path, f"cannot be read ({exc})", holding) from exc
    if max_bytes is not None and len(data) > max_bytes:  # grew after the check
        raise bad_file(path, f"holds more than the {max_bytes:,} bytes this file can hold", holding)
    return data
