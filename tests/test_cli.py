"""End to end through the command line: run a suite, read its report and CSV, rebuild the report."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from plasticity.cli import main

PLUGINS = Path(__file__).parent / "plugins"


def test_run_writes_report_with_diverged_cell(tmp_path, capsys, misbehaving_rules):
    suite = tmp_path / "mixed.toml"
    suite.write_text('name = "mixed"\nseeds = [0, 1]\n[budget]\nepochs = 3\n'
                     '[[tasks]]\nname = "digits"\n'
                     '[[rules]]\nname = "bp"\n'
                     '[[rules]]\nname = "test_nan"\nparams = { at = 2 }\n')
    out = tmp_path / "out"
    code = main(["run", str(suite), "--out", str(out), "--plugins", str(PLUGINS), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "4 cells: 0 already complete, 2 complete, 2 diverged" in captured.err
    html_path = out / "index.html"
    assert f"report: {html_path.resolve()}" in captured.out

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 4
    required = {"task", "rule", "optimizer", "seed", "status", "updates", "examples", "train_seconds",
                "val_accuracy_pct", "test_accuracy_pct", "updates_to_80pct", "updates_to_90pct", "updates_to_95pct"}
    assert required <= set(rows[0])
    statuses = sorted((r["rule"], r["status"]) for r in rows)
    assert statuses == [("bp", "complete")] * 2 + [("test_nan", "diverged")] * 2
    assert all(float(r["test_accuracy_pct"]) > 80 for r in rows if r["rule"] == "bp")

    html = html_path.read_text()
    assert "test_nan" in html and "2/2" in html  # the diverged count of that variant
    assert "<svg class=\"fig\"" in html  # figures are inline SVG
    assert 'src="http' not in html and 'href="http' not in html

    # the report is rebuilt from the runs alone, identically but for the build time
    html_path.unlink()
    assert main(["report", str(out)]) == 0
    assert html_path.exists()

    # a rerun finds every cell complete and runs nothing
    assert main(["run", str(suite), "--out", str(out), "--plugins", str(PLUGINS), "--no-progress"]) == 0
    assert "4 cells: 4 already complete" in capsys.readouterr().err


def test_report_of_a_folder_without_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "has no runs/ folder" in capsys.readouterr().err


def test_missing_data_stops_the_suite_with_one_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PLASTICITY_OFFLINE", "1")
    suite = tmp_path / "m.toml"
    suite.write_text('seeds = 3\n[[tasks]]\nname = "mnist"\n[[rules]]\nname = "bp"\n')
    out = tmp_path / "out"
    code = main(["run", str(suite), "--out", str(out), "--data-dir", str(tmp_path / "empty"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "plasticity: error:" in err and "train-images-idx3-ubyte.gz" in err and "PLASTICITY_DATA" in err
    assert not out.exists(), "the data are read before anything is written"


def test_version(capsys):
    import plasticity
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"plasticity {plasticity.__version__} (")


@pytest.mark.parametrize("singular, plural", [("rule", "rules"), ("task", "tasks"), ("optimizer", "optimizers")])
def test_list_accepts_the_singular(capsys, singular, plural):
    assert main(["list", plural]) == 0
    expected = capsys.readouterr().out
    assert main(["list", singular]) == 0
    assert capsys.readouterr().out == expected and expected.startswith(f"{plural}:")


def test_list_suites_shows_cells_and_survives_a_broken_suite(tmp_path, monkeypatch, capsys):
    from plasticity import catalog
    monkeypatch.setattr(catalog, "BUILTIN_SUITES", tmp_path)
    (tmp_path / "good.toml").write_text('description = "Two seeds of BP."\nseeds = [0, 1]\n'
                                        '[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n'
                                        'grid = { loss = ["ce", "mse"] }\n')
    (tmp_path / "bad-rule.toml").write_text('[[tasks]]\nname = "digits"\n[[rules]]\nname = "nope"\n')
    (tmp_path / "bad-toml.toml").write_text('seeds = [0\n')
    assert main(["list", "suite"]) == 0
    lines = capsys.readouterr().out.splitlines()
    good = next(line for line in lines if line.startswith("  good "))
    assert "built-in" in good
    assert "4 cells" in good and "Two seeds of BP." in good
    bad_rule = " ".join(lines[[i for i, line in enumerate(lines) if line.startswith("  bad-rule ")][0]:])
    assert "cannot be loaded" in bad_rule and "unknown rule 'nope'" in bad_rule
    assert any(line.startswith("  bad-toml ") and "cannot be loaded" in line for line in lines)


@pytest.mark.parametrize("device, message", [("gpu", "unknown device 'gpu'"), ("cuda:x", "unknown device"),
                                             ("cuda:99", "cuda:99")])
def test_bad_device_stops_before_anything_starts(tmp_path, capsys, device, message):
    out = tmp_path / "out"
    assert main(["run", "quick", "--device", device, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plasticity: error:") and message in err
    assert "cells" not in err and not out.exists()


def test_out_folder_that_is_a_file_is_an_error_not_a_traceback(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    suite = tmp_path / "s.toml"
    suite.write_text('[budget]\nupdates = 2\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n')
    assert main(["run", str(suite), "--out", str(blocker), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "afile (--out) is a file, not a folder" in err and "Traceback" not in err


TINY = 'name = "{name}"\nseeds = [0]\n[budget]\nupdates = {updates}\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n'


def _tiny(tmp_path: Path, name: str = "tiny", updates: int = 2, file: str = "s.toml") -> Path:
    path = tmp_path / file
    path.write_text(TINY.format(name=name, updates=updates))
    return path


def test_a_data_folder_that_is_a_file_is_named_before_anything_is_written(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("PLASTICITY_DATA", str(tmp_path / "afile"))
    out = tmp_path / "out"
    assert main(["run", str(_tiny(tmp_path)), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"data folder {tmp_path / 'afile'} (PLASTICITY_DATA) is a file, not a folder; give --data-dir DIR" in err
    assert not out.exists()
    assert main(["run", str(_tiny(tmp_path)), "--out", str(out), "--data-dir", str(tmp_path / "afile" / "d")]) == 2
    err = capsys.readouterr().err
    assert f"(--data-dir) lies under {tmp_path / 'afile'}, which is a file, not a folder" in err
    assert not out.exists()


def test_plugins_that_name_a_file_say_so(tmp_path, capsys):
    (tmp_path / "ofile").write_text("")
    assert main(["list", "rules", "--plugins", str(tmp_path / "ofile")]) == 2
    err = capsys.readouterr().err
    assert f"plugin folder {tmp_path / 'ofile'} is a file, not a folder (--plugins DIR" in err


def test_another_suite_is_refused_in_an_output_folder_and_the_same_one_edited_is_not(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_tiny(tmp_path)), "--out", str(out), "--no-progress", "--no-report"]) == 0
    before = (out / "suite.json").read_text()
    capsys.readouterr()
    other = _tiny(tmp_path, name="other", file="o.toml")
    assert main(["run", str(other), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (f"output folder {out} (--out) holds the results of suite 'tiny' (its suite.json); running suite "
            f"'other' there would replace that suite.json") in err and "give suite 'other' another --out" in err
    assert (out / "suite.json").read_text() == before
    # an edited version of the same suite (same name, another budget) runs there as before
    assert main(["run", str(_tiny(tmp_path, updates=3)), "--out", str(out), "--no-progress", "--no-report"]) == 0
    assert "1 cells: 0 already complete, 1 complete" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_names_index_html_and_keeps_the_cells(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "index.html").mkdir(parents=True)  # in the way of the report
    assert main(["run", str(_tiny(tmp_path)), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (f"the run finished but its report failed: cannot write {out / 'index.html'}: Is a directory; the cells "
            f"are kept in {out / 'runs'}") in err and "plasticity report" in err
    assert ".tmp" not in err and not list(out.glob("*.tmp"))
    assert len(list((out / "runs").glob("*.jsonl"))) == 1
    assert main(["report", str(out)]) == 2
    assert f"cannot write {out / 'index.html'}: Is a directory" in capsys.readouterr().err
