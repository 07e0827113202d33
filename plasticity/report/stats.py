"""Small statistics over seeds: means with Student-t intervals, curve drops, threshold counts.

Why a t interval and not a bootstrap: suites typically run 3-5 seeds. A percentile bootstrap
over 3 values can only resample those 3 values, so its "95 %" interval is far too narrow
(its real coverage is well under 80 %). The Student-t interval, mean ± t(0.975, n-1)·s/√n, is
exact for normal data and honest about how little 3 seeds say; with n = 1 there is no interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation and confidence bounds of n values (NaN where undefined)."""
    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _finite(values: Iterable[float | None]) -> np.ndarray:
    arr = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def t_interval(values: Iterable[float | None], confidence: float = 0.95) -> Interval:
    """Student-t confidence interval of the mean over seeds; None/NaN/inf values are dropped."""
    arr = _finite(values)
    n = int(arr.size)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    if n == 1:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    std = float(arr.std(ddof=1))
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


def largest_drop(curve: Sequence[float | None]) -> float:
    """How far a validation curve falls below its best point later on (0 if it never does).

    The best point is the first maximum; non-finite points are skipped.
    """
    arr = _finite(curve)
    if arr.size == 0:
        return math.nan
    best = int(np.argmax(arr))
    after = arr[best:]
    return float(arr[best] - after.min())


@dataclass(frozen=True)
class ThresholdSummary:
    """Seeds that reached a threshold: `reached` of `n`, and the median over those that did."""
    median: float
    reached: int
    n: int

    @property
    def any(self) -> bool:
        return self.reached > 0

    @property
    def majority(self) -> bool:
        """More than half of the seeds reached it (so the median over all seeds is finite)."""
        return self.n > 0 and self.reached * 2 > self.n


def threshold_summary(values: Iterable[float | None]) -> ThresholdSummary:
    """Aggregate per-seed updates (or seconds) to a threshold; None/NaN/inf = never reached.

    The median is over the seeds that reached the threshold, so it must be read with
    `reached`/`n` beside it: 2/3 seeds at 400 updates is not 3/3 at 400.
    """
    vals = [math.nan if v is None else float(v) for v in values]
    hit = _finite(vals)
    median = float(np.median(hit)) if hit.size else math.nan
    return ThresholdSummary(median, int(hit.size), len(vals))


def grid_share(points: Iterable[Iterable[float | None]]) -> tuple[int, int]:
    """How many grid points reach a threshold, as (reaching, total).

    `points` holds, per grid point, its seeds' updates to the threshold (None = never). A point
    counts as reaching it when a majority of its seeds did.
    """
    summaries = [threshold_summary(p) for p in points]
    return sum(s.majority for s in summaries), len(summaries)
