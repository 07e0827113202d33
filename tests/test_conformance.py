"""The conformance kit over every registered rule, and the kit itself catching broken rules."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from plasticity import LearningRule, registry
from plasticity.cli import main
from plasticity.testing import assert_conformant, check_rule


@pytest.mark.parametrize("rule", registry.names("rule"))
def test_every_registered_rule_is_conformant(rule):
    assert_conformant(rule)


@pytest.fixture
def broken_rule():
    class Frozen(LearningRule):
        """Never changes anything and is not deterministic about it."""

        @dataclass(frozen=True)
        class Params:
            scale: float = 1.0

        uses_optimizer = False

        def update(self, x, y):
            return {"loss": torch.rand(()).to(x.dtype)}

    registry.register("rule", "test_frozen", Frozen)
    yield "test_frozen"
    registry._unregister("rule", "test_frozen")


def test_kit_fails_a_rule_that_does_not_learn(broken_rule):
    results = {r.name: r for r in check_rule(broken_rule)}
    assert not results["one update changes weights, finite"].passed
    assert not results["learns a separable task"].passed
    assert results["Params round-trip through a suite file"].passed
    with pytest.raises(AssertionError, match="test_frozen.*learns a separable task"):
        assert_conformant(broken_rule)


def test_check_command(capsys, broken_rule):
    assert main(["check", "bp"]) == 0
    assert "5/5 checks passed" in capsys.readouterr().out
    assert main(["check", broken_rule]) == 1
    assert "FAIL  learns a separable task" in capsys.readouterr().out
