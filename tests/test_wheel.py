"""The package as a new user installs it: a wheel, not editable, in a fresh virtual environment,
run from a folder outside the clone. It carries the built-in rules, tasks and suites.

The fresh environment reuses this one's torch and the other dependencies (no download): a `.pth`
file lists this interpreter's site-packages folders. Python appends those folders after the
environment's own site-packages (so the wheel's `plasticity` wins) and does not process the `.pth`
files inside them (so an editable install of the clone there does not leak in).
"""
from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from plasticity import registry
from plasticity.toml_text import dumps

ROOT = Path(__file__).parents[1]
SOURCES = ("pyproject.toml", "README.md", "plasticity", "rules", "tasks", "suites")
TIMEOUT = 600


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{' '.join(map(str, args))} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (where torch and the other dependencies are),
    not the clone (PYTHONPATH) nor anything else on sys.path."""
    return [p for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def _build_wheel(tmp: Path, env: dict[str, str]) -> Path:
    """A copy of the sources -> an sdist -> a wheel built from that sdist (so both carry the
    built-ins); without setuptools here, the wheel straight from the copy in pip's isolated build."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "wheel")]
    if importlib.util.find_spec("setuptools") is not None:
        sdist = _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                      "print(b.build_sdist(sys.argv[1]))", str(tmp / "sdist")], src, env).stdout.split()[-1]
        with tarfile.open(tmp / "sdist" / sdist) as tar:
            names = tar.getnames()
        assert any(n.endswith("/rules/bp.py") for n in names) and any(n.endswith("/suites/quick.toml") for n in names)
        _run([*pip_wheel, "--no-build-isolation", str(tmp / "sdist" / sdist)], tmp, env)
    else:
        _run([*pip_wheel, str(src)], tmp, env)
    (wheel,) = (tmp / "wheel").glob("plasticity-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, plasticity command, environment, work folder, wheel) of a fresh venv holding the wheel."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Not this clone's PYTHONPATH: pip would take a plasticity.egg-info there for an installed copy.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PLASTICITY_PLUGINS")}
    wheel = _build_wheel(tmp, env)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
          "--force-reinstall", str(wheel)], tmp, env)
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        tmp, env).stdout.strip())
    assert (purelib / "plasticity" / "builtin" / "rules").is_dir(), sorted(p.name for p in purelib.iterdir())
    (purelib / "_outer_environment.pth").write_text("\n".join(_site_dirs()) + "\n")
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "1000"  # `list` wraps to the terminal: one line per entry
    work = tmp / "work"  # outside the clone
    work.mkdir()
    return python, bindir / "plasticity", env, work, wheel, purelib


def _builtin_rules() -> set[str]:
    """The rules this clone's `rules/` folder registers (the registry of this test process)."""
    registry.load_plugins()
    rules_dir = (ROOT / "rules").resolve()
    return {e.name for e in registry.entries("rule") if Path(e.source).resolve().parent == rules_dir}


def test_the_wheel_carries_builtins_inside_the_package_only(installed):
    _, _, _, _, wheel, purelib = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"plasticity", wheel.name.split("-py")[0] + ".dist-info"}
    for folder, pattern in (("rules", "*.py"), ("tasks", "*.py"), ("suites", "*.toml")):
        expected = {p.name for p in (ROOT / folder).glob(pattern)}
        assert {Path(n).name for n in names if n.startswith(f"plasticity/builtin/{folder}/")} == expected
    assert not any((purelib / name).exists() for name in ("rules", "tasks", "suites"))


def test_installed_copy_runs_from_another_folder(installed):
    python, plasticity, env, work, _, purelib = installed
    where = _run([str(python), "-c", "import plasticity; print(plasticity.__file__)"], work, env).stdout.strip()
    assert Path(where).is_relative_to(purelib), where

    listed = _run([str(plasticity), "list", "rules"], work, env).stdout
    names = set(re.findall(r"^  (\S+) ", listed, re.M))
    assert names and names == _builtin_rules()

    # A local suites/quick.toml (the built-in quick's tasks and rules on a tiny budget) runs instead
    # of the built-in one, and the listing says so.
    quick = tomllib.loads((ROOT / "suites" / "quick.toml").read_text())
    quick.update(seeds=[0], budget={"updates": 3}, description="the built-in quick on a tiny budget")
    (work / "suites").mkdir()
    (work / "suites" / "quick.toml").write_text(dumps(quick))
    suites = _run([str(plasticity), "list", "suites"], work, env).stdout
    builtin = dict(re.findall(r"^  (\S+) +built-in +(.*)$", suites, re.M))
    assert set(builtin) == {p.stem for p in (ROOT / "suites").glob("*.toml")}
    assert all("cells" in line and "cannot be loaded" not in line for line in builtin.values()), suites
    assert re.search(r"^  quick +local +\d+ cells  \[runs instead of the built-in one\]", suites, re.M), suites
    assert f"built-in: {purelib / 'plasticity' / 'builtin' / 'suites'}" in suites

    run = _run([str(plasticity), "run", "quick", "--no-progress"], work, env)
    assert f"report: {work / 'reports' / 'quick' / 'index.html'}" in run.stdout
    rows = list(csv.DictReader(open(work / "reports" / "quick" / "results.csv")))
    assert {r["rule"] for r in rows} == names and all(r["status"] != "error" for r in rows), run.stderr
    assert all(r["updates"] == "3" for r in rows if r["status"] == "complete")

    version = _run([str(python), "-m", "plasticity", "--version"], work, env).stdout
    assert version.startswith("plasticity ") and str(purelib / "plasticity") in version


def test_every_package_folder_is_in_the_wheel():
    """pyproject.toml lists the packages (the built-ins are mapped in): a new subpackage must be added."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "plasticity").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
