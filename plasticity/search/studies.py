"""A search's studies: one per (task, rule) of the suite (`StudyKey`, named by a digest of
everything that decides its trials), its sampler and pruner, and the cell each trial trains."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..cells import Cell
from ..fingerprint import fingerprint
from ..search_space import Dist, SearchSpec, apply_params
from ..suite import Suite
from .storage import load_optuna


@dataclass
class StudyKey:
    """One (task, rule) study: its starting cell, trial count and Optuna name."""
    task: str
    rule: str
    base: Cell
    trials: int
    name: str
    digest: str


def study_keys(suite: Suite) -> list[StudyKey]:
    """The suite's studies, in its order of tasks and rules."""
    spec: SearchSpec = suite.search
    keys, seen = [], set()
    for cell in suite.cells:
        pair = (cell.task.name, cell.rule.name)
        if pair in seen:
            continue
        seen.add(pair)
        trial_cell = _trial_cell(suite.name, spec, cell, cell.rule, cell.optimizer)
        fp = fingerprint(trial_cell)
        decided = {"space": spec.meta()["spaces"].get(cell.rule.name), "objective": spec.objective,
                   "threshold": spec.threshold, "budget": spec.budget, "sampler": spec.sampler,
                   "pruner": spec.pruner, "prune_after": spec.prune_after, "seed": spec.seed,
                   "trial_seed": spec.trial_seed, "trials": spec.trials[cell.rule.name],
                   "start_from_suite": spec.start_from_suite,
                   "config": trial_cell.config() | {"suite": None},
                   "code": {k: v for k, v in fp["parts"].items() if k != "config"}}
        digest = hashlib.sha256(json.dumps(decided, sort_keys=True, default=str).encode()).hexdigest()[:10]
        keys.append(StudyKey(cell.task.name, cell.rule.name, cell, spec.trials[cell.rule.name],
                             f"{suite.name}/{cell.task.name}/{cell.rule.name}/{digest}", digest))
    return keys


def sampler_for(spec: SearchSpec, key: StudyKey, number: int = 0) -> Any:
    """The study's sampler; tpe and random are seeded per trial (seed + trial number), so that processes
    sharing a study draw different configurations and one process's draws do not depend on the others'."""
    optuna = load_optuna()
    seed = (spec.seed + number) % 2**32
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        space = spec.spaces[key.rule].flat()
        return grid_sampler({n: d.grid_points() for n, d in space.items()}, seed=spec.seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, key.trials // 3)))


def _grid_sampler_class() -> type:
    optuna = load_optuna()

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler without its `study.stop()` once the grid is visited: that call is
        only allowed inside `study.optimize`, and here the study's trial budget ends the search."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return GridSampler


def grid_sampler(search_space: dict[str, list[Any]], seed: int) -> Any:  # noqa: N802  (a class, made lazily)
    return _grid_sampler_class()(search_space, seed=seed)


def pruner_for(spec: SearchSpec, key: StudyKey) -> Any:
    optuna = load_optuna()
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, key.trials // 4)))
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def load_study(storage: Any, spec: SearchSpec, key: StudyKey) -> Any:
    return load_optuna().create_study(storage=storage, study_name=key.name, direction=spec.direction,
                                  sampler=sampler_for(spec, key), pruner=pruner_for(spec, key), load_if_exists=True)


def suggest(trial: Any, name: str, dist: Dist) -> Any:
    if dist.kind == "log":
        return trial.suggest_float(name, *dist.values, log=True)
    if dist.kind == "uniform":
        return trial.suggest_float(name, *dist.values)
    if dist.kind == "int":
        return trial.suggest_int(name, *dist.values)
    return trial.suggest_categorical(name, list(dist.values))


def _trial_cell(suite_name: str, spec: SearchSpec, base: Cell, rule: Any, optimizer: Any) -> Cell:
    """`base` with this rule and optimizer, trained with the trial seed, budget and evaluation."""
    return Cell(suite_name, base.task, rule, optimizer, spec.trial_seed, spec.budget,
                {**base.evaluation, **spec.evaluation}, base.dtype)


def trial_cell(suite_name: str, spec: SearchSpec, key: StudyKey, params: dict[str, Any]) -> Cell:
    """The cell a trial trains: the starting cell with `params` set, the trial budget and seed."""
    rule, optimizer = apply_params(key.base, params, f"trial of rule '{key.rule}'")
    cell = _trial_cell(suite_name, spec, key.base, rule, optimizer)
    shown = ", ".join(f"{n.split('.', 1)[1]}={v:.3g}" if isinstance(v, float) else f"{n.split('.', 1)[1]}={v}"
                      for n, v in params.items())
    cell.labels = {"variant": f"{key.rule} trial ({shown})", "rule": key.rule, "optimizer": optimizer.name,
                   "grid": {}}
    return cell
