"""Expectation Reflection: the closed-form single-layer solve, Algorithms 1 and 2, mini-batch
stability, the conformance kit for every variant, and what ER refuses."""
from __future__ import annotations

import dataclasses
import sys
import typing

import pytest
import torch

from plasticity import MLP, registry
from plasticity.engine import evaluate
from plasticity.errors import ConfigError
from plasticity.testing import assert_conformant, check_rule, make_rule

CPU = torch.device("cpu")
ER = registry.get_rule("er")


def digits(hidden: tuple[int, ...], dtype=torch.float64):
    task_cls = registry.get_task("digits")
    task = task_cls(task_cls.Params(hidden=hidden))
    return task, task.data(CPU, dtype)


def er_on_digits(hidden: tuple[int, ...], dtype=torch.float64, seed: int = 0, **params):
    task, data = digits(hidden, dtype)
    net = task.build_network(data.n_inputs, data.n_classes, torch.Generator().manual_seed(seed)).to(dtype=dtype)
    return ER(net, ER.Params(**params), None, torch.Generator().manual_seed(seed)), data


def full_batch_accuracies(rule, data, updates: int) -> list[float]:
    out = []
    for _ in range(updates):
        rule.update(data.train.x, data.train.y)
        out.append(evaluate(rule.net, data.test)[0])
    return out


def test_single_layer_update_is_the_pseudo_inverse_regression():
    """One full-batch update with η = 1, α = 0 sets [W b] = [X 1]⁺ H_new, H_new = Ŷ ⊙ H / tanh(H)."""
    rule, data = er_on_digits((), eta=1.0, alpha=0.0)
    x, y = data.train.x, data.train.y
    layer = rule.net.layers[0]
    with torch.no_grad():
        h = layer(x)
    target = 2 * torch.nn.functional.one_hot(y, 10).double() - 1
    h_new = target * h / torch.tanh(h)
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    rule.update(x, y)
    with torch.no_grad():
        fitted = layer(x)
    expected = x1 @ torch.linalg.pinv(x1, rtol=1e-10) @ h_new  # the projection of H_new onto [X 1]'s columns
    assert torch.allclose(fitted, expected, atol=1e-8 * float(expected.abs().max()))


def test_single_layer_er_near_logistic_regression_within_3_updates():
    from sklearn.linear_model import LogisticRegression
    rule, data = er_on_digits((), eta=1.0, alpha=0.0)
    reference = LogisticRegression(max_iter=5000).fit(data.train.x.numpy(), data.train.y.numpy())
    lr_acc = reference.score(data.test.x.numpy(), data.test.y.numpy())
    accs = full_batch_accuracies(rule, data, 3)
    # Measured on this split: LR 96.9 %, ER 93.1 / 94.2 / 94.7 % (a least-squares classifier
    # with reflected targets): 2.2 points short after 3 updates, 1.9 after 4 (see the report).
    assert max(accs) >= lr_acc - 0.025, (accs, lr_acc)
    assert accs[2] > accs[0], f"the reflection iterations should improve on the first regression: {accs}"


def test_float32_matches_float64():
    acc64 = full_batch_accuracies(*er_on_digits((64,), torch.float64, eta=1.0, alpha=0.0), 2)
    acc32 = full_batch_accuracies(*er_on_digits((64,), torch.float32, eta=1.0, alpha=0.0), 2)
    assert max(abs(a - b) for a, b in zip(acc32, acc64)) <= 0.015, (acc32, acc64)
    assert min(acc32) > 0.9


def test_algorithm_2_at_least_as_good_as_algorithm_1():
    seq = full_batch_accuracies(*er_on_digits((64,), algorithm="sequential", eta=1.0, alpha=0.0), 3)
    sim = full_batch_accuracies(*er_on_digits((64,), algorithm="simultaneous", eta=1.0, alpha=0.0), 3)
    assert seq[0] > 0.9, f"Algorithm 2 after one full-batch update: {seq[0]:.3f}"
    assert min(seq) >= max(sim), f"sequential {seq} vs simultaneous {sim}"


def _minibatch_run(task, data, batch: int, updates: int, **params):
    net = task.build_network(data.n_inputs, 10, torch.Generator().manual_seed(0))
    rule = ER(net, ER.Params(**params), None, torch.Generator())
    n, g = len(data.train), torch.Generator().manual_seed(0)
    perm, loss = torch.randperm(n, generator=g), None
    for u in range(updates):
        idx = perm[torch.arange(u * batch, (u + 1) * batch) % n]
        loss = rule.update(data.train.x[idx], data.train.y[idx])["loss"]
        if not torch.isfinite(loss):
            break
    return net, loss


@pytest.mark.parametrize("batch", [16, 64, 256])
def test_minibatch_er_with_ridge_stays_finite_across_its_grid(batch):
    """64 is the interpolation threshold of the 64-input layer (the centred batch Gram is
    near-singular there): the ridge α keeps it stable at every η."""
    task, data = digits((64,), torch.float32)
    for eta in (0.1, 1.0):
        for alpha in (0.01, 0.1, 1.0):
            net, loss = _minibatch_run(task, data, batch, 120, eta=eta, alpha=alpha)
            finite = all(bool(torch.isfinite(p).all()) for p in net.parameters()) and bool(torch.isfinite(loss))
            assert finite, f"eta={eta}, alpha={alpha}, batch={batch}: non-finite weights or loss"
            assert evaluate(net, data.test)[0] > 0.5, f"eta={eta}, alpha={alpha}, batch={batch} learns nothing"


def test_minibatch_without_ridge_at_the_interpolation_threshold_diverges_and_says_so():
    """η = 1, α = 0 at batch 64 on a 64-input layer blows up (measured: within ~80 updates); the
    rule then returns the non-finite loss (the engine's divergence signal) instead of raising."""
    task, data = digits((64,), torch.float32)
    net, loss = _minibatch_run(task, data, 64, 200, eta=1.0, alpha=0.0)
    assert not torch.isfinite(loss)


def test_default_minibatch_learns_digits():
    """The defaults run in the quick suite: batch 32, 64 tanh hidden units."""
    rule, data = er_on_digits((64,), torch.float32)
    n, g = len(data.train), torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, 32):
            idx = perm[start:start + 32]
            rule.update(data.train.x[idx], data.train.y[idx])
    assert evaluate(rule.net, data.test)[0] > 0.9


def test_stop_on_rise_undoes_the_rising_update_and_freezes():
    rule, data = er_on_digits((64,), eta=1.0, alpha=0.0, stop_on_rise=True)
    x, y = data.train.x[:64], data.train.y[:64]
    for i in range(30):  # small batches, η = 1: the training error soon rises
        rule.update(data.train.x[32 * i:32 * i + 32], data.train.y[32 * i:32 * i + 32])
        if rule.stopped:
            break
    assert rule.stopped
    frozen = [p.clone() for p in rule.net.parameters()]
    rule.update(x, y)
    assert all(torch.equal(a, b) for a, b in zip(frozen, rule.net.parameters()))
    assert rule.diagnostics()["stopped"] == 1.0


def test_diagnostics_per_layer_gram_condition_and_guarded_share():
    rule, data = er_on_digits((64,), alpha=0.1)
    assert rule.diagnostics() == {}
    rule.update(data.train.x[:100], data.train.y[:100])
    d = rule.diagnostics()
    assert set(d) == {"L1.gram_cond", "L2.gram_cond", "guarded_share"}
    assert all(1.0 <= d[k] < 1e6 for k in ("L1.gram_cond", "L2.gram_cond"))
    assert 0.0 <= d["guarded_share"] <= 1.0
    # a large guard guards every entry: the ratio falls back to its limit 1 (H_new = Ŷ at the output)
    big, data = er_on_digits((64,), alpha=0.1, guard=2.0)
    big.update(data.train.x[:100], data.train.y[:100])
    assert big.diagnostics()["guarded_share"] == 1.0


def test_non_invertible_hidden_activation_is_rejected():
    net = MLP([20, 32, 3], hidden_activation="relu")
    with pytest.raises(ConfigError, match="invertible hidden activation.*'relu'.*supported: 'tanh'"):
        ER(net, ER.Params(), None, torch.Generator())
    ER(MLP([20, 3], hidden_activation="relu"), ER.Params(), None, torch.Generator())  # no hidden layer: fine


@pytest.mark.parametrize("bad", [{"eta": 0.0}, {"eta": 1.5}, {"alpha": -1.0}, {"guard": -0.1},
                                 {"target_bound": 1.0}, {"target_bound": -0.1},
                                 {"target_ridge": -1e-3}])
def test_bad_params_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ER.Params(**bad)


def test_float32_wide_layer_matches_float64():
    """2048 tanh units on 1,137 digits (N < d: the rank-deficient case): the old float32 cut
    (float32 epsilon × size of a Gram formed in float64) dropped directions float64 kept and
    moved accuracy by 0.3–0.6 points; the Gram is now formed and cut in float64 for both dtypes,
    so float32 predicts as float64 does."""
    r32, data32 = er_on_digits((2048,), torch.float32, eta=1.0, alpha=0.0)
    r64, data64 = er_on_digits((2048,), torch.float64, eta=1.0, alpha=0.0)
    for _ in range(2):
        r32.update(data32.train.x, data32.train.y)
        r64.update(data64.train.x, data64.train.y)
        with torch.no_grad():
            p32, p64 = r32.net(data32.test.x).argmax(1), r64.net(data64.test.x).argmax(1)
        assert float((p32 == p64).double().mean()) >= 0.995
    acc32, acc64 = evaluate(r32.net, data32.test)[0], evaluate(r64.net, data64.test)[0]
    assert abs(acc32 - acc64) <= 0.002, (acc32, acc64)


@pytest.mark.parametrize("algorithm", ["sequential", "simultaneous"])
def test_update_in_row_chunks_equals_the_whole_batch(algorithm, monkeypatch):
    """The update streams the batch in chunks (no N × d temporaries): any chunk size, same weights."""
    module = sys.modules[ER.__module__]  # the plugin file, loaded by path
    whole, data = er_on_digits((32, 16), eta=1.0, alpha=0.0, algorithm=algorithm, target_bound=0.05)
    chunked, _ = er_on_digits((32, 16), eta=1.0, alpha=0.0, algorithm=algorithm, target_bound=0.05)
    loss_whole = whole.update(data.train.x, data.train.y)["loss"]
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 64 * 100)  # 100 rows of the 64-input layer
    loss_chunked = chunked.update(data.train.x, data.train.y)["loss"]
    assert torch.allclose(loss_whole, loss_chunked, rtol=1e-12)
    for a, b in zip(whole.net.parameters(), chunked.net.parameters()):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9)
    assert whole.diagnostics()["clipped_share"] == pytest.approx(chunked.diagnostics()["clipped_share"])


def test_frozen_hidden_solves_only_the_output_layer():
    """train_hidden = false: the hidden layers keep their initial weights and the output layer is
    the regression of H_new on the (fixed) hidden features: the control for ER's hidden update."""
    rule, data = er_on_digits((64, 32), eta=1.0, alpha=0.0, train_hidden=False)
    x, y = data.train.x, data.train.y
    before = [p.clone() for p in rule.net.parameters()]
    with torch.no_grad():
        trace = rule.net.forward_trace(x)
    h = trace.h[-1]
    target = 2 * torch.nn.functional.one_hot(y, 10).double() - 1
    h_new = target * h / torch.tanh(h)
    z1 = torch.cat([trace.z[-2], torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    rule.update(x, y)
    params = list(rule.net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(params[:-2], before[:-2]))
    assert not torch.equal(params[-2], before[-2])
    with torch.no_grad():
        fitted = rule.net(x)
    expected = z1 @ torch.linalg.pinv(z1, rtol=1e-10) @ h_new
    assert torch.allclose(fitted, expected, atol=1e-7 * float(expected.abs().max()))
    assert set(rule.diagnostics()) == {"L3.gram_cond", "guarded_share"}


def test_deep_er_paper_form_collapses_and_target_bound_repairs_the_first_update():
    """784-1024-1024-10 on MNIST fell with every update (86.8 → 73.9 → 68.0 → 62.7 %). The cause:
    ΔZ₁ = ΔH₂ W₂⁺ through a square, ill-conditioned W₂ puts most hidden targets outside tanh's
    range (91 % at 10k MNIST images, |Z + ΔZ| up to 66), and the fit saturates layer 1. Digits
    with 256-256 show the same (measured 78.9 → 16.9 → 40.8 %); clipping the hidden targets into
    ±0.95 makes the first update as good as a single 512-wide layer, and stop_on_rise keeps it."""
    paper = full_batch_accuracies(*er_on_digits((256, 256), eta=1.0, alpha=0.0), 2)
    single = full_batch_accuracies(*er_on_digits((512,), eta=1.0, alpha=0.0), 1)[0]
    assert paper[1] < paper[0] < single - 0.1, (paper, single)
    clipped = full_batch_accuracies(*er_on_digits((256, 256), eta=1.0, alpha=0.0, target_bound=0.05,
                                                  stop_on_rise=True), 3)
    assert clipped[0] >= single - 0.01, (clipped, single)
    assert clipped[-1] >= single - 0.01, f"stop_on_rise should keep the first update's network: {clipped}"


VARIANTS = {
    "simultaneous": {"algorithm": "simultaneous"},
    "frozen_hidden": {"train_hidden": False},
    "target_bound": {"target_bound": 0.05},
    "full_batch_form": {"eta": 1.0, "alpha": 0.0},
    "stop_on_rise": {"stop_on_rise": True},
}
#: Variants whose hidden layers add nothing, which the kit's hidden-layer check must say: the
#: readout-only control, and the paper's form (η = 1, α = 0), whose hidden updates through the
#: exact W₂⁺ wreck the network (rules/er.py, "Depth"; on the kit's task: accuracy 0.000 against
#: 0.488 with its hidden layers frozen).
READOUT_ONLY = {"frozen_hidden", "full_batch_form"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_is_conformant(variant):
    """The kit's checks run a rule by name with its default Params: register each variant as one."""
    params = dataclasses.replace(ER.Params(), **VARIANTS[variant])
    hints = typing.get_type_hints(ER.Params)
    cls = type(f"ER_{variant}", (ER,), {"Params": dataclasses.make_dataclass(
        "Params", [(f.name, hints[f.name], dataclasses.field(default=getattr(params, f.name)))
                   for f in dataclasses.fields(params)], bases=(ER.Params,), frozen=True)})
    name = f"test_er_{variant}"
    registry.register("rule", name, cls)
    try:
        assert make_rule(name).params == cls.Params()
        if variant not in READOUT_ONLY:
            assert_conformant(name)
        else:
            failed = [r.name for r in check_rule(name) if not r.passed]
            assert failed == ["hidden layers learn"], failed
    finally:
        registry._unregister("rule", name)


def test_ridge_target_propagation_repairs_multilayer_er():
    """Depth: through the exact W₂⁺ of a square, ill-conditioned W₂ the hidden targets leave tanh's
    range and the paper's form collapses (256-256 on digits: below 80 % after one update, worse
    after the next); the ridge pseudo-inverse (α = 1e-2·σ_max²) keeps them reachable, and the
    two-layer net then does as well as one layer of the same total width, update after update."""
    paper, data = er_on_digits((256, 256), eta=1.0, alpha=0.0)
    ridge, _ = er_on_digits((256, 256), eta=1.0, alpha=0.0, target_ridge=1e-2)
    single, _ = er_on_digits((512,), eta=1.0, alpha=0.0)
    paper_acc = full_batch_accuracies(paper, data, 2)
    ridge_acc = full_batch_accuracies(ridge, data, 3)
    single_acc = full_batch_accuracies(single, data, 3)
    assert paper_acc[0] < 0.85 and paper_acc[1] < paper_acc[0]
    assert min(ridge_acc) >= 0.97 and ridge_acc[-1] >= ridge_acc[0]
    assert ridge_acc[-1] >= single_acc[-1] - 0.005, (ridge_acc, single_acc)
