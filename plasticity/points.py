"""The evaluation-point rules, in one place: which update counts a cell is evaluated at, and
which `[evaluation]` tables are valid (spec layer: no torch).

A cell is evaluated at a log-spaced schedule of update counts (`per_decade` points per decade:
1, 2, 3, 5, 8, ...) plus at every epoch's end (`every_epoch`), or, with `points = N`, at exactly
N update counts spaced evenly over an updates or epochs budget; always before the first update
and at the budget's end. The engine walks these points, the suite and search-space parsers
validate them, and the claims check that a claimed `at_updates` / `at_epoch` can be evaluated.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from .checks import checked_table
from .errors import ConfigError

#: the `[evaluation]` a suite gets for the keys it does not set
DEFAULT_EVALUATION = {"per_decade": 10, "every_epoch": True}
EVAL_KEYS = {"per_decade": int, "every_epoch": bool, "feedback_metrics": int, "points": int}
#: (low, high) of each integer in [evaluation]; 1,000 per decade already evaluates every update up to 400
EVAL_RANGES = {"per_decade": (1, 1000), "feedback_metrics": (0, 10**9), "points": (1, 100_000)}
POINTS_NEED_UPDATES = ("evaluation points = {points} spaces evaluations evenly over the update budget, but the "
                       "budget is in seconds only; give updates or epochs, or use per_decade")


def log_points(per_decade: int) -> Iterator[int]:
    """The endless log-spaced schedule 1, 2, 3, 5, 7, 10, 15, ... lazily: each point costs O(1)
    whatever `per_decade` is.

    Rather than stepping k one by one (10**(k/per_decade) rounds to the same integer many times
    when per_decade is large), k jumps to the first index that can round above the last point.
    """
    if per_decade < 1:
        raise ValueError(f"per_decade must be at least 1, got {per_decade}")
    last, k = 0, 0
    while True:
        p = round(10 ** (k / per_decade))
        if p > last:
            yield p
            last = p
        # round(10**(k/d)) > last needs k >= d*log10(last + 0.5); one index early guards against rounding error
        k = max(k + 1, math.ceil(per_decade * math.log10(last + 0.5)) - 1)


def log_schedule(per_decade: int, limit: int = 10**10) -> list[int]:
    """Update counts 1, 2, 3, 5, 7, 10, 15, ... (`per_decade` points per decade, rounded, unique) up to `limit`."""
    return list(itertools.takewhile(lambda p: p <= limit, log_points(per_decade)))


def evaluation_points(evaluation: dict[str, Any], max_updates: int | None) -> Iterator[int]:
    """The update counts to evaluate at: log-spaced (`per_decade`), or `points` evenly spaced over
    `max_updates` (which then must be known: an updates or epochs budget)."""
    points = evaluation.get("points")
    if not points:
        return log_points(evaluation["per_decade"])
    if max_updates is None:  # refused when the suite is read (check_points); a cell built by hand
        raise ConfigError(POINTS_NEED_UPDATES.format(points=points))
    even = sorted({max(1, math.ceil(max_updates * i / points)) for i in range(1, points + 1)})
    return itertools.chain(even, itertools.repeat(max_updates + 1))


def every_epoch(evaluation: dict[str, Any]) -> bool:
    """Whether each epoch's end is evaluated too (`points` means exactly those points)."""
    return bool(evaluation.get("every_epoch", True)) and not evaluation.get("points")


def points_up_to(evaluation: dict[str, Any], most: int) -> list[int]:
    """The scheduled update counts up to an updates budget `most`, and `most` itself (the budget's
    end is always evaluated); epoch ends not included."""
    points = list(itertools.takewhile(lambda p: p <= most, evaluation_points(evaluation, most)))
    return points + [most]


def needs_update_budget(evaluation: dict[str, Any], budget: dict[str, Any]) -> bool:
    """True when `evaluation` spaces `points` over the update budget but `budget` is in seconds only."""
    return bool(evaluation.get("points")) and budget.get("updates") is None and budget.get("epochs") is None


def check_points(evaluation: dict[str, Any], budget: dict[str, Any], where: str) -> None:
    """`points` spaces evaluations over the update budget: refused when the budget is in seconds only,
    or when it asks for more evaluations than an updates budget has updates."""
    points = evaluation.get("points")
    if needs_update_budget(evaluation, budget):
        raise ConfigError(f"{where}: {POINTS_NEED_UPDATES.format(points=points)}")
    # At most one evaluation per update: the engine would silently give fewer, evenly spaced or not.
    if points and budget.get("updates") is not None and points > budget["updates"]:
        raise ConfigError(f"{where}: evaluation points = {points} is more than the budget's {budget['updates']:,} "
                          f"updates (at most one evaluation per update); give points <= {budget['updates']:,}")


def checked_evaluation(table: Any, where: str) -> dict[str, Any]:
    """An evaluation table (`[evaluation]`, or a search's trial evaluation) checked: known keys, types, ranges."""
    evaluation = checked_table(table, EVAL_KEYS, where)
    # points replaces the log schedule and the per-epoch evaluations: both would be silently ignored.
    mixed = [key for key in ("per_decade", "every_epoch") if key in evaluation]
    if "points" in evaluation and mixed:
        raise ConfigError(f"{where}: points = {evaluation['points']} replaces both per_decade and every_epoch "
                          f"(exactly that many evenly spaced evaluations); remove {' and '.join(mixed)}, or "
                          f"remove points to keep the log-spaced schedule")
    for key, (low, high) in EVAL_RANGES.items():
        if key in evaluation and not low <= evaluation[key] <= high:
            rng = ("be 0 (never) or k in 1..{high:,} (every k-th evaluation)" if key == "feedback_metrics"
                   else "lie in {low}..{high:,}").format(low=low, high=high)
            raise ConfigError(f"{where} {key} must {rng}, got {evaluation[key]}")
    return evaluation
