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
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from ..results import FINISHED
from . import figures, flags
from .figures import MIN_SEEDS_FOR_INTERVAL, VariantStyle
from .html import Markup, esc, figure, join, section, table, tag
from .stats import Interval, grid_share, t_interval, threshold_summary
from .tables import busy, grid_groups, split_trivial, thr_key, thr_label

METHOD_NOTE = (
    "Final test accuracy: mean ± half-width of the 95 % Student-t interval over complete seeds "
    "(diverged seeds are excluded from the mean and counted under “diverged”). Updates and "
    "training seconds to a validation-accuracy threshold: median over the seeds that reached it, "
    "with how many of the finished seeds did (“—” when none). Thresholds are crossed on "
    "validation data at evaluation points; final figures are on test data. With fewer than "
    f"{MIN_SEEDS_FOR_INTERVAL} complete seeds no interval is given (two seeds give one too wide to mean "
    "anything) and no row is marked best."
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
    if ci.n < MIN_SEEDS_FOR_INTERVAL:
        return f"{ci.mean * 100:.2f} ({ci.n} seeds: no meaningful interval)"
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
    toc = [tag("li", tag("a", "Claims", href="#claims"))] if suite.get("claims") else []
    toc += [tag("li", tag("a", f"Task: {t}", href=f"#task-{i}")) for i, t in enumerate(tasks)]
    if suite.get("search"):
        toc.append(tag("li", tag("a", "Hyperparameter search", href="#search")))
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
    published = suite.get("published") or []
    return [p for p in published if isinstance(p, dict) and str(p.get("task")) == task] if isinstance(
        published, list) else []


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


def _reached_cell(fin: pd.DataFrame, t: str, busy_mark: str = "") -> Markup:
    """Updates to a threshold (median, k/n) with the training seconds on a second line
    (`busy_mark` after them when some were measured on a busy machine)."""
    updates = fin.get(f"updates_to_{t}", pd.Series(dtype=float)).tolist()
    seconds = fin.get(f"seconds_to_{t}", pd.Series(dtype=float)).tolist()
    s = threshold_summary(updates)
    if s.n == 0:
        return Markup(DASH)
    if not s.any:
        return Markup(f'{DASH} <span class="sub">(0/{s.n})</span>')
    return Markup(f'{esc(fmt_count(s.median))} <span class="sub">({s.reached}/{s.n})</span><br>'
                  f'<span class="sub">{esc(fmt_seconds(threshold_summary(seconds).median))}</span>'
                  + (f' <span class="busy">{esc(busy_mark)}</span>' if busy_mark else ""))


BUSY_MARK = "†"


def summary_table(cells: pd.DataFrame, order: list[str], thresholds: list[str]) -> Markup:
    """Variant, seeds, final test accuracy ± CI, updates and seconds to each threshold, diverged.

    The best row (highest mean) is bold only when its mean rests on enough seeds for an interval.
    """
    rows, classes, means = [], [], []
    loaded = busy(cells)
    for v in order:
        sub = cells[cells["variant"] == v]
        if sub.empty:
            continue
        st = _variant_stats(sub)
        fin = st["finished"]
        seeds = f"{st['n']}" + (f" (+{st['other']} unfinished)" if st["other"] else "")
        row: list[object] = [v, seeds, fmt_interval(st["ci"])]
        mark = BUSY_MARK if loaded[fin.index].any() else ""
        row += [_reached_cell(fin, t, mark) for t in thresholds]
        row.append(f"{st['diverged']}/{st['n']}")
        rows.append(row)
        means.append((st["ci"].mean if st["ci"].n else -math.inf, st["ci"].n))
    if means and max(m for m, _ in means) > -math.inf:
        best = int(np.argmax([m for m, _ in means]))
        if means[best][1] >= MIN_SEEDS_FOR_INTERVAL:
            classes = ["best" if i == best else "" for i in range(len(rows))]
    headers = (["variant", "seeds", "final test acc. (%), mean ± 95 % CI"]
               + [thr_label(t) for t in thresholds] + ["diverged"])
    groups = [("", 3), ("updates to validation accuracy (k/n seeds); training seconds below", len(thresholds)),
              ("", 1)]
    return table(headers, rows, numeric=list(range(1, len(headers))),
                 header_rows=[groups] if thresholds else [], row_classes=classes)


def published_table(cells: pd.DataFrame, published: list[dict[str, Any]]) -> Markup:
    """Each published figure beside the best measured variant of the same rule (among the cells
    with the entry's `task_params`, when it names some)."""
    rows = []
    for p in published:
        rule = str(p.get("rule"))
        claimed = published_accuracy(p)
        metric = str(p.get("metric", ""))
        stated = f"{metric.replace('_', ' ')} {p.get('value')} %"
        sub = cells[cells["rule"] == rule]
        task_params = p.get("task_params") if isinstance(p.get("task_params"), dict) else {}
        for key, value in task_params.items():  # only cells of the published setting
            col = f"task.{key}"
            sub = sub[sub[col] == value] if col in sub.columns else sub.iloc[0:0]
        best_v, best_ci = None, None
        for v, vsub in sub.groupby("variant"):
            ci = t_interval(vsub.loc[vsub["status"] == "complete", "test_accuracy"])
            if ci.n and (best_ci is None or ci.mean > best_ci.mean):
                best_v, best_ci = v, ci
        measured = fmt_interval(best_ci) if best_ci else "not measured"
        delta = (f"{best_ci.mean * 100 - claimed:+.2f}" if best_ci and math.isfinite(claimed) else DASH)
        unusable = (f"unreadable value {p.get('value')!r}" if metric in ("test_error", "test_accuracy")
                    else f"unknown metric {metric}")
        rows.append([rule, stated, f"{claimed:.2f}" if math.isfinite(claimed) else unusable,
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


def variant_legend(order: list[str], styles: dict[str, VariantStyle]) -> Markup:
    """The page's one legend: a button per variant (its colour, its name) that hides or shows the
    variant in every figure; the report's script does the hiding (see `html.SCRIPT`)."""
    if not order:
        return Markup("")
    buttons = []
    for v in order:
        st = styles[v]
        swatch = tag("span", "", class_="sw", style=f"border-color:{st.color}")
        mark = f" {_MARKER_TEXT.get(st.marker, '')}" if st.marker else ""
        buttons.append(Markup(f'<button type="button" class="vkey" aria-pressed="true" data-key="{esc(st.key)}" '
                              f'data-variant="{esc(v)}" title="hide or show in every figure">{swatch}'
                              f'{esc(v)}{esc(mark)}</button>'))
    controls = Markup('<button type="button" class="vall" data-show="1">show all</button>'
                      '<button type="button" class="vall" data-show="0">hide all</button>')
    return tag("nav", join([tag("span", "Variants (click to hide or show in every figure):", class_="ltitle"),
                            join(buttons), controls]), class_="legend", aria_label="variants")


_MARKER_TEXT = {"o": "●", "s": "■", "^": "▲", "D": "◆", "v": "▼", "P": "✚", "X": "✖"}


def flags_box(cells: pd.DataFrame, curves: pd.DataFrame, feedback: pd.DataFrame) -> Markup:
    """What this task's results cannot tell apart: identical curves, and rules that reduce to
    backprop on this network (see `flags`). Nothing when there is nothing to say."""
    items = []
    for group in flags.identical_groups(curves):
        items.append(tag("li", join([tag("strong", "Identical results: "), " = ".join(group),
                                     (" have the same validation accuracy and loss at every evaluation, seed by "
                                      "seed: on this network they compute the same thing, so their rows are one "
                                      "result under several names.")])))
    for near in flags.reduces_to_backprop(feedback, cells):
        items.append(tag("li", join([tag("strong", "Reduces to backprop on this network: "), near.variant,
                                     (f" — its credit stayed within {near.max_angle:.2g}° of the true gradient "
                                      f"(≤ {flags.BP_ANGLE_DEG:g}°, all layers together) at all {near.measurements} "
                                      "measurements; its numbers say nothing about the rule's own credit "
                                      "assignment.")])))
    if not items:
        return Markup("")
    return tag("div", join([tag("h4", "What this task cannot tell apart"), tag("ul", join(items))]),
               class_="flags")


def busy_note(cells: pd.DataFrame, order: list[str]) -> Markup:
    """Which variants' training seconds were measured on a busy machine (load above the CPUs)."""
    loaded = busy(cells)
    if not loaded.any():
        known = cells[["load_start", "load_end"]].notna().any(axis=1) if "load_start" in cells else []
        if len(cells) and not any(known):
            return tag("p", "Training seconds: the cells recorded no machine load (older runs), so whether "
                            "the machine was busy is unknown.", class_="note")
        if len(cells):
            peak = cells[["load_start", "load_end"]].max(axis=1).max()
            return tag("p", f"Training seconds were measured on a quiet machine: 1-minute load average at most "
                            f"{peak:.1f} at the cells' start and end, on {cells['cpus'].min():.0f} usable CPUs.",
                       class_="note")
        return Markup("")
    parts = []
    for v in order:
        sub = cells[(cells["variant"] == v)]
        hit = sub[loaded[sub.index]]
        if len(hit):
            peak = hit[["load_start", "load_end"]].max(axis=1).max()
            parts.append(f"{v} ({len(hit)}/{len(sub)} cells, load up to {peak:.1f} on {hit['cpus'].min():.0f} CPUs)")
    return tag("p", join([tag("strong", f"{BUSY_MARK} Busy machine: "),
                          ("training seconds of these variants were measured while the 1-minute load average "
                           "(at the cell's start or end) exceeded the CPUs the run could use, so they are "
                           "inflated (contended cores) and not comparable with quiet runs: "), "; ".join(parts), "."]),
               class_="note busy")


def trivial_note(trivial: pd.DataFrame, order: list[str]) -> Markup:
    """The metric series left out of the figure, per variant: "bp + sgd: angle_BWt (L1, L2), ..."."""
    parts = []
    for v in [v for v in order if v in set(trivial["variant"])]:
        sub = trivial[trivial["variant"] == v]
        metrics = []
        for metric, rows in sub.groupby("metric", sort=True):
            layers = sorted(rows["layer"], key=lambda t: (t == "", t))
            metrics.append(f"{metric} ({', '.join(layer or 'all' for layer in layers)})")
        parts.append(tag("li", join([tag("strong", v), ": ", ", ".join(metrics)])))
    angles = trivial[trivial["metric"].map(figures.is_angle)]["max"]
    others = trivial[~trivial["metric"].map(figures.is_angle)]["max"]
    bounds = ([f"angles ≤ {angles.max():.1e}°"] if len(angles) else []) + (
        [f"errors and residuals ≤ {others.max():.1e}"] if len(others) else [])
    return tag("details", join([tag("summary", f"Not drawn: {len(trivial)} series at float-rounding level at every "
                                               f"measurement, exact by construction ({', '.join(bounds)}; "
                                               "“all”: all layers together)"),
                                tag("ul", join(parts))]), class_="note")


def task_section(index: int, task: str, cells: pd.DataFrame, curves: pd.DataFrame,
                 feedback: pd.DataFrame, diagnostics: pd.DataFrame, order: list[str],
                 styles: dict[str, VariantStyle], suite: dict[str, Any]) -> Markup:
    """Everything about one task: flags, summary, published comparison, curves, stability,
    per-layer metrics."""
    thresholds = sorted({thr_key(t) for ts in cells["thresholds"] for t in ts}, key=float)
    order = [v for v in order if v in set(cells["variant"])]
    finished_ids = set(cells.loc[cells["status"].isin(FINISHED), "cell_id"])
    published = _published_for(suite, task)
    task_feedback = feedback[feedback["task"] == task] if not feedback.empty else feedback
    finished_curves = curves[curves["cell_id"].isin(finished_ids)]
    parts: list[object] = [flags_box(cells, finished_curves, task_feedback),
                           tag("h3", "Summary"),
                           summary_table(cells, order, thresholds),
                           tag("p", f"Bold: the variant with the highest mean final test accuracy (only when it "
                                    f"has {MIN_SEEDS_FOR_INTERVAL} or more complete seeds).", class_="note"),
                           busy_note(cells, order)]
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
        curve_svg = figures.learning_curves(finished_curves, order, styles, [float(t) for t in thresholds])
        parts.append(figure(curve_svg, f"learning curves for {task}",
                            "Validation accuracy of finished cells: line = median over the seeds present at "
                            "that point, band = min–max. Left: against weight updates. Right: against training "
                            "seconds, each seed interpolated onto a common log-spaced time grid. Dotted lines: "
                            "the task's thresholds.")
                     if curve_svg else tag("p", "No evaluations to plot.", class_="note"))
        loss_svg = figures.loss_curves(finished_curves, order, styles)
        if loss_svg:
            parts.append(figure(loss_svg, f"loss curves for {task}",
                                "Training loss (the rule's loss, mean over the batches since the previous "
                                "evaluation) and validation cross-entropy, median over seeds, band min–max."))
    parts += [tag("h3", "Stability"), stability_table(cells, order)]
    spread = figures.seed_spread(cells, order, styles)
    parts.append(figure(spread, f"seed spread for {task}", "Each dot is one complete seed's final test "
                                                            "accuracy; diverged seeds are counted on the right.")
                 if spread else tag("p", "No complete seed with a test accuracy to show.", class_="note"))
    div = figures.divergence_bars(cells, order)
    parts.append(figure(div, f"divergence for {task}") if div
                 else tag("p", "No cell of this task diverged or failed.", class_="note"))
    groups = grid_groups(cells)
    if groups:
        parts += [tag("h4", "Hyperparameter sensitivity"), grid_share_table(groups, thresholds),
                  tag("p", "A grid point reaches a threshold when a majority of its finished seeds did. The "
                           "heatmaps show the mean final test accuracy, as the summary does.", class_="note")]
        finished = cells[cells["status"] == "complete"][figures.HEATMAP_METRIC].dropna() * 100
        vmin, vmax = (finished.min(), finished.max()) if len(finished) else (0, 100)
        heatmaps = [figure(figures.grid_heatmap(g, vmin, vmax), f"grid heatmap for {g.rule}") for g in groups]
        parts.append(Markup(f'<div class="figrow">{join(heatmaps)}</div>'))
    if not task_feedback.empty:
        drawn, trivial = split_trivial(task_feedback)
        title = "Pseudo-inverse convergence and alignment (per layer)"
        parts.append(tag("h3", title))
        if not drawn.empty:
            parts.append(figure(figures.per_layer_curves(drawn, order, styles), f"{title} for {task}",
                                "Per-layer feedback metrics reported by the rules, mean over seeds; colour: "
                                f"variant, line style: layer (“{figures.ALL_LAYERS}”: the whole network's "
                                "parameters as one vector)."))
        if not trivial.empty:
            parts.append(trivial_note(trivial, order))
        parts += [final_feedback_table(task_feedback, order), tag("p", FEEDBACK_NOTE, class_="note")]
    sub = diagnostics[diagnostics["task"] == task] if not diagnostics.empty else diagnostics
    if not sub.empty:
        title = "Rule diagnostics"
        parts += [tag("h3", title), figure(figures.per_layer_curves(sub, order, styles), f"{title} for {task}",
                                           "Scalars reported by the rules' diagnostics(), mean over seeds.")]
    return section(f"task-{index}", f"Task: {task}", *parts)


FEEDBACK_NOTE = (
    "Measured after each evaluated update, on the B the next update will use. "
    "rel_err_white = ‖B − W⁺‖/‖W⁺‖; rel_err_data = ‖B − ΣWᵀ(WΣWᵀ)⁻¹‖/‖·‖ with Σ the second moment "
    "of the layer's input on a fixed probe batch; penrose_p1..p4 = the relative residuals of "
    "WBW = W, BWB = B, (WB)ᵀ = WB, (BW)ᵀ = BW (pseudo-inverse metrics only for rules whose B "
    "should approach an inverse; pinv-feedback's B is W⁺ of its current weights, off only by its "
    "ridge α, ~α/σ_min²); angle_BWt = angle(B, Wᵀ) in degrees; grad_angle = angle in degrees "
    "between the rule's credit and the true gradient on the probe batch, per layer and for all "
    "layers together (the whole network's parameters as one vector).")
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
            rows.append([v, figures.layer_label(layer), *cells])
    headers = ["variant", "layer", *[m + (" (°)" if "angle" in m else "") for m in metrics]]
    return join([tag("h4", "At the end of training (mean over seeds)"),
                 table(headers, rows, numeric=list(range(2, len(headers))))])
