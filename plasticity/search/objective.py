"""A trial: one ordinary cell trained by the engine, scored on validation data only.

The cell's file is written by the results store like any other (same JSON lines, same
fingerprint, same claim), so its curve reads like any cell's. The pruner hears the objective's
running value at the engine's evaluation points through the writer: `TrialWriter.write` sees
each evaluation line as it is written and raises `Pruned` when the pruner says so; the file is
then finished with status "pruned" (a finished trial file, never read as a complete cell).

Only `val_accuracy` and the update counts of evaluation lines are read here: test accuracy is
in the file, as in every cell, and nothing in the search looks at it.
"""
from __future__ import annotations

import math
import socket
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..cells import Cell
from ..claims import Claim
from ..engine import train_cell
from ..errors import ConfigError, PlasticityError
from ..fingerprint import fingerprint
from ..provenance import machine_load
from ..worker import cell_header, work, write_records
from ..writer import CellWriter
from .storage import load_optuna, open_storage

#: a trial that never reaches the threshold scores this many times its updates (worse than any that does)
UNREACHED_PENALTY = 2.0
PRUNED = "pruned"


class Pruned(Exception):
    """The pruner stopped the trial at an evaluation point."""

    def __init__(self, updates: int) -> None:
        super().__init__(f"pruned at update {updates}")
        self.updates = updates


def objective_value(objective: str, evals: Sequence[dict[str, Any]], threshold: float | None = None) -> float:
    """The objective of a (possibly partial) curve of evaluation lines, from validation data only.

    val_accuracy: the last validation accuracy. val_auc: the area under validation accuracy over
    updates divided by the updates (the curve's mean; the untrained point alone counts as itself).
    updates_to_threshold: the first update count at which validation accuracy reaches
    `threshold`; unreached, `UNREACHED_PENALTY` times the updates run so far.
    """
    if not evals:
        raise ValueError("no evaluation lines")
    acc = [float(e["val_accuracy"] or 0.0) for e in evals]
    ups = [int(e["updates"]) for e in evals]
    if objective == "val_accuracy":
        return acc[-1]
    if objective == "val_auc":
        if ups[-1] == ups[0]:
            return acc[-1]
        area = sum((ups[i] - ups[i - 1]) * (acc[i] + acc[i - 1]) / 2 for i in range(1, len(ups)))
        return area / (ups[-1] - ups[0])
    if objective == "updates_to_threshold":
        assert threshold is not None
        hit = next((u for u, a in zip(ups, acc) if a >= threshold), None)
        return float(hit) if hit is not None else UNREACHED_PENALTY * max(ups[-1], 1)
    raise ValueError(f"unknown objective {objective!r}")


def budget_share(line: dict[str, Any], budget: dict[str, Any]) -> float:
    """How much of `budget` an evaluation line has used (the largest share among its limits)."""
    used = {"updates": line.get("updates"), "epochs": line.get("epoch"), "seconds": line.get("train_seconds")}
    shares = [float(used[k]) / float(v) for k, v in budget.items() if v and used.get(k) is not None]
    return max(shares, default=0.0)


class TrialWriter(CellWriter):
    """A CellWriter that hands every evaluation line, once written, to `on_eval` (which may raise `Pruned`)."""

    def __init__(self, runs_dir: Path, cell_id: str, on_eval: Callable[[list[dict[str, Any]]], None],
                 claim: Claim | None = None) -> None:
        super().__init__(runs_dir, cell_id, claim)
        self.on_eval = on_eval
        self.evals: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        if record.get("type") == "eval":
            self.evals.append(record)
            self.on_eval(self.evals)


def run_trial_cell(cell: Cell, runs_dir: Path, device: torch.device, provenance: dict[str, Any],
                   data_dir: Path | None, on_eval: Callable[[list[dict[str, Any]]], None],
                   fp: dict[str, Any] | None = None, claim: Claim | None = None) -> dict[str, Any]:
    """Train `cell` as `worker.run_cell` does, reporting each evaluation to `on_eval`; return the final
    line. A pruned trial's file is finished with status "pruned"; an exception other than `Pruned`
    (Ctrl-C included) leaves the `.part` file, which never reads as finished, and propagates.
    `fp`: the cell's fingerprint as the driver computed it (else computed here); `claim`: the cell's
    claim when the caller holds it (else the writer claims the cell)."""
    writer = TrialWriter(runs_dir, cell.cell_id, on_eval, claim)
    header = cell_header(cell, fp if fp is not None and "files" in fp else fingerprint(cell), provenance)
    try:
        return write_records(train_cell(cell, device, data_dir), writer, header)
    except Pruned as stop:
        last = writer.evals[-1]
        final = {"status": PRUNED, "message": str(stop), "updates": last["updates"],
                 "examples": last.get("examples", 0), "epochs": last.get("epoch"),
                 "train_seconds": last.get("train_seconds"), "val_accuracy": last["val_accuracy"],
                 "test_accuracy": last["test_accuracy"],
                 "best_val_accuracy": max(e["val_accuracy"] for e in writer.evals),
                 "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_end": machine_load()}
        writer.finish(final)
        return final
    except BaseException:
        writer.close()
        raise


def finite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def pruning_hook(live: Any, objective: str, threshold: float | None, budget: dict[str, Any],
                 prune_after: float) -> Callable[[list[dict[str, Any]]], None]:
    """The `on_eval` of a trial: past `prune_after` of its budget, report the running objective to
    the study (`live`, an Optuna trial) and stop the cell with `Pruned` when the pruner says so."""

    def on_eval(evals: list[dict[str, Any]]) -> None:
        line = evals[-1]
        if line["updates"] == 0 or budget_share(line, budget) < prune_after:
            return
        live.report(objective_value(objective, evals, threshold), step=int(line["updates"]))
        if live.should_prune():
            raise Pruned(int(line["updates"]))

    return on_eval


def trial_reporter(trial: Any) -> Callable[[list[dict[str, Any]]], None]:
    """On a remote worker: the `on_eval` of `trial`, connected to its study through the storage
    (a node that cannot reach it is a PlasticityError naming the storage; nothing to connect to
    when the search has no pruner)."""
    if trial.pruner is None:
        return lambda evals: None
    optuna = load_optuna()
    try:
        storage = open_storage(trial.storage_url)
        study = optuna.load_study(study_name=trial.study_name, storage=storage, pruner=trial.pruner,
                                  sampler=optuna.samplers.RandomSampler())
    except (ConfigError, KeyError) as exc:
        raise PlasticityError(f"node {socket.gethostname()} cannot use the search's storage {trial.storage_url} "
                              f"({' '.join(str(exc).split())[:200]}); its pruner reports from the node: give "
                              f"--storage a database every node reaches (postgresql://..., mysql://..., or "
                              f"journal:PATH on a shared file system)") from None
    live = optuna.trial.Trial(study, trial.trial_id)
    return pruning_hook(live, trial.objective, trial.threshold, trial.budget, trial.prune_after)


def work_trial(cell: Cell, runs_dir: Path, device: torch.device, prov: dict[str, Any], data_dir: Path | None,
               fp: dict[str, Any], trial: Any, bar: Any = None) -> dict[str, Any]:
    """A search trial through the one worker function (claim, check, train, write) in this process,
    reporting each evaluation to the study's pruner through its storage (`trial`: a RemoteTrial).
    An exception other than a PlasticityError (which stops the search) or Ctrl-C is an `error`
    outcome, which the driver tells as FAIL."""
    on_eval = trial_reporter(trial)
    try:
        return work(cell, runs_dir, device, prov, data_dir, fp, bar,
                    lambda folder, claim: run_trial_cell(cell, folder, device, prov, data_dir, on_eval, fp, claim))
    except PlasticityError:
        raise
    except Exception as exc:  # noqa: BLE001  told FAIL by the driver, as a trial that raises in the driver's process
        return {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:500],
                "traceback": traceback.format_exc()}
