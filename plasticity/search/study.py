"""Run a suite's `[search]`: one Optuna study per (task, rule), trials as cells, resumable and parallel.

Storage: an SQLite file `<out>/search/study.db` by default (a real database, nothing to start);
`--storage URL` for a shared one: any SQLAlchemy URL Optuna's RDBStorage takes (postgresql://,
mysql://, sqlite:///path) or `journal:PATH`, Optuna's journal file for a shared file system.
The storage is opened (and so checked) before any trial runs.

Each study's name carries a digest of everything that decides its trials (the search table for
the rule, the starting cell's configuration, the code and versions of its fingerprint): a changed
search, rule or engine starts a fresh study, as a changed cell reruns; an unchanged one resumes.

Trial budget and concurrency. A process asks for a trial under the search's ask lock
(`<out>/search/ask.lock`, a claim of claims.py): it counts the study's trials that are complete,
pruned or running, asks only while that count is below the study's trials, samples the
parameters, and takes the trial's own claim (`trial-<digest>-<number>.lock`) before it lets the
lock go. So processes sharing the storage and the reports folder (several commands, each asking
for the trials it runs in its own process or on its workers) never exceed the budget and never
run one trial twice.

Crashes. A trial's process holds its trial claim until it has told the study the outcome; the
kernel drops the claim when the process dies, even by SIGKILL. Optuna leaves such a trial
RUNNING forever, so under the ask lock a process sweeps the RUNNING trials of its own host: one
whose claim it can take is dead, and is closed as COMPLETE from its cell's finished file when
the cell finished (killed between the file's final line and the study's tell), else as FAIL.
A FAIL does not count against the budget: another trial takes its place. This was chosen over
Optuna's heartbeat (RetryFailedTrialCallback) because a lock says at once and exactly whether
a holder lives, where a heartbeat needs a grace period and a thread per trial and is not offered
by every storage. RUNNING trials of other hosts (a shared database without a shared reports
folder) are left to their host's next run.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..cells import Cell
from ..claims import CellHeld, Claim, claim_cell, describe_holder
from ..errors import PlasticityError
from ..execution import Execution
from ..fingerprint import fingerprint
from ..pool import signals_as_interrupt
from ..provenance import provenance
from ..results import FINISHED, finished_cell
from ..search_space import SearchSpec, suite_values
from ..suite import Suite
from ..worker import HELD, work
from .export import export
from .objective import PRUNED, objective_value, pruning_hook, run_trial_cell
from .storage import default_storage, load_optuna, open_storage, search_dir
from .studies import StudyKey, load_study, pruner_for, sampler_for, study_keys, suggest, trial_cell

ASK_LOCK = "ask"
ASK_POLL_SECONDS = 0.05
FAIL_LIMIT_MIN = 5  # a study stops after max(this, trials) failed trials: a bug, not bad luck
POLL_SECONDS = 2.0


@contextlib.contextmanager
def _ask_lock(folder: Path) -> Iterator[None]:
    """The search-wide lock around counting, asking and claiming (waits for it)."""
    while True:
        try:
            claim = claim_cell(folder, ASK_LOCK)
            break
        except CellHeld:
            time.sleep(ASK_POLL_SECONDS)
    try:
        yield
    finally:
        claim.release()


def _trial_lock(key: StudyKey, number: int) -> str:
    return f"trial-{key.digest}-{number}"


def _finished_value(runs_dir: Path, cell: Cell | None, spec: SearchSpec,
                    fp: dict[str, Any] | None = None) -> tuple[float, dict] | None:
    """The objective of a trial cell's file when it is finished with the cell's fingerprint (`fp`,
    computed here when not given): the one check of the results store (`finished_cell`)."""
    if cell is None:
        return None
    rec = finished_cell(runs_dir, cell.cell_id, (fp or fingerprint(cell))["hash"])
    if rec is None:
        return None  # none, damaged, pruned or stale (ran with other code): run again
    return objective_value(spec.objective, rec.evals, spec.threshold), rec.final or {}


def sweep_dead_trials(study: Any, key: StudyKey, ctx: Context) -> int:
    """Close this host's RUNNING trials whose process is gone (call under the ask lock); return how many."""
    optuna = load_optuna()
    host = socket.gethostname()
    folder, runs_dir, spec = ctx.folder, ctx.runs_dir, ctx.suite.search
    closed = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("host", host) != host or t.user_attrs.get("pid") == os.getpid():
            continue  # another host's (its locks are not visible here), or this process's own
        try:
            claim = claim_cell(folder, _trial_lock(key, t.number))
        except CellHeld:
            continue  # alive
        try:
            if study._storage.get_trial(t._trial_id).state != optuna.trial.TrialState.RUNNING:
                continue  # its process told the study and let the claim go since the list was read: not dead
            try:
                cell = trial_cell(ctx.suite.name, spec, key, dict(t.params)) if t.user_attrs.get("cell_id") else None
            except PlasticityError:
                cell = None
            done = _finished_value(runs_dir, cell, spec)
            storage, tid = study._storage, t._trial_id
            if done is not None:
                value, final = done
                for k, v in _final_attrs(final).items():
                    storage.set_trial_user_attr(tid, k, v)
                storage.set_trial_user_attr(tid, "recovered", True)
                study.tell(t.number, value, skip_if_finished=True)
            else:
                storage.set_trial_user_attr(tid, "message", "cut short (its process ended without a result)")
                study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            closed += 1
        finally:
            claim.release()
    return closed


def _final_attrs(final: dict[str, Any]) -> dict[str, Any]:
    return {"status": final.get("status"), "updates": final.get("updates"),
            "train_seconds": final.get("train_seconds"), "wall_seconds": final.get("wall_seconds")}


@dataclass
class Context:
    suite: Suite
    out: Path
    storage_url: str
    device: torch.device
    data_dir: Path | None
    prov: dict[str, Any]

    @property
    def folder(self) -> Path:
        return search_dir(self.out)

    @property
    def runs_dir(self) -> Path:
        return self.folder / "runs"


def _next_trial(study: Any, key: StudyKey, ctx: Context) -> tuple[Any, Claim] | None:
    """Under the ask lock: sweep, count, ask and sample, claim; None when the study's budget is spent."""
    optuna = load_optuna()
    states = optuna.trial.TrialState
    spec: SearchSpec = ctx.suite.search
    with _ask_lock(ctx.folder):
        sweep_dead_trials(study, key, ctx)
        trials = study.get_trials(deepcopy=False)
        live = sum(t.state in (states.COMPLETE, states.PRUNED, states.RUNNING) for t in trials)
        failed = sum(t.state == states.FAIL for t in trials)
        if live >= key.trials:
            return None
        if failed >= max(FAIL_LIMIT_MIN, key.trials):
            raise PlasticityError(f"search {key.name}: {failed} trials failed; see the .part and error files in "
                                  f"{ctx.runs_dir} and the trials' messages in the study")
        if spec.start_from_suite and spec.sampler != "grid" and not _suite_setting_done(trials):
            # the hand-set configuration competes: the search cannot end below it on its own objective.
            # So it is asked again after it failed (data missing, cut short, ...) until it has a result.
            own = suite_values(key.base, spec.spaces[key.rule])
            if own:
                study.enqueue_trial(own, user_attrs={"suite_setting": True})
        trial = study.ask()
        if spec.sampler != "grid":  # the grid sampler picks its point in ask(), among the unvisited ones
            study.sampler = sampler_for(spec, key, trial.number)
        for name, dist in spec.spaces[key.rule].flat().items():
            suggest(trial, name, dist)
        claim = claim_cell(ctx.folder, _trial_lock(key, trial.number))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        return trial, claim


def _suite_setting_done(trials: list[Any]) -> bool:
    """Whether a study's trial of the suite's own setting has a result (complete or pruned), runs, or
    waits to be asked (enqueued by a process that died before its ask)."""
    states = load_optuna().trial.TrialState
    return any(t.user_attrs.get("suite_setting") and t.state != states.FAIL for t in trials)


def _prepare_trial(study: Any, trial: Any, key: StudyKey, ctx: Context) -> tuple[Cell, dict[str, Any]] | str:
    """The cell `trial` trains with its fingerprint (computed once, here), or the state it was told
    at once: "fail" for a combination the rule refuses, "complete" when the same configuration
    finished before (no new compute)."""
    states = load_optuna().trial.TrialState
    spec: SearchSpec = ctx.suite.search
    try:
        cell = trial_cell(ctx.suite.name, spec, key, dict(trial.params))
    except PlasticityError as exc:  # a sampled combination the rule refuses (e.g. nesterov without momentum)
        trial.set_user_attr("message", str(exc))
        study.tell(trial, state=states.FAIL)
        return "fail"
    trial.set_user_attr("cell_id", cell.cell_id)
    fp = fingerprint(cell)
    done = _finished_value(ctx.runs_dir, cell, spec, fp)
    if done is not None:
        value, final = done
        for k, v in _final_attrs(final).items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("reused", True)
        study.tell(trial, value)
        return "complete"
    return cell, fp


def _tell_final(study: Any, trial: Any, final: dict[str, Any], value: float | None) -> str:
    """Tell the study how a trial's cell ended: pruned, complete with `value`, or failed."""
    states = load_optuna().trial.TrialState
    for k, v in _final_attrs(final).items():
        trial.set_user_attr(k, v)
    if final["status"] == PRUNED:
        study.tell(trial, state=states.PRUNED)
        return "pruned"
    if value is None:
        trial.set_user_attr("message", str(final.get("message") or final.get("status"))[:500])
        study.tell(trial, state=states.FAIL)
        return "fail"
    study.tell(trial, value)
    return "complete"


def _run_trial(study: Any, trial: Any, key: StudyKey, ctx: Context) -> str:
    """Train one trial's cell here (or read it when already finished) and tell the study; return the state."""
    states = load_optuna().trial.TrialState
    spec: SearchSpec = ctx.suite.search
    prepared = _prepare_trial(study, trial, key, ctx)
    if isinstance(prepared, str):
        return prepared
    cell, fp = prepared
    seen: list[list[dict[str, Any]]] = []
    hook = pruning_hook(trial, spec.objective, spec.threshold, spec.budget, spec.prune_after)

    def record(evals: list[dict[str, Any]]) -> None:
        if not seen:
            seen.append(evals)
        hook(evals)

    try:  # the one worker function: claim, check, train and write under that claim
        final = work(cell, ctx.runs_dir, ctx.device, ctx.prov, ctx.data_dir, fp, None,
                     lambda folder, claim: run_trial_cell(cell, folder, ctx.device, ctx.prov, ctx.data_dir, record,
                                                          fp, claim))
    except BaseException as exc:
        # Ctrl-C, SIGTERM or an error: the trial is cut short, told FAIL; its .part file stays unfinished
        with contextlib.suppress(Exception):
            trial.set_user_attr("message", f"{type(exc).__name__}: {exc}"[:500])
            study.tell(trial, state=states.FAIL)
        if isinstance(exc, Exception) and not isinstance(exc, PlasticityError):
            return "fail"
        raise
    if final["status"] == HELD:
        trial.set_user_attr("message", f"cell {cell.cell_id} is being run by {describe_holder(final.get('holder'))}")
        study.tell(trial, state=states.FAIL)
        return "fail"
    if final["status"] == PRUNED:
        value = None
    elif seen:
        value = objective_value(spec.objective, seen[0], spec.threshold)
    else:  # another run finished it meanwhile: its file says the value
        done = _finished_value(ctx.runs_dir, cell, spec, fp)
        value = done[0] if done else None
    return _tell_final(study, trial, final, value)


def _worker(ctx: Context, on_trial: Callable[[], None] | None = None) -> None:
    """Run trials of every study until each has its budget (shared with every other process)."""
    storage = open_storage(ctx.storage_url)
    for key in study_keys(ctx.suite):
        study = load_study(storage, ctx.suite.search, key)
        while True:
            nxt = _next_trial(study, key, ctx)
            if nxt is None:
                break
            trial, claim = nxt
            try:
                _run_trial(study, trial, key, ctx)
            finally:
                claim.release()
            if on_trial is not None:
                on_trial()


def _done_count(storage: Any, spec: SearchSpec, keys: list[StudyKey]) -> int:
    optuna = load_optuna()
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    total = 0
    for key in keys:
        study = load_study(storage, spec, key)
        total += min(key.trials, len(study.get_trials(deepcopy=False, states=states)))
    return total


def run_search(suite: Suite, out: Path, storage_url: str | None = None, device: torch.device | str | None = None,
               jobs: int | None = 1, data_dir: Path | None = None, progress: bool = True,
               execution: Execution | None = None) -> dict[str, Any]:
    """Run (or resume) every study of the suite's search; write and return `search.json`.

    With one job, this process asks, trains and tells. Otherwise this process asks and tells, and
    the trials' cells run on an executor's workers: the local pool (`jobs` worker processes), or
    Ray or Slurm (`execution`; at most `jobs` at once, default as many as the executor runs at
    once). Each worker reports to the pruner through the storage, which every node must reach.
    """
    remote = execution is not None and execution.executor != "local"
    out = Path(out)
    storage = open_storage(storage_url) if storage_url else None  # checked before anything runs or is written
    url = storage_url or default_storage(out)
    study_file = search_dir(out) / "study.db"
    if storage is None and study_file.exists():
        storage = open_storage(url, default_file=study_file)
    device_name = str(device or "cpu")
    dev = torch.device("cpu") if remote else torch.device(device_name)  # a remote trial resolves it where it runs
    keys = study_keys(suite)
    total = sum(k.trials for k in keys)
    ctx = Context(suite, out, url, dev, data_dir, provenance(dev, ",".join(sorted({k.base.dtype for k in keys}))))
    done = 0 if storage is None else _done_count(storage, suite.search, keys)
    # no more processes than trials left to run: an extra one would only start, sweep and stop
    local_jobs = max(1, min(jobs or 1, total - done))
    if not remote and done < total:
        # a missing data file is one error before any trial starts (and before a fresh search writes anything)
        from ..runner import check_data

        check_data([key.base for key in keys], ctx.data_dir, ctx.device if local_jobs == 1 else None)
    search_dir(out).mkdir(parents=True, exist_ok=True)
    if storage is None:
        storage = open_storage(url, default_file=study_file)
    bar = tqdm(total=total, initial=done, desc=f"search {suite.name}",
               unit="trial", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        with signals_as_interrupt():
            sync = lambda: _sync_bar(bar, storage, suite.search, keys)  # noqa: E731
            if remote:
                _run_on_executor(ctx, storage, keys, execution, device_name, jobs, sync)
            elif local_jobs <= 1:
                _worker(ctx, sync)
            else:  # the trials on the one pool of worker processes; this process asks and tells
                _run_on_executor(ctx, storage, keys, Execution(), device_name, local_jobs, sync)
    finally:
        bar.close()
    wall = time.perf_counter() - started
    summary = export(storage, suite, keys, out, wall, (jobs or 1) if remote else local_jobs)  # processes that ran
    return summary


def _sync_bar(bar: tqdm, storage: Any, spec: SearchSpec, keys: list[StudyKey]) -> None:
    bar.n = _done_count(storage, spec, keys)
    bar.refresh()


def _run_on_executor(ctx: Context, storage: Any, keys: list[StudyKey], execution: Execution, device_name: str,
                jobs: int | None, on_trial: Callable[[], None]) -> None:
    """Trials through an executor (the local pool, Ray or Slurm): ask (under the ask lock, as a
    search in one process does), send the trial's cell with its `RemoteTrial`, and tell each
    outcome as it comes back. This process holds each trial's claim until it has told the study,
    so a driver killed mid-search leaves its trials to the next run's sweep."""
    from ..executors import CellContext, open_executor
    from ..executors.remote import RemoteTrial

    optuna = load_optuna()
    spec: SearchSpec = ctx.suite.search
    cell_ctx = CellContext(ctx.runs_dir, device_name, ctx.prov, ctx.data_dir, list(ctx.suite.plugins), {}, show=False)
    ctx.runs_dir.mkdir(parents=True, exist_ok=True)
    executor = open_executor(execution, cell_ctx, jobs)
    flying: dict[int, tuple[Any, Any, Claim]] = {}  # id(cell) -> (study, trial, claim)

    def tell(cell: Cell, outcome: dict[str, Any]) -> None:
        study, trial, claim = flying.pop(id(cell))
        fp = cell_ctx.manifest.pop(cell.cell_id, None)
        try:
            if outcome.get("node"):
                trial.set_user_attr("node", outcome["node"])
            if outcome["status"] in FINISHED:
                done = _finished_value(ctx.runs_dir, cell, spec, fp)
                _tell_final(study, trial, outcome, done[0] if done else None)
            else:  # pruned, error, held
                held = f"held by {outcome.get('holder')}" if outcome.get("holder") else None
                reason = outcome.get("message") or held
                _tell_final(study, trial, {**outcome, "message": reason}, None)
        finally:
            claim.release()
        on_trial()

    try:
        for key in keys:
            study = load_study(storage, spec, key)
            pruner = None if spec.pruner == "none" else pruner_for(spec, key)
            while True:
                if executor.in_flight >= executor.slots:
                    for cell, outcome in executor.wait():
                        tell(cell, outcome)
                    continue
                nxt = _next_trial(study, key, ctx)
                if nxt is None:
                    break
                trial, claim = nxt
                try:
                    prepared = _prepare_trial(study, trial, key, ctx)
                except BaseException:
                    claim.release()
                    raise
                if isinstance(prepared, str):
                    claim.release()
                    on_trial()
                    continue
                cell, cell_ctx.manifest[cell.cell_id] = prepared
                flying[id(cell)] = (study, trial, claim)
                executor.submit(cell, trial=RemoteTrial(ctx.storage_url, key.name, trial._trial_id, spec.objective,
                                                        spec.threshold, dict(spec.budget), spec.prune_after, pruner))
        while executor.in_flight:
            for cell, outcome in executor.wait():
                tell(cell, outcome)
    except BaseException as exc:
        executor.stop()
        for study, trial, claim in flying.values():  # cut short: told FAIL, their .part files never read as done
            with contextlib.suppress(Exception):
                trial.set_user_attr("message", f"cut short ({type(exc).__name__})")
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            claim.release()
        raise
    finally:
        executor.close()
