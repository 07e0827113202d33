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
    assert "6/6 checks passed" in capsys.readouterr().out
    assert main(["check", broken_rule]) == 1
    assert "FAIL  learns a separable task" in capsys.readouterr().out


@pytest.fixture
def output_layer_only_rule():
    """Backprop that zeroes its hidden layers' gradients: only the readout ever learns."""
    bp = registry.get_rule("bp")

    class ReadoutOnly(bp):
        def credit(self, x, y):
            out = super().credit(x, y)
            for layer in self.net.layers[:-1]:
                for p in layer.parameters():
                    p.grad.zero_()
            return out

    registry.register("rule", "test_readout_only", ReadoutOnly)
    yield "test_readout_only"
    registry._unregister("rule", "test_readout_only")


def test_kit_fails_a_rule_whose_hidden_layers_never_learn(output_layer_only_rule):
    results = {r.name: r for r in check_rule(output_layer_only_rule)}
    assert results["learns a separable task"].passed  # the old "learns" check alone let it through
    assert not results["hidden layers learn"].passed, results["hidden layers learn"].detail
    with pytest.raises(AssertionError, match="test_readout_only.*hidden layers learn"):
        assert_conformant(output_layer_only_rule)


def test_bottleneck_task_needs_the_hidden_layer():
    """Trained by BP, the 30-8-3 network solves the kit's hidden-layer task; its readout alone does not."""
    from plasticity.engine import evaluate
    from plasticity.testing import HIDDEN_SIZES, HIDDEN_UPDATES, bottleneck_data, make_rule, train_last_layer_only

    train, test = bottleneck_data()
    rule = make_rule("bp", sizes=HIDDEN_SIZES)
    train_last_layer_only(rule, train, HIDDEN_UPDATES)
    assert evaluate(rule.net, test)[0] < 0.6  # chance 1/3
