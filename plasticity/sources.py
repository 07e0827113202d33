"""Which source files decide a cell's numbers, found from what its code imports, and their code's hash.

Starting from a few roots (the modules of the cell's rule, task and optimizer classes and of their
base classes, and the engine module that trains it), the walk follows every import those modules
make (at module level and inside functions; not under `if TYPE_CHECKING`), transitively, within the
package, the plugin files and the roots' own packages. `from X import name` leads to the module
that defines `name` (a re-export in a package's `__init__` is followed to its source), so a plugin
that imports `LearningRule` from `plasticity` reaches `plasticity/rule.py`, not all of `__init__`'s
imports. A plugin file that takes another plugin's class from the registry (rules/sign.py takes
fa's `Params`) reaches that file through its module's global names.

Each file is named where it lies relative to its package (`plasticity/models.py`) or, for a plugin
file, by its folder and name (`rules/fa.py`), so a clone and an installed copy name it alike. Its
hash is of the code's syntax tree with every docstring and bare string statement removed:
comments, docstrings and formatting do not count; code that runs does.

The walk does not enter the modules in `NOT_NUMBERS` (they store, schedule, judge or present
cells, or compute the fingerprint; see its comment), nor the standard library or torch, numpy and
the other installed dependencies (their versions stand for them where they matter).
Everything is computed once per process; `forget` drops it (a process that reloaded its plugins).
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import types
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "plasticity"
PACKAGE_DIR = Path(__file__).resolve().parent
#: the module that trains a cell: a root of every cell's walk
ENGINE_ROOT = "plasticity.engine"
#: plugin files are imported under this prefix (plasticity.registry.load_plugin_file)
PLUGIN_PREFIX = "plasticity_plugins."

#: Modules (and packages, with their submodules) the walk does not enter. None of them can change
#: the numbers of a cell whose configuration is fixed: they write and read run files (results,
#: claims), schedule cells (runner, executors, search: a search trial is a cell whose configuration
#: holds the sampled values), judge and present them (verdicts, frames, report, cli), record the
#: machine (provenance), check rules (testing) or compute this fingerprint (fingerprint, sources).
#: Today the engine imports several of them (an import circle issue 21 removes: engine -> results,
#: fingerprint, provenance; engine -> suite -> executors -> runner, suite -> verdicts -> report,
#: suite -> search); without this cut every cell would hash the report. A module that decides
#: numbers must never be listed here: tests/test_sources.py traces the code a cell runs.
NOT_NUMBERS = ("plasticity.fingerprint", "plasticity.sources", "plasticity.results", "plasticity.claims",
               "plasticity.runner", "plasticity.executors", "plasticity.search", "plasticity.verdicts",
               "plasticity.frames", "plasticity.report", "plasticity.cli", "plasticity.provenance",
               "plasticity.testing",
               # where issue 21's layering puts the worker function, its pool and the cell writer,
               # and the suite parser (a cell's values are in its config; Cell lives in cells.py)
               "plasticity.worker", "plasticity.pool", "plasticity.writer", "plasticity.suite")

_SKIP_TOPS = (frozenset({"builtins", "torch"}) | frozenset(sys.stdlib_module_names)) - {"__main__"}


@dataclass(frozen=True)
class Source:
    """One module the walk reached: its stable name, its code's hash and the modules it imports."""
    module: str
    name: str  # e.g. plasticity/models.py, rules/fa.py
    hash: str
    imports: tuple[str, ...]


_sources: dict[str, Source | None] = {}
_trees: dict[Path, ast.Module | None] = {}
_reach: dict[tuple[str, ...], dict[str, str]] = {}
_tops: set[str] = {PACKAGE}


def forget() -> None:
    """Drop every cached walk and hash (the next call reads the files again)."""
    _sources.clear()
    _trees.clear()
    _reach.clear()
    _tops.clear()
    _tops.add(PACKAGE)


def digest(data: bytes) -> str:
    """The short sha256 every part of a fingerprint uses."""
    return hashlib.sha256(data).hexdigest()[:16]


# ---- the code's hash --------------------------------------------------------------------------

def _is_string_statement(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _canonical(node: object) -> str:
    """The syntax tree as text, leaving out docstrings (and any other bare string statement),
    positions and empty fields, so that a field a newer Python adds empty changes nothing."""
    if isinstance(node, ast.AST):
        parts = []
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                value = [v for v in value if not _is_string_statement(v)]
            if value is None or value == []:
                continue
            parts.append(f"{field}={_canonical(value)}")
        return f"{type(node).__name__}({','.join(parts)})"
    if isinstance(node, list):
        return f"[{','.join(_canonical(v) for v in node)}]"
    return repr(node)


def code_hash(source: str | bytes) -> str:
    """The hash of a module's code: its syntax tree without docstrings, comments or formatting."""
    return digest(_canonical(ast.parse(source)).encode())


# ---- where a module lies ----------------------------------------------------------------------

def _top(module: str) -> str:
    return module.split(".")[0]


def _is_plugin(module: str) -> bool:
    return module.startswith(PLUGIN_PREFIX)


def not_numbers(module: str) -> bool:
    """Whether the walk never enters `module` (it or a package holding it is in NOT_NUMBERS)."""
    return any(module == n or module.startswith(n + ".") for n in NOT_NUMBERS)



def _followed(module: str) -> bool:
    return not not_numbers(module) and (_is_plugin(module) or _top(module) in _tops)


def _file_of(module: str) -> Path | None:
    """The module's source file, found without importing it: a loaded module's `__file__`, else its
    path under its top-level package's folder."""
    loaded = sys.modules.get(module)
    file = getattr(loaded, "__file__", None)
    if file:
        return Path(file).resolve()
    top = sys.modules.get(_top(module))
    top_file = getattr(top, "__file__", None)
    if not top_file or _is_plugin(module):
        return None
    base = Path(top_file).resolve().parent.joinpath(*module.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(module: str) -> bool:
    file = _file_of(module)
    return file is not None and file.name == "__init__.py"


def _display(module: str, file: Path) -> str:
    """A name that does not depend on where the checkout or the installation lies."""
    if _is_plugin(module):
        return f"{file.parent.name}/{file.name}"
    if "." not in module and file.name != "__init__.py":
        return file.name  # a module of its own (a script, a test file)
    rel = module.split(".")
    return "/".join(rel) + ("/__init__.py" if file.name == "__init__.py" else file.suffix)


def _tree(file: Path) -> ast.Module | None:
    if file not in _trees:
        try:
            _trees[file] = ast.parse(file.read_bytes()) if file.suffix == ".py" else None
        except (OSError, SyntaxError, ValueError):
            _trees[file] = None
    return _trees[file]


# ---- what a module imports --------------------------------------------------------------------

def _absolute(module: str, level: int, target: str | None) -> str | None:
    """The absolute name of a relative import `from .{target}` made in `module`."""
    if level == 0:
        return target
    if _is_plugin(module):
        return None  # a plugin file is no package member
    package = module if _is_package(module) else module.rpartition(".")[0]
    parts = package.split(".")
    if level - 1 > len(parts) - 1:
        return None
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{target}" if target else base


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, looking into if/try blocks (but not `if TYPE_CHECKING`)."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            if not _type_checking(node):
                out += _statements(node.body) + _statements(node.orelse)
        elif isinstance(node, ast.Try):
            out += _statements(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                out += _statements(handler.body)
        else:
            out.append(node)
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _defining(module: str, name: str, seen: frozenset[tuple[str, str]] = frozenset()) -> str:
    """The module that `from module import name` takes `name` from: a submodule of that name, the
    source of a re-export, else `module` itself."""
    if _is_package(module) and _file_of(f"{module}.{name}") is not None:
        return f"{module}.{name}"
    file = _file_of(module)
    tree = _tree(file) if file else None
    if tree is None or (module, name) in seen:
        return module
    for node in reversed(_statements(tree.body)):  # the last binding wins
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node.level, node.module)
            for alias in node.names:
                if (alias.asname or alias.name) == name and source:
                    return _defining(source, alias.name, seen | {(module, name)}) if _followed(source) else source
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name:
                    return alias.name
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return module
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return module
    return module


def _walk_imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in `node`, at any depth, leaving out `if TYPE_CHECKING:` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (ast.Import, ast.ImportFrom)):
            found.append(current)
            continue
        for child in ast.iter_child_nodes(current):
            if isinstance(child, ast.If) and _type_checking(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)
    return found


def _imports(module: str, tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in _walk_imports(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        source = _absolute(module, node.level, node.module)
        if source is None:
            continue
        if not _followed(source):
            out.add(source)
            continue
        out.update(_defining(source, alias.name) for alias in node.names if alias.name != "*")
        if any(alias.name == "*" for alias in node.names):
            out.add(source)
    return out


def _global_refs(module: str) -> set[str]:
    """Modules of the classes, functions and modules a loaded plugin (or root) module holds in its
    globals: how a plugin file that took another plugin's class from the registry reaches it."""
    loaded = sys.modules.get(module)
    out: set[str] = set()
    for value in vars(loaded).values() if loaded else ():
        if isinstance(value, types.ModuleType):
            out.add(value.__name__)
        elif isinstance(value, (type, types.FunctionType)):
            out.add(getattr(value, "__module__", "") or "")
    return out


def source_of(module: str, dynamic: bool = False) -> Source | None:
    """The module's stable name, code hash and imports (None: no source file to read); `dynamic`
    adds the modules of the classes and functions its globals hold (a loaded plugin's)."""
    key = f"{module}|{dynamic}"
    if key not in _sources:
        file = _file_of(module)
        tree = _tree(file) if file else None
        if file is None or tree is None:
            source = None
            if file is not None and file.is_file():  # compiled or unparsable: its bytes decide
                source = Source(module, _display(module, file), digest(file.read_bytes()), ())
        else:
            refs = _imports(module, tree) | (_global_refs(module) if dynamic else set())
            source = Source(module, _display(module, file), digest(_canonical(tree).encode()),
                            tuple(sorted(r for r in refs if r and r != module)))
        _sources[key] = source
    return _sources[key]


# ---- the walk -----------------------------------------------------------------------------------

def class_modules(cls: type) -> list[str]:
    """The modules defining `cls`, its base classes and its nested `Params` and theirs, leaving out
    the standard library and torch."""
    classes = list(inspect.getmro(cls))
    params = getattr(cls, "Params", None)
    if isinstance(params, type):
        classes += inspect.getmro(params)
    out: list[str] = []
    for klass in classes:
        module = getattr(klass, "__module__", "") or ""
        if module and _top(module) not in _SKIP_TOPS and module not in out:
            out.append(module)
    return out


def reach(roots: tuple[str, ...]) -> dict[str, str]:
    """{stable file name: code hash} of the root modules and every module they reach (see the module doc)."""
    if roots in _reach:
        return dict(_reach[roots])
    for root in roots:
        if not _is_plugin(root):
            _tops.add(_top(root))  # a pip-installed plugin package is walked like the package
    files: dict[str, str] = {}
    seen: set[str] = set()
    todo = [(r, True) for r in roots if not not_numbers(r)]
    while todo:
        module, dynamic = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        source = source_of(module, dynamic=dynamic or _is_plugin(module))
        if source is None:
            files[f"{module} (no source)"] = "unavailable"
            continue
        files[source.name] = source.hash
        todo += [(m, False) for m in source.imports if _followed(m) and m not in seen]
    _reach[roots] = files
    return dict(files)


def class_reach(cls: type) -> dict[str, str]:
    """{stable file name: code hash} of everything `cls`'s code reaches (its modules and their imports)."""
    modules = tuple(class_modules(cls))
    if not modules:
        return {}
    if any(sys.modules.get(m) is None for m in modules):
        # Defined where no module holds it (an interactive session): its name is all we know.
        return {f"{cls.__module__}.{cls.__qualname__}": "unavailable"}
    return reach(modules)


def engine_reach() -> dict[str, str]:
    """{stable file name: code hash} of the engine module and everything it reaches."""
    return reach((ENGINE_ROOT,))
