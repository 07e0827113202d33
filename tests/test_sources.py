"""The fingerprint is complete by construction and blind to what cannot change a number
(plasticity.sources): edits are made on a copy of the package and its plugin folders, never on
the real files; the code a cell runs is traced and must all be in its fingerprint."""
from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import tokenize
from pathlib import Path

import pytest

from plasticity import fingerprint, registry, sources
from plasticity.runner import run_suite
from plasticity.suite import parse_suite

# Cells that differ in what their code reaches: rules (bp, fa, a sign rule that takes fa's
# parameters from the registry, er without optimizer), a GOFAU optimizer and a task that reads files.
CELLS = {
    "bp": '[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n',
    "fa": '[[tasks]]\nname = "digits"\n[[rules]]\nname = "fa"\n',
    "usf": '[[tasks]]\nname = "digits"\n[[rules]]\nname = "usf"\n',
    "er": '[[tasks]]\nname = "digits"\n[[rules]]\nname = "er"\n',
    "bp-hybrid-adam": '[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\noptimizers = [{ name = "hybrid-adam" }]\n',
    "fa-cifar10-lenet": '[[tasks]]\nname = "cifar10"\nparams = { model = "lenet" }\n[[rules]]\nname = "fa"\n',
}
BUDGET = 'name = "src"\nseeds = [0]\n[budget]\nupdates = 2\n'

# Run in a child process on the copy: fingerprints as they are, then after each edit (undone
# before the next); prints {"files": {cell: [file, ...]}, "hashes": {edit: {cell: hash}}, "parts": ...}.
PROBE = r'''
import json, sys
from pathlib import Path
from plasticity import fingerprint, registry
from plasticity.suite import parse_suite
registry.load_plugins()
cells, edits = (json.loads(Path(a).read_text()) for a in sys.argv[1:3])
root = Path(registry.__file__).resolve().parent.parent
suite = {name: parse_suite(text).cells[0] for name, text in cells.items()}
def prints():
    fingerprint.forget_sources()
    return {name: fingerprint.fingerprint(cell) for name, cell in suite.items()}
before = prints()
out = {"files": {n: sorted(fp["files"]) for n, fp in before.items()},
       "hashes": {"": {n: fp["hash"] for n, fp in before.items()}}, "parts": {}}
for edit, changes in edits.items():
    old = {f: (root / f).read_text() for f in changes}
    for f, text in changes.items():
        (root / f).write_text(text)
    after = prints()
    out["hashes"][edit] = {n: fp["hash"] for n, fp in after.items()}
    out["parts"][edit] = {n: fingerprint.differing_parts(before[n], fp) for n, fp in after.items()}
    for f, text in old.items():
        (root / f).write_text(text)
print(json.dumps(out))
'''


def copy_tree(dest: Path) -> Path:
    """The package and the built-in plugin folders, copied as a clone elsewhere would hold them."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(sources.PACKAGE_DIR), dest / "plasticity", ignore=skip)
    for folder in (*registry.BUILTIN_PLUGIN_DIRS, registry.BUILTIN_SUITES_DIR):
        shutil.copytree(folder, dest / folder.resolve().relative_to(registry.REPO_ROOT), ignore=skip)
    shutil.copy(registry.REPO_ROOT / "pyproject.toml", dest)  # what marks a clone (registry.CHECKOUT)
    return dest


def probe(root: Path, edits: dict[str, dict[str, str]]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PLASTICITY_PLUGINS", None)
    (root / "cells.json").write_text(json.dumps({name: BUDGET + text for name, text in CELLS.items()}))
    (root / "edits.json").write_text(json.dumps(edits))
    done = subprocess.run([sys.executable, "-c", PROBE, "cells.json", "edits.json"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def blind_edit(text: str) -> str:
    """Comments, docstrings (changed and added) and blank lines: everything but code."""
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    lines = text.splitlines(keepends=True)
    first = next((t for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)), None)
    if first is not None and first.type == tokenize.STRING:  # a module docstring: reword it
        row = first.start[0] - 1
        lines[row] = lines[row].replace('"""', '"""Reworded. ', 1)
    defs = [n for n in ast.parse(text).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    if defs:  # a bare string statement before the first function or class (and its decorators)
        row = min([defs[0].lineno] + [d.lineno for d in defs[0].decorator_list]) - 1
        lines[row] = '"""A bare string before a definition."""\n' + lines[row]
    return "# a comment added at the top\n" + "".join(lines) + "\n\n# a comment at the end\n"


def one_character(text: str) -> str:
    """The first number in the code (after the module docstring) with its last digit changed."""
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NUMBER and tok.string[-1].isdigit():
            lines = text.splitlines(keepends=True)
            row, col = tok.end[0] - 1, tok.end[1] - 1
            digit = "1" if tok.string[-1] != "1" else "2"
            lines[row] = lines[row][:col] + digit + lines[row][col + 1:]
            return "".join(lines)
    raise AssertionError("no number in the file")


@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> dict:
    root = copy_tree(tmp_path_factory.mktemp("clone"))
    engine_files = sorted(fingerprint.engine_sources())
    rel = {name: (root / name) for name in ("plasticity/models.py", "plasticity/feedback.py", "rules/fa.py",
                                            "rules/bp.py", "tasks/cifar10.py", "plasticity/data/cifar.py")}
    edits = {f"code {name}": {name: one_character(path.read_text())} for name, path in rel.items()}
    every = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))
    edits["docs everywhere"] = {f: blind_edit((root / f).read_text()) for f in every}
    edits["code in the report and runner"] = {
        f: (root / f).read_text() + "\nEDITED = 1\n" for f in ("plasticity/report/html.py", "plasticity/runner.py")}
    return {"root": root, "engine_files": engine_files, **probe(root, edits)}


def test_a_clone_elsewhere_gives_the_same_fingerprints(edited):
    """Files are named relative to their package or plugin folder: another path, the same hashes."""
    here = {name: fingerprint.fingerprint(parse_suite(BUDGET + text).cells[0])["hash"] for name, text in CELLS.items()}
    assert edited["hashes"][""] == here
    assert not any(str(edited["root"]) in f or f.startswith("/") for files in edited["files"].values() for f in files)


def test_comments_docstrings_and_blank_lines_change_no_fingerprint(edited):
    """Every file of the package and plugins reworded: no cell reruns. (A hash of the bytes would fail here.)"""
    assert edited["hashes"]["docs everywhere"] == edited["hashes"][""]


def test_code_outside_the_numbers_changes_no_fingerprint(edited):
    assert edited["hashes"]["code in the report and runner"] == edited["hashes"][""]


@pytest.mark.parametrize("name", ["plasticity/models.py", "plasticity/feedback.py", "rules/fa.py", "rules/bp.py",
                                  "tasks/cifar10.py", "plasticity/data/cifar.py"])
def test_a_one_character_code_change_reruns_exactly_the_cells_whose_code_reaches_it(edited, name):
    before, after = edited["hashes"][""], edited["hashes"][f"code {name}"]
    changed = {cell for cell in before if before[cell] != after[cell]}
    reaching = {cell for cell, files in edited["files"].items() if name in files}
    assert changed == reaching and changed


def test_which_cells_reach_which_file(edited):
    """What `reaching` means above, spelled out: a rule's file reaches its cells (and the rules built
    on it) only; the model zoo and the feedback mechanism reach every cell, since every task builds
    its network through plasticity.models (MLP cells too) and every rule's base class and the
    metrics import plasticity.feedback; the CIFAR reader reaches only cells of a task that reads files."""
    files = edited["files"]
    assert {c for c in files if "rules/fa.py" in files[c]} == {"fa", "usf", "fa-cifar10-lenet"}
    assert {c for c in files if "rules/bp.py" in files[c]} == {"bp", "bp-hybrid-adam"}
    assert {c for c in files if "tasks/cifar10.py" in files[c]} == {"fa-cifar10-lenet"}
    assert {c for c in files if "plasticity/data/cifar.py" in files[c]} == {"fa-cifar10-lenet"}
    assert all("plasticity/models.py" in f and "plasticity/feedback.py" in f for f in files.values())
    assert edited["parts"]["code rules/fa.py"]["fa"] == ["rule_source"]
    assert "engine" in edited["parts"]["code plasticity/models.py"]["bp"]


def test_no_presentation_module_is_hashed(edited):
    for files in edited["files"].values():
        modules = {f.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for f in files}
        assert not any(sources.not_numbers(m) for m in modules), sorted(modules)
    assert not any(m.startswith(("plasticity/report", "plasticity/cli", "plasticity/runner"))
                   for m in edited["engine_files"])


# ---- complete: every module a cell runs is in its fingerprint ------------------------------------

TRACED = {
    "bp": '[[tasks]]\nname = "digits"\nparams = { hidden = [8] }\n[[rules]]\nname = "bp"\n'
          'optimizers = [{ name = "hybrid-adam" }]\n',
    "usf-resnet20": '[[tasks]]\nname = "digits"\n[tasks.params]\nmodel = "resnet20"\nwidth = 2\nactivation = "relu"\n'
                    'augment = true\n[[rules]]\nname = "usf"\n',
    "er": '[[tasks]]\nname = "digits"\nparams = { hidden = [8], batch_size = 0 }\n[[rules]]\nname = "er"\n',
    "dtp": '[[tasks]]\nname = "digits"\nparams = { hidden = [8, 8] }\n[[rules]]\nname = "dtp"\n',
    "rf": '[[tasks]]\nname = "digits"\nparams = { hidden = [8] }\n[[rules]]\nname = "rf"\n',
    "gofau-hybrid": '[[tasks]]\nname = "digits"\nparams = { hidden = [8] }\n[[rules]]\nname = "gofau-hybrid"\n',
}


#: The only modules that may run while a cell trains without being in its fingerprint, each with
#: the reason it cannot change a number. A module that decides numbers must never be added here.
MAY_RUN_UNHASHED = {
    "plasticity.runner": "hands the cell to the engine and draws its progress bar",
    "plasticity.claims": "the lock on the cell's run file",
    "plasticity.results": "writes the run file",
    "plasticity.provenance": "records the machine and its load",
    "plasticity.fingerprint": "computes the fingerprint",
    "plasticity.sources": "computes the fingerprint",
    # where issue 21's layering moves the runner's part of the above
    "plasticity.worker": "claims the cell, hands it to the engine, writes its records",
    "plasticity.pool": "runs workers",
    "plasticity.writer": "writes the run file",
    "plasticity.executors": "the local executor, which hands the cell to the worker function",
    "plasticity.executors.base": "the executors' interface",
    "plasticity.executors.local": "the local executor, which hands the cell to the worker function",
    "plasticity.suite": "describes the suite for suite.json (the cell's values are its config, hashed)",
}


def ran_modules(run) -> set[str]:
    """The modules of the package and the plugin folders whose functions ran during `run()`."""
    files: set[str] = set()

    def seen(frame, event, arg):
        if event == "call":
            files.add(frame.f_code.co_filename)

    sys.setprofile(seen)
    threading.setprofile(seen)
    try:
        run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    by_file = {str(Path(m.__file__).resolve()): name for name, m in list(sys.modules.items())
               if getattr(m, "__file__", None)}
    names = {by_file.get(str(Path(f).resolve())) for f in files if not f.startswith("<")}
    return {n for n in names if n and (n.split(".")[0] == sources.PACKAGE or n.startswith(sources.PLUGIN_PREFIX))}


@pytest.mark.parametrize("name", list(TRACED))
def test_every_module_a_cell_runs_is_in_its_fingerprint(tmp_path, name):
    """Traced, not read: each module whose code ran while the cell trained is in the cell's
    fingerprint, but for the few in MAY_RUN_UNHASHED (they store, schedule or identify)."""
    suite = parse_suite('name = "traced"\nseeds = [0]\n[budget]\nupdates = 3\n[evaluation]\nper_decade = 3\n'
                        'feedback_metrics = 2\n' + TRACED[name])
    ran = ran_modules(lambda: run_suite(suite, tmp_path, "cpu", jobs=1, progress=False))
    assert json.loads((tmp_path / "runs" / f"{suite.cells[0].cell_id}.jsonl").read_text().splitlines()[-1])[
        "status"] == "complete"
    files = set(fingerprint.fingerprint(suite.cells[0])["files"])
    missing = sorted(m for m in ran if m not in MAY_RUN_UNHASHED and sources.source_of(m).name not in files)
    assert not missing, f"ran but not in the fingerprint: {missing}"
    assert all(sources.not_numbers(m) for m in MAY_RUN_UNHASHED)  # the walk never enters them either
    assert {"plasticity.engine", "plasticity.network"} <= ran  # the trace saw the engine run
    assert ("plasticity.models" in ran) == (name == "usf-resnet20")  # the model zoo runs for image models only
