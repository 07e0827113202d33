"""Feedback and alignment metrics: values on known cases, no effect on training, engine records."""
from __future__ import annotations

import math

import pytest
import torch

from plasticity import FeedbackPair
from plasticity.errors import ConfigError
from plasticity.linalg import pinv
from plasticity.metrics import Probe, feedback_metrics, pair_metrics
from plasticity.results import read_cell
from plasticity.suite import parse_suite
from plasticity.testing import make_rule, separable_data
from plasticity.worker import run_cell


def test_exact_pseudo_inverse_scores_zero_and_random_feedback_does_not():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 15, generator=g)
    x = torch.randn(400, 15, generator=g)
    exact = pair_metrics(FeedbackPair(2, w, pinv(w.double()).float(), pinv(w.double()).float()), x)
    assert exact["L2.rel_err_white"] < 1e-5
    assert max(exact[f"L2.penrose_p{k}"] for k in range(1, 5)) < 1e-5
    assert exact["L2.rel_err_data"] > 1e-3  # x is not exactly white
    noise = pair_metrics(FeedbackPair(2, w, torch.randn(15, 6, generator=g), pinv(w)), x)
    assert noise["L2.rel_err_white"] > 0.5 and noise["L2.penrose_p1"] > 0.5
    aligned = pair_metrics(FeedbackPair(2, w, w.T, w.T), x)
    assert aligned == {"L2.angle_BWt": 0.0, "L2.norm_ratio": 1.0}  # alignment pairs: angle and norm ratio only


def test_backprop_credit_is_the_gradient():
    rule = make_rule("bp", sizes=(20, 16, 12, 3))
    train, _ = separable_data()
    out = feedback_metrics(rule, Probe(train.x[:200], train.y[:200]))
    assert out["grad_angle"] < 0.1 and all(out[f"L{l}.grad_angle"] < 0.1 for l in (1, 2, 3))
    assert out["L2.angle_BWt"] == 0.0


def test_fa_credit_is_exact_at_the_top_and_not_below():
    rule = make_rule("fa", sizes=(20, 16, 12, 3))
    train, _ = separable_data()
    out = feedback_metrics(rule, Probe(train.x[:200], train.y[:200]))
    assert out["L3.grad_angle"] < 0.1 and out["L1.grad_angle"] > 20


@pytest.mark.parametrize("name", ["bp", "fa", "rf"])
def test_metrics_leave_training_unchanged(name):
    train, _ = separable_data()
    probe = Probe(train.x[:100], train.y[:100])
    rules = [make_rule(name, sizes=(20, 16, 12, 3)) for _ in range(2)]
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    for step in range(20):
        for k, rule in enumerate(rules):
            idx = torch.randint(0, len(train), (32,), generator=g[k])
            rule.update(train.x[idx], train.y[idx])
            if k == 1 and step % 3 == 0:
                for p in rule.net.parameters():  # a stale .grad must come back untouched too
                    p.grad = torch.full_like(p, 7.0)
                feedback_metrics(rule, probe)
                assert all(bool((p.grad == 7.0).all()) for p in rule.net.parameters())
    for a, b in zip(rules[0].net.parameters(), rules[1].net.parameters()):
        assert torch.equal(a, b)


def _cell(extra: str, rule: str = "rf"):
    text = (f'{extra}\n[budget]\nupdates = 40\n[[tasks]]\nname = "digits"\n'
            f'[[rules]]\nname = "{rule}"\n')
    return parse_suite(text).cells[0]


def test_engine_records_feedback_every_kth_evaluation_and_at_the_end(tmp_path):
    cell = _cell("[evaluation]\nper_decade = 3\nevery_epoch = false\nfeedback_metrics = 2")
    run_cell(cell, tmp_path, torch.device("cpu"), {})
    evals = read_cell(tmp_path / f"{cell.cell_id}.jsonl").evals
    has = ["feedback" in e for e in evals]
    assert has[:-1] == [i % 2 == 0 for i in range(len(evals) - 1)] and has[-1]
    last = evals[-1]["feedback"]
    assert {"L2.rel_err_white", "L2.rel_err_data", "L2.penrose_p1", "L2.angle_BWt", "L2.grad_angle",
            "grad_angle"} <= set(last)
    assert all(math.isfinite(v) for v in last.values())


def test_feedback_metrics_can_be_switched_off_and_bad_values_are_rejected(tmp_path):
    cell = _cell("[evaluation]\nfeedback_metrics = 0", rule="bp")
    run_cell(cell, tmp_path, torch.device("cpu"), {})
    assert not any("feedback" in e for e in read_cell(tmp_path / f"{cell.cell_id}.jsonl").evals)
    with pytest.raises(ConfigError, match="feedback_metrics must be 0"):
        _cell("[evaluation]\nfeedback_metrics = -1")


@pytest.mark.parametrize("dtype, ridge, tol", [("float32", None, 1e-4), ("float64", 0.0, 1e-12)])
def test_pinv_oracle_measures_as_exact(tmp_path, dtype, ridge, tol):
    """The metrics see the B the next update will use: for pinv-feedback that is W⁺ of the
    weights they read (not of the weights one step earlier), to float rounding."""
    params = "" if ridge is None else f"params = {{ ridge = {ridge} }}\n"
    # A contracting network (64 → 64 → 32 → 10): every W has full row rank and W⁺ is well defined
    # in float32 (a square hidden layer's near-zero singular values make the ridge form differ).
    text = (f'dtype = "{dtype}"\n[budget]\nupdates = 12\n[[tasks]]\nname = "digits"\n'
            f'params = {{ hidden = [64, 32] }}\n[[rules]]\nname = "pinv-feedback"\n{params}')
    cell = parse_suite(text).cells[0]
    run_cell(cell, tmp_path, torch.device("cpu"), {})
    evals = read_cell(tmp_path / f"{cell.cell_id}.jsonl").evals
    measured = [e["feedback"] for e in evals if e["updates"] > 0 and "feedback" in e]
    assert measured
    for fb in measured:
        residuals = {k: v for k, v in fb.items() if "penrose" in k or "rel_err_white" in k}
        assert residuals and max(residuals.values()) < tol, residuals
