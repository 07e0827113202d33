"""Cells, budgets and seeds (spec layer: no torch): what one run is, and the checks of the values
that make one, shared by the suite parser and the search space.

A cell is task x rule x optimizer x seed with its budget, evaluation schedule and dtype; its id
is a stable hash of all of that (not of the suite's name or the device).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .checks import checked_table
from .errors import ConfigError

NO_OPTIMIZER = "none"
BUDGET_KEYS = {"updates": int, "epochs": (int, float), "seconds": (int, float)}
#: the valid range of each budget limit (exclusive low end: a limit is positive)
BUDGET_MAX = {"updates": 10**12, "epochs": 10**6, "seconds": 10**8}
#: more updates than any epoch has (batch size 1 on 10^8 examples): an epochs budget below one update of it is refused
MAX_EPOCH_UPDATES = 10**8
SEED_MAX = 2**32 - 1
SCHEDULES = ("constant", "cosine", "linear")
#: suites expanding to more cells are refused before expansion (`plasticity run --max-cells N` raises it)
MAX_CELLS = 10_000


@dataclass(frozen=True)
class Component:
    """A resolved rule, task or optimizer choice: its name and its full parameter values."""
    name: str
    params: dict[str, Any]
    #: optimizers only: learning-rate schedule over the budget's updates
    schedule: str | None = None


@dataclass
class Cell:
    """One run: task × rule × optimizer × seed, with budget and evaluation schedule."""
    suite: str
    task: Component
    rule: Component
    optimizer: Component
    seed: int
    budget: dict[str, Any]
    evaluation: dict[str, Any]
    dtype: str
    labels: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "task": {"name": self.task.name, "params": self.task.params},
            "rule": {"name": self.rule.name, "params": self.rule.params},
            "optimizer": {"name": self.optimizer.name, "params": self.optimizer.params,
                          "schedule": self.optimizer.schedule},
            "seed": self.seed, "budget": self.budget, "evaluation": self.evaluation, "dtype": self.dtype,
        }

    @property
    def cell_id(self) -> str:
        """Stable hash of everything that determines the result (not the suite's name or device)."""
        cfg = self.config()
        cfg.pop("suite")
        digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        return f"{_slug(self.task.name)}-{_slug(self.rule.name)}-{_slug(self.optimizer.name)}-s{self.seed}-{digest}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in name)[:40]


def checked_budget(table: Any, where: str) -> dict[str, Any]:
    """A [budget] table: each limit a finite positive number up to BUDGET_MAX (updates a whole number)."""
    out = checked_table(table, BUDGET_KEYS, where)
    for key, value in out.items():
        # NaN fails every comparison, so `not 0 < nan` refuses it; ints are compared exactly, never overflow
        if not (0 < value <= BUDGET_MAX[key]):
            kind = "a whole number" if key == "updates" else "a finite number"
            raise ConfigError(f"{where}: '{key}' must be {kind} in the range 0 < {key} <= {BUDGET_MAX[key]:,}, "
                              f"got {value}")
        # The engine rounds an epochs budget up to whole updates: one this small would silently run one.
        if key == "epochs" and value * MAX_EPOCH_UPDATES < 1:
            raise ConfigError(f"{where}: 'epochs' = {value:g} is under one update even of an epoch of "
                              f"{MAX_EPOCH_UPDATES:,} updates, so every cell would run one update: give "
                              f"epochs >= {1 / MAX_EPOCH_UPDATES:g}, or updates = 1 for a single update")
    return out


def checked_seeds(value: Any, where: str) -> range | list[int]:
    """The seeds: a count n (0..n-1, kept lazy until the suite's size is checked) or a list."""
    rule = f"each seed a whole number in 0..{SEED_MAX}"
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= SEED_MAX + 1:
            raise ConfigError(f"{where}: seeds = {value}: give a count in 1..{SEED_MAX + 1:,} or a list of seeds")
        return range(value)
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        bad = [s for s in value if not 0 <= s <= SEED_MAX]
        if bad:
            raise ConfigError(f"{where}: seeds: {bad[0]} is out of range; {rule}")
        if len(set(value)) != len(value):
            seen: set[int] = set()
            repeated = next(s for s in value if s in seen or seen.add(s))
            raise ConfigError(f"{where}: seeds: {repeated} is listed twice; each seed once")
        return value
    raise ConfigError(f"{where}: seeds must be a count or a non-empty list of distinct integers ({rule}), "
                      f"got {value!r}")


def _varying(cells: list[Cell], part: str) -> list[str]:
    """Keys of `part` ('task', 'rule', 'optimizer') whose values differ among `cells`."""
    keys = sorted({k for c in cells for k in getattr(c, part).params})
    return [f"{part}.{k}" for k in keys
            if len({json.dumps(getattr(c, part).params.get(k), sort_keys=True) for c in cells}) > 1]


def label_cells(cells: list[Cell]) -> None:
    """Give each cell a display name and the grid coordinates that vary within its task and rule
    (optimizer parameters: within cells of the same optimizer)."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.task.name, c.rule.name), []).append(c)
    for group in groups.values():
        shared = _varying(group, "task") + _varying(group, "rule")
        budget_varies = len({json.dumps(c.budget, sort_keys=True) for c in group}) > 1
        by_optimizer: dict[str, list[Cell]] = {}
        for c in group:
            by_optimizer.setdefault(c.optimizer.name, []).append(c)
        for sub in by_optimizer.values():
            varying = shared + _varying(sub, "optimizer")
            for c in sub:
                grid = {k: getattr(c, k.split(".")[0]).params.get(k.split(".", 1)[1]) for k in varying}
                variant = _variant(c, varying)
                if budget_varies:  # two [[tasks]] entries of one task with their own budgets
                    variant += " [budget " + ", ".join(f"{k}={_fmt(v)}" for k, v in c.budget.items()
                                                       if v is not None) + "]"
                c.labels = {"variant": variant, "rule": c.rule.name,
                            "optimizer": c.optimizer.name, "grid": grid}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "x".join(_fmt(x) for x in v)
    return str(v)


def _variant(c: Cell, varying: list[str]) -> str:
    """'rule(k=v) + optimizer(k=v) [task k=v]' with only the grid coordinates shown."""
    def part(kind: str) -> str:
        items = [f"{k.split('.', 1)[1]}={_fmt(getattr(c, kind).params.get(k.split('.', 1)[1]))}"
                 for k in varying if k.startswith(kind + ".")]
        return ", ".join(items)
    text = c.rule.name + (f"({part('rule')})" if part("rule") else "")
    if c.optimizer.name != NO_OPTIMIZER:
        text += f" + {c.optimizer.name}" + (f"({part('optimizer')})" if part("optimizer") else "")
        if c.optimizer.schedule not in (None, "constant"):
            text += f" {c.optimizer.schedule}"
    return text + (f" [{part('task')}]" if part("task") else "")


