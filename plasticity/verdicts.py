"""Verdicts: each claim of a suite judged from its runs (never typed in).

The claims' table (`[[claims]]`: claim, source, task, metric, threshold, kind, the sides and
the bound) is described and validated in plasticity.claim_spec.

When a side matches several variants (a grid), the claim is judged on the
variant best on the metric (mean over seeds; for update counts, most seeds reaching the
threshold first); the table names it. Two sides that select the same cells (one run judged at
two points, e.g. after update 1 against the end) judge one variant: the one best at the end.

The comparisons, each over seeds (paired by seed for two sides) with a 95 % Student-t interval:
- threshold   `at_most = v` / `at_least = v`: the subject's metric against a number;
- ratio       `at_most = r` / `at_least = r`: subject / baseline, per seed;
- difference  `sign = "positive" | "negative"`, `within = m`, `at_most = d` or `at_least = d`:
              subject − baseline, per seed (`within`: |difference| ≤ m, an equivalence claim such
              as "similar error");
- ordering    `order = [best, ..., worst]`: each neighbouring pair's difference has the sign
              the order says (the metric's better direction: lower error and update counts).
Verdict: *supported* when the whole interval lies on the claim's side, *not supported* when it
lies wholly on the other side, else *inconclusive*; one seed gives no interval and its point
value decides (said in the table). A side with no finished cell is "inconclusive (no runs)".
An update count where a seed never reached the threshold is censored (only known to exceed
the seed's last evaluation): then each seed's comparison is a range, and the claim is decided
only when every seed's range lies on one side of the bound (else inconclusive). `grid_share`
(the share of a side's grid points whose seeds mostly reach the threshold) is judged with exact
tests instead: a Clopper-Pearson interval against a threshold, a one-sided Fisher test
(p < 0.05) for a difference in sign.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .checks import is_number
from .claim_spec import (
    ACCURACY_METRICS,
    METRICS,
    UNREADABLE,
    comparison_text,
    matches,
    selects_same,
    stored_claim_problem,
)
from .results import FINISHED, CellRecord, cell_identity

ALPHA = 0.05  # two-sided 95 % intervals; one-sided Fisher tests at 5 %
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

__all__ = ["INCONCLUSIVE", "NOT_SUPPORTED", "SUPPORTED", "UNREADABLE", "Verdict", "comparison_text", "judge",
           "judge_all"]


# ---- measuring (report time) ----------------------------------------------------------------

def cell_value(rec: CellRecord, metric: str, side: dict[str, Any], threshold: float | None) -> float:
    """The metric of one cell (accuracies in percent); NaN when it was not measured, inf when an
    update count's threshold was never reached."""
    if metric in ACCURACY_METRICS:
        if "at_updates" in side or "at_epoch" in side:
            point = _eval_at(rec.evals, side)
            if point is None:
                return math.nan
        else:
            if rec.status != "complete":  # a diverged cell's last accuracy is not a result
                return math.nan
            point = rec.final or {}
        acc = point.get("val_accuracy" if metric == "val_accuracy" else "test_accuracy")
        if not is_number(acc) or not math.isfinite(acc):
            return math.nan
        return 100.0 - 100.0 * acc if metric == "test_error" else 100.0 * acc
    thr = (threshold or 0.0) / 100.0
    prev = None
    for ev in rec.evals:
        acc, upd = ev.get("val_accuracy"), ev.get("updates")
        if not (is_number(acc) and is_number(upd)):
            continue
        if acc >= thr:
            if metric == "updates_to_interp" and prev is not None and acc > prev[1]:
                u0, a0 = prev
                return float(u0 + (thr - a0) / (acc - a0) * (upd - u0))
            return float(upd)
        prev = (upd, acc)
    return math.inf


def _eval_at(evals: list[dict[str, Any]], side: dict[str, Any]) -> dict[str, Any] | None:
    for ev in evals:
        if "at_updates" in side and ev.get("updates") == side["at_updates"]:
            return ev
        if "at_epoch" in side and is_number(ev.get("epoch")) and abs(ev["epoch"] - side["at_epoch"]) < 1e-9:
            return ev
    return None


@dataclass
class SideResult:
    """What one side measured: the chosen variant, its per-seed values, and what is missing."""
    rule: str
    variant: str | None
    values: dict[Any, float]          # seed -> value (finished cells with a measurement)
    finished: int                     # finished cells of the chosen variant
    unfinished: int                   # cells of the side with no final line yet (any variant)
    variants: int                     # how many variants the side matched
    grid: tuple[int, int] | None = None  # grid_share: (points reaching, points)
    #: update counts: seed -> the last evaluated update of a seed that never reached the threshold
    #: (its true count lies beyond it)
    censored: dict[Any, float] = field(default_factory=dict)
    #: finished cells of the judged variant (of every variant when none has a value) that diverged
    #: and so have no accuracy: left out of the interval, and said so
    diverged: int = 0

    @property
    def label(self) -> str:
        return self.variant or self.rule


@dataclass
class Verdict:
    """A claim and what the runs say about it."""
    claim: dict[str, Any]
    verdict: str
    measured: str
    basis: str
    sides: list[SideResult] = field(default_factory=list)


def _side_cells(records: Sequence[CellRecord], claim: dict[str, Any], side: dict[str, Any]) -> list[CellRecord]:
    out = []
    for rec in records:
        cfg = rec.header.get("config") or {}
        task, rule, opt = (cfg.get(k) or {} for k in ("task", "rule", "optimizer"))
        if (task.get("name") == claim["task"] and matches(task.get("params") or {}, claim.get("task_params") or {})
                and rule.get("name") == side["rule"] and matches(rule.get("params") or {}, side.get("params") or {})
                and ("optimizer" not in side or opt.get("name") == side["optimizer"])
                and matches(opt.get("params") or {}, side.get("optimizer_params") or {})):
            out.append(rec)
    return out


def measure_side(records: Sequence[CellRecord], claim: dict[str, Any], side: dict[str, Any],
                 variant: str | None = None) -> SideResult:
    """The side's cells grouped by variant; the best variant on the metric is the one judged
    (or `variant`, when given: a baseline that selects the same cells as its subject)."""
    metric, thr = claim["metric"], claim.get("threshold")
    lower = METRICS[metric][2]
    cells = _side_cells(records, claim, side)
    if variant is not None:
        cells = [r for r in cells if cell_identity(r)[1] == variant]
    by_variant: dict[str, list[CellRecord]] = defaultdict(list)
    unfinished = 0
    for rec in cells:
        if rec.status in FINISHED:
            by_variant[cell_identity(rec)[1]].append(rec)
        else:
            unfinished += 1
    if metric == "grid_share":  # a grid point reaches the threshold when most of its seeds did, as the report counts
        from .report.stats import grid_share
        reach, n = grid_share([cell_value(r, "updates_to", side, thr) for r in recs] for recs in by_variant.values())
        # the side is a whole grid, not one variant: named by what it selects ("bp + mult-sgd")
        label = side["rule"] + (f" + {side['optimizer']}" if side.get("optimizer") else "")
        return SideResult(side["rule"], label, {}, sum(map(len, by_variant.values())), unfinished, n, (reach, n))
    best, best_key, best_values = None, None, {}
    for variant, recs in sorted(by_variant.items()):
        values = {cell_identity(r)[2]: cell_value(r, metric, side, thr) for r in recs}
        values = {s: v for s, v in values.items() if not math.isnan(v)}
        finite = [v for v in values.values() if math.isfinite(v)]
        if not values:
            continue
        mean = sum(finite) / len(finite) if finite else math.inf
        key = (-len(finite), mean if lower else -mean)
        if best_key is None or key < best_key:
            best, best_key, best_values = variant, key, values
    judged = by_variant[best] if best else [r for recs in by_variant.values() for r in recs]
    if best is None and len(by_variant) == 1:  # no value, but one variant ran: name it
        (best,) = by_variant
    censored = {cell_identity(r)[2]: _last_update(r) for r in judged
                if math.isinf(best_values.get(cell_identity(r)[2], math.nan))}
    diverged = sum(r.status == "diverged" and cell_identity(r)[2] not in best_values for r in judged)
    return SideResult(side["rule"], best, best_values, len(judged), unfinished, len(by_variant),
                      censored=censored, diverged=diverged)


def _last_update(rec: CellRecord) -> float:
    updates = [ev.get("updates") for ev in rec.evals if is_number(ev.get("updates"))]
    return float(max(updates)) if updates else 0.0


def judge(claim: dict[str, Any], records: Sequence[CellRecord]) -> Verdict:
    """The verdict on one (validated) claim from the suite's cell records."""
    sides = claim["order"] if claim["kind"] == "ordering" else [claim["subject"]] + (
        [claim["baseline"]] if "baseline" in claim else [])
    if claim["kind"] in ("ratio", "difference") and selects_same(claim["subject"], claim["baseline"]):
        # One run judged at two points (after update 1 against the end): the same variant on both
        # sides, the one best at the end (the side without at_updates/at_epoch leads).
        lead = 1 if _at(sides[0]) and not _at(sides[1]) else 0
        first = measure_side(records, claim, sides[lead])
        other = measure_side(records, claim, sides[1 - lead], first.variant)
        results = [first, other] if lead == 0 else [other, first]
    else:
        results = [measure_side(records, claim, s) for s in sides]
    empty = [r for r in results if r.finished == 0]
    if empty:
        return Verdict(claim, INCONCLUSIVE, "not measured", "no runs: " + ", ".join(
            f"{r.rule} ({r.unfinished} unfinished)" if r.unfinished else r.rule for r in empty), results)
    if claim["metric"] == "grid_share":
        return _judge_grid(claim, results)
    unmeasured = [(s, r) for s, r in zip(sides, results) if not r.values]
    if unmeasured:
        return Verdict(claim, INCONCLUSIVE, "not measured", "no finished seed has the metric: " + ", ".join(
            f"{r.label} ({_why_unmeasured(s, r)})" for s, r in unmeasured), results)
    censored = [r for r in results if r.censored]
    if censored:
        parts = [f"{r.label}: {len(r.values) - len(r.censored)}/{len(r.values)} seeds reached "
                 f"{claim['threshold']:g} %" for r in censored]
        verdict, basis = _judge_censored(claim, results)
        return Verdict(claim, verdict, _side_text(claim, results), "; ".join(parts) + f"; {basis}", results)
    extra = _unfinished_text(results)
    kind = claim["kind"]
    if kind == "threshold":
        verdict, measured, basis = _judge_one(claim, results[0])
    elif kind == "ordering":
        verdict, measured, basis = _judge_order(claim, results)
    else:
        verdict, measured, basis = _judge_pair(claim, results[0], results[1])
    return Verdict(claim, verdict, measured, basis + extra, results)


def _judge_censored(claim: dict[str, Any], results: Sequence[SideResult]) -> tuple[str, str]:
    """Update counts where some seed never reached the threshold: that seed's count is only known
    to exceed its last evaluated update. Each seed's comparison becomes a range; the claim is
    decided only when every seed's range lies on one side of the bound (else inconclusive)."""
    kind = claim["kind"]
    if kind == "ordering":
        return INCONCLUSIVE, "censored counts: an ordering is not decided from them"

    def span(r: SideResult, seed: Any) -> tuple[float, float]:
        return (r.censored[seed], math.inf) if seed in r.censored else (r.values[seed], r.values[seed])

    seeds = sorted(set.intersection(*(set(r.values) for r in results)), key=str)
    ranges = []
    for seed in seeds:
        a_lo, a_hi = span(results[0], seed)
        if kind == "threshold":
            ranges.append((a_lo, a_hi))
            continue
        b_lo, b_hi = span(results[1], seed)
        if kind == "ratio":
            ranges.append((a_lo / b_hi if b_hi > 0 else math.inf, a_hi / b_lo if b_lo > 0 else math.inf))
        else:
            ranges.append((a_lo - b_hi, a_hi - b_lo))
    bound = _bound_range(claim["bound"])
    decided = [_verdict(lo, hi, *bound) for lo, hi in ranges]
    on_side, against = decided.count(SUPPORTED), decided.count(NOT_SUPPORTED)
    n = len(ranges)
    basis = (f"censored counts, decided seed by seed: {on_side}/{n} seeds surely on the claim's side, "
             f"{against}/{n} surely against")
    if n and on_side == n:
        return SUPPORTED, basis
    if n and against == n:
        return NOT_SUPPORTED, basis
    return INCONCLUSIVE, basis


def _at(side: dict[str, Any]) -> bool:
    return "at_updates" in side or "at_epoch" in side


def _why_unmeasured(side: dict[str, Any], r: SideResult) -> str:
    """Why a side's finished cells gave no value: they diverged, or no evaluation fell where asked."""
    why = []
    if r.diverged:
        why.append(f"{'all ' if r.diverged == r.finished else ''}{r.diverged} of {r.finished} diverged")
    if r.diverged < r.finished:
        if "at_updates" in side:
            why.append(f"no evaluation after exactly {side['at_updates']} updates")
        elif "at_epoch" in side:
            why.append(f"no evaluation at the end of epoch {side['at_epoch']:g}")
        else:
            why.append("no final accuracy")
    return "; ".join(why)


def _unfinished_text(results: Sequence[SideResult]) -> str:
    """What the interval leaves out: diverged seeds (no accuracy) and cells not yet finished."""
    parts = [f"{r.label}: {r.diverged} diverged seed{'s' if r.diverged > 1 else ''} left out"
             for r in results if r.diverged]
    n = sum(r.unfinished for r in results)
    if n:
        parts.append(f"{n} cells still unfinished")
    return "".join(f"; {p}" for p in parts)


def _fmt(v: float, metric: str) -> str:
    if not math.isfinite(v):
        return "—"
    return f"{v:,.0f}" if METRICS[metric][1] == "updates" else f"{v:.2f}"


def _interval_text(ci, metric: str, unit: str = "") -> str:
    if ci.n == 1:
        return "1 seed, no interval"
    return f"{ci.n} seeds, 95 % CI [{_fmt(ci.low, metric)}, {_fmt(ci.high, metric)}]{unit}"


def _verdict(lo: float, hi: float, low_ok: float, high_ok: float, strict: bool = False) -> str:
    """Supported when [lo, hi] ⊂ [low_ok, high_ok] (the open interval when `strict`), not supported
    when [lo, hi] lies wholly outside it, else inconclusive."""
    if strict:
        if low_ok < lo and hi < high_ok:
            return SUPPORTED
        if hi <= low_ok or lo >= high_ok:
            return NOT_SUPPORTED
        return INCONCLUSIVE
    if low_ok <= lo and hi <= high_ok:
        return SUPPORTED
    if hi < low_ok or lo > high_ok:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def _decide(ci, low_ok: float, high_ok: float, strict: bool = False) -> str:
    """`_verdict` on the interval over seeds (one seed: its value)."""
    lo, hi = (ci.mean, ci.mean) if ci.n == 1 else (ci.low, ci.high)
    return _verdict(lo, hi, low_ok, high_ok, strict)


def _bound_range(bound: dict[str, Any]) -> tuple[float, float, bool]:
    """The values the claim's bound allows, as (low, high, strict) (±inf = unbounded). A sign is
    strict: a difference of exactly 0 (a tie, common in update counts on a schedule) supports
    neither "positive" nor "negative"."""
    key, v = bound["key"], bound["value"]
    if key == "at_most":
        return -math.inf, v, False
    if key == "at_least":
        return v, math.inf, False
    if key == "within":
        return -v, v, False
    return (0.0, math.inf, True) if v == "positive" else (-math.inf, 0.0, True)


def _judge_one(claim: dict[str, Any], r: SideResult) -> tuple[str, str, str]:
    metric = claim["metric"]
    ci = t_interval(r.values.values())
    verdict = _decide(ci, *_bound_range(claim["bound"]))
    return verdict, f"{r.label}: {_fmt(ci.mean, metric)}", _interval_text(ci, metric)


def _paired(a: SideResult, b: SideResult, op) -> list[float]:
    return [op(a.values[s], b.values[s]) for s in sorted(set(a.values) & set(b.values), key=str)]


def _judge_pair(claim: dict[str, Any], a: SideResult, b: SideResult) -> tuple[str, str, str]:
    metric, kind = claim["metric"], claim["kind"]
    if kind == "ratio":
        if any(v <= 0 for v in b.values.values()):
            return INCONCLUSIVE, _side_text(claim, [a, b]), "the baseline is 0 in some seed: no ratio"
        values = _paired(a, b, lambda x, y: x / y)
    else:
        values = _paired(a, b, lambda x, y: x - y)
    ci = t_interval(values)
    side_text = _side_text(claim, [a, b])
    if ci.n == 0:
        return INCONCLUSIVE, side_text, "no seed measured on both sides"
    op = "/" if kind == "ratio" else "−"
    unit = "" if kind == "ratio" else f" {METRICS[metric][1]}"
    fmt = (lambda v: f"{v:.3f}") if kind == "ratio" else (lambda v: _signed(v, metric))
    measured = f"{a.label} {op} {b.label}: {fmt(ci.mean)}{unit} ({side_text})"
    if ci.n == 1:
        basis = "1 seed, no interval"
    else:
        basis = f"{ci.n} paired seeds, 95 % CI [{fmt(ci.low)}, {fmt(ci.high)}]{unit}"
    return _decide(ci, *_bound_range(claim["bound"])), measured, basis


def _signed(v: float, metric: str) -> str:
    return f"{v:+,.0f}" if METRICS[metric][1] == "updates" else f"{v:+.2f}"


def _side_text(claim: dict[str, Any], results: Sequence[SideResult]) -> str:
    metric = claim["metric"]
    parts = []
    for r in results:
        ci = t_interval(r.values.values())
        if r.censored:  # the mean of the seeds that reached it, and how many did
            reached = len(r.values) - len(r.censored)
            text = f"{_fmt(ci.mean, metric)} ({reached}/{len(r.values)} seeds reached it)" if reached else (
                f"not reached by {max(r.censored.values()):,.0f} updates")
            parts.append(f"{r.label} {text}")
            continue
        parts.append(f"{r.label} {_fmt(ci.mean, metric)}")
    return "; ".join(parts)


def _judge_order(claim: dict[str, Any], results: Sequence[SideResult]) -> tuple[str, str, str]:
    """Each neighbouring pair (better, worse): the paired difference worse − better in the
    direction that says "worse" (higher error, lower accuracy) must be positive."""
    metric = claim["metric"]
    lower = METRICS[metric][2]
    verdicts, bases = [], []
    for a, b in zip(results, results[1:]):
        diffs = _paired(a, b, (lambda x, y: y - x) if lower else (lambda x, y: x - y))
        ci = t_interval(diffs)
        if ci.n == 0:
            verdicts.append(INCONCLUSIVE)
            bases.append(f"{a.rule}/{b.rule}: no common seed")
            continue
        verdicts.append(_decide(ci, 0.0, math.inf, strict=True))  # a tie orders neither way
        gap = "1 seed" if ci.n == 1 else f"{ci.n} seeds, CI [{_signed(ci.low, metric)}, {_signed(ci.high, metric)}]"
        bases.append(f"{a.rule} vs {b.rule}: {_signed(ci.mean, metric)} ({gap})")
    if NOT_SUPPORTED in verdicts:
        verdict = NOT_SUPPORTED
    elif all(v == SUPPORTED for v in verdicts):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    measured = " < ".join if lower else " > ".join
    return verdict, measured(_side_text(claim, [r]) for r in results), "; ".join(bases)


def _judge_grid(claim: dict[str, Any], results: Sequence[SideResult]) -> Verdict:
    from scipy import stats

    def share(r: SideResult) -> str:
        k, n = r.grid or (0, 0)
        return f"{r.label}: {k}/{n} grid points reach {claim['threshold']:g} %"

    measured = "; ".join(share(r) for r in results)
    extra = _unfinished_text(results)
    if claim["kind"] == "threshold":
        k, n = results[0].grid or (0, 0)
        ci = stats.binomtest(k, n).proportion_ci(1 - ALPHA)
        low, high = 100 * ci.low, 100 * ci.high
        verdict = _verdict(low, high, *_bound_range(claim["bound"]))
        return Verdict(claim, verdict, measured, f"{n} grid points, Clopper-Pearson 95 % CI "
                                                 f"[{low:.0f}, {high:.0f}] %" + extra, list(results))
    (ka, na), (kb, nb) = results[0].grid or (0, 0), results[1].grid or (0, 0)
    table = [[ka, na - ka], [kb, nb - kb]]
    positive = claim["bound"]["value"] == "positive"
    p_claim = stats.fisher_exact(table, alternative="greater" if positive else "less").pvalue
    p_other = stats.fisher_exact(table, alternative="less" if positive else "greater").pvalue
    verdict = SUPPORTED if p_claim < ALPHA else NOT_SUPPORTED if p_other < ALPHA else INCONCLUSIVE
    return Verdict(claim, verdict, measured, f"one-sided Fisher exact test: p = {p_claim:.3g} for the claim, "
                                             f"{p_other:.3g} against it" + extra, list(results))


def t_interval(values: Iterable[float]):
    """The report's Student-t interval (imported late: loading a suite must not load the plotting stack)."""
    from .report import stats
    return stats.t_interval(values)


def judge_all(claims: Sequence[Any], records: Sequence[CellRecord]) -> list[Verdict]:
    """The verdict on each claim a report's suite.json holds. One that is not a valid claim (edited
    by hand, or written by another version) is `UNREADABLE`, its problem named, so that one bad
    entry cannot stop the report."""
    out = []
    for c in claims:
        problem = stored_claim_problem(c)
        if problem is None:
            try:
                out.append(judge(c, records))
                continue
            except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as e:
                problem = f"could not be judged ({type(e).__name__}: {e})"
        out.append(Verdict(c if isinstance(c, dict) else {}, UNREADABLE, "not measured", problem))
    return out


