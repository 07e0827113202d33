"""What every data reader shares: reading a file's bytes and the error for a bad file.

Each message names the file, the problem, and how to supply a good copy.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def bad_file(path: Path, problem: str, holding: str = "the files") -> DataError:
    """The error for a file that exists but is unusable; `holding` names what the data dir holds."""
    return DataError(f"{path}: {problem}. Replace it with a good copy (point --data-dir DIR or "
                     f"PLASTICITY_DATA=DIR at a folder holding {holding}), or delete it so it is "
                     f"downloaded again")


def read_file(path: Path, holding: str = "it") -> bytes:
    """The file's bytes; a missing or unreadable file is a DataError saying how to supply it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} is missing; point --data-dir DIR or PLASTICITY_DATA=DIR at a "
                        f"folder holding {holding}, or let plasticity download it") from None
    except OSError as exc:
        raise bad_file(path, f"cannot be read ({exc})", holding) from exc
