"""The report's sections, each rendered from the tidy tables of `tables.py`.

Decisions stated in the report itself (see `METHOD_NOTE`):
- final test accuracy: mean ± 95 % Student-t interval over the *complete* seeds; diverged seeds
  are left out of the mean and shown as "k/n diverged" beside it;
- updates / seconds to a threshold: median over the seeds that reached it, with "k/n";
  diverged seeds count in n (one may reach a threshold before it blows up).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from ..results import FINISHED, printable
from . import figures
from .html import Markup, esc, figure, join, section, table, tag
from .stats import Interval, grid_share, t_interval, threshold_summary
from .tables import grid_groups, thr_key, thr_label

METHOD_NOTE = (
    "Final test accuracy: mean ± half-width of the 95 % Student-t interval over complete seeds "
    "(diverged seeds are excluded from the mean and counted under “diverged”). Updates and "
    "training seconds to a validation-accuracy threshold: median over the seeds that reached it, "
    "with how many of the finished seeds did (“—” when none). Thresholds are crossed on "
    "validation data at evaluation points; final figures are on test data."
)
DASH = "—"
MAX_CURVE_VARIANTS = 24  # more variants than this get no learning-curve figure (a grid study)


# ---- number formatting -------------------------------------------------------------------

def fmt_interval(ci: Interval) -> str:
    """"97.31 ± 0.42" in percent; a single seed has no interval."""
    if ci.n == 0:
        return DASH
    if ci.n == 1:
        return f"{ci.mean * 100:.2f} (1 seed)"
    return f"{ci.mean * 100:.2f} ± {ci.half_width * 100:.2f}"


def fmt_count(value: float) -> str:
    return DASH if not math.isfinite(value) else f"{value:,.0f}"


def fmt_seconds(value: float) -> str:
    if not math.isfinite(value):
        return DASH
    if value >= 100:
        return f"{value:,.0f} s"
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


# ---- header -------------------------------------------------------------------------------

def header(suite: dict[str, Any], frame: pd.DataFrame, tasks: list[str]) -> Markup:
    """Suite name, description, dates, counts of cells by status, method note, contents."""
    counts = Counter(frame["status"]) if not frame.empty else Counter()
    pills = join(tag("span", f"{counts.get(s, 0)} {s}", class_=f"pill {s}")
                 for s in ("complete", "diverged", "error", "incomplete"))
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = [f"report built {built}"]
    if suite.get("created"):
        meta.insert(0, f"suite created {suite['created']}")
    if suite.get("source"):
        meta.insert(0, f"suite file {suite['source']}")
    toc = [tag("li", tag("a", f"Task: {t}", href=f"#task-{i}")) for i, t in enumerate(tasks)]
    toc += [tag("li", tag("a", "Errors and incomplete cells", href="#problems")),
            tag("li", tag("a", "Provenance", href="#provenance"))]
    return join([
        tag("h1", f"plasticity report: {suite.get('name', '?')}"),
        tag("p", suite.get("description") or "", class_="lead"),
        tag("p", " · ".join(meta), class_="note"),
        tag("p", join([f"{len(frame)} cells: ", pills])),
        tag("p", METHOD_NOTE, class_="note"),
        tag("nav", join([tag("strong", "Contents"), tag("ul", join(toc))]), class_="toc"),
    ])


# ---- per task -----------------------------------------------------------------------------

def _published_for(suite: dict[str, Any], task: str) -> list[dict[str, Any]]:
    return [p for p in suite.get("published") or [] if isinstance(p, dict) and str(p.get("task")) == task]


def published_accuracy(entry: dict[str, Any]) -> float:
    """A published figure as test accuracy in percent (error is converted: 100 − error)."""
    try:
        value = float(entry.get("value"))
    except (TypeError, ValueError):
        return math.nan
    metric = str(entry.get("metric", "test_accuracy"))
    if metric == "test_error":
        return 100.0 - value
    return value if metric == "test_accuracy" else math.nan


def _variant_stats(cells: pd.DataFrame) -> dict[str, Any]:
    finished = cells[cells["status"].isin(FINISHED)]
    complete = finished[finished["status"] == "complete"]
    return {
        "finished": finished, "n": len(finished), "other": len(cells) - len(finished),
        "diverged": int((finished["status"] == "diverged").sum()),
        "ci": t_interval(complete["test_accuracy"]),
    }


def _reached_cell(fin: pd.DataFrame, t: str) -> Markup:
    """Updates to a threshold (median, k/n) with the training seconds on a second line."""
    updates = fin.get(f"updates_to_{t}", pd.Series(dtype=float)).tolist()
    seconds = fin.get(f"seconds_to_{t}", pd.Series(dtype=float)).tolist()
    s = threshold_summary(updates)
    if s.n == 0:
        return Markup(DASH)
    if not s.any:
        return Markup(f'{DASH} <span class="sub">(0/{s.n})</span>')
    return Markup(f'{esc(fmt_count(s.median))} <span class="sub">({s.reached}/{s.n})</span><br>'
                  f'<span class="sub">{esc(fmt_seconds(threshold_summary(seconds).median))}</span>')


def summary_table(cells: pd.DataFrame, order: list[str], thresholds: list[str]) -> Markup:
    """Variant, seeds, final test accuracy ± CI, updates and seconds to each threshold, diverged."""
    rows, classes, means = [], [], []
    for v in order:
        sub = cells[cells["variant"] == v]
        if sub.empty:
            continue
        st = _variant_stats(sub)
        fin = st["finished"]
        seeds = f"{st['n']}" + (f" (+{st['other']} unfinished)" if st["other"] else "")
        row: list[object] = [v, seeds, fmt_interval(st["ci"])]
        row += [_reached_cell(fin, t) for t in thresholds]
        row.append(f"{st['diverged']}/{st['n']}")
        rows.append(row)
        means.append(st["ci"].mean if st["ci"].n else -math.inf)
    if means and max(means) > -math.inf:
        best = int(np.argmax(means))
        classes = ["best" if i == best else "" for i in range(len(rows))]
    headers = (["variant", "seeds", "final test acc. (%), mean ± 95 % CI"]
               + [thr_label(t) for t in thresholds] + ["diverged"])
    groups = [("", 3), ("updates to validation accuracy (k/n seeds); training seconds below", len(thresholds)),
              ("", 1)]
    return table(headers, rows, numeric=list(range(1, len(headers))),
                 header_rows=[groups] if thresholds else [], row_classes=classes)


def published_table(cells: pd.DataFrame, published: list[dict[str, Any]]) -> Markup:
    """Each published figure beside the best measured variant of the same rule."""
    rows = []
    for p in published:
        rule = str(p.get("rule"))
        claimed = published_accuracy(p)
        metric = str(p.get("metric", ""))
        stated = f"{metric.replace('_', ' ')} {p.get('value')} %"
        sub = cells[cells["rule"] == rule]
        best_v, best_ci = None, None
        for v, vsub in sub.groupby("variant"):
            ci = t_interval(vsub.loc[vsub["status"] == "complete", "test_accuracy"])
            if ci.n and (best_ci is None or ci.mean > best_ci.mean):
                best_v, best_ci = v, ci
        measured = fmt_interval(best_ci) if best_ci else "not measured"
        delta = (f"{best_ci.mean * 100 - claimed:+.2f}" if best_ci and math.isfinite(claimed) else DASH)
        rows.append([rule, stated, f"{claimed:.2f}" if math.isfinite(claimed) else f"unknown metric {metric}",
                     measured, delta, best_v or DASH, p.get("source", ""), p.get("note", "")])
    headers = ["rule", "published as", "claimed test acc. (%)", "measured test acc. (%)", "Δ (pp)",
               "best measured variant", "source", "note"]
    return table(headers, rows, numeric=[2, 3, 4])


def stability_table(cells: pd.DataFrame, order: list[str]) -> Markup:
    """Seed spread, divergence and the largest drop of the validation curve after its best point."""
    rows = []
    for v in order:
        sub = cells[(cells["variant"] == v) & cells["status"].isin(FINISHED)]
        if sub.empty:
            continue
        complete = sub[sub["status"] == "complete"]
        acc = complete["test_accuracy"].dropna()
        ci = t_interval(acc)
        drops = complete["largest_drop"].dropna()  # a diverged curve's collapse is counted as divergence
        rows.append([
            v, len(complete), f"{ci.std * 100:.2f}" if math.isfinite(ci.std) else DASH,
            f"{acc.min() * 100:.2f} – {acc.max() * 100:.2f}" if len(acc) else DASH,
            f"{int((sub['status'] == 'diverged').sum())}/{len(sub)}",
            f"{drops.median() * 100:.2f}" if len(drops) else DASH,
            f"{drops.max() * 100:.2f}" if len(drops) else DASH,
        ])
    headers = ["variant", "complete seeds", "test acc. std (pp)", "test acc. min – max (%)", "diverged",
               "val. drop after best (pp), median of complete seeds", "val. drop, worst complete seed"]
    return table(headers, rows, numeric=[1, 2, 3, 4, 5, 6])


def grid_share_table(groups, thresholds: list[str]) -> Markup:
    """Per rule, how many grid points reach each threshold with a majority of their seeds."""
    rows = []
    for g in groups:
        fin = g.cells[g.cells["status"].isin(FINISHED)]
        points = [sub for _, sub in fin.groupby("variant")]
        row: list[object] = [g.rule, ", ".join(g.dims), len(points)]
        for t in thresholds:
            col = f"updates_to_{t}"
            k, n = grid_share([p[col].tolist() if col in p else [] for p in points])
            row.append(f"{k}/{n} ({100 * k / n:.0f} %)" if n else DASH)
        rows.append(row)
    headers = ["rule", "grid parameters", "grid points"] + [f"reach {thr_label(t)}" for t in thresholds]
    return table(headers, rows, numeric=list(range(2, len(headers))))


def task_section(index: int, task: str, cells: pd.DataFrame, curves: pd.DataFrame,
                 feedback: pd.DataFrame, diagnostics: pd.DataFrame, order: list[str],
                 colors: dict, suite: dict[str, Any]) -> Markup:
    """Everything about one task: summary, published comparison, curves, stability, per-layer."""
    thresholds = sorted({thr_key(t) for ts in cells["thresholds"] for t in ts}, key=float)
    order = [v for v in order if v in set(cells["variant"])]
    finished_ids = set(cells.loc[cells["status"].isin(FINISHED), "cell_id"])
    published = _published_for(suite, task)
    parts: list[object] = [tag("h3", "Summary"),
                           summary_table(cells, order, thresholds),
                           tag("p", "Bold: the variant with the highest mean final test accuracy.", class_="note")]
    if published:
        parts += [tag("h3", "Published figures beside the measured ones"), published_table(cells, published),
                  tag("p", "Measured: the best variant of the rule (highest mean over complete seeds), "
                           "mean ± 95 % CI. Published errors are converted to accuracy as 100 − error.",
                      class_="note")]
    parts.append(tag("h3", "Learning curves"))
    if len(order) > MAX_CURVE_VARIANTS:  # a large grid: one line per variant would be unreadable
        parts.append(tag("p", f"{len(order)} variants: too many for one plot of learning curves (at most "
                              f"{MAX_CURVE_VARIANTS}); see the summary, the grid heatmaps below, and the "
                              f"evaluations in runs/.", class_="note"))
    else:
        curve_uri = figures.learning_curves(curves[curves["cell_id"].isin(finished_ids)], order, colors,
                                            [float(t) for t in thresholds])
        parts.append(figure(curve_uri, f"learning curves for {task}",
                            "Validation accuracy of finished cells. Left: against weight updates (line: mean "
                            "over seeds present at that update; band: min–max). Right: against training "
                            "seconds, one line per seed. Dotted lines: the task's thresholds.")
                     if curve_uri else tag("p", "No evaluations to plot.", class_="note"))
    parts += [tag("h3", "Stability"), stability_table(cells, order)]
    spread = figures.seed_spread(cells, order, colors)
    parts.append(figure(spread, f"seed spread for {task}", "Each dot is one complete seed's final test "
                                                            "accuracy; diverged seeds are counted on the right.")
                 if spread else tag("p", "No complete seed with a test accuracy to show.", class_="note"))
    div = figures.divergence_bars(cells, order)
    parts.append(figure(div, f"divergence for {task}") if div
                 else tag("p", "No cell of this task diverged or failed.", class_="note"))
    groups = grid_groups(cells)
    if groups:
        parts += [tag("h4", "Hyperparameter sensitivity"), grid_share_table(groups, thresholds),
                  tag("p", "A grid point reaches a threshold when a majority of its finished seeds did.",
                      class_="note")]
        finished = cells[cells["status"] == "complete"]["val_accuracy"].dropna() * 100
        vmin, vmax = (finished.min(), finished.max()) if len(finished) else (0, 100)
        heatmaps = [figure(figures.grid_heatmap(g, vmin, vmax), f"grid heatmap for {g.rule}") for g in groups]
        parts.append(Markup(f'<div class="figrow">{join(heatmaps)}</div>'))
    for title, frame, caption in (
            ("Pseudo-inverse convergence and alignment (per layer)", feedback,
             "Per-layer feedback metrics reported by the rules, mean over seeds; colour: variant, "
             "line style: layer."),
            ("Rule diagnostics", diagnostics, "Scalars reported by the rules' diagnostics(), mean over seeds.")):
        sub = frame[frame["task"] == task] if not frame.empty else frame
        if not sub.empty:
            uri = figures.per_layer_curves(sub, order, colors)
            parts += [tag("h3", title), figure(uri, f"{title} for {task}", caption)]
            if frame is feedback:
                parts += [final_feedback_table(sub, order), tag("p", FEEDBACK_NOTE, class_="note")]
    return section(f"task-{index}", f"Task: {task}", *parts)


FEEDBACK_NOTE = (
    "rel_err_white = ‖B − W⁺‖/‖W⁺‖; rel_err_data = ‖B − ΣWᵀ(WΣWᵀ)⁻¹‖/‖·‖ with Σ the second moment "
    "of the layer's input on a fixed probe batch; penrose_p1..p4 = the relative residuals of "
    "WBW = W, BWB = B, (WB)ᵀ = WB, (BW)ᵀ = BW (pseudo-inverse metrics only for rules whose B "
    "should approach an inverse); angle_BWt = angle(B, Wᵀ); grad_angle = angle between the rule's "
    "credit and the true gradient on the probe batch (per layer; no layer: all parameters).")
FEEDBACK_TABLE_METRICS = ("rel_err_white", "rel_err_data", "penrose_p1", "angle_BWt", "grad_angle")


def final_feedback_table(frame: pd.DataFrame, order: list[str]) -> Markup:
    """Per variant and layer: the feedback metrics at each seed's last measurement, seed mean."""
    last = frame.loc[frame.groupby(["variant", "seed", "layer", "metric"])["updates"].idxmax()]
    means = last.groupby(["variant", "layer", "metric"])["value"].mean()
    metrics = [m for m in FEEDBACK_TABLE_METRICS if m in set(last["metric"])]
    rows = []
    for v in [v for v in order if v in set(last["variant"])]:
        layers = sorted(set(last.loc[last["variant"] == v, "layer"]), key=lambda t: (t == "", len(t), t))
        for layer in layers:
            values = [means.get((v, layer, m)) for m in metrics]
            if all(x is None for x in values):
                continue
            cells = [DASH if x is None else (f"{x:.1f}" if m.endswith("angle") or m == "angle_BWt"
                                             else f"{x:.2e}") for m, x in zip(metrics, values)]
            rows.append([v, layer or "all", *cells])
    headers = ["variant", "layer", *[m + (" (°)" if "angle" in m else "") for m in metrics]]
    return join([tag("h4", "At the end of training (mean over seeds)"),
                 table(headers, rows, numeric=list(range(2, len(headers))))])


# ---- problems and provenance --------------------------------------------------------------

def problems_section(frame: pd.DataFrame, malformed: Sequence[Any] = ()) -> Markup:
    """Errored and interrupted cells, and malformed run files: listed, never counted as results."""
    bad = frame[~frame["status"].isin(FINISHED)] if not frame.empty else frame
    if bad.empty and not malformed:
        return section("problems", "Errors and incomplete cells", tag("p", "None: every cell finished."))
    rows = [["malformed", "", "", "", "", f"{m.reason}; treated as incomplete (its cell reruns)",
             printable(m.path.name)] for m in malformed]
    for _, r in bad.iterrows():
        msg = str(r["message"] or "")
        if msg.strip():
            first = msg.strip().splitlines()[-1]  # a traceback's last line names the exception
        else:
            first = "interrupted (no final line)" if r["status"] == "incomplete" else ""
        detail = tag("details", join([tag("summary", first), tag("pre", msg)])) if "\n" in msg.strip() else first
        rows.append([r["status"], r["task"], r["variant"], r["seed"], fmt_count(r["updates"]), detail, r["file"]])
    note = tag("p", Markup("Incomplete cells were interrupted (a <code>.part</code> file) and are rerun by "
                           "the next <code>plasticity run</code>; errored cells are retried too. Neither "
                           "enters any table or figure above."), class_="note")
    return section("problems", "Errors and incomplete cells",
                   table(["status", "task", "variant", "seed", "last update", "message", "file"], rows,
                         numeric=[3, 4]), note)


def _distinct(values: list[Any]) -> str:
    """Distinct values with how many cells had each (one value: just the value)."""
    counts = Counter("" if v is None else str(v) for v in values)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{v or '(none)'} ×{n}" for v, n in counts.most_common())


def provenance_section(provenances: list[dict[str, Any]], suite: dict[str, Any]) -> Markup:
    """Git commit, versions, device, command of the cells, and the suite's TOML text."""
    keys = ["git_commit", "git_dirty", "python", "platform", "device", "device_name", "dtype", "command",
            "hostname"]
    rows = [[k, _distinct([p.get(k) for p in provenances])] for k in keys if any(k in p for p in provenances)]
    extra = sorted({k for p in provenances for k in p} - set(keys) - {"packages"})
    rows += [[k, _distinct([p.get(k) for p in provenances])] for k in extra]
    pkgs = sorted({name for p in provenances for name in (p.get("packages") or {})})
    pkg_rows = [[name, _distinct([(p.get("packages") or {}).get(name) for p in provenances])] for name in pkgs]
    parts: list[object] = [tag("p", f"Collected from the headers of {len(provenances)} cells; "
                                    "where cells differ, each value is listed with its count.", class_="note"),
                           table(["field", "value"], rows, class_="data kv") if rows
                           else tag("p", "The cells recorded no provenance.")]
    if pkg_rows:
        parts += [tag("h3", "Package versions"), table(["package", "version"], pkg_rows, class_="data kv")]
    if suite.get("toml"):
        parts += [tag("h3", f"Suite file {suite.get('source', '')}"), tag("pre", suite["toml"])]
    return section("provenance", "Provenance", *parts)
