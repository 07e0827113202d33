"""Hand-computed values of the core math off its defaults (issue 28).

Every expected value here is computed in the test, by the formula written out or by torch
autograd on the loss the rule says it descends, never by calling the code under test: a wrong
sign, a lost factor or a parameter read in the wrong place fails one of these.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from plasticity import gofau, registry
from plasticity.gofau import GofauAdagrad, GofauAdam, GofauRMSprop, GofauSGD
from plasticity.losses import LOSSES, loss_and_error
from plasticity.network import MLP
from plasticity.optimizers import build_optimizer

D = torch.float64


def rule_on(name: str, sizes: tuple[int, ...], seed: int = 0, activation: str = "tanh", **values):
    """Rule `name` with Params(**values) on a float64 MLP, its default optimizer."""
    cls = registry.get_rule(name)
    net = MLP(list(sizes), hidden_activation=activation, generator=torch.Generator().manual_seed(seed)).to(D)
    opt = None
    if cls.uses_optimizer:
        opt_name, opt_values = cls.default_optimizer
        opt = build_optimizer(opt_name, opt_values, net.parameters())
    return cls(net, cls.Params(**values), opt, torch.Generator().manual_seed(seed + 7))


def batch(n: int, d: int, classes: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=D), torch.randint(0, classes, (n,), generator=g)


def forward(net: MLP, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(h, z) of a tanh MLP with a linear output, by hand: h[l] = z[l-1] W_lᵀ + b_l."""
    hs, zs = [None], [x]
    for l, layer in enumerate(net.layers, start=1):
        hs.append(zs[-1] @ layer.weight.detach().T + layer.bias.detach())
        zs.append(hs[-1] if l == len(net.layers) else torch.tanh(hs[-1]))
    return hs, zs


def onehot(y: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(y, k).to(D)


def ce_error(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂/∂o of the batch-mean softmax cross-entropy: (softmax(o) − onehot(y)) / N."""
    return (torch.softmax(o, dim=1) - onehot(y, o.shape[1])) / o.shape[0]


def mse_error(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂/∂o of ½‖o − onehot(y)‖² averaged over the batch: (o − onehot(y)) / N."""
    return (o - onehot(y, o.shape[1])) / o.shape[0]


def assert_grads(net: MLP, deltas: list[torch.Tensor], zs: list[torch.Tensor]) -> None:
    """Each layer's .grad is δ_lᵀ z_{l−1} and Σ δ_l."""
    for layer, delta, z in zip(net.layers, deltas, zs[:-1]):
        torch.testing.assert_close(layer.weight.grad, delta.T @ z)
        torch.testing.assert_close(layer.bias.grad, delta.sum(0))


# ---- losses ------------------------------------------------------------------------------------

def test_squared_error_loss_and_its_error_by_hand():
    o = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], dtype=D)
    y = torch.tensor([2, 0])
    # ½((0.5)² + 1² + 1²) = 1.125, ½(0.5² + 0.25² + 0.5²) = 0.28125; batch mean 0.703125
    loss, error = loss_and_error("mse", o, y)
    assert float(loss) == pytest.approx(0.703125, abs=1e-12)
    assert float(LOSSES["mse"](o, y)) == pytest.approx(0.703125, abs=1e-12)
    torch.testing.assert_close(error, torch.tensor([[0.5, -1.0, 1.0], [0.5, 0.25, -0.5]], dtype=D) / 2)


def test_cross_entropy_error_is_softmax_minus_onehot_over_the_batch():
    o, y = batch(5, 4, 4)
    loss, error = loss_and_error("ce", o, y)
    expected = -(torch.log_softmax(o, dim=1)[torch.arange(5), y]).mean()
    assert float(loss) == pytest.approx(float(expected), abs=1e-12)
    torch.testing.assert_close(error, ce_error(o, y))


# ---- GOFAU off its defaults ----------------------------------------------------------------------

def one_param(seed: int = 0) -> torch.nn.Parameter:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.randn(6, 5, generator=g, dtype=D))


def grad_like(p: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def hybrid(theta, d, gamma, lr, eta_out, eta_in):
    """θ − γ η_out |θ| tanh(η_in d) − (1 − γ) η d (the module's ξ, written out)."""
    return theta - gamma * eta_out * theta.abs() * torch.tanh(eta_in * d) - (1 - gamma) * lr * d


@pytest.mark.parametrize("gamma", [0.5, 0.3])
def test_gofau_sgd_hybrid_step_with_eta_out_off_lr(gamma):
    p = one_param()
    theta0 = p.detach().clone()
    lr, eta_out, eta_in, wd = 0.1, 0.35, 2.0, 0.01
    opt = GofauSGD([p], lr=lr, eta_out=eta_out, eta_in=eta_in, gamma=gamma, weight_decay=wd, update="hybrid")
    g1 = grad_like(p, 1)
    p.grad = g1.clone()
    opt.step()
    d1 = g1 + wd * theta0
    theta1 = hybrid(theta0, d1, gamma, lr, eta_out, eta_in)
    torch.testing.assert_close(p.detach(), theta1)


def test_gofau_sgd_momentum_two_hybrid_steps_by_hand():
    p = one_param(2)
    theta = p.detach().clone()
    lr, eta_out, eta_in, mu, damp, gamma = 0.05, 0.2, 1.5, 0.9, 0.25, 0.6
    opt = GofauSGD([p], lr=lr, momentum=mu, dampening=damp, eta_out=eta_out, eta_in=eta_in, gamma=gamma)
    buf = None
    for k in range(2):
        g = grad_like(p, 10 + k)
        p.grad = g.clone()
        opt.step()
        buf = g.clone() if buf is None else mu * buf + (1 - damp) * g  # torch's SGD buffer
        theta = hybrid(theta, buf, gamma, lr, eta_out, eta_in)
        torch.testing.assert_close(p.detach(), theta)


def test_gofau_sgd_nesterov_and_tanh_momentum_by_hand():
    lr, eta_out, eta_in, mu, gamma = 0.05, 0.2, 1.5, 0.8, 0.4
    p, q = one_param(3), one_param(4)
    tp, tq = p.detach().clone(), q.detach().clone()
    nesterov = GofauSGD([p], lr=lr, momentum=mu, nesterov=True, eta_out=eta_out, eta_in=eta_in, gamma=gamma)
    tanh_m = GofauSGD([q], lr=lr, momentum=mu, tanh_momentum=True, eta_out=eta_out, eta_in=eta_in, gamma=gamma)
    buf = u = None
    for k in range(2):
        g = grad_like(p, 20 + k)
        p.grad, q.grad = g.clone(), g.clone()
        nesterov.step()
        tanh_m.step()
        buf = g.clone() if buf is None else mu * buf + g
        tp = hybrid(tp, g + mu * buf, gamma, lr, eta_out, eta_in)
        t = torch.tanh(eta_in * g)
        u = t if u is None else mu * u + (1 - mu) * t  # u ← β u + (1 − β) tanh(η_in g)
        tq = tq - gamma * eta_out * tq.abs() * u - (1 - gamma) * lr * u
        torch.testing.assert_close(p.detach(), tp)
        torch.testing.assert_close(q.detach(), tq)


def adam_direction(gs, betas, eps, bias_inside=True):
    m = v = 0
    for t, g in enumerate(gs, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
    m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
    return m_hat / (v_hat.sqrt() + eps), m / (v_hat.sqrt() + eps), 1 / (1 - betas[0] ** t)


def test_gofau_adam_hybrid_steps_inside_and_outside_by_hand():
    lr, eta_out, eta_in, gamma, betas, eps = 0.01, 0.05, 3.0, 0.3, (0.8, 0.99), 1e-6
    p, q = one_param(5), one_param(5)
    tp, tq = p.detach().clone(), q.detach().clone()
    inside = GofauAdam([p], lr=lr, betas=betas, eps=eps, eta_out=eta_out, eta_in=eta_in, gamma=gamma)
    outside = GofauAdam([q], lr=lr, betas=betas, eps=eps, eta_out=eta_out, eta_in=eta_in, gamma=gamma,
                        bias_correction="outside")
    gs = []
    for k in range(3):
        gs.append(grad_like(p, 30 + k))
        p.grad, q.grad = gs[-1].clone(), gs[-1].clone()
        inside.step()
        outside.step()
        d, raw, c = adam_direction(gs, betas, eps)
        tp = hybrid(tp, d, gamma, lr, eta_out, eta_in)
        # the authors' form: (η_out/(1 − β₁ᵗ)) |θ| tanh(η_in m/(√v̂ + ε)); the additive term is η m̂/(√v̂ + ε)
        tq = tq - gamma * eta_out * c * tq.abs() * torch.tanh(eta_in * raw) - (1 - gamma) * lr * d
        torch.testing.assert_close(p.detach(), tp)
        torch.testing.assert_close(q.detach(), tq)


def test_gofau_adagrad_and_rmsprop_hybrid_steps_by_hand():
    lr, eta_out, eta_in, gamma, eps, alpha, mu, wd = 0.02, 0.1, 0.7, 0.45, 1e-3, 0.9, 0.5, 0.02
    pa, pr, pm = one_param(6), one_param(6), one_param(6)
    ta, tr, tm = (x.detach().clone() for x in (pa, pr, pm))
    adagrad = GofauAdagrad([pa], lr=lr, eps=eps, weight_decay=wd, eta_out=eta_out, eta_in=eta_in, gamma=gamma)
    rms = GofauRMSprop([pr], lr=lr, alpha=alpha, eps=eps, eta_out=eta_out, eta_in=eta_in, gamma=gamma)
    rms_m = GofauRMSprop([pm], lr=lr, alpha=alpha, eps=eps, momentum=mu, eta_out=eta_out, eta_in=eta_in,
                         gamma=gamma)
    s = v = vm = buf = 0
    for k in range(2):
        g = grad_like(pa, 40 + k)
        for x in (pa, pr, pm):
            x.grad = g.clone()
        for o in (adagrad, rms, rms_m):
            o.step()
        ga = g + wd * ta
        s = s + ga * ga
        ta = hybrid(ta, ga / (s.sqrt() + eps), gamma, lr, eta_out, eta_in)
        v = alpha * v + (1 - alpha) * g * g
        tr = hybrid(tr, g / (v.sqrt() + eps), gamma, lr, eta_out, eta_in)
        vm = alpha * vm + (1 - alpha) * g * g
        buf = mu * buf + g / (vm.sqrt() + eps)
        tm = hybrid(tm, buf, gamma, lr, eta_out, eta_in)
        torch.testing.assert_close(pa.detach(), ta)
        torch.testing.assert_close(pr.detach(), tr)
        torch.testing.assert_close(pm.detach(), tm)


def test_gofau_decay_and_multiplicative_modes_by_hand():
    lr, eta_out, gamma, decay, patience = 0.1, 0.3, 0.8, 0.5, 1
    p, q = one_param(7), one_param(7)
    tp, tq = p.detach().clone(), q.detach().clone()
    dec = GofauSGD([p], lr=lr, eta_out=eta_out, gamma=gamma, gamma_schedule="decay", gamma_decay=decay,
                   gamma_patience=patience)
    mult = GofauSGD([q], lr=lr, eta_out=eta_out, gamma=0.2, update="multiplicative")
    for t in range(1, 4):
        g = grad_like(p, 50 + t)
        p.grad, q.grad = g.clone(), g.clone()
        dec.step()
        mult.step()
        gamma_t = gamma * decay ** max(0, t - patience)  # 0.8, 0.4, 0.2
        tp = hybrid(tp, g, gamma_t, lr, eta_out, 1.0)
        tq = tq - eta_out * tq.abs() * torch.tanh(g)  # multiplicative ignores γ
        torch.testing.assert_close(p.detach(), tp)
        torch.testing.assert_close(q.detach(), tq)


@pytest.mark.parametrize("mode", ["Mult", "Hybrid"])
@pytest.mark.parametrize("base", ["SGD", "Adam", "Adagrad", "RMSprop"])
def test_registered_variants_are_their_base_with_the_update_fixed(mode, base):
    """MultX / HybridX: the base optimizer with update fixed, lr accepted positionally."""
    p, q = one_param(8), one_param(8)
    update = "multiplicative" if mode == "Mult" else "hybrid"
    variant = getattr(gofau, f"{mode}{base}")([p], 0.05, eta_out=0.2, gamma=0.3)
    plain = getattr(gofau, f"Gofau{base}")([q], lr=0.05, eta_out=0.2, gamma=0.3, update=update)
    assert variant.param_groups[0]["update"] == update and variant.param_groups[0]["lr"] == 0.05
    for k in range(2):
        g = grad_like(p, 60 + k)
        p.grad, q.grad = g.clone(), g.clone()
        variant.step()
        plain.step()
    assert torch.equal(p, q) and not torch.equal(p, one_param(8))


# ---- the feedback family: scales and credit --------------------------------------------------------

WIDE = (40, 200, 200, 10)


@pytest.mark.parametrize("name", ["fa", "dfa", "rf"])
@pytest.mark.parametrize("scale", [0.4, 2.5])
def test_random_feedback_std_is_feedback_scale_times_initial_weight_std(name, scale):
    rule = rule_on(name, WIDE, feedback_scale=scale)
    assert rule.B[0] is None
    for l in range(2, len(WIDE)):
        w0 = rule.net.layers[l - 1].weight.detach()
        b = rule.B[l - 1]
        ratio = float(b.std()) / (float(w0.std()) * scale)
        assert ratio == pytest.approx(1.0, abs=0.06), (name, l, ratio)
        assert abs(float(b.mean())) < 0.1 * float(b.std())


def test_fa_credit_with_squared_error_by_hand():
    sizes = (6, 5, 4, 3)
    rule = rule_on("fa", sizes, loss="mse", feedback_scale=1.7)
    x, y = batch(7, 6, 3)
    hs, zs = forward(rule.net, x)
    rule.credit(x, y)
    d3 = mse_error(zs[3], y)
    d2 = (d3 @ rule.B[2].T) * (1 - zs[2] ** 2)  # B_l is in × out: δ_{l−1} = (δ_l B_lᵀ) ⊙ f'(H_{l−1})
    d1 = (d2 @ rule.B[1].T) * (1 - zs[1] ** 2)
    assert_grads(rule.net, [d1, d2, d3], zs)


def test_dfa_credit_sends_the_output_error_to_every_layer():
    sizes = (6, 5, 4, 3)
    rule = rule_on("dfa", sizes, feedback_scale=0.6)
    x, y = batch(7, 6, 3)
    hs, zs = forward(rule.net, x)
    rule.credit(x, y)
    e = ce_error(zs[3], y)
    d2 = (e @ rule.B[2].T) * (1 - zs[2] ** 2)  # B_l: n_{l−1} × n_out, from the output straight down
    d1 = (e @ rule.B[1].T) * (1 - zs[1] ** 2)
    assert_grads(rule.net, [d1, d2, e], zs)


@pytest.mark.parametrize("name", ["rf", "pinv-feedback"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_reciprocal_credit_without_derivative_leaves_out_f_prime(name, loss):
    sizes = (6, 5, 4, 3)
    rule = rule_on(name, sizes, derivative=False, loss=loss)
    x, y = batch(7, 6, 3)
    hs, zs = forward(rule.net, x)
    rule.credit(x, y)
    d3 = (ce_error if loss == "ce" else mse_error)(zs[3], y)
    d2 = d3 @ rule.B[2].T
    d1 = d2 @ rule.B[1].T
    assert_grads(rule.net, [d1, d2, d3], zs)


@pytest.mark.parametrize("drive", ["noise", "activity", "both"])
def test_rf_recirculation_step_for_each_drive(drive):
    """ΔB = (η/λ̂) ⟨(x − B h) hᵀ⟩, h = W x, x the drive; λ̂ ≈ λ_max(⟨hhᵀ⟩) by power iteration."""
    sizes, n, noise_batch, eta = (6, 5, 4, 3), 9, 11, 0.7
    rule = rule_on("rf", sizes, drive=drive, noise_batch=noise_batch, feedback_lr=eta)
    x, y = batch(n, 6, 3)
    b_before = [None] + [b.clone() for b in rule.B[1:]]
    gen = torch.Generator()
    gen.set_state(rule.generator.get_state())  # credit draws nothing: the noise comes next, per layer
    rule.update(x, y)  # the weight step, then recirculation on the updated weights
    _, zs = forward(rule.net, x)
    for l in (2, 3):
        w = rule.net.layers[l - 1].weight.detach()
        parts = [] if drive == "noise" else [zs[l - 1]]
        if drive != "activity":
            parts.append(torch.randn(noise_batch, w.shape[1], generator=gen, dtype=D))
        xd = torch.cat(parts)
        h = xd @ w.T
        direction = (xd - h @ b_before[l - 1].T).T @ h / xd.shape[0]
        delta = rule.B[l - 1] - b_before[l - 1]
        c = float((delta * direction).sum() / (direction * direction).sum())
        torch.testing.assert_close(delta, c * direction)
        lam_max = float(torch.linalg.eigvalsh(h.T @ h / h.shape[0])[-1])
        assert 1 - 1e-9 <= c * lam_max / eta < 1.05, (l, c * lam_max / eta)  # λ̂ ≤ λ_max, close


# ---- sign-concordant feedback against BioTorch's convention ------------------------------------------

@pytest.mark.parametrize("name", ["usf", "brsf", "frsf"])
def test_sign_feedback_magnitudes_follow_biotorch(name):
    """BioTorch (jsalbert/biotorch, biotorch/layers/fa_constructor/linear.py, Linear.forward and
    init_parameters): uSF B = scaling_factor·sign(W) with scaling_factor the std of the layer's init;
    brSF B = |M| ⊙ sign(W), M ~ xavier_uniform (U(±√3·s), s its std) redrawn every forward pass;
    frSF the same M drawn once. So |B| is s exactly (uSF) or U(0, √3·s): mean √3/2·s, RMS s,
    max √3·s (brSF, frSF), with s = the initial weights' std × feedback_scale here."""
    scale = 1.6
    rule = rule_on(name, WIDE, feedback_scale=scale)
    first = rule.backward_feedback()
    second = rule.backward_feedback()
    assert first[0] is None
    for l in range(2, len(WIDE)):
        w = rule.net.layers[l - 1].weight.detach()
        s = float(w.std()) * scale
        b = first[l - 1]
        assert b.shape == w.T.shape
        assert torch.equal(torch.sign(b), torch.sign(w.T))  # sign-concordant, in Wᵀ's layout
        mag = b.abs()
        if name == "usf":
            torch.testing.assert_close(mag, torch.full_like(mag, s))
        else:
            assert float(mag.max()) <= math.sqrt(3) * s * (1 + 1e-12)
            assert float(mag.mean()) == pytest.approx(math.sqrt(3) / 2 * s, rel=0.04)
            assert float(mag.pow(2).mean().sqrt()) == pytest.approx(s, rel=0.04)
        # brSF redraws its magnitudes every batch, frSF keeps them
        assert torch.equal(first[l - 1], second[l - 1]) == (name != "brsf")


def test_sign_feedback_follows_the_current_signs_of_w():
    rule = rule_on("frsf", (6, 5, 4, 3))
    with torch.no_grad():
        rule.net.layers[1].weight.neg_()
    b = rule.backward_feedback()[1]
    assert torch.equal(torch.sign(b), torch.sign(rule.net.layers[1].weight.detach().T))
    torch.testing.assert_close(b.abs(), rule.R[1].T)


def test_usf_credit_by_hand():
    rule = rule_on("usf", (6, 5, 4, 3), feedback_scale=0.7)
    x, y = batch(7, 6, 3)
    _, zs = forward(rule.net, x)
    rule.credit(x, y)
    s = [None] + [float(layer.weight.detach().std()) * 0.7 for layer in rule.net.layers[1:]]
    d3 = ce_error(zs[3], y)
    d2 = (d3 @ (s[2] * torch.sign(rule.net.layers[2].weight.detach()))) * (1 - zs[2] ** 2)
    d1 = (d2 @ (s[1] * torch.sign(rule.net.layers[1].weight.detach()))) * (1 - zs[1] ** 2)
    assert_grads(rule.net, [d1, d2, d3], zs)


# ---- target propagation --------------------------------------------------------------------------

TP_SIZES = (6, 5, 5, 4, 3)


def g_inv(rule, l, z):
    return torch.tanh(z @ rule.V[l].T + rule.c[l])


@pytest.mark.parametrize("name", ["dtp", "tp"])
@pytest.mark.parametrize("top", ["penultimate", "output"])
def test_target_rule_credit_by_hand(name, top):
    """ẑ_top = z_top − β ∂ℓ/∂z_top (per-example ℓ); DTP ẑ_{l−1} = z_{l−1} − g(z_l) + g(ẑ_l), TP g(ẑ_l);
    hidden δ_l = ((z_l − ẑ_l)/(βN)) ⊙ f'(H_l); the output layer on ℓ itself."""
    beta = 0.4
    rule = rule_on(name, TP_SIZES, beta=beta, top_target=top, loss="mse")
    x, y = batch(8, 6, 3)
    _, zs = forward(rule.net, x)
    L, N = len(TP_SIZES) - 1, 8
    e = mse_error(zs[L], y)
    hat = {}
    if top == "penultimate":
        hat[L - 1] = zs[L - 1] - beta * (e * N) @ rule.net.layers[L - 1].weight.detach()
        start = L - 1
    else:
        hat[L] = zs[L] - beta * e * N
        start = L
    for l in range(start, 1, -1):
        if name == "dtp":
            hat[l - 1] = zs[l - 1] - g_inv(rule, l, zs[l]) + g_inv(rule, l, hat[l])
        else:
            hat[l - 1] = g_inv(rule, l, hat[l])
    assert not torch.allclose(hat[1], zs[1])  # ẑ ≠ z: the correction matters
    rule.credit(x, y)
    deltas = [((zs[l] - hat[l]) / (beta * N)) * (1 - zs[l] ** 2) for l in range(1, L)] + [e]
    assert_grads(rule.net, deltas, zs)


def test_dtp_propagate_at_a_target_off_the_activity():
    rule = rule_on("dtp", TP_SIZES)
    g = torch.Generator().manual_seed(3)
    z_below, z, target = (torch.randn(4, n, generator=g, dtype=D) for n in (5, 4, 4))  # layer 3: 5 → 4
    got = rule.propagate(3, z_below, z, target)
    expected = z_below + torch.tanh(target @ rule.V[3].T + rule.c[3]) - torch.tanh(z @ rule.V[3].T + rule.c[3])
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["dtp", "tp"])
def test_inverse_gradient_is_autograd_of_the_reconstruction_loss(name):
    """V_l, c_l step on ½‖g_l(f_l(z̃)) − z̃‖²/N, z̃ = z_{l−1} + σ ε: their .grad is its autograd
    gradient, and the feedback optimizer (Adam here) takes its first step at feedback_lr."""
    sigma, lr = 0.3, 0.01
    rule = rule_on(name, TP_SIZES, noise=sigma, feedback_lr=lr, inverse_steps=1)
    x, _ = batch(8, 6, 3)
    _, zs = forward(rule.net, x)
    gen = torch.Generator()
    gen.set_state(rule.generator.get_state())
    before = {l: (rule.V[l].clone(), rule.c[l].clone()) for l in rule.V}
    with torch.no_grad():
        trace = rule.net.forward_trace(x)
    rule.train_feedback(trace)
    for l in sorted(before):
        layer = rule.net.layers[l - 1]
        noisy = zs[l - 1] + sigma * torch.randn(zs[l - 1].shape, generator=gen, dtype=D)
        up = torch.tanh(noisy @ layer.weight.detach().T + layer.bias.detach())
        v, c = (t.clone().requires_grad_(True) for t in before[l])
        loss = 0.5 * (torch.tanh(up @ v.T + c) - noisy).pow(2).sum() / noisy.shape[0]
        gv, gc = torch.autograd.grad(loss, (v, c))
        torch.testing.assert_close(rule.V[l].grad, gv)
        torch.testing.assert_close(rule.c[l].grad, gc)
        # Adam's first step: lr · g/(|g| + ε)
        torch.testing.assert_close(rule.V[l], before[l][0] - lr * gv / (gv.abs() + 1e-8))


def test_ddtp_feedback_gradient_is_autograd_of_its_reconstruction_loss():
    sigma, beta = 0.2, 0.5
    rule = rule_on("ddtp-linear", TP_SIZES, noise=sigma, beta=beta, inverse_steps=1, feedback_optimizer="sgd",
                   feedback_lr=0.05)
    x, y = batch(8, 6, 3)
    _, zs = forward(rule.net, x)
    L, N = len(TP_SIZES) - 1, 8
    gen = torch.Generator()
    gen.set_state(rule.generator.get_state())
    q_before = {l: q.clone() for l, q in rule.Q.items()}
    with torch.no_grad():
        trace = rule.net.forward_trace(x)
    rule.train_feedback(trace)
    for l in sorted(q_before):
        eps = sigma * torch.randn(zs[l].shape, generator=gen, dtype=D)
        z = zs[l] + eps
        for k in range(l + 1, L + 1):
            layer = rule.net.layers[k - 1]
            h = z @ layer.weight.detach().T + layer.bias.detach()
            z = h if k == L else torch.tanh(h)
        q = q_before[l].clone().requires_grad_(True)
        loss = 0.5 * ((z - zs[L]) @ q.T - eps).pow(2).sum() / N
        (gq,) = torch.autograd.grad(loss, q)
        torch.testing.assert_close(rule.Q[l].grad, gq)
        torch.testing.assert_close(rule.Q[l], q_before[l] - 0.05 * gq)  # plain SGD at feedback_lr
    # targets: ẑ_l = z_l + Q_l (ẑ_L − z_L), ẑ_L − z_L = −β N ∂ℓ/∂z_L
    rule.credit(x, y)
    shift = -beta * N * ce_error(zs[L], y)
    deltas = [((zs[l] - (zs[l] + shift @ rule.Q[l].T)) / (beta * N)) * (1 - zs[l] ** 2) for l in range(1, L)]
    assert_grads(rule.net, deltas + [ce_error(zs[L], y)], zs)


# ---- expectation reflection --------------------------------------------------------------------------

def ridge_fit(a: torch.Tensor, t: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """min ‖a Δw + 1 Δbᵀ − t‖² + ridge ‖Δw‖² (the intercept unpenalised): centre, then solve."""
    am, tm = a.mean(0), t.mean(0)
    ac, tc = a - am, t - tm
    dw = torch.linalg.solve(ac.T @ ac + ridge * torch.eye(a.shape[1], dtype=D), ac.T @ tc)
    return dw, tm - am @ dw


@pytest.mark.parametrize("values", [
    {"eta": 0.7, "alpha": 0.05},
    {"eta": 0.4, "alpha": 0.02, "target_ridge": 0.1, "target_bound": 0.3},
])
def test_er_hidden_targets_carry_the_ratio_h_over_z(values):
    """Simultaneous ER on a 2-layer net: ΔH₂ = Ŷ ⊙ H₂/tanh(H₂) − H₂, ΔZ₁ = ΔH₂ (W₂ᵀ)⁺ (ridge ρσ²_max
    with target_ridge; clipped so Z₁ + ΔZ₁ stays in ±(1 − bound)), ΔH₁ = (H₁/Z₁) ⊙ ΔZ₁; each layer
    a ridge regression (α·N) of its ΔH on its input with an intercept, W ← W + η ΔW."""
    n = 40
    rule = rule_on("er", (5, 6, 3), algorithm="simultaneous", **values)
    x, y = batch(n, 5, 3)
    hs, zs = forward(rule.net, x)
    w1, b1 = (t.detach().clone() for t in (rule.net.layers[0].weight, rule.net.layers[0].bias))
    w2, b2 = (t.detach().clone() for t in (rule.net.layers[1].weight, rule.net.layers[1].bias))
    target = 2 * onehot(y, 3) - 1
    dh2 = target * hs[2] / torch.tanh(hs[2]) - hs[2]
    wt = w2.T  # 6 × 3
    rho = values.get("target_ridge", 0.0)
    if rho:
        ridge = rho * float(torch.linalg.matrix_norm(wt, ord=2)) ** 2
        wt_pinv = torch.linalg.solve(wt.T @ wt + ridge * torch.eye(3, dtype=D), wt.T)  # 3 × 6
    else:
        wt_pinv = torch.linalg.pinv(wt)
    dz1 = dh2 @ wt_pinv
    bound = values.get("target_bound", 0.0)
    if bound:
        dz1 = (zs[1] + dz1).clamp(-(1 - bound), 1 - bound) - zs[1]
    dh1 = hs[1] / zs[1] * dz1
    rule.update(x, y)
    eta, ridge = values["eta"], values["alpha"] * n
    for (w, b, layer), a, t in [((w1, b1, rule.net.layers[0]), x, dh1), ((w2, b2, rule.net.layers[1]), zs[1], dh2)]:
        dw, db = ridge_fit(a, t, ridge)
        torch.testing.assert_close(layer.weight.detach(), w + eta * dw.T, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(layer.bias.detach(), b + eta * db, rtol=1e-7, atol=1e-9)
