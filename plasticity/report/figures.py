"""Report figures, drawn with matplotlib/seaborn and returned as inline SVG (`Markup`).

Figures are built on `matplotlib.figure.Figure` directly (no pyplot): nothing global is
touched, no GUI backend is needed, and the report builds the same on a headless machine.
Every function takes the variant order and styles from the caller so a variant has one colour
in every figure of the report. Each variant's artists carry the class of its `VariantStyle.key`
in the SVG, so the page's one legend can hide a variant in every figure at once.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .drawing import (
    ALL_LAYERS,
    LAYER_STYLES,
    NEUTRAL,
    STATUS_COLORS,
    VariantStyle,
    count_label,
    draw_band,
    draw_line,
    legend_below,
    log_axis,
    new_figure,
    plain_label,
    plot_style,
    threshold_lines,
    to_svg,
)
from .html import Markup
from .stats import t_interval
from .tables import GridGroup, sortable


def seeds_by_updates(sub: pd.DataFrame, value: str, scale: float = 1.0) -> pd.DataFrame:
    """Median, min and max over seeds of `value` at each update count (> 0) of one variant.

    Evaluation update counts are shared by a variant's seeds, so a pivot aligns them; a seed that
    diverged early simply drops out of the later points.
    """
    rows = sub[(sub["updates"] > 0) & np.isfinite(sub[value])]
    piv = rows.pivot_table(index="updates", columns="cell_id", values=value) * scale
    return pd.DataFrame({"median": piv.median(axis=1), "low": piv.min(axis=1), "high": piv.max(axis=1)})


def seeds_by_seconds(sub: pd.DataFrame, value: str, scale: float = 1.0, points: int = 80) -> pd.DataFrame:
    """Median, min and max over seeds of `value` on a common log-spaced grid of training seconds.

    Seeds are timed separately, so their evaluations fall at different seconds: each seed's curve
    is interpolated (linearly in log seconds) onto the grid, inside its own time span only.
    """
    seeds = []
    for _, cell in sub.groupby("cell_id"):
        cell = cell[(cell["train_seconds"] > 0) & np.isfinite(cell[value])].sort_values("train_seconds")
        if len(cell):
            seeds.append((np.log(cell["train_seconds"].to_numpy()), cell[value].to_numpy() * scale))
    if not seeds:
        return pd.DataFrame(columns=["median", "low", "high"])
    start, stop = min(t[0] for t, _ in seeds), max(t[-1] for t, _ in seeds)
    grid = np.linspace(start, stop, points if stop > start else 1)
    stack = np.full((len(seeds), len(grid)), np.nan)
    for i, (t, y) in enumerate(seeds):
        inside = (grid >= t[0] - 1e-12) & (grid <= t[-1] + 1e-12)
        stack[i, inside] = np.interp(grid[inside], t, y)
    present = np.isfinite(stack).any(axis=0)
    stack, grid = stack[:, present], grid[present]
    return pd.DataFrame({"median": np.nanmedian(stack, axis=0), "low": np.nanmin(stack, axis=0),
                         "high": np.nanmax(stack, axis=0)}, index=np.exp(grid))


def _draw_summary(ax, summary: pd.DataFrame, style: VariantStyle) -> None:
    if summary.empty:
        return
    x = summary.index.to_numpy(dtype=float)
    draw_band(ax, x, summary["low"], summary["high"], style)
    draw_line(ax, x, summary["median"], style, lw=1.8, marker="o" if len(x) == 1 else None)


def learning_curves(curves: pd.DataFrame, order: Sequence[str], styles: dict[str, VariantStyle],
                    thresholds: Sequence[float]) -> Markup | None:
    """Validation accuracy against updates and against training seconds (median of seeds, band
    min–max), full range on top and zoomed on the thresholds below.

    `curves` holds the evaluation rows of one task's finished cells.
    """
    data = curves[np.isfinite(curves["val_accuracy"])]
    if data.empty:
        return None
    variants = [v for v in order if v in set(data["variant"])]
    with plot_style():
        fig = new_figure(12, 8.6)
        axes = fig.subplots(2, 2)
        finals, tops, any_diverged = [], [], False
        for v in variants:
            sub = data[data["variant"] == v]
            style = styles[v]
            by_updates = seeds_by_updates(sub, "val_accuracy", 100)
            by_seconds = seeds_by_seconds(sub, "val_accuracy", 100)
            for ax in axes[:, 0]:
                _draw_summary(ax, by_updates, style)
            for ax in axes[:, 1]:
                _draw_summary(ax, by_seconds, style)
            ends = sub.sort_values("updates").groupby("cell_id").tail(1)
            finals.append(ends.loc[ends["status"] != "diverged", "val_accuracy"].mean() * 100)
            tops.append(sub["val_accuracy"].max() * 100)
            div = ends[ends["status"] == "diverged"]
            if not div.empty:
                any_diverged = True
                for col, xkey in enumerate(("updates", "train_seconds")):
                    for ax in axes[:, col]:
                        ax.scatter(div[xkey], div["val_accuracy"] * 100, marker="x", color=NEUTRAL, s=40,
                                   zorder=5).set_gid(style.key)
        lowest_thr = min(thresholds) * 100 if thresholds else max(finals) - 10
        finite_finals = [f for f in finals if math.isfinite(f)] or [lowest_thr]
        zoom_low = max(0.0, lowest_thr - 15, min(lowest_thr - 5, min(finite_finals) - 2))
        zoom_high = min(100.5, max(tops + [max(thresholds, default=0) * 100]) + 1)
        # The zoom row starts a little before the first evaluation that enters the zoomed range.
        inside = data[(data["val_accuracy"] * 100 >= zoom_low)]
        starts = {"updates": inside["updates"][inside["updates"] > 0].min(),
                  "train_seconds": inside["train_seconds"][inside["train_seconds"] > 0].min()}
        for row, (low, high) in enumerate(((0, 100.5), (zoom_low, zoom_high))):
            for col, xkey in enumerate(("updates", "train_seconds")):
                ax = axes[row, col]
                log_axis(ax, "x", count_label if col == 0 else plain_label)
                ax.set_ylim(low, high)
                ax.set_ylabel("validation accuracy (%)")
                threshold_lines(ax, thresholds, labelled=row == 1)  # too crowded at full range
                if row == 1 and math.isfinite(starts[xkey]):
                    ax.set_xlim(starts[xkey] / 1.5, axes[0, col].get_xlim()[1])
        axes[0, 0].set_title("against updates (median of seeds, band = min–max)")
        axes[0, 1].set_title("against training seconds (median of seeds, band = min–max)")
        axes[1, 0].set_title("zoom on the thresholds")
        axes[1, 1].set_title("zoom on the thresholds")
        axes[0, 0].set_xlabel("updates (log scale)")
        axes[0, 1].set_xlabel("training seconds (log scale)")
        axes[1, 0].set_xlabel("updates (log scale)")
        axes[1, 1].set_xlabel("training seconds (log scale, evaluation time excluded)")
        handles: list = [Patch(color="0.5", alpha=0.3)]
        labels = ["min–max over seeds"]
        if any_diverged:
            handles.append(Line2D([], [], ls="", marker="x", color=NEUTRAL))
            labels.append("diverged (last evaluation)")
        legend_below(fig, handles, labels)
        return to_svg(fig)


def loss_curves(curves: pd.DataFrame, order: Sequence[str], styles: dict[str, VariantStyle]) -> Markup | None:
    """Training loss (mean over the updates since the previous evaluation) and validation loss
    against updates, median of seeds with a min–max band, both on log axes."""
    panels = [(key, title) for key, title in (
        ("train_loss", "training loss (mean over the batches since the previous evaluation)"),
        ("val_loss", "validation loss (cross-entropy)")) if np.isfinite(curves[key]).any()]
    if not panels:
        return None
    variants = [v for v in order if v in set(curves["variant"])]
    with plot_style():
        fig = new_figure(12, 4.4)
        axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
        for ax, (key, title) in zip(axes, panels):
            for v in variants:
                _draw_summary(ax, seeds_by_updates(curves[curves["variant"] == v], key), styles[v])
            log_axis(ax, "x", count_label)
            values = curves[key].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if len(values) and (values > 0).all() and values.max() / values.min() >= 20:
                log_axis(ax, "y")
            ax.set_title(title)
            ax.set_xlabel("updates (log scale)")
            ax.set_ylabel("loss")
        legend_below(fig, [Patch(color="0.5", alpha=0.3)], ["min–max over seeds"])
        return to_svg(fig)


def seed_spread(cells: pd.DataFrame, order: Sequence[str], styles: dict[str, VariantStyle]) -> Markup | None:
    """Final test accuracy of every complete seed per variant, with the mean ± 95 % t interval.

    Diverged seeds are not drawn (their accuracy at the blow-up is near chance and would squash
    the axis); each row says how many diverged instead. No interval is drawn for fewer than
    three seeds (`MIN_SEEDS_FOR_INTERVAL`): two points give one so wide it says nothing.
    """
    cells = cells[cells["status"].isin(("complete", "diverged"))]
    variants = [v for v in order if v in set(cells["variant"])]
    if not variants or cells.loc[cells["status"] == "complete", "test_accuracy"].dropna().empty:
        return None
    rng = np.random.default_rng(0)  # fixed jitter: the same report twice gives the same picture
    with plot_style():
        fig = new_figure(10, 0.45 * len(variants) + 1.5)
        ax = fig.subplots()
        notes = []
        for i, v in enumerate(variants):
            sub = cells[cells["variant"] == v]
            ok = sub.loc[sub["status"] == "complete", "test_accuracy"].dropna() * 100
            ax.scatter(ok, i + rng.uniform(-0.12, 0.12, len(ok)), color=styles[v].color, s=38,
                       marker=styles[v].marker or "o", edgecolor="white", lw=0.6, zorder=3).set_gid(styles[v].key)
            ci = t_interval(ok)
            if ci.n >= MIN_SEEDS_FOR_INTERVAL:
                # Accuracy lives in [0, 100]: a t interval of few seeds can reach past it, so clip
                # the bar there rather than stretch the axis.
                low, high = max(ci.low, 0.0), min(ci.high, 100.0)
                bar = ax.errorbar(ci.mean, i, xerr=[[ci.mean - low], [high - ci.mean]], color=NEUTRAL,
                                  capsize=4, lw=1.3, marker="|", ms=14, zorder=2)
                for artist in bar.get_children():
                    artist.set_gid(styles[v].key)
            elif ci.n >= 1:
                ax.plot(ci.mean, i, marker="|", ms=14, color=NEUTRAL)[0].set_gid(styles[v].key)
            row_notes = [f"{ci.n} seeds: no interval"] if 1 < ci.n < MIN_SEEDS_FOR_INTERVAL else []
            diverged = int((sub["status"] == "diverged").sum())
            if diverged:
                row_notes.append(f"{diverged}/{len(sub)} diverged" + ("" if ci.n else ": no complete seed"))
            if row_notes:
                notes.append((i, "; ".join(row_notes), STATUS_COLORS["diverged"] if diverged else "0.35"))
        ax.set_yticks(range(len(variants)), variants)
        ax.set_ylim(len(variants) - 0.5, -0.5)
        # Room on the right for the notes, whatever the spread of the points.
        low, high = ax.get_xlim()
        low, high = max(low, 0.0), min(high, 100.0)
        ax.set_xlim(low, high + (high - low) * (0.3 if notes else 0.02))
        for i, text, color in notes:
            ax.annotate(text, xy=(0.99, i), xycoords=("axes fraction", "data"), ha="right", va="center",
                        fontsize=8, color=color)
        ax.set_xlabel("final test accuracy (%)")
        ax.set_title("seed spread of final test accuracy (bar: mean ± 95 % t interval, 3 seeds or more)")
        legend_below(fig, [Line2D([], [], ls="", marker="o", color="0.4"),
                            Line2D([], [], color=NEUTRAL, marker="|", ms=10)],
                      ["one complete seed", "mean ± 95 % CI (complete seeds)"])
        return to_svg(fig)


MIN_SEEDS_FOR_INTERVAL = 3


def divergence_bars(cells: pd.DataFrame, order: Sequence[str]) -> Markup | None:
    """Stacked bars of complete / diverged / errored cells per variant; None if all completed."""
    cells = cells[cells["status"].isin(tuple(STATUS_COLORS))]
    if not (cells["status"] != "complete").any():
        return None
    variants = [v for v in order if v in set(cells["variant"])]
    counts = (cells.groupby(["variant", "status"]).size().unstack(fill_value=0)
              .reindex(index=variants, columns=list(STATUS_COLORS), fill_value=0))
    with plot_style():
        fig = new_figure(10, 0.4 * len(variants) + 1.5)
        ax = fig.subplots()
        left = np.zeros(len(variants))
        for status, color in STATUS_COLORS.items():
            ax.barh(range(len(variants)), counts[status], left=left, color=color, label=status, height=0.6)
            left += counts[status].to_numpy()
        for i, v in enumerate(variants):
            finished = counts.loc[v, "complete"] + counts.loc[v, "diverged"]
            text = f"{counts.loc[v, 'diverged']}/{finished} diverged"
            if counts.loc[v, "error"]:
                text += f", {counts.loc[v, 'error']} error"
            ax.annotate(text, xy=(left[i], i), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(range(len(variants)), variants)
        ax.set_ylim(len(variants) - 0.5, -0.5)
        ax.set_xlim(0, left.max() * 1.3)
        ax.set_xlabel("cells (seeds)")
        ax.set_title("outcome of each variant's cells")
        ax.xaxis.get_major_locator().set_params(integer=True)
        shown = [s for s in STATUS_COLORS if counts[s].sum()]
        legend_below(fig, [Patch(color=STATUS_COLORS[s]) for s in shown], shown)
        return to_svg(fig)


def _value_text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


HEATMAP_METRIC = "test_accuracy"  # the summary table's metric, so the two rank variants alike


def grid_heatmap(group: GridGroup, vmin: float, vmax: float) -> Markup | None:
    """Mean final test accuracy (complete seeds) over one rule's hyperparameter grid.

    Two varying parameters give a 2-D map, one a single row; with more, the columns combine
    all but the first. Cells where seeds diverged say how many.
    """
    cells = group.cells[group.cells["status"].isin(("complete", "diverged"))].copy()
    if cells.empty:
        return None
    dims = list(group.dims)
    if len(dims) == 2 and cells[dims[0]].map(repr).nunique() > cells[dims[1]].map(repr).nunique():
        dims.reverse()  # the longer axis goes across: the page is wider than tall
    row_key = dims[0] if len(dims) >= 2 else None
    col_dims = dims[1:] if len(dims) >= 2 else dims
    cells["_row"] = cells[row_key].map(_value_text) if row_key else ""
    cells["_col"] = cells.apply(lambda r: ", ".join(
        (_value_text(r[d]) if len(col_dims) == 1 else f"{d}={_value_text(r[d])}") for d in col_dims), axis=1)

    def ordered(key: str, raw: list[str]) -> list[str]:
        firsts = cells.drop_duplicates(key)
        return [r[key] for _, r in sorted(firsts.iterrows(), key=lambda it: tuple(
            sortable(it[1][d]) for d in raw))]

    rows = ordered("_row", [row_key] if row_key else [])
    cols = ordered("_col", col_dims)
    means = np.full((len(rows), len(cols)), np.nan)
    notes = np.full((len(rows), len(cols)), "", dtype=object)
    for (r, c), sub in cells.groupby(["_row", "_col"]):
        i, j = rows.index(r), cols.index(c)
        ok = sub.loc[sub["status"] == "complete", HEATMAP_METRIC].dropna()
        div = int((sub["status"] == "diverged").sum())
        means[i, j] = ok.mean() * 100 if len(ok) else np.nan
        text = f"{means[i, j]:.1f}" if len(ok) else "no result"
        notes[i, j] = text + (f"\n{div}/{len(sub)} div." if div else "")
    with plot_style():
        fig = new_figure(max(4.2, 0.95 * len(cols) + 2.8), 0.6 * len(rows) + 1.7)
        ax = fig.subplots()
        sns.heatmap(pd.DataFrame(means, index=rows, columns=cols), annot=notes, fmt="", cmap="viridis",
                    vmin=vmin, vmax=vmax, linewidths=1.5, linecolor="white", ax=ax,
                    cbar_kws={"label": "final test acc. (%)"}, annot_kws={"fontsize": 9})
        for i, j in zip(*np.where(np.isnan(means))):  # seaborn leaves NaN cells blank
            ax.text(j + 0.5, i + 0.5, notes[i, j], ha="center", va="center", fontsize=9, color="0.2")
        ax.set_facecolor("0.88")
        ax.grid(False)
        ax.set_xlabel(col_dims[0] if len(col_dims) == 1 else " × ".join(col_dims))
        ax.set_ylabel(row_key or "")
        ax.tick_params(axis="y", rotation=0)
        ax.tick_params(axis="x", rotation=0 if max(map(len, cols)) < 10 else 30)
        ax.set_title(f"{group.rule}: final test accuracy over the grid")
        return to_svg(fig)


def _natural(text: str) -> list:
    """Sort key that puts L2 before L10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def is_angle(metric: str) -> bool:
    return "angle" in metric


def metric_title(metric: str) -> str:
    """A metric's panel title, with its unit: angles are in degrees, the rest are ratios."""
    return f"{metric} (°)" if is_angle(metric) else metric


def layer_label(layer: str) -> str:
    """"L1" stays "L1" (the metrics' own layer names), "" is the whole network."""
    if not layer:
        return ALL_LAYERS
    return layer if layer[:1] == "L" and layer[1:].isdigit() else f"layer {layer}"


def per_layer_curves(frame: pd.DataFrame, order: Sequence[str], styles: dict[str, VariantStyle]) -> Markup | None:
    """One panel per metric against updates: seed mean, colour = variant, line style = layer.

    `frame` is a long table (variant, seed, updates, layer, metric, value) of one task, with
    the series that carry nothing already dropped (see `tables.split_trivial`).
    """
    frame = frame[frame["updates"] > 0]
    if frame.empty:
        return None
    metrics = sorted(frame["metric"].unique(), key=_natural)
    layers = sorted(frame["layer"].unique(), key=lambda t: (t == "", _natural(t)))
    variants = [v for v in order if v in set(frame["variant"])]
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    with plot_style():
        # At least page-wide enough that the legend below spreads over several columns.
        fig = new_figure(max(10.0, 4.2 * ncols + 0.6), 3.1 * nrows + 1.0)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, metric in zip(axes, metrics):
            sub = frame[frame["metric"] == metric]
            for v in variants:
                for k, layer in enumerate(layers):
                    line = sub[(sub["variant"] == v) & (sub["layer"] == layer)]
                    if line.empty:
                        continue
                    mean = line.groupby("updates")["value"].mean()
                    ls, marker = LAYER_STYLES[k % len(LAYER_STYLES)]
                    draw_line(ax, mean.index, mean.to_numpy(), styles[v], ls=ls, marker=marker, ms=3, lw=1.5)
            log_axis(ax, "x", count_label)
            values = sub["value"].to_numpy()
            if not is_angle(metric) and (values > 0).all() and values.max() / values.min() >= 50:
                log_axis(ax, "y")  # errors that fall by decades read better on a log axis
            ax.set_title(metric_title(metric))
            if is_angle(metric):
                ax.set_ylabel("degrees")
            ax.set_xlabel("updates (log scale)")
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        handles: list = []
        labels: list[str] = []
        if len(layers) > 1 or layers[0]:
            for k, layer in enumerate(layers):
                ls, marker = LAYER_STYLES[k % len(LAYER_STYLES)]
                handles.append(Line2D([], [], color="0.25", ls=ls, marker=marker, ms=3))
                labels.append(layer_label(layer))
        legend_below(fig, handles, labels)
        return to_svg(fig)
