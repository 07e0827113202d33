"""Report figures, drawn with matplotlib/seaborn and returned as inline SVG (`Markup`).

Figures are built on `matplotlib.figure.Figure` directly (no pyplot): nothing global is
touched, no GUI backend is needed, and the report builds the same on a headless machine.
Every function takes the variant order and styles from the caller so a variant has one colour
in every figure of the report. Each variant's artists carry the class of its `VariantStyle.key`
in the SVG, so the page's one legend can hide a variant in every figure at once.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import Formatter, FuncFormatter

from .html import Markup
from .stats import t_interval
from .tables import GridGroup, sortable

_RC = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("notebook", font_scale=0.85),
    # Names from suites are shown literally: "$" must not start mathtext.
    "text.parse_math": False,
    "axes.titleweight": "bold",
    "axes.titlesize": 11,
    "legend.fontsize": 9,
    "figure.facecolor": "white",
    # Text stays text in the SVG (small, selectable; matplotlib escapes it as XML), and ids are
    # derived from content, so the same runs give the same file.
    "svg.fonttype": "none",
    "svg.hashsalt": "plasticity",
    "path.simplify_threshold": 0.3,
}
NEUTRAL = "#262626"  # marks and bars that belong to a variant but are not its colour
STATUS_COLORS = {"complete": "#9bb59b", "diverged": "#c0392b", "error": "#e69f00"}
# Layers of the per-layer figures are told apart by line style (colour is the variant's).
LAYER_STYLES = [("-", None), ("--", None), (":", None), ("-.", None), ("-", "o"), ("--", "s"), (":", "^")]
# Qualitative colours, ordered so that neighbours (variants of one rule sort together) differ in
# hue: tab10, then six darker or stronger hues none of which pairs with a tab10 one.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#000075", "#f032e6", "#469990", "#800000", "#808000", "#000000")
# Past the palette, colours repeat with a marker so that no two variants look alike.
MARKERS = (None, "o", "s", "^", "D", "v", "P", "X")
MAX_POINTS = 120  # points per drawn curve: keeps the SVG small, far finer than the eye resolves
KEY_PREFIX = "plv-"
ALL_LAYERS = "all layers together"


@dataclass(frozen=True)
class VariantStyle:
    """How one variant is drawn in every figure; `key` is its CSS class (from its index, so a
    variant's name never reaches an attribute or selector)."""
    key: str
    color: str
    marker: str | None


def variant_styles(variants: Sequence[str]) -> dict[str, VariantStyle]:
    """One distinct look per variant, stable for a given variant order."""
    n = len(PALETTE)
    return {v: VariantStyle(f"{KEY_PREFIX}{i}", PALETTE[i % n], MARKERS[(i // n) % len(MARKERS)])
            for i, v in enumerate(variants)}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_RC):
        yield


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


_ID = re.compile(r'\bid="([^"]+)"')
_KEY_GID = re.compile(r'<g id="' + KEY_PREFIX + r'(\d+)">')


def to_svg(fig: Figure) -> Markup:
    """Render a figure as an inline `<svg>` element.

    Artists whose gid is a variant key become `<g class="plv plv-N">`; every other id is
    prefixed with a digest of the figure, so that several SVGs in one page never share an id
    (a clip path of one figure would otherwise clip another).
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = _KEY_GID.sub(lambda m: f'<g class="plv {KEY_PREFIX}{m.group(1)}">', text)
    prefix = "s" + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    ids = set(_ID.findall(text))
    text = _ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r'(url\(#|href="#)([^")]+)', lambda m: m.group(1) + (prefix + m.group(2) if m.group(2) in ids
                                                                       else m.group(2)), text)
    # Scales with the page; the viewBox keeps the aspect ratio.
    text = text.replace("<svg ", '<svg class="fig" role="img" ', 1)
    return Markup(text)


def _thin(x: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `max_points` of a sorted positive x, even on a log axis (ends kept)."""
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    lx = np.log(np.maximum(np.asarray(x, dtype=float), 1e-300))
    targets = np.linspace(lx[0], lx[-1], max_points)
    idx = np.unique(np.clip(np.searchsorted(lx, targets), 0, n - 1))
    return np.unique(np.concatenate([[0], idx, [n - 1]]))


def _line(ax, x, y, style: VariantStyle, **kw) -> None:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = _thin(x)
    x, y = x[keep], y[keep]
    marker = kw.pop("marker", None) or style.marker
    markevery = max(1, len(x) // 8) if marker and len(x) > 1 else None
    (artist,) = ax.plot(x, y, color=kw.pop("color", style.color), marker=marker, markevery=markevery,
                        ms=kw.pop("ms", 4), **kw)
    artist.set_gid(style.key)


def _band(ax, x, low, high, style: VariantStyle) -> None:
    x = np.asarray(x, dtype=float)
    keep = _thin(x)
    artist = ax.fill_between(x[keep], np.asarray(low, dtype=float)[keep], np.asarray(high, dtype=float)[keep],
                             color=style.color, alpha=0.16, lw=0)
    artist.set_gid(style.key)


def _count_label(value: float, _pos: object = None) -> str:
    """Tick text for update counts: 1, 10, 100, 1k, 10k, 1M."""
    if value <= 0:
        return ""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def _plain(value: float, _pos: object = None) -> str:
    return f"{value:g}"


class _MinorLabels(Formatter):
    """Label the 2x and 5x minor ticks of a log axis, but only when it spans under two decades
    (otherwise the decades are labelled and these would crowd them)."""

    def __init__(self, fmt) -> None:
        self.fmt = fmt

    def __call__(self, x: float, pos: object = None) -> str:
        low, high = sorted(self.axis.get_view_interval())
        if x <= 0 or low <= 0 or math.log10(high / low) > 2:
            return ""
        mantissa = x / 10 ** math.floor(math.log10(x) + 1e-9)
        return self.fmt(x) if round(mantissa) in (2, 5) else ""


def _log_axis(ax, which: str = "x", fmt=_plain) -> None:
    """Log scale with plain tick text (matplotlib's default uses mathtext, which is off here)."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(FuncFormatter(fmt))
    axis.set_minor_formatter(_MinorLabels(fmt))


def _legend_below(fig: Figure, handles: list, labels: list[str]) -> None:
    """A legend under the axes for what is not a variant (bands, markers, layers): the variants
    are named once, in the page's legend, which also hides and shows them."""
    if not handles:
        return
    longest = max(len(str(label)) for label in labels)
    column_pt = longest * 5.6 + 40  # rough width of one entry at 9 pt
    ncol = max(1, min(len(labels), int(fig.get_figwidth() * 72 * 0.95 // column_pt)))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _threshold_lines(ax, thresholds: Sequence[float], labelled: bool = True) -> None:
    """Dotted horizontal lines at the thresholds, labelled on the left (curves start low there)."""
    low, high = ax.get_ylim()
    for t in thresholds:
        y = float(t) * 100
        if low <= y <= high:
            ax.axhline(y, color="0.4", ls=":", lw=1, zorder=1)
            if labelled:
                ax.annotate(f"{y:g} %", xy=(0.005, y), xycoords=("axes fraction", "data"), ha="left",
                            va="bottom", fontsize=7.5, color="0.3")


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
    _band(ax, x, summary["low"], summary["high"], style)
    _line(ax, x, summary["median"], style, lw=1.8, marker="o" if len(x) == 1 else None)


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
    with _style():
        fig = _figure(12, 8.6)
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
                _log_axis(ax, "x", _count_label if col == 0 else _plain)
                ax.set_ylim(low, high)
                ax.set_ylabel("validation accuracy (%)")
                _threshold_lines(ax, thresholds, labelled=row == 1)  # too crowded at full range
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
        _legend_below(fig, handles, labels)
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
    with _style():
        fig = _figure(12, 4.4)
        axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
        for ax, (key, title) in zip(axes, panels):
            for v in variants:
                _draw_summary(ax, seeds_by_updates(curves[curves["variant"] == v], key), styles[v])
            _log_axis(ax, "x", _count_label)
            values = curves[key].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if len(values) and (values > 0).all() and values.max() / values.min() >= 20:
                _log_axis(ax, "y")
            ax.set_title(title)
            ax.set_xlabel("updates (log scale)")
            ax.set_ylabel("loss")
        _legend_below(fig, [Patch(color="0.5", alpha=0.3)], ["min–max over seeds"])
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
    with _style():
        fig = _figure(10, 0.45 * len(variants) + 1.5)
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
        _legend_below(fig, [Line2D([], [], ls="", marker="o", color="0.4"),
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
    with _style():
        fig = _figure(10, 0.4 * len(variants) + 1.5)
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
        _legend_below(fig, [Patch(color=STATUS_COLORS[s]) for s in shown], shown)
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
    with _style():
        fig = _figure(max(4.2, 0.95 * len(cols) + 2.8), 0.6 * len(rows) + 1.7)
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
    with _style():
        # At least page-wide enough that the legend below spreads over several columns.
        fig = _figure(max(10.0, 4.2 * ncols + 0.6), 3.1 * nrows + 1.0)
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
                    _line(ax, mean.index, mean.to_numpy(), styles[v], ls=ls, marker=marker, ms=3, lw=1.5)
            _log_axis(ax, "x", _count_label)
            values = sub["value"].to_numpy()
            if not is_angle(metric) and (values > 0).all() and values.max() / values.min() >= 50:
                _log_axis(ax, "y")  # errors that fall by decades read better on a log axis
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
        _legend_below(fig, handles, labels)
        return to_svg(fig)
