"""The Python API (`plasticity.run`, `plasticity.report`), suites found by name (a local `suites/`
folder before the built-in one), suites written as dicts, and `python -m plasticity`."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import plasticity
from plasticity import catalog
from plasticity.cli import main
from plasticity.errors import ConfigError, PlasticityError
from plasticity.suite import parse_suite
from plasticity.toml_text import dumps

ROOT = Path(__file__).parents[1]
TINY = {"name": "tiny", "description": "BP, 3 updates", "seeds": [0, 1], "budget": {"updates": 3},
        "tasks": [{"name": "digits", "params": {"hidden": [16]}}], "rules": [{"name": "bp"}]}


def test_run_a_dict_suite_returns_its_frames_and_report(tmp_path):
    out = tmp_path / "tiny"
    result = plasticity.run(TINY, out=out, device="cpu", progress=False)
    assert (result.total, result.skipped, result.finished, result.errors) == (2, 0, {"complete": 2}, [])
    assert result.report == out / "index.html" and result.report.is_file()
    cells = result.cells[result.cells.in_suite]
    assert sorted(cells["seed"]) == [0, 1] and set(cells["status"]) == {"complete"}
    assert [tuple(h) for h in cells["task.hidden"]] == [(16,), (16,)]
    assert set(result.evals["cell_id"]) == set(cells["cell_id"]) and result.evals["updates"].max() == 3
    # the folder records the suite as TOML text, which reads back as the dict given
    assert tomllib.loads(json.loads((out / "suite.json").read_text())["toml"]) == TINY
    again = plasticity.run(TINY, out=out, device="cpu", progress=False, report=False)
    assert (again.skipped, again.finished, again.report) == (2, {}, None)
    assert "2 cells: 2 already complete" in repr(again)


def test_report_rebuilds_from_the_runs_and_names_a_folder_without_runs(tmp_path):
    out = tmp_path / "tiny"
    plasticity.run(TINY, out=out, device="cpu", progress=False, report=False)
    assert not (out / "index.html").exists()
    assert plasticity.report(out) == out / "index.html"
    assert "tiny" in (out / "index.html").read_text() and (out / "results.csv").is_file()
    with pytest.raises(PlasticityError, match="has no runs/ folder"):
        plasticity.report(tmp_path / "nothing")


@pytest.mark.parametrize("suite, kwargs, message", [
    ("no-such-suite", {}, "suite 'no-such-suite' not found"),
    (TINY, {"device": "gpu"}, "unknown device 'gpu'"),
    (TINY, {"jobs": 0}, r"jobs \(--jobs\) must be a whole number of at least 1, got 0"),
    (TINY, {"slurm": {"time": 5}}, r"slurm \(--slurm\) applies to executor='slurm'"),
    (TINY, {"executor": "dask"}, r"executor \(--executor\) must be one of local, ray, slurm, got 'dask'"),
    ({**TINY, "seed": 3}, {}, "unknown key 'seed'"),
    ({**TINY, "budget": {"epochs": math.nan}}, {}, "(?i)epochs.*nan"),
    ({**TINY, "seeds": object()}, {}, "seeds: object"),
    ({"tasks": [{"name": "digits"}], "rules": [{"name": "nope"}]}, {}, "unknown rule 'nope'"),
    (42, {}, "expected a name, a path to a TOML file or a dict, got int"),
])
def test_errors_are_the_packages_exceptions_and_nothing_is_written(tmp_path, suite, kwargs, message):
    # SystemExit is no Exception: pytest.raises(PlasticityError) would let it through and fail
    with pytest.raises(PlasticityError, match=message):
        plasticity.run(suite, out=tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_local_suite_wins_over_the_built_in_one_of_its_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "quick.toml").write_text(dumps({**TINY, "name": "quick"}))
    assert catalog.find_suite("quick") == (tmp_path / "suites" / "quick.toml").resolve()
    assert catalog.find_suite("mnist") == catalog.BUILTIN_SUITES / "mnist.toml"
    result = plasticity.run("quick", device="cpu", progress=False)
    assert result.total == 2 and result.report == Path("reports") / "quick" / "index.html"
    assert (tmp_path / "reports" / "quick" / "index.html").is_file()

    monkeypatch.setenv("COLUMNS", "400")
    assert main(["list", "suites"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"  local:    {tmp_path / 'suites'} (a local suite wins over a built-in one of the same name)" in lines
    local, builtin = [line for line in lines if line.startswith("  quick ")]
    assert local.split()[1:4] == ["local", "2", "cells"] and "[runs instead of the built-in one]" in local
    assert builtin.split()[1:4] == ["built-in", str(len(_quick_cells())), "cells"]
    assert "[not run by name: the local quick runs instead]" in builtin


def _quick_cells() -> set[str]:
    suite = parse_suite((ROOT / "suites" / "quick.toml").read_text(), ROOT / "suites" / "quick.toml")
    return {c.cell_id for c in suite.cells}


def test_from_the_clone_top_level_its_suites_are_the_built_in_ones_once(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert catalog.local_dir() is None
    names = [f.name for f in catalog.suite_files()]
    assert names == sorted(p.stem for p in (ROOT / "suites").glob("*.toml"))
    assert {f.origin for f in catalog.suite_files()} == {catalog.BUILTIN}


@pytest.mark.parametrize("name, message", [
    ("quik", "did you mean 'quick'"),
    ("../suites/quick", "suite file ../suites/quick not found"),
    ("nothere.toml", "suite file nothere.toml not found"),
])
def test_an_unknown_suite_names_where_it_was_looked_for(tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    with pytest.raises(ConfigError, match=message) as err:
        catalog.find_suite(name)
    assert str(catalog.BUILTIN_SUITES) in str(err.value) and str(tmp_path / "suites") in str(err.value)


def test_dict_suites_are_written_as_toml_that_reads_back_the_same():
    doc = {"name": "x", "seeds": 2, "plugins": [Path("p")], "description": 'quote " backslash \\ tab \t é \x7f',
           "budget": {"epochs": 1.5, "seconds": 1e9}, "evaluation": {"every_epoch": False},
           "tasks": [{"name": "digits", "grid": {"init_scale": [0.1, 1.0]}, "budget": {"updates": 7}}],
           "rules": [{"name": "bp", "optimizers": [{"name": "adam", "grid": {"lr": [1e-3, math.inf]}}]}],
           "weird key": {"a.b": [[1, 2], []]}}
    back = tomllib.loads(dumps(doc))
    assert back == {**doc, "plugins": ["p"]}
    with pytest.raises(ConfigError, match=r"suite: keys are strings, got 1"):
        dumps({1: 2})


def test_python_dash_m_is_the_command_line_and_import_stays_light():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    version = subprocess.run([sys.executable, "-m", "plasticity", "--version"], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=300)
    assert version.returncode == 0 and version.stdout.startswith(f"plasticity {plasticity.__version__} (")
    bad = subprocess.run([sys.executable, "-m", "plasticity", "report", "/nonexistent"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("plasticity: error: /nonexistent has no runs/ folder")
    code = ("import sys, plasticity; heavy = [m for m in ('pandas', 'matplotlib', 'plasticity.runner', "
            "'plasticity.report', 'optuna') if m in sys.modules]; print(heavy); "
            "print(callable(plasticity.run), callable(plasticity.report))")
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert light.stdout.split("\n")[:2] == ["[]", "True True"], light.stderr


def test_progress_bars_render_in_notebooks_and_terminals():
    import tqdm.auto

    from plasticity import runner
    from plasticity.search import study
    assert runner.tqdm is tqdm.auto.tqdm and study.tqdm is tqdm.auto.tqdm
