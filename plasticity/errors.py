"""Exceptions that carry a message meant for the researcher, not a traceback."""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path


class PlasticityError(Exception):
    """Base class: the CLI prints these as one clear message and exits with status 2."""


class RegistryError(PlasticityError):
    """Unknown name, duplicate name or a plugin that failed to import."""


class ConfigError(PlasticityError):
    """A suite file or a parameter set that cannot be used as written."""


class DataError(PlasticityError):
    """A data file that is missing, corrupt or of the wrong structure."""


def closest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a known name is close to `name`, else ''."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def unknown(kind: str, name: str, choices: Iterable[str], where: str = "") -> str:
    """The message for an unknown name: the known choices and the closest match."""
    choices = sorted(choices)
    prefix = f"{where}: " if where else ""
    return (f"{prefix}unknown {kind} '{name}'{closest(name, choices)}; "
            f"known {kind}s: {', '.join(choices) if choices else '(none registered)'}")


def not_a_folder(path: Path) -> str | None:
    """Why a path meant as a folder cannot be one: 'is a file, not a folder', or 'lies under X, which
    is a file, not a folder'; None when it is a folder or nothing is there yet (it can be made)."""
    path = Path(path)
    for part in (path, *path.parents):
        if os.path.lexists(part):
            if part.is_dir():
                return None
            what = "a file" if part.is_file() else "not a regular file or folder"
            return f"is {what}, not a folder" if part == path else f"lies under {part}, which is {what}, not a folder"
    return None
