"""Execution settings (spec layer: no torch): where a run's cells run, `local`, `ray` or `slurm`,
and with what, from a suite's `[execution]` table or the command line (`--executor`,
`--ray-address`, `--cells-per-gpu`, `--slurm KEY=VALUE`; the command line wins). The table's
keys are described in `plasticity.executors`, which runs the cells. Never part of a cell's identity.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .checks import MAX_COUNT, check_keys, checked_table, choice, whole
from .errors import ConfigError, PlasticityError
from .params import check_text, shown

EXECUTORS = ("local", "ray", "slurm")
SLURM_BACKENDS = ("slurm", "local")
MAX_TIME_MIN = 10**6


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
            out = replace(out, executor=choice(executor, EXECUTORS, f"{where}: --executor"))
        if ray_address is not None:
            out = replace(out, ray=replace(out.ray, address=check_text(ray_address, f"{where}: --ray-address")))
        if cells_per_gpu is not None:
            out = replace(out, cells_per_gpu=whole(cells_per_gpu, f"{where}: --cells-per-gpu", 1))
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
    check_keys(table, TABLE_KEYS, where)
    executor = choice(table.get("executor", "local"), EXECUTORS, f"{where} executor")
    cells_per_gpu = whole(table.get("cells_per_gpu", 1), f"{where} cells_per_gpu", 1)
    ray_table = table.get("ray", {})
    if not isinstance(ray_table, dict):
        raise ConfigError(f"{where} ray: expected a table ([execution.ray])")
    checked_table(ray_table, RAY_KEYS, f"{where}.ray")
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
    checked_table(table, SLURM_KEYS, where)
    time = whole(table.get("time", 60), f"{where} time (minutes)", 1, MAX_TIME_MIN)
    cpus = whole(table.get("cpus", 1), f"{where} cpus", 1)
    gpus = whole(table.get("gpus", 0), f"{where} gpus", 0)
    parallel = table.get("array_parallelism")
    if parallel is not None:
        parallel = whole(parallel, f"{where} array_parallelism", 1)
    requeues = whole(table.get("requeues", 3), f"{where} requeues", 0, 1000)
    mem = table.get("mem")
    if isinstance(mem, int) and not isinstance(mem, bool):
        mem = f"{whole(mem, f'{where} mem (megabytes)', 1, 10**9)}M"
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
    backend = choice(table.get("backend", "slurm"), SLURM_BACKENDS, f"{where} backend")
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


def check_device_name(name: str) -> str:
    """A device name a remote worker can resolve (auto, cpu, cuda, cuda:N); checked on the driver,
    which may itself have no GPU."""
    head, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
        return name
    raise ConfigError(f"unknown device '{name}'; choose auto, cpu, cuda or cuda:N")


