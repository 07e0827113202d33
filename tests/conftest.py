"""Shared fixtures: the registry loaded from the repository's plugin folders, and the real data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from plasticity import registry
from plasticity.registry import REPO_ROOT, load_plugins

load_plugins()
TEST_PLUGINS = Path(__file__).parent / "plugins"


def shared_data_dir() -> Path | None:
    """`PLASTICITY_DATA` or the `../shared/data` beside the checkout, when it holds files."""
    for candidate in (os.environ.get("PLASTICITY_DATA"), REPO_ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def real_data_dir() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data files not present (set PLASTICITY_DATA)")
    return path


def _forget_test_plugins() -> None:
    for path in TEST_PLUGINS.glob("*.py"):
        registry._loaded_files.discard(path.resolve())
    registry._unregister("rule", "test_nan")


@pytest.fixture
def misbehaving_rules():
    """The rules in tests/plugins (test_nan), registered for one test only."""
    _forget_test_plugins()
    registry.load_plugins([TEST_PLUGINS])
    yield TEST_PLUGINS
    _forget_test_plugins()
