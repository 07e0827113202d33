"""The HTML report and results.csv, built from a synthetic suite folder in the store's format."""
from __future__ import annotations

import csv
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from plasticity.report import build_report, write_results_csv
from plasticity.report.browser import check_in_browser, find_chromium, ChromiumNotFound
from synthetic_suite import write_demo_suite
from plasticity.report.sections import published_accuracy
from plasticity.report.stats import grid_share, largest_drop, t_interval, threshold_summary
from plasticity.results import load_cells

HOSTILE = "<script>alert(1)</script>"
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


class _Tables(HTMLParser):
    """Collect every table of a page as lists of rows of cell text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables_of(text: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def _hostile_cell(runs: Path) -> None:
    """A cell written line by line by hand, with a variant name that is HTML."""
    config = {"suite": "s", "task": {"name": "digits", "params": {}}, "rule": {"name": "evil", "params": {}},
              "optimizer": {"name": "sgd", "params": {"lr": 0.1}}, "seed": 0,
              "budget": {"updates": 10, "epochs": None, "seconds": None}, "evaluation": {}, "dtype": "float32"}
    lines = [  # noqa: the exact line types of plasticity.results
        {"type": "header", "cell_id": "hostile0", "config": config,
         "labels": {"variant": HOSTILE, "rule": "evil", "optimizer": "sgd", "grid": {}},
         "thresholds": [0.9, 0.95, 0.97], "provenance": {"git_commit": "abc", "command": HOSTILE},
         "started": "2025-01-01T00:00:00"},
        {"type": "eval", "updates": 1, "epoch": 0, "examples": 32, "train_seconds": 0.01, "train_loss": 2.0,
         "val_accuracy": 0.5, "val_loss": 1.0, "test_accuracy": 0.5, "diagnostics": {}},
        {"type": "eval", "updates": 10, "epoch": 0, "examples": 320, "train_seconds": 0.1, "train_loss": 0.5,
         "val_accuracy": 0.91, "val_loss": 0.3, "test_accuracy": 0.9, "diagnostics": {}},
        {"type": "final", "status": "complete", "updates": 10, "examples": 320, "train_seconds": 0.1,
         "val_accuracy": 0.91, "test_accuracy": 0.9, "updates_to": {"0.9": 10, "0.95": None, "0.97": None},
         "examples_to": {"0.9": 320, "0.95": None, "0.97": None},
         "seconds_to": {"0.9": 0.1, "0.95": None, "0.97": None}, "message": "", "finished": "x",
         "wall_seconds": 0.2, "evals": 2},
    ]
    (runs / "hostile0.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    """2 rules x 2 learning rates x 3 seeds on one task; one diverged, one errored, one .part."""
    path = write_demo_suite(tmp_path_factory.mktemp("report") / "fake", tasks=("digits",), seeds=(0, 1, 2),
                            diverged=1, error_cell=True, incomplete_cell=True)
    _hostile_cell(path / "runs")
    return path


@pytest.fixture(scope="module")
def report(suite) -> str:
    return build_report(suite).read_text(encoding="utf-8")


def test_fixture_has_the_cells_it_claims(suite):
    statuses = sorted(c.status for c in load_cells(suite))
    assert statuses.count("complete") == 11 + 1 and statuses.count("diverged") == 1  # + the hand-written one
    assert statuses.count("error") == 1 and statuses.count("incomplete") == 1
    assert len(list((suite / "runs").glob("*.jsonl.part"))) == 1


def test_report_is_self_contained(suite, report):
    assert (suite / "index.html").is_file() and (suite / "results.csv").is_file()
    assert report.count("data:image/png;base64,") >= 5  # curves, spread, divergence, heatmaps, feedback
    assert not EXTERNAL.search(report)
    assert "<script" not in report.lower()


def test_summary_table_rows_and_divergence(report):
    summary = tables_of(report)[0]
    rows = {r[0]: r for r in summary[2:]}  # two header rows
    for variant in ("bp + sgd(lr=0.01)", "bp + sgd(lr=0.1)", "fa + sgd(lr=0.01)", "fa + sgd(lr=0.1)",
                    HOSTILE):
        assert variant in rows
    assert rows["fa + sgd(lr=0.1)"][-1] == "1/3"
    assert rows["bp + sgd(lr=0.1)"][-1] == "0/3"
    # The errored and interrupted cells are extra seeds of bp lr=0.01: not counted as results.
    assert rows["bp + sgd(lr=0.01)"][1] == "3 (+2 unfinished)"
    assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", rows["bp + sgd(lr=0.1)"][2])
    assert "1 diverged" in report and "1 incomplete" in report


def test_published_beside_measured(report):
    published = next(t for t in tables_of(report) if t[0][:2] == ["rule", "published as"])
    bp = next(r for r in published[1:] if r[0] == "bp")
    assert bp[2] == "97.50"  # test error 2.5 % -> accuracy 97.5 %
    assert bp[5] == "bp + sgd(lr=0.1)"


def test_problems_listed(report):
    problems = next(t for t in tables_of(report) if t[0][:3] == ["status", "task", "variant"])
    assert sorted(r[0] for r in problems[1:]) == ["error", "incomplete"]


def test_names_are_escaped(report):
    assert HOSTILE not in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert "Synthetic suite &lt;demo&gt;" in report


def test_results_csv(suite, report):
    with open(suite / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = set(rows[0])
    required = {"task", "rule", "optimizer", "variant", "seed", "status", "updates", "examples",
                "train_seconds", "val_accuracy", "test_accuracy", "cell_id", "optimizer.lr"}
    for thr in ("0.9", "0.95", "0.97"):
        required |= {f"updates_to_{thr}", f"seconds_to_{thr}", f"examples_to_{thr}"}
    assert required <= columns
    assert len(rows) == 11 + 1 + 1 + 1  # complete + diverged + errored + hand-written; no .part
    assert {r["status"] for r in rows} == {"complete", "diverged", "error"}
    assert all(r["updates"] == "" or r["updates"].isdigit() for r in rows)
    slow = [r for r in rows if r["variant"] == "fa + sgd(lr=0.01)"]
    assert all(r["updates_to_0.97"] == "" for r in slow)  # never reached -> empty
    assert {r["optimizer.lr"] for r in rows if r["rule"] == "bp"} == {"0.01", "0.1"}


def test_write_results_csv_directly(tmp_path, suite):
    path = write_results_csv(load_cells(suite), tmp_path / "out" / "r.csv")
    assert path.read_text().startswith("task,rule,optimizer,variant,seed,status")


def test_empty_suite_builds(tmp_path):
    (tmp_path / "runs").mkdir()
    text = build_report(tmp_path).read_text()
    assert "No results yet" in text


def test_t_interval_matches_scipy():
    ci = t_interval([1.0, 2.0, 3.0])
    low, high = scipy_stats.t.interval(0.95, df=2, loc=2.0, scale=scipy_stats.sem([1.0, 2.0, 3.0]))
    assert ci.n == 3 and ci.mean == pytest.approx(2.0) and ci.std == pytest.approx(1.0)
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(t_interval([0.5]).low) and t_interval([None, float("nan")]).n == 0


def test_stats_helpers():
    assert largest_drop([0.1, 0.5, 0.4, 0.45, 0.3, 0.35]) == pytest.approx(0.2)
    assert largest_drop([0.1, 0.2, 0.3]) == 0
    s = threshold_summary([10, None, 30])
    assert (s.median, s.reached, s.n, s.majority) == (20, 2, 3, True)
    assert not threshold_summary([None, float("inf"), 5]).majority
    assert grid_share([[1, 2, None], [None, None, 3], [4, 5, 6]]) == (2, 3)
    assert published_accuracy({"metric": "test_error", "value": 1.5}) == pytest.approx(98.5)
    assert published_accuracy({"metric": "test_accuracy", "value": 97.0}) == pytest.approx(97.0)


def _chromium_or_skip() -> None:
    try:
        find_chromium()
    except ChromiumNotFound:
        pytest.skip("Chromium is not installed")


def test_report_renders_in_chromium(suite, report, tmp_path):
    _chromium_or_skip()
    shot = tmp_path / "report.png"
    problems = check_in_browser(suite / "index.html", shot, window=(1400, 3000))
    assert problems == []
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_browser_check_reports_console_errors(tmp_path):
    _chromium_or_skip()
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>bad</title></head>"
                    "<body><script>console.error('boom')</script></body></html>")
    problems = check_in_browser(page, tmp_path / "bad.png", window=(400, 300))
    assert any("boom" in p for p in problems)
