"""The feedback family: FA, DFA, RF (recirculation) and the pinv-feedback oracle."""
from __future__ import annotations

import math

import pytest
import torch

from plasticity import registry
from plasticity.engine import evaluate
from plasticity.linalg import data_weighted_inverse, pinv, recirculate, relative_error
from plasticity.metrics import pair_metrics
from plasticity.testing import make_rule, separable_data

RF = registry.get_rule("rf")


def _recirculate_fixed(w: torch.Tensor, x: torch.Tensor, steps: int, lr: float = 1.0) -> torch.Tensor:
    """B learned by recirculation on one fixed probe set, step normalised by λ_max(W Σ Wᵀ)."""
    sigma = x.T @ x / x.shape[0]
    lam = float(torch.linalg.eigvalsh(w @ sigma @ w.T)[-1])
    b = torch.zeros(w.T.shape, dtype=w.dtype)
    for _ in range(steps):
        recirculate(w, b, x, lr / lam)
    return b


def test_recirculation_converges_to_pinv_on_white_probes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 30, generator=g, dtype=torch.float64) / math.sqrt(30)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    x = math.sqrt(30) * q  # 30 probes whose second moment is exactly I
    assert relative_error(_recirculate_fixed(w, x, 5), pinv(w)) > 0.05
    assert relative_error(_recirculate_fixed(w, x, 400), pinv(w)) < 1e-8


def test_recirculation_converges_to_data_weighted_inverse_on_correlated_data():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 20, generator=g, dtype=torch.float64) / math.sqrt(20)
    mix = torch.randn(20, 20, generator=g, dtype=torch.float64) + 2.0 * torch.eye(20, dtype=torch.float64)
    x = torch.randn(500, 20, generator=g, dtype=torch.float64) @ mix + 0.5  # correlated, not centred
    b = _recirculate_fixed(w, x, 3000)
    weighted = data_weighted_inverse(w, x.T @ x / x.shape[0])
    assert relative_error(b, weighted) < 1e-6
    assert relative_error(b, pinv(w)) > 0.1  # the data-weighted inverse is not W⁺ here


def _train(rule, updates: int, seed: int = 0) -> None:
    train, _ = separable_data()
    g = torch.Generator().manual_seed(seed)
    for _ in range(updates):
        idx = torch.randint(0, len(train), (32,), generator=g)
        rule.update(train.x[idx], train.y[idx])


def test_fa_feedback_stays_fixed_while_weights_move():
    rule = make_rule("fa", sizes=(20, 16, 12, 3))
    before = [p.feedback.clone() for p in rule.feedback()]
    w_before = [w.detach().clone() for w in rule.net.weights()]
    _train(rule, 30)
    assert all(torch.equal(a, p.feedback) for a, p in zip(before, rule.feedback()))
    assert not any(torch.equal(a, w) for a, w in zip(w_before, rule.net.weights()))


def test_fa_alignment_angle_falls_below_90_on_digits():
    task_cls = registry.get_task("digits")
    task = task_cls(task_cls.Params())
    data = task.data(torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    rule = make_rule("fa", sizes=(64, 64, 10))  # digits: 64 inputs, 64 tanh hidden units, 10 classes
    first = rule.feedback()[0]
    start = pair_metrics(first, data.train.x)["L2.angle_BWt"]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        perm = torch.randperm(len(data.train), generator=g)
        for s in range(0, len(perm), 32):
            idx = perm[s:s + 32]
            rule.update(data.train.x[idx], data.train.y[idx])
    end = pair_metrics(rule.feedback()[0], data.train.x)["L2.angle_BWt"]
    assert abs(start - 90) < 10  # random B starts orthogonal to Wᵀ
    assert end < 75, f"FA did not align: angle {start:.1f}° -> {end:.1f}°"
    assert evaluate(rule.net, data.test)[0] > 0.85


def test_dfa_feedback_pairs_are_shaped_like_the_paths_to_the_output():
    rule = make_rule("dfa", sizes=(20, 16, 12, 3))
    pairs = rule.feedback()
    assert [p.layer for p in pairs] == [2, 3]
    w = [w.detach() for w in rule.net.weights()]
    assert torch.equal(pairs[1].forward, w[2]) and torch.allclose(pairs[0].forward, w[2] @ w[1])
    assert all(p.feedback.shape == p.forward.T.shape for p in pairs)


@pytest.mark.parametrize("drive", ["noise", "activity", "both"])
def test_rf_learns_and_moves_b_toward_an_inverse_with_every_drive(drive):
    params = RF.Params(drive=drive)
    train, test = separable_data()
    rule = make_rule("rf", sizes=(20, 16, 12, 3), params=params)
    start = [relative_error(p.feedback, p.target) for p in rule.feedback()]
    _train(rule, 200)
    assert evaluate(rule.net, test)[0] >= 0.8
    pairs = rule.feedback()
    assert all(p.feedback.shape == p.forward.T.shape for p in pairs)
    end = [relative_error(p.feedback, p.target) for p in pairs]
    if drive == "noise":  # white drive: the fixed point is W⁺ itself
        assert all(e < 0.5 * s for s, e in zip(start, end)), (start, end)
    else:  # activity: the data-weighted inverse of each layer's input
        assert all(math.isfinite(e) for e in end)
    # deterministic for a seed, drive included
    again = make_rule("rf", sizes=(20, 16, 12, 3), params=params)
    _train(again, 200)
    assert all(torch.equal(a, b) for a, b in zip(rule.net.parameters(), again.net.parameters()))


def test_pinv_feedback_uses_the_current_pseudo_inverse():
    rule = make_rule("pinv-feedback", sizes=(20, 16, 12, 3))
    _train(rule, 5)
    before = [w.detach().clone() for w in rule.net.weights()]
    # The update starts from B = W⁺ of its starting weights (the credit uses the exact W⁺) ...
    for p in rule.feedback():
        assert relative_error(p.feedback, pinv(before[p.layer - 1].double())) < 1e-4
    _train(rule, 1, seed=1)
    # ... and leaves B = W⁺ of the weights it produced, for the next update and the metrics.
    for p in rule.feedback():
        assert relative_error(p.feedback, p.target) < 1e-4
        assert relative_error(p.feedback, pinv(before[p.layer - 1].double())) > 1e-4  # the step moved W


@pytest.mark.parametrize("rule,kwargs,message", [
    ("rf", {"drive": "sound"}, "drive must be one of noise, activity, both"),
    ("rf", {"feedback_lr": 2.5}, "feedback_lr must lie in"),
    ("rf", {"steps": 0}, "steps must be at least 1"),
    ("fa", {"feedback_scale": 0.0}, "feedback_scale must be positive"),
    ("pinv-feedback", {"ridge": -1.0}, "ridge must be non-negative"),
])
def test_bad_params_are_rejected(rule, kwargs, message):
    with pytest.raises(ValueError, match=message):
        registry.get_rule(rule).Params(**kwargs)


def test_rf_step_normaliser_starts_near_the_top_eigenvalue():
    """λ̂ ≤ λ_max always, and a lagging λ̂ enlarges the step: the first estimate must already be close."""
    rule = make_rule("rf", sizes=(20, 64, 32, 3))
    g = torch.Generator().manual_seed(5)
    h = torch.randn(100, 64, generator=g) @ torch.randn(64, 32, generator=g)
    lam_max = float(torch.linalg.eigvalsh(h.T @ h / 100)[-1])
    lam = float(rule._top_eigenvalue(2, h))  # layer 2: W is 32 × 64, so h = x Wᵀ is n × 32
    assert lam <= lam_max * (1 + 1e-5) and lam > 0.99 * lam_max, (lam, lam_max)
