"""A search's results: `search.json` (the search table, per study its trials, best and
importances) and the final stage (each study's best configuration on the final seeds)."""
from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..cells import Cell, label_cells
from ..search_space import SearchSpec, apply_params
from ..suite import Suite
from ..writer import write_json
from .storage import load_optuna, search_dir
from .studies import StudyKey, load_study, study_keys


def _importances(study: Any) -> dict[str, float] | None:
    """fANOVA importance of each parameter (None below three complete trials or when it cannot be fitted)."""
    optuna = load_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 3:
        return None
    try:
        return dict(optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return None


def export(storage: Any, suite: Suite, keys: list[StudyKey], out: Path, wall_seconds: float | None = None,
           jobs: int = 1) -> dict[str, Any]:
    """Write `<out>/search/search.json`: the search table, and per study its trials, best and importances."""
    studies = []
    for key in keys:
        study = load_study(storage, suite.search, key)
        trials = []
        for t in study.get_trials(deepcopy=False):
            trials.append({
                "number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                "cell_id": t.user_attrs.get("cell_id"), "status": t.user_attrs.get("status"),
                "updates": t.user_attrs.get("updates"), "train_seconds": t.user_attrs.get("train_seconds"),
                "reused": bool(t.user_attrs.get("reused")), "message": t.user_attrs.get("message"),
                "suite_setting": bool(t.user_attrs.get("suite_setting")),
                "host": t.user_attrs.get("host"), "pid": t.user_attrs.get("pid"),
                "started": t.datetime_start.isoformat() if t.datetime_start else None,
                "finished": t.datetime_complete.isoformat() if t.datetime_complete else None,
                "duration": t.duration.total_seconds() if t.duration else None})
        try:
            best = study.best_trial
            best_entry = {"number": best.number, "value": best.value, "params": best.params}
        except ValueError:
            best_entry = None
        studies.append({"task": key.task, "rule": key.rule, "study": key.name, "trials_planned": key.trials,
                        "base": key.base.config(), "best": best_entry, "importance": _importances(study),
                        "trials": trials})
    summary = {"spec": suite.search.meta(), "storage": _redacted(out, key_url(storage)), "studies": studies,
               "last_wall_seconds": wall_seconds, "last_jobs": jobs,
               "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(search_dir(out) / "search.json", summary)
    return summary


def key_url(storage: Any) -> str:
    engine = getattr(storage, "engine", None)
    return str(engine.url) if engine is not None else type(storage).__name__


def _redacted(out: Path, url: str) -> str:
    """The storage as the report shows it: no password."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password:
        url = url.replace(f":{parts.password}@", ":***@")
    return url


def final_suite(suite: Suite, summary: dict[str, Any]) -> Suite:
    """The final stage: each (task, rule)'s best configuration on `final_seeds` with the final budget."""
    spec: SearchSpec = suite.search
    best = {(s["task"], s["rule"]): s["best"] for s in summary["studies"]}
    cells, missing = [], []
    for key in study_keys(suite):
        entry = best.get((key.task, key.rule))
        if not entry:
            missing.append(f"{key.task}/{key.rule}")
            continue
        rule, optimizer = apply_params(key.base, entry["params"], f"best trial of rule '{key.rule}'")
        for seed in spec.final_seeds:
            cells.append(Cell(suite.name, key.base.task, rule, optimizer, seed, key.base.budget,
                              key.base.evaluation, key.base.dtype))
    if missing:
        print(f"plasticity: warning: no trial completed for {', '.join(missing)}: left out of the final stage",
              file=sys.stderr)
    label_cells(cells)
    return replace(suite, cells=cells)
