"""The `[search]` table of a suite: parse and validate it completely, before anything runs.

    [search]
    objective = "val_accuracy"      # final validation accuracy (default); "val_auc": the area under the
                                    # validation curve over updates (its mean); "updates_to_threshold"
    threshold = 0.97                # updates_to_threshold only: the validation accuracy to reach
    trials = 20                     # trials per (task, rule), the same for every rule ...
    trials_per_rule = { dtp = 40 }  # ... unless a suite says otherwise (the report says so)
    budget = { epochs = 2 }         # per trial, required, with a limit (the suite's [budget] is the final stage's)
    sampler = "tpe"                 # tpe, random or grid (grid: every parameter a choice or int)
    pruner = "median"               # median, halving (successive halving) or none
    prune_after = 0.2               # share of the trial budget before a trial may be pruned
    seed = 0                        # the sampler's seed
    trial_seed = 0                  # the seed every trial trains with
    final_seeds = 3                 # fresh seeds of the final stage: a count (trial_seed+1, ...) or a list;
                                    # at most 10,000, and the final stage's cells count against --max-cells
    start_from_suite = true         # the suite's own setting is every study's first trial (its values
                                    # that lie inside the space; the sampler draws the rest)
    evaluation = { per_decade = 2 } # a trial's evaluation points (the suite's [evaluation] keys; default: the
                                    # suite's points, no feedback metrics). A trial never evaluates test data.

    [search.optimizer]              # the optimizer space of every rule that names none below
    lr = { log = [1e-4, 1e-1] }
    schedule = { choice = ["constant", "cosine"] }   # the optimizer's learning-rate schedule

    [search.space.dtp]              # per rule: its own parameters, and its optimizer's
    rule = { beta = { uniform = [0.01, 1.0] }, schedule = { choice = ["alternating", "parallel"] },
             inverse_steps = { int = [1, 3] } }
    optimizer = { lr = { log = [1e-5, 1e-2] } }

Distributions: `log = [low, high]` (0 < low < high), `uniform = [low, high]` (low < high),
`int = [low, high]` (whole numbers, low < high), `choice = [v, ...]` (distinct values: 1 and 1.0 are one). Each
bound and choice is checked against the parameter's own type and range (`make_params`), so a
value the rule would refuse is refused here. Validation data drives every decision of the
search, and a trial cell does not evaluate the test split at all (its `test_accuracy` is null):
that evaluation was two thirds of a trial's evaluation time and nothing of the search may read it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .cells import BUDGET_KEYS, MAX_CELLS, NO_OPTIMIZER, SCHEDULES, SEED_MAX, Component, checked_budget, checked_seeds
from .checks import check_keys, choice, whole
from .errors import ConfigError, closest
from .params import as_dict, fields, make_params, shown
from .points import check_points, checked_evaluation, needs_update_budget

OBJECTIVES = {"val_accuracy": "maximize", "val_auc": "maximize", "updates_to_threshold": "minimize"}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
DISTRIBUTIONS = ("log", "uniform", "int", "choice")
SEARCH_KEYS = {"objective", "threshold", "trials", "trials_per_rule", "budget", "sampler", "pruner", "prune_after",
               "seed", "trial_seed", "final_seeds", "optimizer", "space", "evaluation", "start_from_suite"}
#: what a trial cell's evaluation changes from its suite's: no test split, no feedback metrics (a search reads neither)
TRIAL_EVALUATION = {"test": False, "feedback_metrics": 0}
SPACE_KEYS = {"rule", "optimizer"}
SCHEDULE = "schedule"  # in an optimizer space: the learning-rate schedule, not an optimizer parameter
MAX_TRIALS = 100_000
DEFAULT_FINAL_SEEDS = 3
#: fresh seeds of one configuration in the final stage (the suite's cell limit bounds all pairs' together)
MAX_FINAL_SEEDS = 10_000


@dataclass(frozen=True)
class Dist:
    """One searched parameter: its kind (log, uniform, int, choice) and bounds or choices."""
    kind: str
    values: tuple[Any, ...]

    def grid_points(self) -> list[Any] | None:
        """Every value a grid sampler visits (None: a continuous range has no grid)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return list(range(self.values[0], self.values[1] + 1))
        return None

    def contains(self, value: Any) -> bool:
        """Whether `value` is a point of this distribution (a suite's own setting may lie outside)."""
        if self.kind == "choice":
            return value in self.values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and value != int(value):
            return False
        return self.values[0] <= value <= self.values[1]

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(str(v) for v in self.values)
        low, high = self.values
        return f"{self.kind} [{low:g}, {high:g}]"


@dataclass
class RuleSpace:
    """The searched parameters of one rule: `rule.<name>` and `optimizer.<name>` (optimizer.schedule too)."""
    rule: dict[str, Dist] = field(default_factory=dict)
    optimizer: dict[str, Dist] = field(default_factory=dict)

    def flat(self) -> dict[str, Dist]:
        """{"rule.beta": Dist, "optimizer.lr": Dist, ...}: the names the study records."""
        return {**{f"rule.{k}": d for k, d in self.rule.items()},
                **{f"optimizer.{k}": d for k, d in self.optimizer.items()}}

    def grid_size(self) -> int | None:
        points = [d.grid_points() for d in self.flat().values()]
        return None if any(p is None for p in points) else math.prod(len(p) for p in points)


@dataclass
class SearchSpec:
    """A validated `[search]` table."""
    objective: str
    threshold: float | None
    trials: dict[str, int]  # per rule
    default_trials: int
    budget: dict[str, Any]
    sampler: str
    pruner: str
    prune_after: float
    seed: int
    trial_seed: int
    final_seeds: list[int]
    spaces: dict[str, RuleSpace]  # per rule
    #: a trial cell's evaluation over its suite's: TRIAL_EVALUATION and the table's `evaluation`
    evaluation: dict[str, Any] = field(default_factory=lambda: dict(TRIAL_EVALUATION))
    #: the suite's own setting is each study's first trial
    start_from_suite: bool = True

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]

    @property
    def equal_trials(self) -> bool:
        return len(set(self.trials.values())) <= 1

    def meta(self) -> dict[str, Any]:
        """What the report and `search.json` show of the table."""
        return {"objective": self.objective, "threshold": self.threshold, "direction": self.direction,
                "trials": self.trials, "default_trials": self.default_trials, "equal_trials": self.equal_trials,
                "budget": self.budget, "sampler": self.sampler, "pruner": self.pruner,
                "prune_after": self.prune_after, "seed": self.seed, "trial_seed": self.trial_seed,
                "final_seeds": self.final_seeds, "evaluation": self.evaluation,
                "start_from_suite": self.start_from_suite,
                "spaces": {r: {k: d.describe() for k, d in s.flat().items()} for r, s in self.spaces.items()}}


_NONE = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_choice(a: Any, b: Any) -> bool:
    """Whether two choices are one setting: numbers compare as numbers (1 and 1.0 give the same
    parameter value, so the same configuration), anything else only within its own type."""
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def parse_dist(spec: Any, where: str) -> Dist:
    """`{ log = [a, b] }` and its kin, checked for shape and order (not yet against the parameter)."""
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: expected one distribution, like {{ log = [1e-4, 1e-1] }}; choose one of "
                          f"{', '.join(DISTRIBUTIONS)}, got {spec!r}")
    (kind, values), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {shown(str(kind))}{closest(str(kind), DISTRIBUTIONS)}; "
                          f"choose one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
    if kind == "choice":
        seen: list[Any] = []
        for v in values:
            same = next((s for s in seen if _same_choice(v, s)), _NONE)
            if same is not _NONE:
                twice = f"{v!r} is listed twice" if repr(v) == repr(same) else f"{same!r} and {v!r} are the same value"
                raise ConfigError(f"{where}.choice: {twice}; each choice once")
            seen.append(v)
        return Dist(kind, tuple(values))
    if len(values) != 2:
        raise ConfigError(f"{where}.{kind}: expected [low, high], got {values!r}")
    low, high = values
    if kind == "int":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}.int: bounds must be whole numbers, got {values!r}")
    elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ConfigError(f"{where}.{kind}: bounds must be finite numbers, got {values!r}")
    if not low < high:
        what = "empty" if low == high else "inverted"
        raise ConfigError(f"{where}.{kind}: the range [{low}, {high}] is {what}; give low < high")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{where}.log: a log range must lie above 0, got [{low}, {high}]; "
                          f"use uniform for a range through 0")
    return Dist(kind, (low, high) if kind == "int" else (float(low), float(high)))


def _check_against(dists: dict[str, Dist], params_cls: type, fixed: dict[str, Any], kind: str, name: str,
                   where: str, extra: tuple[str, ...] = ()) -> None:
    """Every searched name is a parameter of the component; every bound and choice is a value it accepts."""
    known = fields(params_cls)
    for key, dist in dists.items():
        if key in extra:
            continue
        if key not in known:
            choices = ", ".join([*known, *extra]) or "(none)"
            hint = closest(key, [*known, *extra])
            raise ConfigError(f"{where}: {kind} '{name}' has no parameter {shown(key)}{hint}; "
                              f"its parameters: {choices}")
        for v in dist.values:
            make_params(params_cls, {**fixed, key: v}, f"{where}.{key} ({kind} '{name}')")


def parse_search(table: Any, where: str, base_cells: dict[tuple[str, str], Any],
                 max_cells: int | None = None) -> SearchSpec:
    """Validate `[search]` against the suite's (task, rule) base cells (one setting each); the final
    stage (each pair's best on every final seed) may hold at most `max_cells` cells, the suite's limit."""
    max_cells = MAX_CELLS if max_cells is None else max_cells

    where = f"{where}: [search]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    check_keys(table, SEARCH_KEYS, where)
    objective = choice(table.get("objective", "val_accuracy"), tuple(OBJECTIVES), f"{where} objective")
    threshold = table.get("threshold")
    if objective == "updates_to_threshold":
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold < 1:
            raise ConfigError(f"{where}: objective updates_to_threshold needs threshold, a validation accuracy "
                              f"strictly between 0 and 1 (e.g. 0.97), got {threshold!r}")
        threshold = float(threshold)
    elif threshold is not None:
        raise ConfigError(f"{where}: threshold is read only by objective updates_to_threshold (objective is "
                          f"{objective})")
    trials = whole(table.get("trials", 20), f"{where}: trials", 1, MAX_TRIALS)
    sampler = choice(table.get("sampler", "tpe"), SAMPLERS, f"{where} sampler")
    pruner = choice(table.get("pruner", "median"), PRUNERS, f"{where} pruner")
    prune_after = table.get("prune_after", 0.2)
    if not isinstance(prune_after, (int, float)) or isinstance(prune_after, bool) or not 0 <= prune_after < 1:
        raise ConfigError(f"{where}: prune_after must be a share of the trial budget in [0, 1), got {prune_after!r}")
    seed = whole(table.get("seed", 0), f"{where}: seed", 0, 2**32 - 1)
    start_from_suite = table.get("start_from_suite", True)
    if not isinstance(start_from_suite, bool):
        raise ConfigError(f"{where}: start_from_suite must be true or false, got {start_from_suite!r}")
    trial_seed = whole(table.get("trial_seed", 0), f"{where}: trial_seed", 0, 2**32 - 2)
    if "budget" not in table:
        raise ConfigError(f"{where}: budget is required: the per-trial budget, e.g. budget = {{ epochs = 2 }} "
                          f"(the suite's [budget] is the final stage's)")
    budget = checked_budget(table["budget"], f"{where}.budget")
    if not budget:
        # as the suite's [budget]: a trial without a limit would train until killed
        raise ConfigError(f"{where}.budget: {table['budget']!r} sets no limit; give updates, epochs or seconds, "
                          f"e.g. budget = {{ epochs = 2 }}")
    budget = {k: budget.get(k) for k in BUDGET_KEYS}
    final_seeds = _final_seeds(table.get("final_seeds", DEFAULT_FINAL_SEEDS), trial_seed, len(base_cells),
                               max_cells, where)
    evaluation = {**TRIAL_EVALUATION, **checked_evaluation(table.get("evaluation", {}), f"{where}.evaluation")}
    check_points(evaluation, budget, f"{where}.evaluation")
    for cell in base_cells.values():
        # a trial evaluates with the suite's [evaluation] under the search's own keys, so its points too
        inherited = {**cell.evaluation, **evaluation}
        if needs_update_budget(inherited, budget):
            points = inherited["points"]
            raise ConfigError(f"{where}.budget: trials inherit the suite's [evaluation] points = {points}, spaced "
                              f"evenly over the update budget, but the trial budget (seconds = {budget['seconds']}) "
                              f"is in seconds only; give the trial budget updates or epochs")

    rules = {}
    for (task, rule), cell in base_cells.items():
        rules.setdefault(rule, cell)
    per_rule = table.get("trials_per_rule", {})
    if not isinstance(per_rule, dict):
        raise ConfigError(f"{where}: trials_per_rule must be a table like {{ dtp = 40 }}")
    trial_counts = {r: trials for r in rules}
    named: dict[str, str] = {}
    for name, n in per_rule.items():
        rule = registry.canonical("rule", name)
        if rule not in rules:
            raise ConfigError(f"{where}: trials_per_rule: rule {shown(name)} is not in the suite's rules: "
                              f"{', '.join(rules)}{closest(name, list(rules))}")
        _once(named, rule, name, f"{where}: trials_per_rule")
        trial_counts[rule] = whole(n, f"{where}: trials_per_rule.{name}", 1, MAX_TRIALS)

    shared_opt = table.get("optimizer", {})
    if not isinstance(shared_opt, dict):
        raise ConfigError(f"{where}.optimizer: expected a table of parameter distributions")
    shared = {k: parse_dist(v, f"{where}.optimizer.{k}") for k, v in shared_opt.items()}
    space_table = table.get("space", {})
    if not isinstance(space_table, dict):
        raise ConfigError(f"{where}.space: expected tables [search.space.<rule>]")
    spaces: dict[str, RuleSpace] = {}
    named = {}
    for name, entry in space_table.items():
        s_where = f"{where}.space.{name}"
        rule = registry.canonical("rule", name)
        if rule not in rules:
            raise ConfigError(f"{s_where}: rule {shown(name)} is not in the suite's rules: "
                              f"{', '.join(rules)}{closest(name, list(rules))}")
        _once(named, rule, name, f"{where}.space")
        if not isinstance(entry, dict):
            raise ConfigError(f"{s_where}: expected a table with rule = {{...}} and/or optimizer = {{...}}")
        check_keys(entry, SPACE_KEYS, s_where)
        for key in SPACE_KEYS:
            if not isinstance(entry.get(key, {}), dict):
                raise ConfigError(f"{s_where}.{key}: expected a table of parameter distributions")
        spaces[rule] = RuleSpace(
            {k: parse_dist(v, f"{s_where}.rule.{k}") for k, v in entry.get("rule", {}).items()},
            {k: parse_dist(v, f"{s_where}.optimizer.{k}") for k, v in entry.get("optimizer", {}).items()})

    for rule, cell in rules.items():
        space = spaces.setdefault(rule, RuleSpace())
        rule_cls = registry.get_rule(rule)
        uses_opt = cell.optimizer.name != NO_OPTIMIZER
        if space.optimizer and not uses_opt:
            raise ConfigError(f"{where}.space.{rule}.optimizer: rule '{rule}' computes its weights itself and "
                              f"takes no optimizer")
        if not space.optimizer and uses_opt:
            space.optimizer = dict(shared)
        s_where = f"{where}.space.{rule}"
        _check_against(space.rule, rule_cls.Params, cell.rule.params, "rule", rule, f"{s_where}.rule")
        if uses_opt:
            spec = registry.get_optimizer(cell.optimizer.name)
            o_where = f"{s_where}.optimizer" if rule in space_table else f"{where}.optimizer"
            _check_against(space.optimizer, spec.Params, cell.optimizer.params, "optimizer", cell.optimizer.name,
                           o_where, extra=(SCHEDULE,))
            if SCHEDULE in space.optimizer:
                for v in space.optimizer[SCHEDULE].values:
                    if space.optimizer[SCHEDULE].kind != "choice" or v not in SCHEDULES:
                        raise ConfigError(f"{o_where}.schedule: give {{ choice = [...] }} of "
                                          f"{', '.join(SCHEDULES)}, got {v!r}")
        if not space.flat():
            raise ConfigError(f"{where}: rule '{rule}' has no searched parameter: give [search.space.{rule}] or a "
                              f"shared [search.optimizer] space")
        if sampler == "grid":
            size = space.grid_size()
            if size is None:
                raise ConfigError(f"{s_where}: the grid sampler needs every parameter as choice or int (a "
                                  f"continuous range has no grid); use tpe or random")
            if trial_counts[rule] > size:
                raise ConfigError(f"{where}: {trial_counts[rule]} trials for rule '{rule}', but its grid has only "
                                  f"{size} points; lower trials to at most {size}")
    return SearchSpec(objective, threshold, trial_counts, trials, budget, sampler, pruner, float(prune_after), seed,
                      trial_seed, final_seeds, spaces, evaluation, start_from_suite)


def _once(named: dict[str, str], rule: str, name: str, where: str) -> None:
    """Refuse a rule named twice (an alias and its own name): one of the two would silently win."""
    if rule in named:
        raise ConfigError(f"{where}: {shown(named[rule])} and {shown(name)} both name rule '{rule}'; "
                          f"give it once")
    named[rule] = name


def _final_seeds(raw: Any, trial_seed: int, pairs: int, max_cells: int, where: str) -> list[int]:
    """The final stage's seeds: a count (trial_seed + 1, ...) or a list, each at most the largest seed,
    none the trial seed, and the final stage (`pairs` (task, rule) pairs x the seeds) at most `max_cells`."""

    final = checked_seeds(raw, f"{where}.final_seeds")  # a count stays a range until its size is checked
    given = f"final_seeds = {raw:,}" if isinstance(raw, int) else f"final_seeds lists {len(final):,} seeds"
    if len(final) > MAX_FINAL_SEEDS:
        raise ConfigError(f"{where}: {given}: give a count in 1..{MAX_FINAL_SEEDS:,} or a list of at most "
                          f"{MAX_FINAL_SEEDS:,} seeds")
    if pairs * len(final) > max_cells:
        raise ConfigError(f"{where}: {given}: the final stage would run "
                          f"{pairs * len(final):,} cells ({pairs:,} (task, rule) pairs x {len(final):,} seeds), more "
                          f"than the limit of {max_cells:,}; give fewer final_seeds, or raise the limit with "
                          f"`plasticity run --max-cells N`")
    if isinstance(raw, list):
        final_seeds = list(final)
    else:
        last = trial_seed + len(final)
        if last > SEED_MAX:
            raise ConfigError(f"{where}: final_seeds = {raw} counts seeds from trial_seed + 1 = {trial_seed + 1:,} "
                              f"up to {last:,}, past the largest seed {SEED_MAX:,}; give final_seeds "
                              f"at most {SEED_MAX - trial_seed:,}, a lower trial_seed, or a list of seeds")
        final_seeds = [trial_seed + 1 + s for s in final]
    if trial_seed in final_seeds:
        raise ConfigError(f"{where}: final_seeds holds trial_seed {trial_seed}: the final stage runs on fresh seeds")
    return final_seeds


def suite_values(cell: Any, space: RuleSpace) -> dict[str, Any]:
    """The suite's own value of each searched parameter ("rule.x", "optimizer.y", "optimizer.schedule"),
    defaults included, where it lies inside its distribution: the search's first trial."""
    rule_cls = registry.get_rule(cell.rule.name)
    own = {f"rule.{k}": v for k, v in as_dict(make_params(rule_cls.Params, cell.rule.params, "suite")).items()}
    if cell.optimizer.name != "none":
        spec = registry.get_optimizer(cell.optimizer.name)
        own |= {f"optimizer.{k}": v for k, v in as_dict(make_params(spec.Params, cell.optimizer.params,
                                                                      "suite")).items()}
        own[f"optimizer.{SCHEDULE}"] = cell.optimizer.schedule
    return {name: own[name] for name, dist in space.flat().items() if name in own and dist.contains(own[name])}


def apply_params(cell: Any, values: dict[str, Any], where: str = "trial") -> tuple[Any, Any]:
    """The rule and optimizer Components of `cell` with the sampled `values` ("rule.x", "optimizer.y") set.

    Values pass through the component's `Params` so a trial's configuration (and so its cell id)
    is exactly what the same values written in a suite file would give.
    """

    rule_vals = {k[5:]: v for k, v in values.items() if k.startswith("rule.")}
    opt_vals = {k[10:]: v for k, v in values.items() if k.startswith("optimizer.")}
    schedule = opt_vals.pop(SCHEDULE, cell.optimizer.schedule)
    rule_cls = registry.get_rule(cell.rule.name)
    rule = Component(cell.rule.name, as_dict(make_params(rule_cls.Params, {**cell.rule.params, **rule_vals}, where)))
    optimizer = cell.optimizer
    if opt_vals or schedule != cell.optimizer.schedule:
        spec = registry.get_optimizer(cell.optimizer.name)
        optimizer = Component(cell.optimizer.name,
                              as_dict(make_params(spec.Params, {**cell.optimizer.params, **opt_vals}, where)),
                              schedule)
    return rule, optimizer
