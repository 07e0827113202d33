"""GOFAU optimizers (plasticity/gofau.py), their registration, the gofau rules and the cifar10-cnn task."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from plasticity import ConfigError, registry
from plasticity.engine import evaluate
from plasticity.gofau import GofauAdagrad, GofauAdam, GofauRMSprop, GofauSGD, HybridAdam, HybridSGD, MultAdam, MultSGD
from plasticity.optimizers import build_optimizer
from plasticity.params import make_params
from plasticity.task import Split

BASES = {  # GOFAU base class, torch's optimizer, shared keyword arguments (exercising every option)
    "sgd": (GofauSGD, torch.optim.SGD, {"lr": 0.1}),
    "sgd-momentum": (GofauSGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    "sgd-nesterov": (GofauSGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "adam": (GofauAdam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.01}),
    "adagrad": (GofauAdagrad, torch.optim.Adagrad, {"lr": 0.05, "weight_decay": 0.01}),
    "rmsprop": (GofauRMSprop, torch.optim.RMSprop, {"lr": 0.01}),
    "rmsprop-momentum": (GofauRMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01}),
}


def model(seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(dtype)


def batch(dtype: torch.dtype = torch.float64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 6, generator=g, dtype=dtype), torch.randint(0, 3, (32,), generator=g)


def train(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, scale: float = 1.0) -> list[torch.Tensor]:
    """`steps` updates on one batch; the parameters after each step."""
    x, y = batch(next(net.parameters()).dtype)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        (scale * F.cross_entropy(net(x), y)).backward()
        opt.step()
        history.append(torch.cat([p.detach().flatten().clone() for p in net.parameters()]))
    return history


@pytest.mark.parametrize("case", list(BASES))
def test_additive_mode_is_torchs_optimizer(case):
    gofau_cls, torch_cls, kwargs = BASES[case]
    ours = train(net := model(), gofau_cls(net.parameters(), update="additive", **kwargs), 6)
    theirs = train(net := model(), torch_cls(net.parameters(), **kwargs), 6)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", list(BASES))
def test_hybrid_gamma_endpoints_are_additive_and_multiplicative(case):
    gofau_cls, _, kwargs = BASES[case]
    for gamma, pure in ((0.0, "additive"), (1.0, "multiplicative")):
        hybrid = train(net := model(), gofau_cls(net.parameters(), update="hybrid", gamma=gamma, **kwargs), 5)
        reference = train(net := model(), gofau_cls(net.parameters(), update=pure, **kwargs), 5)
        for a, b in zip(hybrid, reference):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # and 0 < γ < 1 is neither
    mid = train(net := model(), gofau_cls(net.parameters(), update="hybrid", gamma=0.5, **kwargs), 1)[0]
    add = train(net := model(), gofau_cls(net.parameters(), update="additive", **kwargs), 1)[0]
    assert not torch.allclose(mid, add)


@pytest.mark.parametrize("make", [
    lambda ps: MultSGD(ps, lr=0.5, momentum=0.9, eta_in=50.0),
    lambda ps: MultAdam(ps, lr=0.9, eta_in=10.0),
    lambda ps: MultSGD(ps, lr=0.9, momentum=0.9, tanh_momentum=True, eta_in=50.0),
], ids=["sgd", "adam", "sgd-tanh-momentum"])
def test_multiplicative_keeps_every_sign_and_zeros_stay_zero(make):
    net = model()
    with torch.no_grad():
        net[0].weight[:, :3] = 0.0  # a block of exact zeros
    start = [p.detach().clone() for p in net.parameters()]
    train(net, make(net.parameters()), 40, scale=100.0)  # large steps: η_out near 1, saturated tanh
    moved = 0.0
    for p0, p in zip(start, net.parameters()):
        assert torch.equal(torch.sign(p), torch.sign(p0)), "a weight changed sign"
        moved = max(moved, float((p.detach() - p0).abs().max()))
    assert torch.equal(net[0].weight[:, :3], torch.zeros(8, 3, dtype=torch.float64))
    assert moved > 0.1  # the weights did move, a lot


def test_multiplicative_step_is_bounded_by_eta_out_times_magnitude():
    net = model()
    opt = MultSGD(net.parameters(), lr=0.3, momentum=0.9, tanh_momentum=True, eta_in=5.0)
    before = [p.detach().clone() for p in net.parameters()]
    train(net, opt, 1, scale=1000.0)
    for p0, p in zip(before, net.parameters()):
        assert ((p - p0).abs() <= 0.3 * p0.abs() * (1 + 1e-12)).all()


def test_random_gamma_takes_either_pure_step_each_time():
    """Random schedule: every step is exactly the additive or the multiplicative step, both occur."""
    net = model()
    opt = HybridSGD(net.parameters(), lr=0.1, gamma=0.5, gamma_schedule="random", seed=3)
    x, y = batch()
    kinds = []
    for _ in range(20):
        candidates = {}
        for mode in ("additive", "multiplicative"):
            twin = copy.deepcopy(net)
            twin_opt = GofauSGD(twin.parameters(), lr=0.1, update=mode)
            twin_opt.zero_grad()
            F.cross_entropy(twin(x), y).backward()
            twin_opt.step()
            candidates[mode] = torch.cat([p.detach().flatten() for p in twin.parameters()])
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        now = torch.cat([p.detach().flatten() for p in net.parameters()])
        kinds += [m for m, c in candidates.items() if torch.allclose(now, c, rtol=0, atol=1e-14)]
    assert len(kinds) == 20 and set(kinds) == {"additive", "multiplicative"}


def test_decay_schedule_holds_gamma_for_the_patience_then_decays():
    net = model()
    opt = HybridAdam(net.parameters(), lr=0.01, gamma=0.8, gamma_schedule="decay", gamma_patience=3,
                     gamma_decay=0.5)
    group = opt.param_groups[0]
    seen = []
    for _ in range(5):
        opt._steps += 1
        seen.append(opt._gamma(group))
    assert seen == pytest.approx([0.8, 0.8, 0.8, 0.4, 0.2])


@pytest.mark.parametrize("name,values", [
    ("hybrid-adam", {"lr": 0.01, "gamma_schedule": "random", "gamma": 0.5, "seed": 7}),
    ("hybrid-sgd", {"lr": 0.05, "momentum": 0.9, "gamma_schedule": "decay", "gamma_patience": 2, "gamma_decay": 0.7}),
    ("mult-rmsprop", {"lr": 0.01, "momentum": 0.5}),
    ("hybrid-adagrad", {"lr": 0.05}),
])
def test_state_dict_round_trip_resumes_identically(name, values):
    net = model()
    opt = build_optimizer(name, values, net.parameters())
    train(net, opt, 3)
    saved_net, saved_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    straight = train(net, opt, 6)

    resumed_net = model(seed=99)
    resumed_net.load_state_dict(saved_net)
    resumed_opt = build_optimizer(name, {**values, "seed": 12345} if "seed" in values else values,
                                  resumed_net.parameters())
    resumed_opt.load_state_dict(saved_opt)
    resumed = train(resumed_net, resumed_opt, 6)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_closure_is_evaluated_and_its_loss_returned():
    net = model()
    opt = HybridSGD(net.parameters(), lr=0.1)
    x, y = batch()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        return loss
    first = opt.step(closure)
    second = opt.step(closure)
    assert float(second.detach()) < float(first.detach())


def test_param_groups_keep_their_own_settings():
    net = model()
    opt = MultSGD([{"params": net[0].parameters(), "lr": 0.5}, {"params": net[2].parameters()}], lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.01]
    before = [p.detach().clone() for p in net.parameters()]
    train(net, opt, 1)
    first = (net[0].weight - before[0]).abs().max() / before[0].abs().max()
    last = (net[2].weight - before[2]).abs().max() / before[2].abs().max()
    assert first > 5 * last
    with pytest.raises(ValueError, match=r"eta_out must lie in \(0, 1\).*got 2.0"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": 2.0})


@pytest.mark.parametrize("name,values,message", [
    ("hybrid-sgd", {"gamma": 1.5}, r"gamma must lie in \[0, 1\], got 1.5"),
    ("mult-adam", {"eta_out": 1.0}, r"eta_out must lie in \(0, 1\).*keeps the weight's sign"),
    ("mult-sgd", {"lr": 2.0}, r"eta_out must lie in \(0, 1\).*defaults to lr"),
    ("hybrid-sgd", {"gamma_schedule": "cosine"}, r"'cosine' is not one of 'constant', 'decay', 'random'"),
    ("mult-sgd", {"tanh_momentum": True}, r"tanh_momentum needs momentum in \(0, 1\)"),
    ("mult-adagrad", {"eta_in": 0.0}, r"eta_in must be positive"),
    ("hybrid-rmsprop", {"gamma_decay": 0.0}, r"gamma_decay must lie in \(0, 1\]"),
    ("mult-sgd", {"gamma": 0.5}, r"unknown parameter 'gamma'"),
    ("mult-adam", {"bias_correction": "outside", "eta_out": 0.2}, r"eta_out must be below 1 - beta1 = 0.1"),
    ("hybrid-adam", {"bias_correction": "both"}, r"'both' is not one of 'inside', 'outside'"),
])
def test_bad_parameters_are_rejected_with_a_clear_message(name, values, message):
    with pytest.raises(ConfigError, match=message):
        build_optimizer(name, values, model().parameters())


def test_adam_bias_correction_outside_the_tanh_is_the_authors_first_step():
    """First step: m/(√v̂ + ε) = (1 − β₁) sign(g), so the multiplicative step is η_out|θ|·tanh(1)
    inside and η_out|θ|·tanh(1 − β₁)/(1 − β₁) outside (×1.31 for β₁ = 0.9)."""
    def first_step(bias_correction: str) -> torch.Tensor:
        theta = torch.nn.Parameter(torch.tensor([0.5, -2.0, 1e-3, 3.0], dtype=torch.float64))
        opt = MultAdam([theta], lr=1e-3, eps=1e-12, bias_correction=bias_correction)
        theta.grad = torch.tensor([0.3, -1.0, 2e-3, -7.0], dtype=torch.float64)
        before = theta.detach().clone()
        opt.step()
        return (before - theta.detach()) / before.abs()

    inside, outside = first_step("inside"), first_step("outside")
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(inside, 1e-3 * math.tanh(1.0) * sign, rtol=1e-9, atol=0)
    torch.testing.assert_close(outside, 1e-3 * math.tanh(0.1) / 0.1 * sign, rtol=1e-9, atol=0)
    assert (outside / inside).sub(1.3087).abs().max() < 1e-4


def test_adam_bias_correction_forms_share_the_additive_step_and_converge():
    """γ = 0 is Adam in both forms; later on the correction → 1 and the two forms agree."""
    kwargs = {"lr": 0.01, "betas": (0.8, 0.99)}
    ours = train(net := model(), HybridAdam(net.parameters(), gamma=0.0, bias_correction="outside", **kwargs), 4)
    theirs = train(net := model(), torch.optim.Adam(net.parameters(), **kwargs), 4)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    opts = {bc: MultAdam([torch.nn.Parameter(torch.ones(3, dtype=torch.float64))], bias_correction=bc, **kwargs)
            for bc in ("inside", "outside")}
    steps = {}
    for bc, opt in opts.items():
        (theta,) = opt.param_groups[0]["params"]
        for _ in range(200):
            theta.grad = torch.tensor([0.5, -0.2, 1.0], dtype=torch.float64)
            before = theta.detach().clone()
            opt.step()
        steps[bc] = (before - theta.detach()) / before.abs()  # relative: |θ| took different paths
    torch.testing.assert_close(steps["outside"], steps["inside"], rtol=1e-9, atol=0)


def test_every_base_optimizer_has_both_variants_registered():
    registry.load_plugins()
    names = set(registry.names("optimizer"))
    for base in ("sgd", "adam", "adagrad", "rmsprop"):
        assert {base, f"mult-{base}", f"hybrid-{base}"} <= names


def test_gofau_rules_default_to_gofau_updates():
    registry.load_plugins()
    assert registry.get_rule("gofau-mult").default_optimizer[0] == "mult-sgd"
    assert registry.get_rule("gofau-hybrid").default_optimizer[0] == "hybrid-sgd"


# ---- cifar10-cnn ---------------------------------------------------------------------------

def cnn_task(**values):
    registry.load_plugins()
    cls = registry.get_task("cifar10-cnn")
    return cls(make_params(cls.Params, {"width": 4, **values}, "task 'cifar10-cnn'"))


def test_cnn_builds_trains_with_bp_and_evaluates_in_eval_mode():
    net = cnn_task().build_network(3072, 10, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3072, generator=g), torch.randint(0, 10, (16,), generator=g)
    assert net(x).shape == (16, 10)
    rule_cls = registry.get_rule("gofau-hybrid")
    name, values = rule_cls.default_optimizer
    rule = rule_cls(net, rule_cls.Params(), build_optimizer(name, values, net.parameters()), torch.Generator())
    before = [p.detach().clone() for p in net.parameters()]
    rule.update(x, y)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert sum(not torch.equal(a, b) for a, b in zip(before, net.parameters())) == len(before)
    # evaluation neither uses nor changes the batch statistics, and restores training mode
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    evaluate(net, Split(x, y))
    assert torch.equal(bn.running_mean, stats) and net.training


def test_cnn_init_scale_scales_the_weights():
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    small = cnn_task(init_scale=0.1).build_network(3072, 10, gen())
    plain = cnn_task().build_network(3072, 10, gen())
    torch.testing.assert_close(small.classifier.weight, 0.1 * plain.classifier.weight)


def test_cnn_refuses_wrong_inputs_clearly():
    with pytest.raises(ConfigError, match="expects 3×32×32 images"):
        cnn_task().build_network(784, 10, torch.Generator())


AUTOGRAD_RULES = {"bp", "gofau-mult", "gofau-hybrid"}
CONV_RULES = {"fa", "dfa", "usf", "brsf", "frsf", "rf", "pinv-feedback", "kp", "weight-mirror", "drtp"}


def test_every_mlp_only_rule_refuses_the_cnn_when_it_is_built():
    """Rules with no conv form stop at construction naming the layer type (not an IndexError or
    AttributeError, and not after a cell has started writing its results); the feedback family
    and the autograd rules build on it."""
    registry.load_plugins()
    mlp_only = sorted(set(registry.names("rule")) - AUTOGRAD_RULES - CONV_RULES)
    assert {"er", "tp", "dtp"} <= set(mlp_only)
    for name in registry.names("rule"):
        cls = registry.get_rule(name)
        net = cnn_task().build_network(3072, 10, torch.Generator().manual_seed(0))
        optimizer = build_optimizer(*cls.default_optimizer, net.parameters()) if cls.uses_optimizer else None
        if name in mlp_only:
            with pytest.raises(ConfigError, match=f"rule '{name}' has no form for a Conv2d layer"):
                cls(net, cls.Params(), optimizer, torch.Generator())
        else:
            cls(net, cls.Params(), optimizer, torch.Generator())


def test_cnn_task_subsets(real_data_dir):
    registry.load_plugins()
    cls = registry.get_task("cifar10-cnn")
    task = cls(make_params(cls.Params, {"train_subset": 3000, "val_size": 1000, "test_subset": 500},
                           "task"), real_data_dir)
    data = task.data(torch.device("cpu"), torch.float32)
    assert (len(data.train), len(data.val), len(data.test), data.n_inputs) == (3000, 1000, 500, 3072)
    assert len(set(data.train.y.tolist())) == 10


def test_report_grid_groups_split_by_optimizer_when_each_has_a_grid():
    """A robustness grid under several update rules gives one heatmap group per update rule."""
    import pandas as pd

    from plasticity.report.tables import grid_groups
    rows = [{"rule": "bp", "optimizer": o, "variant": f"bp + {o}(lr={lr}) [init_scale={s}]",
             "grid": {"optimizer.lr": lr, "task.init_scale": s}}
            for o in ("sgd", "hybrid-sgd") for lr in (0.01, 0.1) for s in (0.1, 1.0)]
    groups = grid_groups(pd.DataFrame(rows))
    assert [(g.rule, g.dims) for g in groups] == [("bp + sgd", ["optimizer.lr", "task.init_scale"]),
                                                  ("bp + hybrid-sgd", ["optimizer.lr", "task.init_scale"])]
    plain = pd.DataFrame([{"rule": "bp", "optimizer": o, "variant": f"bp + {o}", "grid": {}}
                          for o in ("sgd", "adam")])
    assert [(g.rule, g.dims) for g in grid_groups(plain)] == [("bp", ["optimizer"])]


def test_engine_composes_a_rule_with_a_gofau_optimizer_and_a_schedule(tmp_path):
    from plasticity.suite import parse_suite
    from plasticity.worker import run_cell
    registry.load_plugins()
    suite = parse_suite('[budget]\nupdates = 40\n[[tasks]]\nname = "digits"\n[[rules]]\nname = "bp"\n'
                        'optimizers = [{ name = "hybrid-sgd", params = { lr = 0.05, momentum = 0.9 }, '
                        'schedule = "cosine" }]\n')
    final = run_cell(suite.cells[0], tmp_path, torch.device("cpu"), {})
    assert final["status"] == "complete" and final["updates"] == 40
    assert final["val_accuracy"] > 0.6  # chance is 0.1
