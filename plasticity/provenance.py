"""Provenance recorded in every cell's header: code version, packages, machine, device."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from typing import Any

import torch

from .registry import CHECKOUT

PACKAGES = ("plasticity", "torch", "numpy", "scikit-learn", "seaborn", "matplotlib", "pandas", "tqdm")


def _git(*args: str) -> str | None:
    """git's answer about the clone this package runs from; None for an installed copy (whose
    version is in `packages`: asking git there would answer for whatever repository holds the venv)."""
    if CHECKOUT is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def usable_cpus() -> int | None:
    """CPUs this process may run on (its affinity set where the OS has one, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def machine_load() -> dict[str, Any]:
    """The machine's load now, to judge the training seconds measured beside it: the 1-, 5- and
    15-minute load averages (None where the OS has none), usable CPUs and torch's threads.
    Seconds measured with a load average above the CPU count are inflated by the contention."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {"load_avg": load, "cpus": usable_cpus(), "torch_threads": torch.get_num_threads()}


def provenance(device: torch.device, dtype: str) -> dict[str, Any]:
    """Everything needed to say where a number came from (computed once per suite run)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "packages": versions(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "dtype": dtype,
        "command": " ".join(sys.argv),
    }
