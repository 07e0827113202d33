"""Claims as data: a suite's `[[claims]]`, validated against its cells, and each verdict computed
from the runs (never typed in).

    [[claims]]
    claim = "RF learns faster than FA"            # the statement, in a few words
    source = "Cameron et al., poster"             # where it is claimed
    task = "mnist"                                # optional when the suite has one task
    task_params = { hidden = [400, 200] }         # optional: only cells of the task with these values
    metric = "updates_to_interp"                  # see METRICS
    threshold = 95                                # validation accuracy in percent (updates_to*, grid_share)
    kind = "ratio"                                # threshold | ratio | difference | ordering
    subject = { rule = "rf", params = { derivative = false } }
    baseline = { rule = "fa" }                    # ratio and difference
    at_most = 1.0                                 # the comparison that would support the claim
    note = "..."                                  # optional

A side (`subject`, `baseline`, each entry of `order`) selects cells: `rule`, and optionally
`params` (rule parameters), `optimizer`, `optimizer_params`, and for accuracy metrics `at_updates`
(the evaluation after exactly N updates) or `at_epoch` (at the end of epoch E) instead of the
final evaluation. When a side matches several variants (a grid), the claim is judged on the
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

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import ConfigError, closest
from .params import check_text, shown
from .points import every_epoch, points_up_to
from .results import FINISHED, CellRecord, _is_number, cell_identity

#: metric name -> (what it is, unit of a difference, lower is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "test_accuracy": ("test accuracy (%)", "pp", False),
    "test_error": ("test error (%)", "pp", True),
    "val_accuracy": ("validation accuracy (%)", "pp", False),
    "updates_to": ("updates to the first evaluation at the validation threshold", "updates", True),
    "updates_to_interp": ("updates to the validation threshold, interpolated linearly between the two "
                          "evaluations around the crossing", "updates", True),
    "grid_share": ("share of grid points whose seeds mostly reach the validation threshold", "", False),
}
ACCURACY_METRICS = ("test_accuracy", "test_error", "val_accuracy")
THRESHOLD_METRICS = ("updates_to", "updates_to_interp", "grid_share")
KINDS = ("threshold", "ratio", "difference", "ordering")
SIGNS = ("positive", "negative")
CLAIM_KEYS = {"claim", "source", "note", "task", "task_params", "metric", "threshold", "kind", "subject",
              "baseline", "order", "at_most", "at_least", "within", "sign"}
SIDE_KEYS = {"rule", "params", "optimizer", "optimizer_params", "at_updates", "at_epoch"}
#: the bounds each kind takes (exactly one of them)
BOUNDS = {"threshold": ("at_most", "at_least"), "ratio": ("at_most", "at_least"),
          "difference": ("sign", "within", "at_most", "at_least"), "ordering": ()}
ALPHA = 0.05  # two-sided 95 % intervals; one-sided Fisher tests at 5 %

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
#: the verdict on a stored claim that is not a valid claim (a hand-edited suite.json, another version's)
UNREADABLE = "unreadable"


# ---- validation (suite load time) ---------------------------------------------------------

def parse_claims(entries: list[dict], cells: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """Each `[[claims]]` entry checked against the suite's expanded `cells` and normalised."""
    return [parse_claim(e, cells, f"{where}: claims[{i}]") for i, e in enumerate(entries)]


def parse_claim(entry: dict, cells: Sequence[Any], where: str) -> dict[str, Any]:
    """One claim: known keys, metric and kind; every side matching at least one cell of the suite."""
    for key in entry:
        if key not in CLAIM_KEYS:
            raise ConfigError(f"{where}: unknown key {shown(str(key))}{closest(str(key), CLAIM_KEYS)}; "
                              f"known keys: {', '.join(sorted(CLAIM_KEYS))}")
    out: dict[str, Any] = {}
    for key in ("claim", "source"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ConfigError(f"{where}: '{key}' (a non-empty string) is required")
        out[key] = check_text(entry[key], f"{where}: {key}", name=False)
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise ConfigError(f"{where}: 'note' must be a string, got {type(note).__name__}")
    out["note"] = check_text(note, f"{where}: note", name=False)

    kind = _choice(entry, "kind", KINDS, "comparison kind", where)
    metric = _choice(entry, "metric", tuple(METRICS), "metric", where)
    out.update(kind=kind, metric=metric)
    if metric in THRESHOLD_METRICS:
        thr = entry.get("threshold")
        if not _is_number(thr) or not 0 < thr < 100:
            raise ConfigError(f"{where}: metric '{metric}' needs 'threshold', a validation accuracy in percent "
                              f"(0 < threshold < 100), got {thr!r}")
        out["threshold"] = float(thr)
    elif "threshold" in entry:
        raise ConfigError(f"{where}: 'threshold' applies only to the metrics {', '.join(THRESHOLD_METRICS)}, "
                          f"not to '{metric}'")
    if metric == "grid_share" and kind not in ("threshold", "difference"):
        raise ConfigError(f"{where}: metric 'grid_share' is a count over a grid: use kind 'threshold' or "
                          f"'difference', not '{kind}'")

    # The task, then the cells of that task the claim may look at.
    tasks = sorted({c.task.name for c in cells})
    if "task" in entry and not isinstance(entry["task"], str):
        raise ConfigError(f"{where}: 'task' must be a string naming one of the suite's tasks "
                          f"({', '.join(tasks)}), got {entry['task']!r}")
    task = entry.get("task", tasks[0] if len(tasks) == 1 else None)
    if not isinstance(task, str):
        raise ConfigError(f"{where}: 'task' is required (the suite has several: {', '.join(tasks)})")
    if task not in tasks:
        raise ConfigError(f"{where}: task {shown(task)} is not in the suite{closest(task, tasks)}; "
                          f"its tasks: {', '.join(tasks)}")
    pool = [c for c in cells if c.task.name == task]
    task_params = _params(entry.get("task_params", {}), pool, lambda c: c.task.params, "task_params", where)
    pool = [c for c in pool if _matches(c.task.params, task_params)]
    if not pool:
        raise ConfigError(f"{where}: no cell of task '{task}' has task_params {task_params}; its values: "
                          f"{_values_of([c.task.params for c in cells if c.task.name == task], task_params)}")
    out.update(task=task, task_params=task_params)

    if kind == "ordering":
        order = entry.get("order")
        if not isinstance(order, list) or len(order) < 2:
            raise ConfigError(f"{where}: kind 'ordering' needs 'order', a list of at least two sides "
                              f"(best first), e.g. order = [{{ rule = \"bp\" }}, {{ rule = \"fa\" }}]")
        out["order"] = [_side(s, pool, metric, f"{where}: order[{i}]") for i, s in enumerate(order)]
        for i, a in enumerate(out["order"]):
            for j in range(i + 1, len(out["order"])):
                if _same_point(a, out["order"][j]):
                    raise ConfigError(f"{where}: order[{i}] and order[{j}] select the same cells at the same "
                                      f"point: a run cannot be ordered against itself")
        extra = [k for k in ("subject", "baseline") if k in entry]
    else:
        out["subject"] = _side(entry.get("subject"), pool, metric, f"{where}: subject")
        if kind == "threshold":
            extra = [k for k in ("baseline", "order") if k in entry]
        else:
            out["baseline"] = _side(entry.get("baseline"), pool, metric, f"{where}: baseline")
            if _same_point(out["subject"], out["baseline"]):
                raise ConfigError(f"{where}: subject and baseline select the same cells at the same point, so the "
                                  f"claim would compare a run with itself; give them different rules, parameters "
                                  f"or optimizers, or judge one run at two points (at_updates / at_epoch)")
            extra = [k for k in ("order",) if k in entry]
    if extra:
        raise ConfigError(f"{where}: kind '{kind}' takes no {', '.join(repr(k) for k in extra)}")

    allowed = BOUNDS[kind]
    given = [k for k in ("at_most", "at_least", "within", "sign") if k in entry]
    wrong = [k for k in given if k not in allowed]
    if wrong or (allowed and len(given) != 1):
        need = f"exactly one of {', '.join(allowed)}" if allowed else "no bound (the order is the claim)"
        raise ConfigError(f"{where}: kind '{kind}' takes {need}; got {', '.join(given) or 'none'}")
    if allowed:
        key = given[0]
        value = entry[key]
        if key == "sign":
            if value not in SIGNS:
                raise ConfigError(f"{where}: sign must be one of {', '.join(SIGNS)}, got {value!r}")
        else:
            if not _is_number(value) or not math.isfinite(value):
                raise ConfigError(f"{where}: '{key}' must be a finite number, got {value!r}")
            value = float(value)
            if key == "within" and not value > 0:
                raise ConfigError(f"{where}: 'within' must be positive (|difference| ≤ within), got {value}")
            if kind == "ratio" and not value > 0:
                raise ConfigError(f"{where}: a ratio bound must be positive, got {value}")
            _check_bound_range(kind, metric, key, value, where)
        if metric == "grid_share" and kind == "difference" and key != "sign":
            raise ConfigError(f"{where}: metric 'grid_share' takes 'sign' in a difference, not '{key}'")
        out["bound"] = {"key": key, "value": value}
    return out


def _check_bound_range(kind: str, metric: str, key: str, value: float, where: str) -> None:
    """A bound the metric can reach: percentages in [0, 100] (a difference of them in [−100, 100]),
    update counts not below 0; a bound outside would judge every run "not supported"."""
    if kind == "ratio":
        return
    percent = metric in ACCURACY_METRICS or metric == "grid_share"
    if kind == "threshold":
        low, high = (0.0, 100.0) if percent else (0.0, math.inf)
    else:
        low, high = (-100.0, 100.0) if percent else (-math.inf, math.inf)
    if not low <= value <= high:
        span = f"between {low:g} and {high:g}" if math.isfinite(high) else f"at least {low:g}"
        what = "a difference of percentages" if percent and kind != "threshold" else (
            "a percentage" if percent else "an update count")
        raise ConfigError(f"{where}: '{key}' = {value:g} can never be met: {METRICS[metric][0]} gives "
                          f"{what}, so the bound must be {span}")


def _same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two sides that select the same cells and judge them at the same evaluation."""
    return _selects_same(a, b) and all(a.get(k) == b.get(k) for k in ("at_updates", "at_epoch"))


def _choice(entry: dict, key: str, choices: tuple[str, ...], what: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' is required: one of {', '.join(choices)}")
    if value not in choices:
        raise ConfigError(f"{where}: unknown {what} {shown(value)}{closest(value, choices)}; "
                          f"known {what}s: {', '.join(choices)}")
    return value


def _params(value: Any, pool: Sequence[Any], get, key: str, where: str) -> dict[str, Any]:
    """A table of parameter values whose keys the pool's cells have."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a table of parameter values, got {type(value).__name__}")
    known = sorted({k for c in pool for k in get(c)})
    for k in value:
        if k not in known:
            raise ConfigError(f"{where}: {key}: unknown parameter {shown(str(k))}{closest(str(k), known)}; "
                              f"known parameters: {', '.join(known) or '(none)'}")
    return dict(value)


def _side(value: Any, pool: Sequence[Any], metric: str, where: str) -> dict[str, Any]:
    """One side: a rule (with optional parameters and optimizer) that matches cells of the pool."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table like {{ rule = \"bp\" }}, got {value!r}")
    for key in value:
        if key not in SIDE_KEYS:
            raise ConfigError(f"{where}: unknown key {shown(str(key))}{closest(str(key), SIDE_KEYS)}; "
                              f"known keys: {', '.join(sorted(SIDE_KEYS))}")
    rules = sorted({c.rule.name for c in pool})
    rule = value.get("rule")
    if not isinstance(rule, str):
        raise ConfigError(f"{where}: 'rule' (a string) is required; rules of the suite here: {', '.join(rules)}")
    if rule not in rules:
        raise ConfigError(f"{where}: unknown rule {shown(rule)}{closest(rule, rules)}: the suite runs no cell of "
                          f"it here; its rules: {', '.join(rules)}")
    side: dict[str, Any] = {"rule": rule}
    cands = [c for c in pool if c.rule.name == rule]
    params = _params(value.get("params", {}), cands, lambda c: c.rule.params, "params", where)
    if "optimizer" in value:
        optimizers = sorted({c.optimizer.name for c in cands})
        opt = value["optimizer"]
        if not isinstance(opt, str) or opt not in optimizers:
            raise ConfigError(f"{where}: unknown optimizer {shown(str(opt))}{closest(str(opt), optimizers)} for "
                              f"rule '{rule}'; the suite runs it with: {', '.join(optimizers)}")
        side["optimizer"] = opt
        cands = [c for c in cands if c.optimizer.name == opt]
    opt_params = _params(value.get("optimizer_params", {}), cands, lambda c: c.optimizer.params,
                         "optimizer_params", where)
    match = [c for c in cands if _matches(c.rule.params, params) and _matches(c.optimizer.params, opt_params)]
    if not match:
        variants = sorted({c.labels.get("variant", c.rule.name) for c in cands})
        raise ConfigError(f"{where}: no cell of the suite matches {shown(json.dumps(value, sort_keys=True), 200)} "
                          f"(unknown variant); the variants of rule '{rule}' here: {'; '.join(variants)}")
    side.update(params=params, optimizer_params=opt_params)
    for key in ("at_updates", "at_epoch"):
        if key not in value:
            continue
        if metric not in ACCURACY_METRICS:
            raise ConfigError(f"{where}: '{key}' applies to the accuracy metrics "
                              f"({', '.join(ACCURACY_METRICS)}), not to '{metric}'")
        v = value[key]
        ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 1) if key == "at_updates" else (
            _is_number(v) and math.isfinite(v) and v > 0)
        if not ok:
            kind_of = "whole number" if key == "at_updates" else "number"
            raise ConfigError(f"{where}: '{key}' must be a positive {kind_of}, got {v!r}")
        side[key] = v
    if "at_updates" in side and "at_epoch" in side:
        raise ConfigError(f"{where}: give at_updates or at_epoch, not both")
    for cell in match:
        _check_reachable(side, cell, where)
    return side


def _check_reachable(side: dict[str, Any], cell: Any, where: str) -> None:
    """An `at_updates` / `at_epoch` some evaluation of `cell` can fall on, as far as the suite
    alone tells (an epoch's update count needs the data, so an update count that could be an
    epoch end is left to the report, which then says no evaluation fell there)."""
    budget, evaluation = cell.budget, cell.evaluation
    epoch_ends = every_epoch(evaluation)
    if "at_epoch" in side:
        e = side["at_epoch"]
        if float(e) != int(e):
            raise ConfigError(f"{where}: 'at_epoch' = {e:g} is not the end of an epoch: give a whole number")
        if budget.get("epochs") is not None and e > budget["epochs"]:
            raise ConfigError(f"{where}: 'at_epoch' = {e:g} lies beyond the budget of {budget['epochs']:g} epochs "
                              f"(cell {cell.labels.get('variant', cell.rule.name)}, seed {cell.seed})")
        if not epoch_ends and e != budget.get("epochs"):  # the budget's end is always evaluated
            has = "points" if evaluation.get("points") else "every_epoch = false"
            raise ConfigError(f"{where}: 'at_epoch' = {e:g} needs an evaluation at each epoch's end, but the "
                              f"suite's [evaluation] has {has} (only the budget's last epoch is evaluated at its end)")
    if "at_updates" in side:
        n, most = side["at_updates"], budget.get("updates")
        if most is not None and n > most:
            raise ConfigError(f"{where}: 'at_updates' = {n} lies beyond the budget of {most} updates")
        if epoch_ends or most is None or budget.get("epochs") is not None:  # the last update is the data's
            return
        points = points_up_to(evaluation, most)
        if n not in points:
            before = max((p for p in points if p < n), default=0)
            after = min(p for p in points if p > n)
            raise ConfigError(f"{where}: no evaluation falls after exactly {n} updates; the evaluations around it "
                              f"are after {before} and {after} updates")


def _same(a: Any, b: Any) -> bool:
    """Suite values compared as the suite compares them: 1 and 1.0 alike, lists element by element."""
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _matches(params: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(k in params and _same(params[k], v) for k, v in wanted.items())


def _values_of(param_sets: Iterable[dict[str, Any]], wanted: dict[str, Any]) -> str:
    seen: dict[str, set[str]] = defaultdict(set)
    for p in param_sets:
        for k in wanted:
            seen[k].add(json.dumps(p.get(k)))
    return "; ".join(f"{k} in {{{', '.join(sorted(v))}}}" for k, v in seen.items())


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
        if not _is_number(acc) or not math.isfinite(acc):
            return math.nan
        return 100.0 - 100.0 * acc if metric == "test_error" else 100.0 * acc
    thr = (threshold or 0.0) / 100.0
    prev = None
    for ev in rec.evals:
        acc, upd = ev.get("val_accuracy"), ev.get("updates")
        if not (_is_number(acc) and _is_number(upd)):
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
        if "at_epoch" in side and _is_number(ev.get("epoch")) and abs(ev["epoch"] - side["at_epoch"]) < 1e-9:
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
        if (task.get("name") == claim["task"] and _matches(task.get("params") or {}, claim.get("task_params") or {})
                and rule.get("name") == side["rule"] and _matches(rule.get("params") or {}, side.get("params") or {})
                and ("optimizer" not in side or opt.get("name") == side["optimizer"])
                and _matches(opt.get("params") or {}, side.get("optimizer_params") or {})):
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
    updates = [ev.get("updates") for ev in rec.evals if _is_number(ev.get("updates"))]
    return float(max(updates)) if updates else 0.0


def judge(claim: dict[str, Any], records: Sequence[CellRecord]) -> Verdict:
    """The verdict on one (validated) claim from the suite's cell records."""
    sides = claim["order"] if claim["kind"] == "ordering" else [claim["subject"]] + (
        [claim["baseline"]] if "baseline" in claim else [])
    if claim["kind"] in ("ratio", "difference") and _selects_same(claim["subject"], claim["baseline"]):
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


def _selects_same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("rule", "params", "optimizer", "optimizer_params")
    return all(json.dumps(a.get(k), sort_keys=True) == json.dumps(b.get(k), sort_keys=True) for k in keys)


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
    from .report.stats import t_interval as _t
    return _t(values)


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


def stored_claim_problem(c: Any) -> str | None:
    """What makes a stored claim unusable (the shape `parse_claim` writes), or None."""
    if not isinstance(c, dict):
        return f"a claim must be a table, got {type(c).__name__}"
    for key in ("claim", "source", "task"):
        if not isinstance(c.get(key), str):
            return f"'{key}' (a string) is missing"
    if c.get("kind") not in KINDS:
        return f"unknown kind {c.get('kind')!r}; known: {', '.join(KINDS)}"
    if c.get("metric") not in METRICS:
        return f"unknown metric {c.get('metric')!r}; known: {', '.join(METRICS)}"
    if c["metric"] in THRESHOLD_METRICS and not (_is_number(c.get("threshold")) and 0 < c["threshold"] < 100):
        return f"metric '{c['metric']}' needs a threshold in (0, 100), got {c.get('threshold')!r}"
    if not isinstance(c.get("task_params", {}), dict):
        return "'task_params' must be a table"
    names = ["order"] if c["kind"] == "ordering" else ["subject"] + (["baseline"] if c["kind"] != "threshold" else [])
    sides = c.get("order") if c["kind"] == "ordering" else [c.get(n) for n in names]
    if not isinstance(sides, list) or len(sides) < (2 if c["kind"] == "ordering" else 1):
        return "'order' must list at least two sides"
    for name, side in zip(names * len(sides) if c["kind"] == "ordering" else names, sides):
        if not isinstance(side, dict) or not isinstance(side.get("rule"), str):
            return f"'{name}' must be a table with a 'rule'"
        if any(not isinstance(side.get(k, {}), dict) for k in ("params", "optimizer_params")):
            return f"'{name}': params and optimizer_params must be tables"
    if c["kind"] != "ordering":
        bound = c.get("bound")
        if not isinstance(bound, dict) or bound.get("key") not in BOUNDS[c["kind"]]:
            return f"kind '{c['kind']}' needs a bound, one of {', '.join(BOUNDS[c['kind']])}"
        v = bound.get("value")
        if not (v in SIGNS if bound["key"] == "sign" else _is_number(v) and math.isfinite(v)):
            return f"bound {bound['key']} has an unusable value {v!r}"
    return None


def comparison_text(claim: dict[str, Any]) -> str:
    """What would support the claim, in words: "test error (%) of er ≤ 2.88"."""
    metric = claim["metric"]
    what = METRICS[metric][0]
    if claim.get("threshold") is not None:
        what = what.replace("the validation threshold", f"{claim['threshold']:g} % validation accuracy").replace(
            "the threshold", f"{claim['threshold']:g} %")
    kind, bound = claim["kind"], claim.get("bound") or {}

    def side(s: dict[str, Any]) -> str:
        text = s["rule"]
        opts = {**(s.get("params") or {})}
        if opts:
            text += "(" + ", ".join(f"{k}={_plain(v)}" for k, v in opts.items()) + ")"
        if s.get("optimizer"):
            text += f" + {s['optimizer']}"
        if s.get("optimizer_params"):
            text += "(" + ", ".join(f"{k}={_plain(v)}" for k, v in s["optimizer_params"].items()) + ")"
        if "at_updates" in s:
            text += f" after {s['at_updates']} update{'s' if s['at_updates'] != 1 else ''}"
        if "at_epoch" in s:
            text += f" at epoch {s['at_epoch']:g}"
        return text

    sym = {"at_most": "≤", "at_least": "≥"}
    if kind == "threshold":
        return f"{what}: {side(claim['subject'])} {sym[bound['key']]} {bound['value']:g}"
    if kind == "ordering":
        rel = " < " if METRICS[metric][2] else " > "
        return f"{what}: " + rel.join(side(s) for s in claim["order"]) + " (each pair over seeds)"
    a, b = side(claim["subject"]), side(claim["baseline"])
    if kind == "ratio":
        return f"{what}: {a} / {b} {sym[bound['key']]} {bound['value']:g}"
    if bound["key"] == "within":
        return f"{what}: |{a} − {b}| ≤ {bound['value']:g} {METRICS[metric][1]}"
    if bound["key"] in sym:
        return f"{what}: {a} − {b} {sym[bound['key']]} {bound['value']:g} {METRICS[metric][1]}"
    return f"{what}: {a} − {b} {'> 0' if bound['value'] == 'positive' else '< 0'}"


def _plain(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_plain(x) for x in v)
    return str(v)
