"""The claims of a suite (`[[claims]]`) as data (spec layer: no torch): their table validated
against the suite's cells when the suite is read, and checked again when a report reads them back
from `suite.json`. The verdicts are computed from the runs by plasticity.verdicts.

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
final evaluation. Each kind takes its bounds (`BOUNDS`); what they mean, and how a verdict is
reached, is said in plasticity.verdicts.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any, Iterable, Sequence

from .checks import is_number
from .errors import ConfigError, closest
from .params import check_text, shown
from .points import every_epoch, points_up_to

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
        if not is_number(thr) or not 0 < thr < 100:
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
    pool = [c for c in pool if matches(c.task.params, task_params)]
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
            if not is_number(value) or not math.isfinite(value):
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


def selects_same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("rule", "params", "optimizer", "optimizer_params")
    return all(json.dumps(a.get(k), sort_keys=True) == json.dumps(b.get(k), sort_keys=True) for k in keys)


def _same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two sides that select the same cells and judge them at the same evaluation."""
    return selects_same(a, b) and all(a.get(k) == b.get(k) for k in ("at_updates", "at_epoch"))


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
    match = [c for c in cands if matches(c.rule.params, params) and matches(c.optimizer.params, opt_params)]
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
            is_number(v) and math.isfinite(v) and v > 0)
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
    if is_number(a) and is_number(b):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def matches(params: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(k in params and _same(params[k], v) for k, v in wanted.items())


def _values_of(param_sets: Iterable[dict[str, Any]], wanted: dict[str, Any]) -> str:
    seen: dict[str, set[str]] = defaultdict(set)
    for p in param_sets:
        for k in wanted:
            seen[k].add(json.dumps(p.get(k)))
    return "; ".join(f"{k} in {{{', '.join(sorted(v))}}}" for k, v in seen.items())




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
    if c["metric"] in THRESHOLD_METRICS and not (is_number(c.get("threshold")) and 0 < c["threshold"] < 100):
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
        if not (v in SIGNS if bound["key"] == "sign" else is_number(v) and math.isfinite(v)):
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
