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
    assert "8/8 checks passed" in capsys.readouterr().out
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


# ---- the rule contract: credit changes nothing but .grad; evaluation goes through predict --------

@pytest.fixture
def contract_rules():
    """fa with a credit() that also learns its feedback (breaks the contract), and bp whose
    predict() always says class 0 (keeps it: inference may differ from net(x))."""
    fa, bp = registry.get_rule("fa"), registry.get_rule("bp")

    class LearnsInCredit(fa):
        def credit(self, x, y):
            out = super().credit(x, y)
            with torch.no_grad():
                self.B[-1].mul_(0.99)  # feedback learned in credit(): the metrics' probes would move it
            return out

    class SaysZero(bp):
        def predict(self, x):
            scores = torch.zeros(x.shape[0], self.net(x[:1]).shape[1], dtype=x.dtype, device=x.device)
            scores[:, 0] = 1.0
            return scores

    registry.register("rule", "test_learns_in_credit", LearnsInCredit)
    registry.register("rule", "test_says_zero", SaysZero)
    yield "test_learns_in_credit", "test_says_zero"
    registry._unregister("rule", "test_learns_in_credit")
    registry._unregister("rule", "test_says_zero")


def test_kit_fails_a_rule_whose_credit_changes_its_feedback(contract_rules):
    bad, good = contract_rules
    results = {r.name: r for r in check_rule(bad)}
    failed = results["credit changes nothing but .grad"]
    assert not failed.passed and "B[" in failed.detail and "update()" in failed.detail
    assert results["learns a separable task"].passed  # it learns: only the contract check catches it
    assert {r.name: r for r in check_rule(good)}["credit changes nothing but .grad"].passed


def test_the_engine_and_the_kit_evaluate_through_predict(contract_rules, tmp_path):
    from plasticity.results import read_cell
    from plasticity.suite import parse_suite
    from plasticity.worker import run_cell

    _, says_zero = contract_rules
    cell = parse_suite('[budget]\nupdates = 3\n[[tasks]]\nname = "digits"\n'
                       f'[[rules]]\nname = "{says_zero}"\n').cells[0]
    final = run_cell(cell, tmp_path, torch.device("cpu"), {})
    from plasticity.engine import build_cell
    _, data, _, _ = build_cell(cell, torch.device("cpu"), None)
    share_of_zero = float((data.val.y == 0).double().mean())
    evals = read_cell(tmp_path / f"{cell.cell_id}.jsonl").evals
    assert final["status"] == "complete" and len(evals) >= 2
    # every evaluation measured predict()'s "always class 0", not the network (which learns)
    assert all(e["val_accuracy"] == pytest.approx(share_of_zero, abs=1e-12) for e in evals)
    assert final["test_accuracy"] == pytest.approx(float((data.test.y == 0).double().mean()), abs=1e-12)
    result = {r.name: r for r in check_rule(says_zero)}["evaluated through predict()"]
    assert result.passed and "accuracy 0." in result.detail
