"""Verify data files against the checksum table once, and remember that they passed.

Hashing MNIST on every run would cost more than reading it, so a file that matched its md5 gets
a *stamp*: a small JSON file recording its path, size, modification time (ns), inode and device,
and the md5 it matched. While all of these are unchanged the file is not hashed again; any
change (a replaced, truncated or touched file, a retargeted symlink, a new checksum table)
hashes it anew.

Stamps never go beside the data (the data folder may be read-only, shared, or on a CI image):
they live in `$PLASTICITY_STAMPS` when set, else in `$XDG_CACHE_HOME/plasticity/stamps`, else in
`~/.cache/plasticity/stamps`. When that folder cannot be written, nothing is stored and the file
is simply hashed on every use: slower, never wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from ..errors import DataError
from .files import open_regular, regular_stat

_CHUNK = 1 << 20


def stamp_dir() -> Path:
    """Where stamps are kept (see the module docstring)."""
    env = os.environ.get("PLASTICITY_STAMPS")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "plasticity" / "stamps"


def md5sum(path: Path, holding: str | None = None) -> str:
    """Hex md5 of a regular file, read in chunks (a device or FIFO is refused, never read)."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum, not security
    with open_regular(Path(path), holding) as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _identity(info: os.stat_result) -> dict[str, int]:
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "inode": info.st_ino, "device": info.st_dev}


def _stamp_path(path: Path) -> Path:
    key = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return stamp_dir() / f"{key}.json"


def _stamped(path: Path, info: os.stat_result, md5: str) -> bool:
    """Whether a stamp says this very file (same identity) already matched `md5`."""
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("path") == os.path.abspath(path) and stamp.get("md5") == md5
            and stamp.get("identity") == _identity(info))


def write_stamp(path: Path, md5: str) -> bool:
    """Record that `path`, as it is now, matched `md5`; False when the stamp folder is not writable."""
    info = regular_stat(path)
    target = _stamp_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".stamp-", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"path": os.path.abspath(path), "md5": md5, "identity": _identity(info)}, f)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return False
    return True


def verify(path: Path, md5: str, hint: str = "supply a good copy") -> None:
    """Check `path` against its expected `md5`, hashing it only when no valid stamp says it matched.

    A mismatch is a DataError naming the file and both sums, ending with `hint` (how to supply a
    good copy); a match is stamped (when possible).
    """
    path = Path(path)
    info = regular_stat(path)
    if _stamped(path, info, md5):
        return
    got = md5sum(path)
    if got != md5:
        raise DataError(f"{path}: checksum mismatch: expected md5 {md5}, found {got}; the file is damaged "
                        f"or not the official one. Delete it so it is downloaded again, or {hint}")
    if _identity(regular_stat(path)) == _identity(info):  # not rewritten while it was hashed
        write_stamp(path, md5)
