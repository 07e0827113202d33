"""Cells as Ray tasks: `plasticity run SUITE --executor ray [--ray-address ADDRESS]`.

Connects to `--ray-address` or `$RAY_ADDRESS`, uses a Ray already started in this process, or
starts a local one. No shared file system is assumed: each task runs its cell into a private
folder on its node and hands the lines back; the driver, which claimed the cell before sending
it, writes them through the results store. A worker or node that dies leaves nothing in
`runs/`; Ray retries the task on another worker (its own rule for system failures), and a
cell that still fails is reported with Ray's error and rerun by the next command.

Each task asks for `[execution.ray] cpus` CPUs (its torch threads) and, when the cells run on
GPUs, `1 / cells_per_gpu` of a GPU, so Ray packs that many cells onto each device.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from typing import Any

from ..claims import Claim
from ..errors import PlasticityError
from ..execution import Execution
from ..worker import claim_unfinished
from ..writer import store_lines
from .base import CellContext, CellExecutor, failure, require
from .remote import FATAL, RemoteJob, run_remote_cell

POLL_SECONDS = 0.1


def ray_resources(execution: Execution, device: str, cluster: dict[str, float]) -> dict[str, float]:
    """The Ray resources one cell asks for: its CPUs and its share of a GPU (none on CPU cells).
    A cell asks for a GPU when `--device` is cuda, or auto and the cluster has GPUs."""
    gpus_there = cluster.get("GPU", 0) > 0
    if device.startswith("cuda") and not gpus_there:
        raise PlasticityError(f"--device {device}: the Ray cluster has no GPUs (resources: "
                              f"{', '.join(f'{k} {v:g}' for k, v in sorted(cluster.items()) if '.' not in k)}); "
                              f"use --device cpu or auto")
    on_gpu = device.startswith("cuda") or (device == "auto" and gpus_there)
    return {"num_cpus": execution.ray.cpus, "num_gpus": 1 / execution.cells_per_gpu if on_gpu else 0}


def ray_slots(resources: dict[str, float], cluster: dict[str, float]) -> int:
    """How many cells the cluster runs at once with these requests (at least 1)."""
    fits = [math.floor(cluster.get("CPU", 0) / resources["num_cpus"] + 1e-9)]
    if resources["num_gpus"]:
        fits.append(math.floor(cluster.get("GPU", 0) / resources["num_gpus"] + 1e-9))
    return max(1, min(fits))


def _python_handlers() -> dict[int, Any]:
    """The Python handlers of SIGINT, SIGTERM and SIGHUP now (main thread only: none elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    found = {getattr(signal, n): signal.getsignal(getattr(signal, n)) for n in names if hasattr(signal, n)}
    return {s: h for s, h in found.items() if h is not None}


class RayExecutor(CellExecutor):
    def __init__(self, execution: Execution, ctx: CellContext, jobs: int | None) -> None:
        self.ray = ray = require("ray")
        self.ctx = ctx
        self.owns = False
        if not ray.is_initialized():
            address = execution.ray.address or os.environ.get("RAY_ADDRESS") or None
            handlers = _python_handlers()
            try:
                # a local Ray without its dashboard; a cluster's own settings are its own
                ray.init(address=address) if address else ray.init(include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise PlasticityError(f"cannot connect to Ray at {address or '(a new local Ray)'}: {exc}") from None
            finally:  # Ray installs its own SIGTERM handler, which aborts: the run's own handling comes back
                for signum, handler in handlers.items():
                    signal.signal(signum, handler)
            self.owns = True
        cluster = ray.cluster_resources()
        self.resources = ray_resources(execution, ctx.device, cluster)
        self.slots = jobs or ray_slots(self.resources, cluster)
        threads = max(1, round(execution.ray.cpus))
        self.job = RemoteJob(ctx.device, ctx.provenance, ctx.data_dir, tuple(ctx.plugin_dirs), "ray", threads,
                             execution.cells_per_gpu, runs_dir=None)
        self.task = ray.remote(run_remote_cell).options(**self.resources)
        self.pending: dict[Any, tuple[Any, Claim]] = {}
        self.ready: list[tuple[Any, dict[str, Any]]] = []

    @property
    def in_flight(self) -> int:
        return len(self.pending) + len(self.ready)

    def submit(self, cell: Any, trial: Any = None) -> None:
        claim, outcome = claim_unfinished(self.ctx.runs_dir, cell.cell_id, self.ctx.manifest[cell.cell_id]["hash"])
        if claim is None:
            self.ready.append((cell, outcome))
            return
        try:
            ref = self.task.remote(cell, self.job, self.ctx.manifest[cell.cell_id], trial=trial)
        except BaseException:
            claim.release()
            raise
        self.pending[ref] = (cell, claim)

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        if self.ready:
            out, self.ready = self.ready, []
            return out
        if not self.pending:
            return []
        refs = list(self.pending)
        while True:  # polled, with the waiting in Python: a signal inside ray.wait comes out as a bare Ctrl-C
            done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            if done:
                return [self._collect(ref) for ref in done]
            time.sleep(POLL_SECONDS)

    def _collect(self, ref: Any) -> tuple[Any, dict[str, Any]]:
        cell, claim = self.pending.pop(ref)
        try:
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
                return cell, failure(cell, "its Ray task failed", f"{type(exc).__name__}: {lines[-1]}", str(exc))
            if result["status"] == FATAL:
                raise PlasticityError(f"{result['message']} (on node {result.get('node')})")
            lines = result.pop("lines", None)
            if lines is not None:
                store_lines(self.ctx.runs_dir, cell.cell_id, lines, claim)  # under this run's one claim
            return cell, result
        finally:
            claim.release()

    def stop(self) -> None:
        for ref, (_, claim) in list(self.pending.items()):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001  already finished or its node gone: nothing left to stop
                pass
            claim.release()
        self.pending.clear()
        self.close()

    def close(self) -> None:
        if self.owns and self.ray.is_initialized():
            self.ray.shutdown()
