"""Where a suite's cells run: `local` (worker processes here, the default), `ray` or `slurm`.

The executor is chosen with `plasticity run --executor NAME` or a suite's `[execution]` table
(the command line wins):

    [execution]
    executor = "slurm"            # local | ray | slurm
    cells_per_gpu = 4             # pack small cells onto one GPU, each in its own process

    [execution.ray]
    address = "ray://head:10001"  # else $RAY_ADDRESS, else a local Ray is started
    cpus = 1                      # CPUs (torch threads) per cell

    [execution.slurm]
    partition = "gpu"
    time = 120                    # minutes per job
    cpus = 4                      # CPUs (torch threads) per cell, that is per Slurm task
    gpus = 1                      # GPUs per job; a job runs gpus x cells_per_gpu cells
    mem = "16G"                   # per job
    array_parallelism = 64        # jobs of the array running at once (--jobs N: N cells at once)
    sbatch = { account = "lab", qos = "normal" }   # any sbatch option no key here sets (time, cpus-per-task,
                                                   # mem, ... are refused: give the key instead)
    setup = ["module load cuda", "source ~/venv/bin/activate"]
    requeues = 3                  # how often a preempted or timed-out job is requeued
    folder = "slurm-jobs"         # submitit's job folder (default: <out>/slurm; relative to the current
                                  # folder), on the shared file system
    backend = "slurm"             # "local": submitit's LocalExecutor, jobs as processes on this machine

An executor takes cells and hands back each one's final line (`CellExecutor.submit` /
`CellExecutor.wait`, or `run` for a whole list); nothing else knows where a cell ran. Every
cell keeps the results store's rules: a worker, job or node killed mid-cell leaves nothing that
reads as complete, and the same command resumes. See the README, "Run on a cluster".
"""
from __future__ import annotations

import importlib
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PlasticityError, closest
from ..params import check_text, shown

EXECUTORS = ("local", "ray", "slurm")
SLURM_BACKENDS = ("slurm", "local")
#: how a missing optional dependency is installed, by executor
EXTRAS = {"ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}
MAX_TIME_MIN = 10**6
MAX_COUNT = 10**6


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None
    cpus: float = 1.0


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    time: int = 60
    cpus: int = 1
    gpus: int = 0
    mem: str | None = None
    array_parallelism: int | None = None
    sbatch: dict[str, Any] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    requeues: int = 3
    folder: str | None = None
    backend: str = "slurm"


@dataclass(frozen=True)
class Execution:
    """Where and how the cells of one run are executed (never part of a cell's identity)."""
    executor: str = "local"
    cells_per_gpu: int = 1
    ray: RaySettings = field(default_factory=RaySettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)

    def with_overrides(self, executor: str | None = None, ray_address: str | None = None,
                       cells_per_gpu: int | None = None, slurm: dict[str, Any] | None = None,
                       where: str = "command line") -> Execution:
        """This execution with the command line's choices applied (the command line wins)."""
        out = self
        if executor is not None:
            out = replace(out, executor=_choice(executor, EXECUTORS, f"{where}: --executor"))
        if ray_address is not None:
            out = replace(out, ray=replace(out.ray, address=check_text(ray_address, f"{where}: --ray-address")))
        if cells_per_gpu is not None:
            out = replace(out, cells_per_gpu=_count(cells_per_gpu, f"{where}: --cells-per-gpu", low=1))
        if slurm:
            current = {f.name: getattr(out.slurm, f.name) for f in fields(SlurmSettings)}
            current = {k: list(v) if isinstance(v, tuple) else v for k, v in current.items() if v is not None}
            merged = {**current, **slurm}
            if isinstance(slurm.get("sbatch"), dict):
                merged["sbatch"] = {**out.slurm.sbatch, **slurm["sbatch"]}
            out = replace(out, slurm=_slurm(merged, f"{where}: --slurm"))
        _check_packing(out, where)
        return out


# ---- parsing and validation (a suite's [execution] table, or --slurm KEY=VALUE) ----------------

TABLE_KEYS = {"executor", "cells_per_gpu", "ray", "slurm"}
RAY_KEYS = {"address": str, "cpus": (int, float)}
SLURM_KEYS = {"partition": str, "time": int, "cpus": int, "gpus": int, "mem": (str, int),
              "array_parallelism": int, "sbatch": dict, "setup": list, "requeues": int, "folder": str,
              "backend": str}


def parse_execution(table: Any, where: str) -> Execution:
    """Validate a suite's `[execution]` table: unknown keys, wrong types and values outside
    their choices or ranges are errors naming the file, the key and the choices."""
    where = f"{where}: [execution]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    _known(table, TABLE_KEYS, where)
    executor = _choice(table.get("executor", "local"), EXECUTORS, f"{where} executor")
    cells_per_gpu = _count(table.get("cells_per_gpu", 1), f"{where} cells_per_gpu", low=1)
    ray_table = table.get("ray", {})
    if not isinstance(ray_table, dict):
        raise ConfigError(f"{where} ray: expected a table ([execution.ray])")
    _known(ray_table, set(RAY_KEYS), f"{where}.ray")
    _types(ray_table, RAY_KEYS, f"{where}.ray")
    cpus = ray_table.get("cpus", 1.0)
    if not 0 < cpus <= MAX_COUNT:
        raise ConfigError(f"{where}.ray cpus: CPUs per cell must lie in 0 < cpus <= {MAX_COUNT:,}, got {cpus}")
    address = ray_table.get("address")
    if address is not None:
        check_text(address, f"{where}.ray address")
    slurm_table = table.get("slurm", {})
    if not isinstance(slurm_table, dict):
        raise ConfigError(f"{where} slurm: expected a table ([execution.slurm])")
    out = Execution(executor, cells_per_gpu, RaySettings(address, float(cpus)), _slurm(slurm_table, f"{where}.slurm"))
    _check_packing(out, where)
    return out


def parse_slurm_option(text: str) -> dict[str, Any]:
    """`--slurm KEY=VALUE`: the value read as TOML (a number, true, a quoted string, a table),
    else as a plain string, so `--slurm partition=gpu --slurm time=120` work as typed."""
    import tomllib

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise PlasticityError(f"--slurm {text!r}: expected KEY=VALUE, one of the keys "
                              f"{', '.join(sorted(SLURM_KEYS))}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return {key: parsed}


def _slurm(table: dict[str, Any], where: str) -> SlurmSettings:
    _known(table, set(SLURM_KEYS), where)
    _types(table, SLURM_KEYS, where)
    time = _count(table.get("time", 60), f"{where} time (minutes)", low=1, high=MAX_TIME_MIN)
    cpus = _count(table.get("cpus", 1), f"{where} cpus", low=1)
    gpus = _count(table.get("gpus", 0), f"{where} gpus", low=0)
    parallel = table.get("array_parallelism")
    if parallel is not None:
        parallel = _count(parallel, f"{where} array_parallelism", low=1)
    requeues = _count(table.get("requeues", 3), f"{where} requeues", low=0, high=1000)
    mem = table.get("mem")
    if isinstance(mem, int) and not isinstance(mem, bool):
        mem = f"{_count(mem, f'{where} mem (megabytes)', low=1, high=10**9)}M"
    elif mem is not None:
        check_text(mem, f"{where} mem")
        if not re.fullmatch(r"[1-9][0-9]{0,9}[KMGT]?", mem, re.IGNORECASE):
            raise ConfigError(f"{where} mem: {shown(mem)} is not a Slurm memory size such as 16G, 500M or 4000")
    sbatch = dict(table.get("sbatch", {}))
    for key, value in sbatch.items():
        check_text(str(key), f"{where} sbatch")
        _refuse_generated_option(str(key), where)
        if not isinstance(value, (str, int, bool)) or isinstance(value, float):
            raise ConfigError(f"{where} sbatch.{key}: an sbatch option is a string, a whole number or true, "
                              f"got {type(value).__name__} {value!r}")
        if isinstance(value, str):
            check_text(value, f"{where} sbatch.{key}")
    setup = table.get("setup", [])
    if not all(isinstance(s, str) for s in setup):
        raise ConfigError(f"{where} setup: expected a list of shell lines (strings), got {setup!r}")
    for line in setup:
        check_text(line, f"{where} setup", name=False)
    folder = table.get("folder")
    if folder is not None:
        check_text(folder, f"{where} folder")
    partition = table.get("partition")
    if partition is not None:
        check_text(partition, f"{where} partition")
    backend = _choice(table.get("backend", "slurm"), SLURM_BACKENDS, f"{where} backend")
    return SlurmSettings(partition, time, cpus, gpus, mem, parallel, sbatch, tuple(setup), requeues, folder, backend)


#: sbatch options the job script already carries, by the [execution.slurm] key that sets them (long
#: names with '-', their one-letter forms as sbatch spells them)
SBATCH_SET_BY = {
    "partition": ("partition", "p"), "time": ("time", "t"), "cpus": ("cpus-per-task", "c"),
    "gpus": ("gpus-per-node", "gpus", "G"), "mem": ("mem",), "array_parallelism": ("array", "a"),
    "folder": ("output", "o", "error", "e", "open-mode"), "requeues": ("signal",),
    "gpus and cells_per_gpu": ("nodes", "N", "ntasks", "n", "ntasks-per-node"),
}
#: what each of those keys means, for the message
SBATCH_KEY_HINT = {"time": "time (minutes per job)", "cpus": "cpus (per cell)", "gpus": "gpus (per job)",
                   "folder": "folder (where submitit writes the job logs)",
                   "requeues": "requeues (submitit's signal before the time limit requeues a job)",
                   "gpus and cells_per_gpu": "gpus and cells_per_gpu (one node per job, gpus x cells_per_gpu "
                                             "Slurm tasks)"}


def _refuse_generated_option(key: str, where: str) -> None:
    """An sbatch option that a dedicated key already sets would appear twice in the job script
    (or silently override that key): refused, naming the key to use instead."""
    name = key.lstrip("-")
    name = name if len(name) == 1 else name.replace("_", "-").lower()
    if name == "job-name" or name == "J":
        raise ConfigError(f"{where} sbatch.{key}: the job name is set by plasticity (\"plasticity\"); remove "
                          f"it from sbatch")
    for dedicated, options in SBATCH_SET_BY.items():
        if name in options:
            flag = f"-{name}" if len(name) == 1 else f"--{name}"
            raise ConfigError(f"{where} sbatch.{key}: {flag} is already set by [execution.slurm] "
                              f"{SBATCH_KEY_HINT.get(dedicated, dedicated)}; set it there instead of in sbatch")


def _check_packing(execution: Execution, where: str) -> None:
    if execution.executor == "slurm" and execution.cells_per_gpu > 1 and execution.slurm.gpus == 0:
        raise ConfigError(f"{where}: cells_per_gpu = {execution.cells_per_gpu} packs cells onto GPUs, but the "
                          f"Slurm jobs ask for none: set [execution.slurm] gpus (GPUs per job) to 1 or more")


def _known(table: dict, known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {shown(str(key))}{closest(str(key), known)}; "
                              f"known keys: {', '.join(sorted(known))}")


def _types(table: dict, spec: dict[str, Any], where: str) -> None:
    for key, value in table.items():
        wanted = spec[key]
        if isinstance(value, bool) and wanted is not bool or not isinstance(value, wanted):
            names = " or ".join(t.__name__ for t in (wanted if isinstance(wanted, tuple) else (wanted,)))
            raise ConfigError(f"{where} {key}: expected {names}, got {type(value).__name__} {value!r}")


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or value not in choices:
        text = shown(value) if isinstance(value, str) else repr(value)
        raise ConfigError(f"{where}: {text} is not one of {', '.join(choices)}{closest(str(value), choices)}")
    return value


def _count(value: Any, where: str, low: int, high: int = MAX_COUNT) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}: expected a whole number in {low}..{high:,}, got {value!r}")
    return value


def check_device_name(name: str) -> str:
    """A device name a remote worker can resolve (auto, cpu, cuda, cuda:N); checked on the driver,
    which may itself have no GPU."""
    head, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
        return name
    raise ConfigError(f"unknown device '{name}'; choose auto, cpu, cuda or cuda:N")


def require(executor: str) -> Any:
    """Import the optional dependency of `executor`, or say which extra installs it."""
    module, extra = EXTRAS[executor]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PlasticityError(f"--executor {executor} needs the '{module}' package, which is not installed "
                              f"({exc}): pip install -e '.[{extra}]'") from None


# ---- the interface every executor offers ------------------------------------------------------

@dataclass
class CellContext:
    """What every cell of one run shares, wherever it runs."""
    runs_dir: Path
    device: str
    provenance: dict[str, Any]
    data_dir: Path | None
    plugin_dirs: list[Path]
    #: {cell_id: {"hash", "parts"}}: the fingerprints the driver expects (a node running other code is refused)
    manifest: dict[str, dict[str, Any]]
    show: bool = True


class CellExecutor:
    """Runs cells somewhere and hands back each one's final line.

    `submit(cell)` starts a cell (at most `slots` run at once: `run` keeps that many in flight);
    `wait()` blocks until at least one submitted cell has ended and returns (cell, outcome)
    pairs, [] when nothing is in flight. An outcome is the cell's final line, or
    `{"status": "held", "holder": ...}` when another run holds it, or a final line with
    `"by_other_run": True` when another run finished it. A search submits its trials (cells)
    the same way, one at a time, as it asks for them, each with its `RemoteTrial` (Ray and
    Slurm; a local search runs trials in its own processes).
    """

    slots: int = 1

    def submit(self, cell: Any, trial: Any = None) -> None:
        raise NotImplementedError

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        raise NotImplementedError

    def run(self, cells: Iterable[Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Every cell of `cells`, `slots` at a time; yield (cell, outcome) as each ends."""
        queue = deque(cells)
        while queue or self.in_flight:
            while queue and self.in_flight < self.slots:
                self.submit(queue.popleft())
            yield from self.wait()

    def stop(self) -> None:
        """Interrupted: cancel the cells in flight (they leave only `.part` files) and let go."""

    def close(self) -> None:
        """Every cell has ended: let go of what the executor holds."""


def failure(cell: Any, what: str, reason: str, detail: str) -> dict[str, Any]:
    """The outcome of a cell whose worker or job died before the cell could end (no file was
    written): an error whose message says `what` failed and why (`reason`, one line), shown at
    once with `detail` (the traceback or the job's log), as a local cell's error keeps its traceback."""
    from tqdm.auto import tqdm

    from ..runner import _describe

    message = f"{what}: {' '.join(reason.split())[:300]}"
    name = _describe(cell)
    tqdm.write(f"cell {name} ({cell.cell_id}) failed, {message}\n{detail.rstrip()}", file=sys.stderr)
    return {"status": "error", "message": message, "traceback": detail, "remote_failure": True}


def open_executor(execution: Execution, ctx: CellContext, jobs: int | None) -> CellExecutor:
    """The executor `execution` names, behind the one interface (`plasticity run` drives the
    local pool itself; a search takes any of them from here)."""
    if execution.executor == "ray":
        from .ray import RayExecutor
        return RayExecutor(execution, ctx, jobs)
    if execution.executor == "slurm":
        from .slurm import SlurmExecutor
        return SlurmExecutor(execution, ctx, jobs)
    from .local import LocalExecutor
    return LocalExecutor(ctx, jobs)
