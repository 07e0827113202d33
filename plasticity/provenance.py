"""Provenance recorded in every cell's header: code version, packages, machine, device."""
from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from typing import Any

import torch

from .registry import REPO_ROOT

PACKAGES = ("plasticity", "torch", "numpy", "scikit-learn", "seaborn", "matplotlib", "pandas", "tqdm")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
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
        "dtype": dtype,
        "command": " ".join(sys.argv),
    }
