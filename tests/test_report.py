"""The HTML report and results.csv, built from a synthetic suite folder in the store's format."""
from __future__ import annotations

import csv
import html as html_lib
import inspect
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from scipy import stats as scipy_stats
from synthetic_suite import write_demo_suite

from plasticity.report import build_report, drawing, figures, sections, write_results_csv
from plasticity.report.browser import ChromiumNotFound, check_in_browser, check_legend_toggle, find_chromium
from plasticity.report.flags import identical_groups, reduces_to_backprop
from plasticity.report.sections import published_accuracy
from plasticity.report.stats import grid_share, largest_drop, t_interval, threshold_summary
from plasticity.report.tables import cells_frame, curves_frame, per_layer_frame, split_trivial, variant_order
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
    lines = [  # the exact line types of plasticity.results
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
    # curves, losses, spread, divergence, two heatmaps, feedback, diagnostics: inline SVG, no image files
    assert report.count("<svg ") >= 8 and "<img" not in report
    assert not EXTERNAL.search(report)
    assert report.lower().count("<script") == 1  # the legend's own script, nothing else


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
                "train_seconds", "val_accuracy_pct", "test_accuracy_pct", "cell_id", "optimizer.lr"}
    for thr in ("90", "95", "97"):
        required |= {f"updates_to_{thr}pct", f"seconds_to_{thr}pct", f"examples_to_{thr}pct"}
    assert required <= columns
    assert len(rows) == 11 + 1 + 1 + 1  # complete + diverged + errored + hand-written; no .part
    assert {r["status"] for r in rows} == {"complete", "diverged", "error"}
    assert all(r["updates"] == "" or r["updates"].isdigit() for r in rows)
    slow = [r for r in rows if r["variant"] == "fa + sgd(lr=0.01)"]
    assert all(r["updates_to_97pct"] == "" for r in slow)  # never reached -> empty
    assert all(50 < float(r["test_accuracy_pct"]) <= 100 for r in rows if r["status"] == "complete")  # percent
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


# ---- figures, styles, legend ----------------------------------------------------------------

def test_variant_styles_are_distinct_and_stable():
    names = [f"v{i}" for i in range(40)]
    styles = drawing.variant_styles(names)
    assert len({(st.color, st.marker) for st in styles.values()}) == 40
    assert len({st.key for st in styles.values()}) == 40
    assert all(re.fullmatch(r"plv-\d+", st.key) for st in styles.values())  # never the name
    first = [styles[n].color for n in names[:len(drawing.PALETTE)]]
    assert len(set(first)) == len(first)  # no shared hue before the palette is exhausted
    assert drawing.variant_styles(names) == styles


def _svg_groups(report: str) -> dict[str, list[str]]:
    """Per variant key, the text of each of its <g> groups in the report's SVGs."""
    out: dict[str, list[str]] = {}
    for m in re.finditer(r'<g class="plv (plv-\d+)">(.*?)</g>', report, re.DOTALL):
        out.setdefault(m.group(1), []).append(m.group(2))
    return out


def test_each_variant_has_one_colour_in_every_figure(suite, report):
    order = [b for b in re.findall(r'data-key="(plv-\d+)" data-variant="([^"]*)"', report)]
    assert len(order) == 5
    styles = drawing.variant_styles([html_lib.unescape(v) for _, v in order])
    groups = _svg_groups(report)
    for key, name in order:
        colour = styles[html_lib.unescape(name)].color
        assert key in groups
        for text in groups[key]:
            used = set(re.findall(r"(?:stroke|fill): (#[0-9a-f]{6})", text)) - {"#ffffff", figures.NEUTRAL}
            assert used <= {colour}, (name, used)
    # the variant's figures: curves (2 rows x 2 panels), losses, spread (+ feedback for fa)
    figures_with = [len(re.findall(r'class="plv ' + key + '"', svg)) > 0
                    for svg in re.findall(r"<svg .*?</svg>", report, re.DOTALL)]
    assert sum(figures_with) >= 3


def test_seconds_panel_is_a_median_on_a_common_grid():
    rows = []
    for cell, scale in (("a", 1.0), ("b", 2.0), ("c", 4.0)):
        for t in (1, 2, 4, 8):
            rows.append({"cell_id": cell, "train_seconds": t * scale, "val_accuracy": 0.1 * np.log2(t) + 0.1})
    out = figures.seeds_by_seconds(pd.DataFrame(rows), "val_accuracy", 100, points=6)  # 1, 2, 4, ... 32 s
    assert len(out) == 6 and out.index[0] == pytest.approx(1) and out.index[-1] == pytest.approx(32)
    at4 = out.iloc[np.argmin(abs(np.log(out.index.to_numpy()) - np.log(4)))]
    # at 4 s: seed a is at its own 4 s (30 %), b at its 2 s (20 %), c at its start (10 %)
    assert (at4["low"], at4["median"], at4["high"]) == (pytest.approx(10), pytest.approx(20), pytest.approx(30))
    assert out.iloc[-1]["low"] == out.iloc[-1]["high"]  # only seed c lasts to 32 s


def test_losses_are_drawn(report):
    assert "validation loss (cross-entropy)" in report and "training loss (mean over the batches" in report


def test_trivial_metric_series_are_not_drawn_but_named():
    frame = pd.DataFrame([
        {"variant": "bp", "layer": "1", "metric": "angle_BWt", "value": 1e-6, "updates": 1},
        {"variant": "bp", "layer": "1", "metric": "angle_BWt", "value": 3e-6, "updates": 2},
        {"variant": "fa", "layer": "1", "metric": "angle_BWt", "value": 40.0, "updates": 1},
        {"variant": "pinv", "layer": "2", "metric": "penrose_p1", "value": 2e-7, "updates": 1},
        {"variant": "rf", "layer": "2", "metric": "penrose_p1", "value": 0.3, "updates": 1},
    ])
    kept, trivial = split_trivial(frame)
    assert set(kept["variant"]) == {"fa", "rf"}
    assert {(r.variant, r.metric) for r in trivial.itertuples()} == {("bp", "angle_BWt"), ("pinv", "penrose_p1")}


def test_angle_panels_have_units_and_the_overall_angle_is_named(tmp_path):
    path = write_demo_suite(tmp_path / "s", rules={"fa": {}}, seeds=(0, 1), error_cell=False, incomplete_cell=False,
                            published=False)
    text = build_report(path).read_text()
    assert "angle_B_Wt_deg (°)" in text and "grad_angle (°)" in text and "degrees" in text
    assert figures.ALL_LAYERS in text and "(no layer)" not in text


SMALL = {"rules": {"bp": {}, "fa": {}}, "diverged": 0, "error_cell": False, "incomplete_cell": False,
         "feedback": False, "published": False}


def _summary(path: Path) -> str:
    """The summary table and the busy-machine note of a suite's (only) task, without figures."""
    frame = cells_frame(load_cells(path))
    order = variant_order(frame)
    return sections.summary_table(frame, order, ["0.9", "0.95"]) + sections.busy_note(frame, order)


def test_few_seeds_get_no_interval_and_no_best_row(tmp_path):
    text = _summary(write_demo_suite(tmp_path / "two", seeds=(0, 1), **SMALL))
    summary = tables_of(text)[0]
    assert all("no meaningful interval" in r[2] for r in summary[2:])
    assert 'class="best"' not in text
    three = _summary(write_demo_suite(tmp_path / "three", **SMALL))
    assert 'class="best"' in three and "no meaningful interval" not in three


def test_heatmap_and_summary_use_the_same_metric(report):
    assert "final test accuracy over the grid" in report and "final val" not in report


def test_busy_machine_is_said_per_variant(tmp_path):
    text = _summary(write_demo_suite(tmp_path / "busy", busy=("fa",), **SMALL))
    assert "Busy machine" in text and "load up to 8.0 on 2 CPUs" in text
    rows = {r[0]: r for r in tables_of(text)[0][2:]}
    assert "†" in rows["fa + sgd"][3] and "†" not in rows["bp + sgd"][3]
    quiet = _summary(write_demo_suite(tmp_path / "quiet", **SMALL))
    assert "Busy machine" not in quiet and "quiet machine: 1-minute load average at most 0.5" in quiet


# ---- flags: what the task cannot tell apart -------------------------------------------------

def test_identical_curves_and_near_backprop_rules_are_flagged(tmp_path):
    rules = {"bp": {}, "fa": {}, "dfa": {}, "tp": {}, "gofau": {}}
    # gofau: backprop's credit by construction (B = Wᵀ), differing only in its optimizer: not flagged
    path = write_demo_suite(tmp_path / "flags", rules=rules, twins={"dfa": "fa"}, near_bp=("tp", "gofau"),
                            transpose_feedback=("gofau",), seeds=(0, 1), diverged=0, error_cell=False,
                            incomplete_cell=False, published=False)
    cells = load_cells(path)
    assert identical_groups(curves_frame(cells)) == [["dfa + sgd", "fa + sgd"]]
    near = reduces_to_backprop(per_layer_frame(cells, "feedback"), cells_frame(cells))
    assert [n.variant for n in near] == ["tp + sgd"] and near[0].max_angle < 1
    text = build_report(path).read_text()
    box = text[text.index('class="flags"'):text.index("<h3>Summary")]
    assert "Identical results" in box and "dfa + sgd = fa + sgd" in box
    assert "Reduces to backprop on this network" in box and "tp + sgd" in box
    assert "gofau + sgd" not in box
    plain = load_cells(write_demo_suite(tmp_path / "plain", rules=rules, seeds=(0, 1), diverged=0,
                                        error_cell=False, incomplete_cell=False, published=False))
    assert identical_groups(curves_frame(plain)) == []
    assert reduces_to_backprop(per_layer_frame(plain, "feedback"), cells_frame(plain)) == []


def test_svg_text_and_legend_escape_hostile_names(report):
    assert HOSTILE not in report
    svgs = "".join(re.findall(r"<svg .*?</svg>", report, re.DOTALL))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svgs  # a tick label of the seed spread
    assert f'data-variant="{HOSTILE.replace("<", "&lt;").replace(">", "&gt;")}"' in report


def test_legend_click_hides_a_variant_in_every_figure(suite, report):
    _chromium_or_skip()
    assert check_legend_toggle(suite / "index.html") == []
    assert check_legend_toggle(suite / "index.html", HOSTILE) == []


def test_legend_check_fails_without_the_script(suite, report, tmp_path):
    _chromium_or_skip()
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"<script>.*?</script>", "", report, flags=re.DOTALL))
    problems = check_legend_toggle(broken)
    assert any("hidden after the click" in p for p in problems)


@pytest.mark.parametrize("damage, problem", [
    ('{"name": ', "not valid JSON: JSONDecodeError"),
    ("[1, 2]", "not a JSON object"),
    ('{"name": "s", "cells": [1]}', "its 'cells' is not a table of cells"),
])
def test_a_damaged_suite_json_is_named_in_a_warning_not_read_as_absent(tmp_path, capsys, damage, problem):
    from plasticity import results
    path = write_demo_suite(tmp_path / "s", seeds=(0,), **SMALL)
    (path / "suite.json").write_text(damage)
    results._warned.clear()
    capsys.readouterr()
    build_report(path)
    err = capsys.readouterr().err
    assert f"plasticity: warning: {path / 'suite.json'} is damaged ({problem}" in err
    assert "read as if the folder had none: every cell in runs/ counts" in err
    assert err.count("suite.json is damaged") == 1, "one warning, however often the file is read"
    (path / "suite.json").unlink()  # a folder without one (an older version's) stays silent
    results._warned.clear()
    build_report(path)
    assert "warning" not in capsys.readouterr().err


# ---- what each figure draws: paths per variant, not titles -------------------------------------------

def _drawn_figures(monkeypatch, path: Path) -> tuple[dict[str, list], dict[str, str]]:
    """Build the report of `path`, keeping each figure (by the function that drew it) and each
    variant's key; the figures are inspected as matplotlib objects, before they become SVG."""
    drawn: dict[str, list] = {}
    keys: dict[str, str] = {}
    to_svg, variant_styles = figures.to_svg, drawing.variant_styles

    def keep(fig):
        drawn.setdefault(inspect.currentframe().f_back.f_code.co_name, []).append(fig)
        return to_svg(fig)

    def styles(order):
        out = variant_styles(order)
        keys.update({v: s.key for v, s in out.items()})
        return out

    monkeypatch.setattr(figures, "to_svg", keep)
    monkeypatch.setattr(drawing, "variant_styles", styles)
    build_report(path)
    return drawn, keys


def _paths(ax, key: str) -> tuple[int, int, int]:
    """(lines with at least two points, bands, scatter sets) that `ax` draws for a variant key."""
    lines = [a for a in ax.lines if a.get_gid() == key and len(a.get_xdata()) >= 2]
    bands = [c for c in ax.collections if c.get_gid() == key and isinstance(c, PolyCollection)
             and len(c.get_paths()) and len(c.get_paths()[0].vertices) > 2]
    scatters = [c for c in ax.collections if c.get_gid() == key and isinstance(c, PathCollection)]
    return len(lines), len(bands), len(scatters)


def test_every_figure_draws_each_variants_paths(tmp_path, monkeypatch):
    """3 rules × 3 seeds; dfa's second seed diverges; fa and dfa carry per-layer feedback metrics
    on layers 1 and 2 (rel_err_white, rel_err_data, angle_B_Wt_deg) and one network-wide (grad_angle)."""
    path = write_demo_suite(tmp_path / "s", rules={"bp": {}, "fa": {}, "dfa": {}}, seeds=(0, 1, 2), diverged=1,
                            error_cell=False, incomplete_cell=False, published=False)
    drawn, keys = _drawn_figures(monkeypatch, path)
    variants = {"bp + sgd", "fa + sgd", "dfa + sgd"}
    assert set(keys) == variants
    (curves,) = drawn["learning_curves"]
    assert len(curves.axes) == 4
    for ax in curves.axes:  # median line and min–max band of every variant; dfa's diverged seed marked
        for v in variants:
            assert _paths(ax, keys[v]) == (1, 1, 1 if v == "dfa + sgd" else 0), (ax.get_title(), v)
    (losses,) = drawn["loss_curves"]
    assert len(losses.axes) == 2
    for ax in losses.axes:
        for v in variants:
            assert _paths(ax, keys[v]) == (1, 1, 0), (ax.get_title(), v)
    (spread,) = drawn["seed_spread"]
    (ax,) = spread.axes
    for v, complete in (("bp + sgd", 3), ("fa + sgd", 3), ("dfa + sgd", 2)):
        (points,) = [c for c in ax.collections if c.get_gid() == keys[v] and isinstance(c, PathCollection)]
        assert len(points.get_offsets()) == complete, v
    (bars,) = drawn["divergence_bars"]
    assert sum(p.get_width() for p in bars.axes[0].patches) == 9  # every cell, once
    feedback, diagnostics = drawn["per_layer_curves"]
    panels = {ax.get_title(): ax for ax in feedback.axes if ax.get_visible()}
    assert len(panels) == 4
    for title, ax in panels.items():
        for v in variants:
            lines, _, _ = _paths(ax, keys[v])
            expected = 0 if v == "bp + sgd" else (1 if "grad_angle" in title else 2)  # one line per layer
            assert lines == expected, (title, v)
    (ax,) = [ax for ax in diagnostics.axes if ax.get_visible()]
    assert ax.get_title() == "grad_norm" and all(_paths(ax, keys[v])[0] == 1 for v in variants)


def test_a_figure_drawn_empty_fails_the_paths_check(tmp_path, monkeypatch):
    """The check above sees data, not a title: the same figure with its lines emptied fails it."""
    path = write_demo_suite(tmp_path / "s", rules={"bp": {}}, seeds=(0, 1), diverged=0, error_cell=False,
                            incomplete_cell=False, feedback=False, published=False)
    monkeypatch.setattr(figures, "draw_line", lambda ax, x, y, style, **kw: ax.plot([], [])[0].set_gid(style.key))
    drawn, keys = _drawn_figures(monkeypatch, path)
    (curves,) = drawn["learning_curves"]
    assert all(_paths(ax, keys["bp + sgd"])[0] == 0 for ax in curves.axes)
