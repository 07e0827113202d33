"""Suite files (TOML): parse, validate completely, and expand into cells.

    name = "quick"                      # optional (default: the file's stem)
    description = "..."
    plugins = ["../my_rules"]           # extra plugin folders, relative to this file
    seeds = [0, 1, 2]                   # or a count: seeds = 3
    dtype = "float32"                   # or "float64"
    rules = "all"                       # every registered rule with its defaults, or [[rules]] below

    [budget]                            # replaces the task's default; whichever limit ends first
    epochs = 5                          # also: updates = N, seconds = S

    [evaluation]
    per_decade = 10                     # log-spaced evaluation points per decade of updates (default 10)
    every_epoch = true
    feedback_metrics = 1                # feedback/alignment metrics every k-th evaluation (0: never;
                                        # always at the last); absent: every evaluation
    points = 4                          # instead of per_decade and every_epoch (not with them): exactly 4
                                        # evenly spaced points over an updates or epochs budget (a search
                                        # trial's few), at most one per update of an updates budget

    [[tasks]]
    name = "digits"
    params = { hidden = [64] }          # fixed values
    grid = { init_scale = [0.1, 1.0] }  # each list is a grid axis
    budget = { epochs = 10 }            # optional, per task

    [[rules]]
    name = "bp"
    params = { loss = "ce" }
    grid = { loss = ["ce", "mse"] }
    optimizers = [{ name = "adam", grid = { lr = [1e-3, 1e-4] } }]   # optional, replaces the default

    [[optimizers]]                      # for rules that name none (else each rule's own default)
    name = "sgd"
    params = { lr = 0.05, momentum = 0.9 }
    schedule = "cosine"                 # learning rate over the budget: constant, cosine or linear (to 0)

    [execution]                         # where the cells run: local (default), ray or slurm, with
    executor = "local"                  # their settings; see plasticity/executors (the CLI wins)

    [[published]]                       # a published figure shown beside the measured one
    task = "mnist"
    rule = "bp"
    metric = "test_error"               # or "test_accuracy", in percent
    value = 1.48
    source = "Bartunov et al. 2018, Table 1"
    task_params = { model = "lenet" }   # optional: compare only with cells of these task parameters

    [[claims]]                          # a claim, judged by the report from the runs (plasticity.verdicts)
    claim = "FA is no slower than BP"
    source = "..."
    metric = "updates_to_interp"        # test_accuracy, test_error, val_accuracy, updates_to, ..., grid_share
    threshold = 95
    kind = "ratio"                      # threshold, ratio, difference or ordering
    subject = { rule = "fa" }
    baseline = { rule = "bp" }
    at_most = 1.0

Every name, key, type and grid point is checked before any cell runs; an error names the file,
the key and the known choices (or the valid range). Numbers are finite and in range (NaN is
refused anywhere in the file), names hold no control characters, and a suite that would expand
to more than `MAX_CELLS` cells is refused, with its count, before any cell is built.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .catalog import find_suite
from .cells import (
    BUDGET_KEYS,
    MAX_CELLS,
    NO_OPTIMIZER,
    SCHEDULES,
    Cell,
    Component,
    checked_budget,
    checked_seeds,
    label_cells,
)
from .checks import check_keys
from .claim_spec import parse_claims
from .errors import ConfigError, closest, not_a_folder
from .execution import Execution, parse_execution
from .params import (
    as_dict,
    check_plain,
    check_text,
    make_params,
    shown,
)
from .points import DEFAULT_EVALUATION, check_points, checked_evaluation

DTYPES = ("float32", "float64")
TOP_KEYS = {"name", "description", "plugins", "seeds", "dtype", "budget", "evaluation", "tasks",
            "rules", "optimizers", "published", "claims", "search", "execution"}
#: a suite file is a page of text; anything bigger is a mistake (or hostile)
MAX_SUITE_BYTES = 1 << 20
COMPONENT_KEYS = {"name", "params", "grid"}
PUBLISHED_KEYS = {"task", "rule", "metric", "value", "source", "note", "task_params"}


@dataclass
class Suite:
    name: str
    path: Path | None
    description: str
    text: str
    plugins: list[Path]
    cells: list[Cell]
    published: list[dict[str, Any]]
    #: validated [[claims]] (plasticity.verdicts); the report computes each verdict from the runs
    claims: list[dict[str, Any]] = field(default_factory=list)
    #: the validated [search] table (plasticity.search_space.SearchSpec), None without one
    search: Any = None
    #: where the cells run ([execution]); never part of a cell's identity
    execution: Execution = field(default_factory=Execution)

    def meta(self) -> dict[str, Any]:
        meta = {"name": self.name, "description": self.description, "source": str(self.path or ""),
                "toml": self.text, "published": self.published, "claims": self.claims}
        if self.search is not None:
            meta["search"] = self.search.meta()
        return meta


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a suite: `./suites/NAME.toml`, else the built-in
    one (see `plasticity.catalog`)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    return find_suite(str(name_or_path))


def load_suite(name_or_path: str | Path, extra_plugins: list[Path] | None = None,
               max_cells: int = MAX_CELLS) -> Suite:
    """Read, validate and expand a suite file; load the plugins it needs first."""
    path = resolve_suite_path(name_or_path)
    return parse_suite(_read_suite_text(path), path, extra_plugins, max_cells)


def _read_suite_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_SUITE_BYTES, in UTF-8."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"suite file {path}: not a regular file")
        if info.st_size > MAX_SUITE_BYTES:
            raise ConfigError(f"suite file {path}: {info.st_size:,} bytes; a suite file may hold at most "
                              f"{MAX_SUITE_BYTES:,}")
        with open(path, "rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"suite file {path}: cannot be read ({exc})") from None
    if len(raw) > MAX_SUITE_BYTES:  # grew since the stat
        raise ConfigError(f"suite file {path}: more than {MAX_SUITE_BYTES:,} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"suite file {path}: not UTF-8 text ({exc})") from None


def parse_suite(text: str, path: Path | None = None, extra_plugins: list[Path] | None = None,
                max_cells: int = MAX_CELLS) -> Suite:
    """Validate and expand suite TOML `text` (`path` names it in errors and anchors `plugins`).

    A suite that would expand to more than `max_cells` cells is refused before any is built.
    """
    where = f"suite file {path}" if path else "suite"
    if len(text) > MAX_SUITE_BYTES:
        raise ConfigError(f"{where}: {len(text):,} characters; a suite file may hold at most {MAX_SUITE_BYTES:,}")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: values nested too deeply to read") from None
    check_keys(doc, TOP_KEYS, where)

    base = path.parent if path else Path.cwd()
    plugin_dirs = []
    for i, p in enumerate(_typed(doc, "plugins", list, where, [])):
        if not isinstance(p, str) or not p:
            raise ConfigError(f"{where}: plugins[{i}]: expected a folder path (a string), got {p!r}")
        plugin_dirs.append((base / check_text(p, f"{where}: plugins[{i}]", name=True)).resolve())
    plugin_dirs += list(extra_plugins or [])
    for d in plugin_dirs:
        check_text(str(d), f"{where}: plugins", name=False)
        if not d.is_dir():
            raise ConfigError(f"{where}: plugins: folder {d} {not_a_folder(d) or 'does not exist'}")
    registry.load_plugins(plugin_dirs)

    name = _typed(doc, "name", str, where, path.stem if path else "suite")
    check_text(name, f"{where}: name")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"{where}: name must be a plain folder name, got {shown(name)}")
    description = _typed(doc, "description", str, where, "")
    seeds = checked_seeds(doc.get("seeds", [0]), where)
    dtype = _typed(doc, "dtype", str, where, "float32")
    if dtype not in DTYPES:
        raise ConfigError(f"{where}: dtype: {shown(dtype)} is not one of {', '.join(DTYPES)}"
                          f"{closest(dtype, DTYPES)}")
    budget = checked_budget(doc.get("budget", {}), f"{where}: [budget]")
    evaluation = dict(DEFAULT_EVALUATION)
    evaluation.update(checked_evaluation(doc.get("evaluation", {}), f"{where}: [evaluation]"))

    task_entries = _entries(doc, "tasks", where)
    if not task_entries:
        raise ConfigError(f"{where}: no [[tasks]]: name at least one of: {', '.join(registry.names('task'))}")
    rules_value = doc.get("rules")
    if rules_value == "all":
        rule_entries = [{"name": n} for n in registry.names("rule")]
    else:
        if isinstance(rules_value, str):
            raise ConfigError(f"{where}: rules must be \"all\" or a list of [[rules]] tables, got {rules_value!r}")
        rule_entries = _entries(doc, "rules", where)
    if not rule_entries:
        raise ConfigError(f"{where}: no [[rules]]: name at least one of: {', '.join(registry.names('rule'))}")
    default_optimizers = _entries(doc, "optimizers", where)

    # Names, keys and grid shapes first; then the count, from the grid sizes alone, so that a
    # suite of a million cells is refused at once instead of expanding for minutes.
    tasks = []
    for ti, t in enumerate(task_entries):
        t_where = f"{where}: tasks[{ti}]"
        check_keys(t, COMPONENT_KEYS | {"budget"}, t_where)
        task_cls = registry.get_task(_name(t, t_where), t_where)
        # The most specific budget given replaces the others whole (a task entry's, else the
        # suite's, else the task's default): merging key by key would let a default `epochs`
        # silently cut short a suite that asked for `updates`.
        task_budget = (checked_budget(t.get("budget", {}), f"{t_where}.budget") or budget
                       or checked_budget({k: v for k, v in dict(task_cls.budget).items() if v is not None},
                                  f"{t_where}: default budget of task '{task_cls.name}'"))
        task_budget = {k: task_budget.get(k) for k in BUDGET_KEYS}
        if all(v is None for v in task_budget.values()):
            raise ConfigError(f"{t_where}: no budget: set updates, epochs or seconds")
        check_points(evaluation, task_budget, t_where)
        tasks.append((t, t_where, task_cls, task_budget, _grid_size(t, t_where)))
    rules = []
    for ri, r in enumerate(rule_entries):
        r_where = f"{where}: rules[{ri}]"
        check_keys(r, COMPONENT_KEYS | {"optimizers"}, r_where)
        rule_cls = registry.get_rule(_name(r, r_where), r_where)
        opt_entries, o_src = _optimizer_entries(r, rule_cls, default_optimizers, r_where)
        n_opt = sum(_grid_size(o, f"{o_src}[{oi}]") for oi, o in enumerate(opt_entries)) if opt_entries else 1
        rules.append((r, r_where, rule_cls, opt_entries, o_src, _grid_size(r, r_where) * n_opt))
    n_tasks, n_rules = sum(t[-1] for t in tasks), sum(r[-1] for r in rules)
    total = n_tasks * n_rules * len(seeds)
    if total > max_cells:
        raise ConfigError(f"{where}: the suite expands to {total:,} cells ({n_tasks:,} task settings x "
                          f"{n_rules:,} rule and optimizer settings x {len(seeds):,} seeds), more than the "
                          f"limit of {max_cells:,}; shrink its grids or seeds, or raise the limit with "
                          f"`plasticity run --max-cells N`")

    rule_points = [(rule_cls, rule, _optimizers(rule_cls, opt_entries, o_src))
                   for r, r_where, rule_cls, opt_entries, o_src, _ in rules
                   for rule in _expand(r, rule_cls.Params, "rule", r_where)]
    cells: list[Cell] = []
    for t, t_where, task_cls, task_budget, _ in tasks:
        for task in _expand(t, task_cls.Params, "task", t_where):
            for _rule_cls, rule, opts in rule_points:
                for opt in opts:
                    for seed in seeds:
                        cells.append(Cell(name, task, rule, opt, seed, task_budget, evaluation, dtype))
    _refuse_duplicates(cells, where)
    label_cells(cells)
    published = [_published(p, cells, f"{where}: published[{i}]")
                 for i, p in enumerate(_entries(doc, "published", where))]
    claims = parse_claims(_entries(doc, "claims", where), cells, where)
    execution = parse_execution(doc.get("execution", {}), where)
    # The safety net behind the checks above, which name each value's valid range: NaN, ints beyond
    # 64 bits, control characters and deep nesting are refused wherever else they hide in the file.
    check_plain(doc, where)
    search = _search(doc, cells, where, max_cells) if "search" in doc else None
    return Suite(name, path, description, text, plugin_dirs, cells, published, claims=claims, search=search,
                 execution=execution)


def _search(doc: dict, cells: list[Cell], where: str, max_cells: int = MAX_CELLS) -> Any:
    """The validated [search] table: each (task, rule) of the suite has one setting, the search's start."""
    from .search_space import parse_search

    if "seeds" in doc:
        raise ConfigError(f"{where}: a suite with [search] takes its seeds from [search]: trial_seed for the "
                          f"trials and final_seeds for the final stage; remove the top-level seeds")
    base: dict[tuple[str, str], Cell] = {}
    for c in cells:
        first = base.setdefault((c.task.name, c.rule.name), c)
        if first is not c and (first.task, first.rule, first.optimizer, first.budget) != (c.task, c.rule, c.optimizer,
                                                                                       c.budget):
            raise ConfigError(f"{where}: task '{c.task.name}' with rule '{c.rule.name}' has several settings (a grid, "
                              f"several optimizers or several entries); a searched suite gives each (task, rule) "
                              f"one starting setting and searches the rest in [search]")
    return parse_search(doc["search"], where, base, max_cells)


def _optimizer_entries(rule_entry: dict, rule_cls: type, defaults: list[dict],
                       where: str) -> tuple[list[dict], str]:
    """The optimizer entries a rule runs with (none for closed-form rules) and where they came from."""
    if not rule_cls.uses_optimizer:
        if "optimizers" in rule_entry:
            raise ConfigError(f"{where}: rule '{rule_cls.name}' computes its weights itself and takes no optimizer")
        return [], where
    if "optimizers" in rule_entry:
        entries = rule_entry["optimizers"]
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{where}.optimizers: expected a non-empty list of tables like "
                              f"{{ name = \"sgd\", params = {{ lr = 0.1 }} }}")
        src = f"{where}.optimizers"
    elif defaults:
        entries, src = defaults, where.rsplit(":", 1)[0] + ": optimizers"
    else:
        name, params = rule_cls.default_optimizer
        entries, src = [{"name": name, "params": dict(params)}], f"{where} (default optimizer of '{rule_cls.name}')"
    for oi, o in enumerate(entries):
        o_where = f"{src}[{oi}]"
        check_keys(o, COMPONENT_KEYS | {"schedule"}, o_where)
        registry.get_optimizer(_name(o, o_where), o_where)
        schedule = o.get("schedule", "constant")
        if schedule not in SCHEDULES:
            shown_schedule = shown(schedule) if isinstance(schedule, str) else repr(schedule)
            raise ConfigError(f"{o_where}: schedule {shown_schedule} is not one of {', '.join(SCHEDULES)}"
                              f"{closest(str(schedule), SCHEDULES)}")
    return entries, src


def _optimizers(rule_cls: type, entries: list[dict], src: str) -> list[Component]:
    """Every optimizer setting of a rule (entries checked by `_optimizer_entries`)."""
    if not rule_cls.uses_optimizer:
        return [Component(NO_OPTIMIZER, {})]
    out = []
    for oi, o in enumerate(entries):
        o_where = f"{src}[{oi}]"
        spec = registry.get_optimizer(o["name"], o_where)
        schedule = o.get("schedule", "constant")
        out += [Component(c.name, c.params, schedule) for c in _expand(o, spec.Params, "optimizer", o_where)]
    return out


def _grid_size(entry: dict, where: str) -> int:
    """The number of grid points of one [[tasks]]/[[rules]]/optimizer entry (its grid checked, not expanded)."""
    fixed = entry.get("params", {})
    grid = entry.get("grid", {})
    for key, val in (("params", fixed), ("grid", grid)):
        if not isinstance(val, dict):
            raise ConfigError(f"{where}.{key}: expected a table of parameter values, got {type(val).__name__}")
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(f"{where}.grid.{key}: a grid axis must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"{where}.grid.{key}: empty grid: give at least one value")
        if key in fixed:
            raise ConfigError(f"{where}: '{key}' is both in params and in grid; keep one")
    return math.prod(len(v) for v in grid.values())


def _refuse_duplicates(cells: list[Cell], where: str) -> None:
    """Two cells with the same configuration would share one results file and count twice."""
    seen: dict[str, Cell] = {}
    for c in cells:
        cfg = c.config()
        cfg.pop("suite")
        key = json.dumps(cfg, sort_keys=True)
        if key in seen:
            raise ConfigError(f"{where}: two entries give the same cell (task '{c.task.name}' {c.task.params}, "
                              f"rule '{c.rule.name}' {c.rule.params}, optimizer '{c.optimizer.name}' "
                              f"{c.optimizer.params}, seed {c.seed}); a grid value or entry is repeated "
                              f"(1 and 1.0 are the same value); remove the repeat")
        seen[key] = c


def _expand(entry: dict, params_cls: type, kind: str, where: str) -> list[Component]:
    """Every grid point of one [[tasks]]/[[rules]]/optimizer entry, each validated."""
    _grid_size(entry, where)
    name = registry.canonical(kind, entry["name"])  # an old name resolves to the current one
    fixed = entry.get("params", {})
    grid = entry.get("grid", {})
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = {**fixed, **dict(zip(keys, combo))}
        params = make_params(params_cls, values, f"{where} ({kind} '{name}')")
        out.append(Component(name, as_dict(params)))
    return out


def _name(entry: dict, where: str) -> str:
    name = entry.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: missing 'name' (a string)")
    return check_text(name, f"{where}: name")


def _entries(doc: dict, key: str, where: str) -> list[dict]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: '{key}' must be an array of tables ([[{key}]])")
    return value


def _typed(doc: dict, key: str, tp: type, where: str, default: Any) -> Any:
    value = doc.get(key, default)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: '{key}' must be a {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def _published(entry: dict, cells: list[Cell], where: str) -> dict[str, Any]:
    """A published figure, checked against the suite's `cells`: its task and rule are run here and
    its `task_params` select some of them (otherwise the report could only say "not measured")."""
    check_keys(entry, PUBLISHED_KEYS, where)
    for key in ("task", "rule", "metric", "source"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ConfigError(f"{where}: '{key}' (a non-empty string) is required")
    for key in ("task", "rule", "metric"):
        check_text(entry[key], f"{where}: {key}")
    if not isinstance(entry.get("note", ""), str):
        raise ConfigError(f"{where}: 'note' must be a string, got {type(entry['note']).__name__}")
    if entry["metric"] not in ("test_error", "test_accuracy"):
        raise ConfigError(f"{where}: metric must be 'test_error' or 'test_accuracy', got {entry['metric']!r}")
    value = entry.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 100:
        raise ConfigError(f"{where}: value must be a percentage between 0 and 100, got {value!r}")
    task_params = entry.get("task_params", {})
    if not isinstance(task_params, dict) or not all(
            isinstance(v, (str, int, float, bool)) for v in task_params.values()):
        raise ConfigError(f"{where}: task_params must be a table of single values (the task parameters a "
                          f"measured cell must have), got {task_params!r}")
    for key in task_params:
        check_text(key, f"{where}: task_params")
    task, rule = registry.canonical("task", entry["task"]), registry.canonical("rule", entry["rule"])
    tasks = sorted({c.task.name for c in cells})
    if task not in tasks:
        raise ConfigError(f"{where}: task {shown(task)} is not in the suite{closest(task, tasks)}; "
                          f"its tasks: {', '.join(tasks)}")
    pool = [c for c in cells if c.task.name == task]
    rules = sorted({c.rule.name for c in pool})
    if rule not in rules:
        raise ConfigError(f"{where}: rule {shown(rule)} is not run on task '{task}' in this suite"
                          f"{closest(rule, rules)}; its rules there: {', '.join(rules)}")
    pool = [c for c in pool if c.rule.name == rule]
    known = sorted({k for c in pool for k in c.task.params})
    for key in task_params:
        if key not in known:
            raise ConfigError(f"{where}: task_params: unknown parameter {shown(str(key))}{closest(str(key), known)}; "
                              f"task '{task}' has: {', '.join(known)}")
    if not any(all(c.task.params.get(k) == v for k, v in task_params.items()) for c in pool):
        raise ConfigError(f"{where}: no cell of rule '{rule}' on task '{task}' has task_params {task_params}: "
                          f"the figure could never be set beside a measured one")
    return {"note": "", **entry, "value": float(value), "task": task, "rule": rule}
