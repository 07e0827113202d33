"""Stale results and results as data: a cell's fingerprint decides whether it reruns, the report
and results.csv count exactly the cells of the suite as it expands now, and `load_results`
returns the full configuration of every cell."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import plasticity
from plasticity import fingerprint, registry
from plasticity.cli import main
from plasticity.report import build_report
from plasticity.report.tables import cells_frame
from plasticity.results import finished_cell, load_cells, read_cell, read_runs, select_cells
from plasticity.runner import run_suite
from plasticity.suite import parse_suite
from plasticity.writer import CellWriter

RULE = "store_tiny"
RULE_FILE = '''"""Backprop under another name, with a parameter no suite sets (a plugin for the store tests)."""
from dataclasses import dataclass

from plasticity import register_rule, registry

Backprop = registry.get_rule("bp")


@register_rule("store_tiny")
class StoreTiny(Backprop):
    """Backprop with a default that the tests change."""

    @dataclass(frozen=True)
    class Params(Backprop.Params):
        extra: float = {extra}
'''
SUITE = ('name = "store"\nseeds = 1\n[budget]\nupdates = {updates}\n'
         '[[tasks]]\nname = "digits"\n[[rules]]\nname = "store_tiny"\n')


def write_rule(folder: Path, extra: float = 1.0, tail: str = "") -> Path:
    """(Re)write the plugin rule file and load it as a fresh process would."""
    path = folder / "store_tiny.py"
    path.write_text(RULE_FILE.format(extra=extra) + tail)
    registry._loaded_files.discard(path.resolve())
    registry._unregister("rule", RULE)
    fingerprint.forget_sources()
    registry.load_plugin_file(path)
    return path


@pytest.fixture
def plugin(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    write_rule(folder)
    yield folder
    registry._loaded_files.discard((folder / "store_tiny.py").resolve())
    registry._unregister("rule", RULE)
    fingerprint.forget_sources()


def run(out: Path, updates: int = 3, keep_stale: bool = False):
    return run_suite(parse_suite(SUITE.format(updates=updates)), out, "cpu", progress=False, keep_stale=keep_stale)


def csv_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ---- what counts ------------------------------------------------------------------------------

def test_changed_budget_counts_only_the_current_cell(tmp_path, plugin):
    out = tmp_path / "out"
    run(out, updates=3)
    run(out, updates=4)
    assert len(list((out / "runs").glob("*.jsonl"))) == 2  # the old file stays on disk
    html = build_report(out).read_text()
    rows = csv_rows(out)
    assert len(rows) == 1 and rows[0]["updates"] == "4" and rows[0]["budget.updates"] == "4"
    assert [c.final["updates"] for c in load_cells(out)] == [4]
    assert "1 file in runs/ not part of this suite" in html
    assert "not in the suite as it expands now" in html


def test_changed_rule_default_counts_only_the_current_cell(tmp_path, plugin):
    out = tmp_path / "out"
    run(out)
    write_rule(plugin, extra=2.0)
    summary = run(out)
    assert summary.skipped == 0 and summary.finished == {"complete": 1}
    build_report(out)
    assert [r["rule.extra"] for r in csv_rows(out)] == ["2.0"]
    cells, _ = plasticity.load_results(out)
    assert sorted(cells["in_suite"]) == [False, True]
    assert cells.loc[cells["in_suite"], "rule.extra"].tolist() == [2.0]


def test_changed_rule_source_reruns_the_cell(tmp_path, plugin):
    out = tmp_path / "out"
    run(out)
    path = out / "runs" / f"{parse_suite(SUITE.format(updates=3)).cells[0].cell_id}.jsonl"
    before = read_cell(path).header["fingerprint"]
    assert run(out).skipped == 1  # same code: resumed, nothing reruns
    write_rule(plugin, tail='# a comment\n"""and a string statement"""\n')
    assert run(out).skipped == 1  # neither runs: the same code, nothing reruns
    write_rule(plugin, tail="CHANGED = 1  # a change to the rule's code, not to its parameters\n")
    summary = run(out)
    assert summary.skipped == 0 and summary.finished == {"complete": 1}
    after = read_cell(path).header["fingerprint"]
    assert after["hash"] != before["hash"]
    assert fingerprint.differing_parts(before, after) == ["rule_source"]
    assert len(load_cells(out)) == 1


def test_keep_stale_keeps_the_old_cell_and_the_report_says_so(tmp_path, plugin):
    out = tmp_path / "out"
    run(out)
    write_rule(plugin, tail="CHANGED = 1\n")
    assert run(out, keep_stale=True).skipped == 1
    html = build_report(out).read_text()
    assert "1 cells are stale, kept by plasticity run --keep-stale" in html
    assert "rule_source" in html
    cells, _ = plasticity.load_results(out)
    assert cells["stale"].tolist() == ["rule_source"] and cells["in_suite"].tolist() == [True]
    assert [r["stale"] for r in csv_rows(out)] == ["rule_source"]
    # Without the flag the next run replaces it, and the report no longer mentions stale cells.
    assert run(out).finished == {"complete": 1}
    html = build_report(out).read_text()
    assert "stale" not in html and len(list((out / "runs").glob("*.jsonl"))) == 1


def test_keep_stale_flag_on_the_command_line(tmp_path, plugin, capsys):
    suite = tmp_path / "store.toml"
    suite.write_text(SUITE.format(updates=3))
    out = tmp_path / "out"
    args = ["run", str(suite), "--out", str(out), "--plugins", str(plugin), "--no-progress"]
    assert main(args) == 0
    write_rule(plugin, tail="CHANGED = 1\n")
    assert main(args + ["--keep-stale"]) == 0
    assert "1 cells: 1 already complete" in capsys.readouterr().err
    assert "kept by plasticity run --keep-stale" in (out / "index.html").read_text()


def test_interrupted_rerun_of_a_stale_cell_counts_neither_as_current(tmp_path, plugin):
    """A stale finished file beside a .part of its rerun: the .part is the cell (unfinished), the
    stale file is set aside, so the old numbers never enter a mean."""
    out = tmp_path / "out"
    run(out)
    write_rule(plugin, tail="CHANGED = 1\n")
    cell = parse_suite(SUITE.format(updates=3)).cells[0]
    manifest = fingerprint.suite_manifest([cell])
    (out / "suite.json").write_text(json.dumps({"name": "store", "cells": manifest}))
    stale = out / "runs" / f"{cell.cell_id}.jsonl"
    part = out / "runs" / f"{cell.cell_id}.jsonl.part"
    header = {**read_cell(stale).header, "fingerprint": fingerprint.fingerprint(cell)}
    part.write_text(json.dumps(header) + "\n")
    selection = select_cells(out)
    assert [c.path.name for c in selection.cells] == [part.name]
    assert [p.reason.split(":")[0] for p in selection.outside] == ["stale"]
    build_report(out)
    assert csv_rows(out) == []  # an interrupted cell is not a result, and the stale one is not counted


def test_no_variant_and_seed_counted_twice_without_a_cell_list(tmp_path, plugin):
    """An older folder (suite.json without a cell list): every cell counts, but one (variant,
    seed) that two suite versions produced counts once, the newest."""
    out = tmp_path / "out"
    run(out, updates=3)
    run(out, updates=4)
    (out / "suite.json").write_text(json.dumps({"name": "store"}))
    html = build_report(out).read_text()
    assert [r["updates"] for r in csv_rows(out)] == ["4"]
    assert "lists no cells" in html and "older result of the same variant and seed" in html
    with pytest.raises(ValueError, match="counted twice"):
        cells_frame(read_runs(out))  # the table refuses duplicates, whoever passes the cells


def test_folder_without_suite_json_still_reports(tmp_path, plugin):
    out = tmp_path / "out"
    run(out)
    (out / "suite.json").unlink()
    html = build_report(out).read_text()
    assert "lists no cells" in html and len(csv_rows(out)) == 1


def test_budget_per_task_entry_is_part_of_the_variant():
    """Two [[tasks]] entries of one task with their own budgets: one variant each, never merged."""
    suite = parse_suite('[[tasks]]\nname = "digits"\nbudget = { updates = 2 }\n'
                        '[[tasks]]\nname = "digits"\nbudget = { updates = 3 }\n[[rules]]\nname = "bp"\n')
    assert len({c.labels["variant"] for c in suite.cells}) == 2


# ---- the fingerprint --------------------------------------------------------------------------

def test_fingerprint_covers_code_versions_and_parameters(plugin):
    cell = parse_suite(SUITE.format(updates=3)).cells[0]
    fp = fingerprint.fingerprint(cell)
    assert set(fp["parts"]) == set(fingerprint.PARTS)
    assert fp["parts"]["dtype"] == "float32" and fp["parts"]["torch"]
    assert any(f.endswith("store_tiny.py") for f in fp["files"])
    assert "rules/bp.py" in fp["files"]  # the base class's file counts too
    assert any(f.endswith("digits.py") for f in fp["files"])
    engine = fingerprint.engine_sources()
    assert {"plasticity/engine.py", "plasticity/models.py"} <= set(engine) <= set(fp["files"])
    assert "plasticity/data/idx.py" not in fp["files"]  # the digits task reads no data file
    assert not any("report" in f or "cli" in f or "runner" in f for f in engine)  # presentation only
    other = parse_suite(SUITE.format(updates=3).replace("seeds = 1", 'seeds = 1\ndtype = "float64"')).cells[0]
    assert set(fingerprint.differing_parts(fp, fingerprint.fingerprint(other))) == {"config", "dtype"}


def test_a_file_from_before_fingerprints_reruns(tmp_path, plugin):
    out = tmp_path / "out"
    run(out)
    cell = parse_suite(SUITE.format(updates=3)).cells[0]
    path = out / "runs" / f"{cell.cell_id}.jsonl"
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    del header["fingerprint"]
    path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    current = fingerprint.fingerprint(cell)["hash"]
    assert finished_cell(out / "runs", cell.cell_id, current) is None
    assert finished_cell(out / "runs", cell.cell_id, current, keep_stale=True) is not None


def _finished_file(runs, cell_id, status="complete", fp="fp1", evals=1):
    w = CellWriter(runs, cell_id)
    w.write({"type": "header", "cell_id": cell_id, "config": {}, **({"fingerprint": {"hash": fp}} if fp else {})})
    for i in range(evals):
        w.write({"type": "eval", "updates": i, "val_accuracy": 0.5, "test_accuracy": 0.5})
    w.finish({"status": status, "updates": max(evals - 1, 0)})


def test_one_finished_check_treats_everything_short_of_a_finished_current_file_as_unfinished(tmp_path):
    """The one "finished with this fingerprint" check of runs, claims and search trials alike."""
    _finished_file(tmp_path, "ok")
    _finished_file(tmp_path, "div", status="diverged")
    _finished_file(tmp_path, "pruned", status="pruned")
    _finished_file(tmp_path, "old", fp=None)  # written before fingerprints
    _finished_file(tmp_path, "noevals", evals=0)  # a finished file without a curve: damaged
    (tmp_path / "torn.jsonl").write_text('{"type": "header", "cell_id": "torn", "config": {}}\n{"type": "ev')
    _finished_file(tmp_path, "err", status="error")
    assert finished_cell(tmp_path, "ok", "fp1").final["status"] == "complete"
    assert finished_cell(tmp_path, "div", "fp1").final["status"] == "diverged"
    assert finished_cell(tmp_path, "ok", "fp2") is None  # stale
    assert finished_cell(tmp_path, "ok", "fp2", keep_stale=True) is not None
    assert finished_cell(tmp_path, "ok", None) is None
    damaged = []
    for cid in ("pruned", "old", "noevals", "torn", "err", "absent"):
        assert finished_cell(tmp_path, cid, "fp1", damaged=damaged) is None, cid
    assert finished_cell(tmp_path, "old", "fp1", keep_stale=True) is not None
    assert sorted(m.path.name for m in damaged) == ["noevals.jsonl", "torn.jsonl"]


# ---- results as data --------------------------------------------------------------------------

def test_load_results_has_the_full_config_and_percent(tmp_path, plugin):
    out = tmp_path / "out"
    run(out)
    cells, evals = plasticity.load_results(out)
    assert len(cells) == 1
    row = cells.iloc[0]
    # Defaults no suite set: the rule's `extra`, the task's `hidden`, the optimizer's momentum.
    assert row["rule.extra"] == 1.0 and row["rule.loss"] == "ce"
    assert row["task.hidden"] == tuple(registry.get_task("digits").Params().hidden)
    assert row["optimizer.momentum"] == registry.get_rule(RULE).default_optimizer[1]["momentum"]
    assert row["budget.updates"] == 3 and row["lr_schedule"] == "constant" and row["dtype"] == "float32"
    assert row["fingerprint"] == read_cell(out / "runs" / f"{row['cell_id']}.jsonl").header["fingerprint"]["hash"]
    assert bool(row["in_suite"]) and row["status"] == "complete"
    final = read_cell(out / "runs" / f"{row['cell_id']}.jsonl").final
    assert row["test_accuracy_pct"] == pytest.approx(100 * final["test_accuracy"])
    assert "updates_to_90pct" in cells.columns
    assert evals["updates"].tolist() == [0, 1, 2, 3]
    assert evals["val_accuracy_pct"].max() > 1  # percent, not a fraction
    assert any(c.startswith("feedback.") for c in evals.columns)
    assert {"train_loss", "val_loss", "cell_id"} <= set(evals.columns)
    # results.csv carries the same columns (but in_suite and note: it holds only the suite's cells)
    assert set(csv_rows(build_report(out).parent)[0]) == set(cells.columns) - {"in_suite", "note"}


def test_load_results_of_a_folder_without_runs(tmp_path):
    with pytest.raises(plasticity.PlasticityError, match="no runs/ folder"):
        plasticity.load_results(tmp_path)
