"""The drawing primitives every report figure shares: the style (one look, text kept as text in
the SVG), a new figure, SVG output, thinned curves and bands in a variant's style, log axes with
readable labels, a legend below, threshold lines. plasticity.report.figures and
plasticity.report.search draw with these."""
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
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, FuncFormatter

from .html import Markup

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
def plot_style() -> Iterator[None]:
    with matplotlib.rc_context(_RC):
        yield


def new_figure(width: float, height: float) -> Figure:
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


def thin(x: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `max_points` of a sorted positive x, even on a log axis (ends kept)."""
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    lx = np.log(np.maximum(np.asarray(x, dtype=float), 1e-300))
    targets = np.linspace(lx[0], lx[-1], max_points)
    idx = np.unique(np.clip(np.searchsorted(lx, targets), 0, n - 1))
    return np.unique(np.concatenate([[0], idx, [n - 1]]))


def draw_line(ax, x, y, style: VariantStyle, **kw) -> None:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = thin(x)
    x, y = x[keep], y[keep]
    marker = kw.pop("marker", None) or style.marker
    markevery = max(1, len(x) // 8) if marker and len(x) > 1 else None
    (artist,) = ax.plot(x, y, color=kw.pop("color", style.color), marker=marker, markevery=markevery,
                        ms=kw.pop("ms", 4), **kw)
    artist.set_gid(style.key)


def draw_band(ax, x, low, high, style: VariantStyle) -> None:
    x = np.asarray(x, dtype=float)
    keep = thin(x)
    artist = ax.fill_between(x[keep], np.asarray(low, dtype=float)[keep], np.asarray(high, dtype=float)[keep],
                             color=style.color, alpha=0.16, lw=0)
    artist.set_gid(style.key)


def count_label(value: float, _pos: object = None) -> str:
    """Tick text for update counts: 1, 10, 100, 1k, 10k, 1M."""
    if value <= 0:
        return ""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def plain_label(value: float, _pos: object = None) -> str:
    return f"{value:g}"


class MinorLabels(Formatter):
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


def log_axis(ax, which: str = "x", fmt=plain_label) -> None:
    """Log scale with plain tick text (matplotlib's default uses mathtext, which is off here)."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(FuncFormatter(fmt))
    axis.set_minor_formatter(MinorLabels(fmt))


def legend_below(fig: Figure, handles: list, labels: list[str]) -> None:
    """A legend under the axes for what is not a variant (bands, markers, layers): the variants
    are named once, in the page's legend, which also hides and shows them."""
    if not handles:
        return
    longest = max(len(str(label)) for label in labels)
    column_pt = longest * 5.6 + 40  # rough width of one entry at 9 pt
    ncol = max(1, min(len(labels), int(fig.get_figwidth() * 72 * 0.95 // column_pt)))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def threshold_lines(ax, thresholds: Sequence[float], labelled: bool = True) -> None:
    """Dotted horizontal lines at the thresholds, labelled on the left (curves start low there)."""
    low, high = ax.get_ylim()
    for t in thresholds:
        y = float(t) * 100
        if low <= y <= high:
            ax.axhline(y, color="0.4", ls=":", lw=1, zorder=1)
            if labelled:
                ax.annotate(f"{y:g} %", xy=(0.005, y), xycoords=("axes fraction", "data"), ha="left",
                            va="bottom", fontsize=7.5, color="0.3")
