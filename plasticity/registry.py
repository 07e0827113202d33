"""One registry of rules, tasks and optimizers, fed by plugin folders, entry points and decorators.

Plugin folders (the built-in `rules/` and `tasks/`: a clone's top-level folders, or the copies an
installed package carries in `plasticity/builtin/`; any `--plugins DIR`, `PLASTICITY_PLUGINS`,
a suite's `plugins = [...]`) are scanned for `*.py` files, each imported as its own module;
pip-installed packages add theirs through the entry-point groups `plasticity.rules`,
`plasticity.tasks` and `plasticity.optimizers`. Both end in the decorators below.
"""
from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import RegistryError, not_a_folder, unknown

KINDS = ("rule", "task", "optimizer")


#: The folder of this package (`plasticity/`), in a clone or in site-packages.
PACKAGE_DIR = Path(__file__).resolve().parent
BUILTIN_FOLDERS = ("rules", "tasks", "suites")


def _checkout() -> Path | None:
    """The clone this package was imported from (an editable install, or PYTHONPATH on a clone):
    the folder beside the package holding `pyproject.toml` and the top-level `rules/`, `tasks/`
    and `suites/`; None for an installed copy (a wheel, `pip install .`)."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and all((root / d).is_dir() for d in BUILTIN_FOLDERS):
        return root
    return None


#: The clone holding this package, or None when it runs from an installed copy.
CHECKOUT = _checkout()
#: Where the built-in `rules/`, `tasks/` and `suites/` are: the clone's top level, or the copies that a
#: wheel or sdist carries inside the package (pyproject.toml maps them to `plasticity/builtin/`).
BUILTIN_ROOT = CHECKOUT or PACKAGE_DIR / "builtin"
#: The folder that source paths are shown relative to: the clone, or for an installed copy the
#: folder that holds `plasticity/` (site-packages), never the current directory.
REPO_ROOT = CHECKOUT or PACKAGE_DIR.parent
BUILTIN_PLUGIN_DIRS = tuple(p for p in (BUILTIN_ROOT / "rules", BUILTIN_ROOT / "tasks") if p.is_dir())
BUILTIN_SUITES_DIR = BUILTIN_ROOT / "suites"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """A registered component: its class, the file that defined it, its old names (aliases)."""
    kind: str
    name: str
    obj: Any
    source: str
    aliases: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """The docstring's summary: its first paragraph, however many lines it wraps over."""
        return summary_of(self.obj)


def summary_of(obj: Any) -> str:
    """The first paragraph of `obj`'s docstring on one line ('(no description)' without one)."""
    doc = (inspect.getdoc(obj) or "").strip()
    if not doc:
        return "(no description)"
    return " ".join(line.strip() for line in doc.split("\n\n", 1)[0].splitlines())


_entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
#: per kind, old name -> current name (a renamed component keeps working under its old name)
_aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}
_loaded_files: set[Path] = set()
_entry_points_loaded = False


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsourcefile(obj) or getattr(obj, "__module__", "?")
    except TypeError:
        return getattr(obj, "__module__", "?")


def _check_name(kind: str, name: Any, source: str) -> None:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise RegistryError(f"{kind} name must be a non-empty word, got {name!r} ({source})")


def register(kind: str, name: str, obj: Any, aliases: Iterable[str] = ()) -> Any:
    """Add `obj` under `name` (and its old names `aliases`); a name already taken by another
    component, as its name or as an alias, is an error naming both files."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    source = _source_of(obj)
    aliases = tuple(aliases)
    for n in (name, *aliases):
        _check_name(kind, n, source)
    old = _entries[kind].get(name)
    if old is not None and old.obj is obj:
        return obj
    for n in (name, *aliases):
        holder = _entries[kind].get(_aliases[kind].get(n, n))
        if holder is not None:
            what = f"'{n}'" if holder.name == n else f"'{n}' (an old name of '{holder.name}')"
            raise RegistryError(f"two {kind}s are named {what}: one in {holder.source}, "
                                f"another in {source}; rename one of them")
    obj.name = name
    _entries[kind][name] = Entry(kind, name, obj, source, aliases)
    for a in aliases:
        _aliases[kind][a] = name
    return obj


def _decorator(kind: str, name: str, aliases: Iterable[str]) -> Callable[[T], T]:
    def wrap(obj: T) -> T:
        return register(kind, name, obj, aliases)
    return wrap


def register_rule(name: str, aliases: Iterable[str] = ()) -> Callable[[T], T]:
    """Class decorator: make a `LearningRule` subclass available to suites under `name`
    (and under the old names `aliases`, which resolve to `name`)."""
    return _decorator("rule", name, aliases)


def register_task(name: str, aliases: Iterable[str] = ()) -> Callable[[T], T]:
    """Class decorator: make a `Task` subclass available to suites under `name` (and `aliases`)."""
    return _decorator("task", name, aliases)


def register_optimizer(name: str, aliases: Iterable[str] = ()) -> Callable[[T], T]:
    """Class decorator: make an `OptimizerSpec` subclass available to suites under `name` (and `aliases`)."""
    return _decorator("optimizer", name, aliases)


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles a plugin file from its source every time, never from `__pycache__`: a cached
    bytecode file is trusted on mtime (whole seconds) and size, so a plugin edited twice within a
    second could run old code while the cell's fingerprint hashes the new source."""

    def get_code(self, fullname: str):
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


def load_plugin_file(path: Path) -> None:
    """Import one plugin file as its own module; an error names the file and the cause."""
    path = Path(path).resolve()
    if path in _loaded_files:
        return
    module_name = f"plasticity_plugins.{path.parent.name}_{abs(hash(str(path.parent))) % 10**8}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path, loader=_SourceLoader(module_name, str(path)))
    if spec is None or spec.loader is None:
        raise RegistryError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    _loaded_files.add(path)
    try:
        spec.loader.exec_module(module)
    except RegistryError:
        raise
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        _loaded_files.discard(path)
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.extract_tb(exc.__traceback__)
        line = next((f.lineno for f in reversed(tb) if Path(f.filename).resolve() == path), None)
        at = f", line {line}" if line else ""
        raise RegistryError(f"plugin file {path}{at} failed to import: "
                            f"{type(exc).__name__}: {exc}") from exc


def load_plugin_dir(directory: Path) -> None:
    """Import every `*.py` file of a plugin folder (not those starting with '_')."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RegistryError(f"plugin folder {directory} {not_a_folder(directory) or 'does not exist'} (--plugins DIR, "
                            f"PLASTICITY_PLUGINS and a suite's plugins name folders of rule and task .py files)")
    for path in sorted(directory.glob("*.py")):
        if not path.name.startswith("_"):
            load_plugin_file(path)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for kind in KINDS:
        for ep in importlib.metadata.entry_points(group=f"plasticity.{kind}s"):
            try:
                obj = ep.load()
            except Exception as exc:
                raise RegistryError(f"entry point '{ep.name}' in group plasticity.{kind}s "
                                    f"({ep.value}) failed to import: {type(exc).__name__}: {exc}") from exc
            if inspect.isclass(obj) and all(e.obj is not obj for e in _entries[kind].values()):
                register(kind, ep.name, obj)


def plugin_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """The folders scanned: built-in ones, then PLASTICITY_PLUGINS, then `extra`."""
    dirs = list(BUILTIN_PLUGIN_DIRS)
    env = os.environ.get("PLASTICITY_PLUGINS", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def load_plugins(extra_dirs: Iterable[str | Path] = ()) -> None:
    """Populate the registry from every source; safe to call repeatedly. (The built-in optimizers
    registered themselves already: the package imports plasticity.optimizers before any module of
    it runs, so the registry, a base module, needs no import of that higher layer.)"""
    _load_entry_points()
    for d in plugin_dirs(extra_dirs):
        load_plugin_dir(d)


def names(kind: str) -> list[str]:
    """The registered names of `kind`, sorted (old names are not listed: see `Entry.aliases`)."""
    return sorted(_entries[kind])


def entries(kind: str) -> list[Entry]:
    return [_entries[kind][n] for n in names(kind)]


def canonical(kind: str, name: str) -> str:
    """The current name for `name`: itself, or the name an alias stands for."""
    return _aliases[kind].get(name, name)


def get(kind: str, name: str, where: str = "") -> Any:
    """The registered class (by name or old name), or an error listing the known names, the
    closest match and how to make a component in another folder known."""
    try:
        return _entries[kind][canonical(kind, name)].obj
    except KeyError:
        raise RegistryError(f"{unknown(kind, name, _entries[kind], where)}. A {kind} defined in another folder: "
                            f"pass --plugins DIR, or add plugins = [\"DIR\"] to the suite file") from None


def get_rule(name: str, where: str = "") -> Any:
    return get("rule", name, where)


def get_task(name: str, where: str = "") -> Any:
    return get("task", name, where)


def get_optimizer(name: str, where: str = "") -> Any:
    return get("optimizer", name, where)


def _unregister(kind: str, name: str) -> None:
    """For tests: forget a component and its old names."""
    entry = _entries[kind].pop(name, None)
    for a in entry.aliases if entry else ():
        _aliases[kind].pop(a, None)
