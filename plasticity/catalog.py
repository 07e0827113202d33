"""Where suite files are found by name: a `suites/` folder in the current directory, then the
built-in suites (a clone's `suites/`, or the copies an installed package carries).

A local suite of the same name as a built-in one wins: `plasticity run quick` in a folder with its
own `suites/quick.toml` runs that file, and `plasticity list suites` says which one it is. Run
from a clone's top level, the local `suites/` folder is the built-in one and counts once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import registry
from .errors import ConfigError, closest

#: The built-in suites (a module attribute, so that tests can point it elsewhere).
BUILTIN_SUITES = registry.BUILTIN_SUITES_DIR
#: The local suites: this folder, relative to the current directory when a name is looked up.
LOCAL_SUITES = Path("suites")
LOCAL, BUILTIN = "local", "built-in"


@dataclass(frozen=True)
class SuiteFile:
    """A suite file found by name: where it is, where it comes from, and what it hides or what hides it."""
    name: str
    path: Path
    origin: str  # LOCAL or BUILTIN
    #: a local suite: the built-in file of the same name it overrides
    overrides: Path | None = None
    #: a built-in suite: the local file of the same name that runs instead
    overridden_by: Path | None = None


def local_dir() -> Path | None:
    """`./suites` when it is a folder and not the built-in one (a clone's top level), else None."""
    local = LOCAL_SUITES.resolve()
    if not local.is_dir() or (BUILTIN_SUITES.is_dir() and local.samefile(BUILTIN_SUITES)):
        return None
    return local


def _files(folder: Path | None) -> dict[str, Path]:
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.toml")) if p.is_file()}


def suite_files() -> list[SuiteFile]:
    """Every suite found by name, sorted by name; a name both local and built-in gives two
    entries, the local one (which runs) first."""
    local, builtin = _files(local_dir()), _files(BUILTIN_SUITES)
    found = []
    for name in sorted(set(local) | set(builtin)):
        if name in local:
            found.append(SuiteFile(name, local[name], LOCAL, overrides=builtin.get(name)))
        if name in builtin:
            found.append(SuiteFile(name, builtin[name], BUILTIN, overridden_by=local.get(name)))
    return found


def find_suite(name: str) -> Path:
    """The file of the suite called `name`: `./suites/NAME.toml`, else the built-in one; an
    unknown name is an error listing the suites known and where they were looked for."""
    plain = bool(name) and Path(name).name == name and not name.endswith(".toml") and not name.startswith(".")
    local = local_dir()
    if plain:
        for folder in (local, BUILTIN_SUITES):
            if folder is not None and (folder / f"{name}.toml").is_file():
                return folder / f"{name}.toml"
    known = sorted({f.name for f in suite_files()})
    where = f"{local} (local) or {BUILTIN_SUITES} (built-in)" if local else f"{BUILTIN_SUITES}"
    if not plain:
        raise ConfigError(f"suite file {name} not found (a suite is a TOML file, or the name of one in {where})")
    raise ConfigError(f"suite '{name}' not found: not a file, and not one of the suites in {where}: "
                      f"{', '.join(known) or '(none)'}{closest(name, known)}")
