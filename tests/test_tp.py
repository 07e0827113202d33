"""Target propagation (rules/tp.py): inverses, the difference correction, learning, the contract."""
from __future__ import annotations

import pytest
import torch

from plasticity import registry
from plasticity.engine import evaluate
from plasticity.errors import ConfigError
from plasticity.params import make_params
from plasticity.testing import SEPARABLE_MIN_ACCURACY, _train, make_rule, separable_data

DEEP = (20, 32, 32, 32, 3)  # three hidden layers: inverses g_2, g_3 (g_4 with top_target="output")


def rule_with(name: str, sizes=DEEP, seed: int = 0, **values):
    cls = registry.get_rule(name)
    torch.manual_seed(seed)
    return make_rule(name, seed=seed, sizes=sizes, params=make_params(cls.Params, values, name))


@pytest.fixture(scope="module")
def digits():
    task_cls = registry.get_task("digits")
    return task_cls(task_cls.Params()).data(torch.device("cpu"), torch.float32)


def reconstruction_error(rule, x: torch.Tensor) -> dict[int, float]:
    """Clean relative error ‖g_l(f_l(z_{l−1})) − z_{l−1}‖² / ‖z_{l−1}‖² of each inverse."""
    with torch.no_grad():
        z = rule.net.forward_trace(x).z
        return {l: float((rule.g(l, z[l]) - z[l - 1]).pow(2).sum() / z[l - 1].pow(2).sum()) for l in rule.V}


def test_inverses_learn_to_reconstruct():
    rule = rule_with("dtp", top_target="output", noise=0.05, feedback_lr=3e-3)
    train, _ = separable_data()
    x = train.x[:256]
    before = reconstruction_error(rule, x)
    weights = [w.detach().clone() for w in rule.net.parameters()]
    with torch.no_grad():
        trace = rule.net.forward_trace(x)
    for _ in range(400):
        rule.train_feedback(trace)
    after = reconstruction_error(rule, x)
    assert sorted(after) == [2, 3, 4]
    for l in (2, 3):  # square layers: a near-exact inverse exists
        assert after[l] < before[l] / 10 and after[l] < 0.05, (l, before[l], after[l])
    # g_4 maps 3 outputs back to 32 units: it cannot be exact, only better than at the start.
    assert after[4] < 0.7 * before[4]
    assert all(torch.equal(a, b) for a, b in zip(weights, rule.net.parameters())), "inverse training moved W"
    assert rule.diagnostics()["inverse_steps"] == 400.0


def test_difference_correction_is_exact_when_target_equals_activity():
    rule = rule_with("dtp")
    x = separable_data()[0].x[:64]
    with torch.no_grad():
        z = rule.net.forward_trace(x).z
        for l in rule.V:
            assert torch.equal(rule.propagate(l, z[l - 1], z[l], z[l]), z[l - 1])
    tp = rule_with("tp")
    with torch.no_grad():  # plain TP has no such guarantee: its target is the imperfect inverse's output
        assert not torch.equal(tp.propagate(2, z[1], z[2], z[2]), z[1])


def test_top_layers_credit_is_the_gradient():
    """With the penultimate target, the output and top hidden layers' credit is BP's gradient."""
    dtp, bp = rule_with("dtp"), rule_with("bp")
    bp.net.load_state_dict(dtp.net.state_dict())
    train, _ = separable_data()
    x, y = train.x[:32], train.y[:32]
    dtp.credit(x, y)
    bp.credit(x, y)
    for a, b in zip(list(dtp.net.parameters())[-4:], list(bp.net.parameters())[-4:]):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    assert all(p.grad is not None for p in dtp.net.parameters())


def test_credit_writes_only_grad():
    rule = rule_with("dtp")
    train, _ = separable_data()
    rule.update(train.x[:32], train.y[:32])  # so the inverses have optimizer state too
    state = ([p.detach().clone() for p in rule.net.parameters()],
             [v.clone() for v in rule.V.values()], rule.generator.get_state(), rule.inverse_steps)
    rule.credit(train.x[32:64], train.y[32:64])
    assert all(torch.equal(a, b) for a, b in zip(state[0], rule.net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(state[1], rule.V.values()))
    assert torch.equal(state[2], rule.generator.get_state())
    assert state[3] == rule.inverse_steps


def test_update_counts_inverse_steps_and_reports_each_inverse():
    rule = rule_with("dtp", inverse_steps=3)
    train, _ = separable_data()
    for k in range(4):
        rule.update(train.x[32 * k:32 * (k + 1)], train.y[32 * k:32 * (k + 1)])
    d = rule.diagnostics()
    assert d["inverse_steps"] == 12.0
    assert set(d) == {"inverse_steps", "L2.inv_err", "L3.inv_err"}
    assert all(0 <= d[k] < 10 for k in ("L2.inv_err", "L3.inv_err"))


@pytest.mark.parametrize("name, values", [
    ("dtp", {}), ("dtp", {"schedule": "parallel"}), ("dtp", {"top_target": "output"}),
    ("tp", {}), ("dtp", {"feedback_optimizer": "rmsprop"}), ("ddtp-linear", {}),
    ("ddtp-linear", {"schedule": "parallel"}),
])
def test_learns_separable_task_on_a_deep_net(name, values):
    """The conformance kit's learning check on a net with inverses (the kit's own net has none)."""
    train, test = separable_data()
    rule = rule_with(name, **values)
    _train(rule, train, 200)
    acc, _ = evaluate(rule.net, test)
    assert acc >= SEPARABLE_MIN_ACCURACY, (name, values, acc)


def test_ddtp_feedback_reaches_the_rank_bound():
    """Q_{L−1} sees the output change W_L ε of a perturbation ε of the last hidden layer; the best
    linear read-out recovers its projection on W_L's row space, leaving 1 − rank/width unexplained."""
    rule = rule_with("ddtp-linear", feedback_lr=1e-2)
    train, _ = separable_data()
    with torch.no_grad():
        trace = rule.net.forward_trace(train.x[:512])
    rule.train_feedback(trace)
    first = rule.diagnostics()["L3.inv_err"]
    for _ in range(400):
        rule.train_feedback(trace)
    bound = 1 - DEEP[-1] / DEEP[-2]
    last = rule.diagnostics()["L3.inv_err"]
    assert first - bound > 0.1 and abs(last - bound) < (first - bound) / 5, (first, last, bound)


@pytest.mark.parametrize("name", ["dtp", "ddtp-linear"])
def test_learns_digits(digits, name):
    rule = rule_with(name, sizes=(64, 64, 64, 64, 10))
    _train(rule, digits.train, 10 * (len(digits.train) // 32))
    acc, _ = evaluate(rule.net, digits.test)
    assert acc >= 0.9, acc  # chance 0.1; BP reaches about 0.97 here


@pytest.mark.parametrize("values, message", [
    ({"schedule": "sideways"}, "alternating"),
    ({"top_target": "input"}, "penultimate"),
    ({"beta": 0.0}, "beta must be a positive"),
    ({"noise": -0.1}, "noise must be a non-negative"),
    ({"feedback_lr": -1.0}, "feedback_lr must be a positive"),
    ({"inverse_steps": -1}, "inverse_steps must be 0 or more"),
    ({"feedback_optimizer": "lbfgs"}, "adam"),
    ({"betta": 0.3}, "beta"),
])
def test_bad_params_are_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        make_params(registry.get_rule("dtp").Params, values, "rule 'dtp'")
