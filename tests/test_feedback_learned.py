"""Learned and target-driven feedback: Kolen–Pollack, weight mirrors (Akrout et al. 2019), DRTP
(Frenkel et al. 2021) and PEPITA (Dellaferrera & Kreiman 2022): their identities, in float64."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from plasticity import MLP, ConfigError, registry
from plasticity.feedback import as_matrix
from plasticity.linalg import angle
from plasticity.metrics import Probe, feedback_metrics
from plasticity.models import build_model
from plasticity.testing import separable_data

registry.load_plugins()
NEW_RULES = ("kp", "weight-mirror", "drtp", "pepita")


def _mlp(sizes=(20, 16, 12, 3), activation="tanh", seed=0) -> MLP:
    return MLP(list(sizes), hidden_activation=activation, generator=torch.Generator().manual_seed(seed)).double()


def _rule(name: str, net: nn.Module, seed: int = 2, lr: float = 0.05, momentum: float = 0.9, **params):
    cls = registry.get_rule(name)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    return cls(net, cls.Params(**params), opt, torch.Generator().manual_seed(seed))


def _batches(n: int, count: int, batch: int = 16, seed: int = 3):
    train, _ = separable_data(dim=20)
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        idx = torch.randint(0, len(train), (batch,), generator=g)
        yield train.x[idx].double(), train.y[idx]


def _lenet(seed: int = 0) -> nn.Module:
    return build_model("lenet", (1, 28, 28), 10, generator=torch.Generator().manual_seed(seed)).double()


def _image_batches(count: int, batch: int = 4, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.randn(batch, 784, generator=g, dtype=torch.float64), torch.randint(0, 10, (batch,), generator=g)


def _set_b_to_wt(rule) -> None:
    rule.B = [None] + [layer.weight.detach().T.clone() if isinstance(layer, nn.Linear) else layer.weight.detach().clone()
                       for layer in rule.layers[1:]]


# --------------------------------------------------------------------------------------------- kp


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_kp_started_at_wt_without_decay_is_backprop_at_every_update(model):
    """B(0) = Wᵀ, λ = 0: B receives W's own change, so it stays Wᵀ and every update is backprop's
    (momentum SGD, several updates: a wrong transport would drift B and the gradients apart)."""
    make = (lambda: _mlp()) if model == "mlp" else _lenet
    batches = list(_batches(0, 6) if model == "mlp" else _image_batches(4))
    kp_net, bp_net = make(), make()
    kp, bp = _rule("kp", kp_net, decay=0.0), _rule("bp", bp_net)
    _set_b_to_wt(kp)
    for x, y in batches:
        kp.update(x, y)
        bp.update(x, y)
        for a, b in zip(kp_net.parameters(), bp_net.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        for layer, b in zip(kp.layers[1:], kp.B[1:]):
            torch.testing.assert_close(as_matrix(layer, b), as_matrix(layer).T, rtol=1e-9, atol=1e-12)


def test_kp_difference_to_wt_decays_geometrically_and_the_angle_falls():
    """B − Wᵀ = (1 − λ)ᵗ (B(0) − W(0)ᵀ) whatever the data: from random B the angle to Wᵀ falls."""
    net = _mlp()
    kp = _rule("kp", net, decay=0.02)
    start = [(b - layer.weight.detach().T).clone() for layer, b in zip(kp.layers[1:], kp.B[1:])]
    angles = [[angle(b, layer.weight.detach().T) for layer, b in zip(kp.layers[1:], kp.B[1:])]]
    for t, (x, y) in enumerate(_batches(0, 150), start=1):
        kp.update(x, y)
        if t % 50 == 0:
            angles.append([angle(b, layer.weight.detach().T) for layer, b in zip(kp.layers[1:], kp.B[1:])])
    for d0, layer, b in zip(start, kp.layers[1:], kp.B[1:]):
        torch.testing.assert_close(b - layer.weight.detach().T, d0 * 0.98 ** 150, rtol=1e-8, atol=1e-12)
    for l in range(len(angles[0])):
        series = [a[l] for a in angles]
        assert series[0] > 60 and series[-1] < 20, series
        assert all(a > b for a, b in zip(series, series[1:])), series


def test_kp_decay_shrinks_weights_and_feedback_alike():
    net = _mlp()
    kp = _rule("kp", net, lr=0.0, momentum=0.0, decay=0.1)  # no step: only the decay acts
    w0 = [layer.weight.detach().clone() for layer in kp.layers]
    b0 = [b.clone() for b in kp.B[1:]]
    x, y = next(_batches(0, 1))
    kp.update(x, y)
    for layer, w in zip(kp.layers, w0):
        torch.testing.assert_close(layer.weight.detach(), 0.9 * w)
    for b, b_before in zip(kp.B[1:], b0):
        torch.testing.assert_close(b, 0.9 * b_before)


def test_kp_decay_follows_the_learning_rate_schedule():
    """λ_t = decay · η_t/η_0: a schedule that halves the step halves the decay (as lr · wd)."""
    kp = _rule("kp", _mlp(), lr=0.2, momentum=0.0, decay=0.1)
    assert kp.decay_now() == pytest.approx(0.1)
    for group in kp.optimizer.param_groups:
        group["lr"] = 0.05
    assert kp.decay_now() == pytest.approx(0.025)
    w0 = kp.layers[0].weight.detach().clone()
    for group in kp.optimizer.param_groups:
        group["lr"] = 0.0
    kp.update(*next(_batches(0, 1)))
    assert torch.equal(kp.layers[0].weight.detach(), w0)  # η_t = 0: no step and no decay


# ---------------------------------------------------------------------------------- weight mirror


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_weight_mirror_converges_to_wt_with_forward_weights_fixed(model):
    net = _mlp((20, 30, 25, 3)) if model == "mlp" else _lenet()
    wm = _rule("weight-mirror", net, mirror_batch=1024)  # floor √(λ d_in / 2n) ≈ 0.1
    w_before = [p.detach().clone() for p in net.parameters()]
    first = [angle(as_matrix(layer, b), as_matrix(layer).T) for layer, b in zip(wm.layers[1:], wm.B[1:])]
    for _ in range(60):  # λ = 0.05: 0.95⁶⁰ ≈ 5 % of the random start is left
        wm.mirror()
    assert all(torch.equal(a, b) for a, b in zip(w_before, net.parameters()))  # the mirror moves B only
    for l, (layer, b) in enumerate(zip(wm.layers[1:], wm.B[1:])):
        bm, w = as_matrix(layer, b), as_matrix(layer)
        assert first[l] > 60
        assert angle(bm, w.T) < 15, (l, angle(bm, w.T))
        assert 0.8 < float(bm.norm() / w.norm()) < 1.3  # η σ² = λ: B approaches Wᵀ itself, not a multiple


def test_weight_mirror_fixed_point_scales_with_eta_sigma2_over_lambda():
    net = _mlp((20, 30, 25, 3))
    wm = _rule("weight-mirror", net, mirror_lr=0.1, decay=0.05, noise_std=0.5, mirror_batch=512)
    for _ in range(300):
        wm.mirror()
    for layer, b in zip(wm.layers[1:], wm.B[1:]):
        ratio = float(b.norm() / layer.weight.detach().norm())
        assert abs(ratio - 0.1 * 0.25 / 0.05) < 0.15, ratio  # ‖B*‖ = (ησ²/λ)‖W‖ = 0.5‖W‖


# ------------------------------------------------------------------------------------------- drtp


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_drtp_hidden_updates_do_not_depend_on_the_output(model):
    """Changing the output layer (hence the prediction and the output error) leaves every hidden
    layer's update unchanged; the output layer's own update does change."""
    net = _mlp() if model == "mlp" else _lenet()
    rule = _rule("drtp", net)
    x, y = next(_batches(0, 1)) if model == "mlp" else next(_image_batches(1, batch=6))
    rule.credit(x, y)
    before = [p.grad.clone() for p in net.parameters()]
    out_layer = rule.layers[-1]
    with torch.no_grad():
        out_layer.weight.mul_(-3.0).add_(0.5)
    for p in net.parameters():
        p.grad = None
    rule.credit(x, y)
    out_params = {id(p) for p in out_layer.parameters()}
    for p, g in zip(net.parameters(), before):
        if id(p) in out_params:
            assert not torch.allclose(p.grad, g)
        else:
            assert torch.equal(p.grad, g)


def test_drtp_hidden_error_is_the_projected_target_on_an_mlp():
    net = _mlp()
    rule = _rule("drtp", net)
    x, y = next(_batches(0, 1))
    rule.credit(x, y)
    with torch.no_grad():
        t = net.forward_trace(x)
        star = F.one_hot(y, 3).double() / x.shape[0]
        d2 = (star @ rule.B[2].T) * (1 - t.z[2] ** 2)  # hidden layer 2 (tanh): B_3 y*
        d1 = (star @ rule.B[1].T) * (1 - t.z[1] ** 2)  # hidden layer 1: B_2 y*
        d3 = (t.output.softmax(1) - F.one_hot(y, 3)) / x.shape[0]  # the output layer's own error
    torch.testing.assert_close(net.layers[0].weight.grad, d1.T @ x)
    torch.testing.assert_close(net.layers[1].weight.grad, d2.T @ t.z[1])
    torch.testing.assert_close(net.layers[2].weight.grad, d3.T @ t.z[2])


# ----------------------------------------------------------------------------------------- pepita


def _by_hand(net: MLP, fmat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, modulated: bool):
    """Algorithm 1 of the paper on a one-hidden-layer ReLU net, one example at a time."""
    w1, b1, w2, b2 = (p.detach() for p in net.parameters())
    n = x.shape[0]
    gw1, gb1, gw2, gb2 = torch.zeros_like(w1), torch.zeros_like(b1), torch.zeros_like(w2), torch.zeros_like(b2)
    for i in range(n):
        h0 = x[i]
        h1 = torch.clamp(w1 @ h0 + b1, min=0)
        h2 = w2 @ h1 + b2
        target = torch.zeros_like(h2)
        target[y[i]] = 1.0
        e = torch.exp(h2) / torch.exp(h2).sum() - target  # softmax output minus one-hot target
        h0e = h0 + fmat @ e
        h1e = torch.clamp(w1 @ h0e + b1, min=0)
        h2e = w2 @ h1e + b2
        e_out = torch.exp(h2e) / torch.exp(h2e).sum() - target if modulated else e
        gw1 += torch.outer(h1 - h1e, h0e)
        gb1 += h1 - h1e
        gw2 += torch.outer(e_out, h1e)
        gb2 += e_out
    return [g / n for g in (gw1, gb1, gw2, gb2)]


@pytest.mark.parametrize("output_error", ["standard", "modulated"])
def test_pepita_is_the_papers_algorithm_on_a_two_layer_net(output_error):
    net = _mlp((5, 4, 3), activation="relu", seed=4)
    rule = _rule("pepita", net, feedback_scale=3.0, output_error=output_error)  # a large F: visible changes
    x, y = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64), torch.tensor(
        [0, 1, 2, 0, 1, 2, 0])
    rule.credit(x, y)
    want = _by_hand(net, rule.F, x, y, output_error == "modulated")
    for p, g in zip(net.parameters(), want):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)
    assert float(net.layers[0].weight.grad.abs().max()) > 1e-3  # the hidden layer does learn


def test_pepita_projection_follows_the_paper_scale():
    net = _mlp((400, 16, 10), activation="relu")
    rule = _rule("pepita", net)
    bound = 0.05 * math.sqrt(6 / 400)
    assert rule.F.shape == (400, 10)
    assert float(rule.F.abs().max()) <= bound and float(rule.F.abs().max()) > 0.9 * bound
    assert abs(float(rule.F.std()) - bound / math.sqrt(3)) < 0.1 * bound  # U(−a, a) has std a/√3


def test_pepita_refuses_a_conv_model_naming_the_layer():
    with pytest.raises(ConfigError, match=r"rule 'pepita' has no form for a Conv2d layer \('body\.1'\)"):
        _rule("pepita", _lenet())


# ------------------------------------------------------------------------------ contract, metrics


@pytest.mark.parametrize("name", NEW_RULES)
def test_credit_changes_nothing_but_grad(name):
    net = _mlp()
    rule = _rule(name, net)
    x, y = next(_batches(0, 1))
    for xb, yb in _batches(0, 3, seed=9):  # some history: momentum buffers, learned B
        rule.update(xb, yb)
    params = [p.detach().clone() for p in net.parameters()]
    state = {k: v.clone() for k, v in vars(rule).items() if isinstance(v, torch.Tensor)}
    feedback = [None if b is None else b.clone() for b in getattr(rule, "B", [])]
    gen = rule.generator.get_state()
    rule.credit(x, y)
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))
    assert all(torch.equal(v, getattr(rule, k)) for k, v in state.items())
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(feedback, getattr(rule, "B", [])))
    assert torch.equal(gen, rule.generator.get_state())
    assert all(p.grad is not None for p in net.parameters())


def test_metrics_give_alignment_per_layer_for_the_new_rules():
    train, _ = separable_data(dim=20)
    probe = Probe(train.x[:64].double(), train.y[:64])
    for name in NEW_RULES:
        m = feedback_metrics(_rule(name, _mlp()), probe)
        assert {"L1.grad_angle", "L2.grad_angle", "L3.grad_angle", "grad_angle"} <= m.keys(), name
    kp = feedback_metrics(_rule("kp", _mlp()), probe)
    assert {"L2.angle_BWt", "L3.angle_BWt", "L2.norm_ratio"} <= kp.keys()
    pepita = feedback_metrics(_rule("pepita", _mlp()), probe)
    assert "L1.angle_BWt" in pepita  # F against (W_L ⋯ W_1)ᵀ
    bp_like = _rule("kp", _mlp(), decay=0.0)
    _set_b_to_wt(bp_like)
    m = feedback_metrics(bp_like, probe)
    assert m["grad_angle"] < 1e-5 and m["L2.angle_BWt"] < 1e-5


@pytest.mark.parametrize("name, kwargs, message", [
    ("kp", {"decay": 1.0}, "decay"), ("kp", {"decay": -0.1}, "decay"),
    ("weight-mirror", {"mirror_batch": 0}, "mirror_batch"), ("weight-mirror", {"noise_std": 0.0}, "noise_std"),
    ("drtp", {"feedback_scale": 0.0}, "feedback_scale"),
    ("pepita", {"output_error": "both"}, "output_error"), ("pepita", {"feedback_scale": -1.0}, "feedback_scale"),
])
def test_bad_params_are_rejected(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        registry.get_rule(name).Params(**kwargs)
