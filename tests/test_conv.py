"""The feedback family on any model of Linear and Conv2d layers (plasticity.feedback's mechanism),
the image models and augmentation of plasticity.models, and the metrics on conv layers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from plasticity import MLP, ConfigError, registry
from plasticity.feedback import as_matrix, feedback_layers, layered_deltas, output_error, write_grads
from plasticity.linalg import pinv, relative_error
from plasticity.metrics import Probe, feedback_metrics
from plasticity.models import augment_images, build_model

registry.load_plugins()


def _rule(name: str, net: nn.Module, seed: int = 2, **params):
    cls = registry.get_rule(name)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9) if cls.uses_optimizer else None
    return cls(net, cls.Params(**params), opt, torch.Generator().manual_seed(seed))


def _grads(net: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["fa", "dfa", "pinv-feedback"])
def test_mlp_credit_is_bit_for_bit_the_trace_implementation(name, dtype):
    """The one mechanism (autograd, each layer's error sent through B) gives exactly the gradients
    of the MLP's explicit layer-by-layer recursion it replaced."""
    net = MLP([20, 16, 12, 5], generator=torch.Generator().manual_seed(1)).to(dtype)
    rule = _rule(name, net)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(30, 20, generator=g, dtype=dtype), torch.randint(0, 5, (30,), generator=g)
    rule.credit(x, y)
    new = _grads(net)
    for p in net.parameters():
        p.grad = None
    trace, _, delta = output_error(net, x, y, "ce")
    if name == "dfa":
        deltas = [net.activation_vjp(l, trace.h[l], delta @ b.T) for l, b in enumerate(rule.B[1:], start=1)]
        write_grads(net, trace, deltas + [delta])
    else:
        write_grads(net, trace, layered_deltas(net, trace, delta, rule.B))
    assert all(torch.equal(a, b) for a, b in zip(new, _grads(net)))


def _resnet(width: int = 4) -> nn.Module:
    return build_model("resnet20", (3, 8, 8), 10, width=width, generator=torch.Generator().manual_seed(0)).double()


@pytest.mark.parametrize("model", ["resnet20", "lenet", "resnet9"])
def test_feedback_through_w_itself_is_backprop_on_conv_models(model):
    """With B = W on every layer the mechanism must reproduce autograd's gradient exactly: batch
    norm (train mode), pooling, residual sums, flattening all pass the error on unchanged."""
    shape = (1, 28, 28) if model == "lenet" else (3, 16, 16)
    net = build_model(model, shape, 10, width=4 if model != "lenet" else 0,
                      generator=torch.Generator().manual_seed(0)).double()
    rule = _rule("fa", net)
    rule.B = [None] + [layer.weight.detach().T if isinstance(layer, nn.Linear) else layer.weight.detach()
                       for layer in rule.layers[1:]]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, math.prod(shape), generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=g)
    rule.credit(x, y)
    fa = _grads(net)
    for p in net.parameters():
        p.grad = None
    nn.functional.cross_entropy(net(x), y).backward()
    for a, b in zip(fa, _grads(net)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # and random B gives a different direction on the hidden convs, the same on the output layer
    rule2 = _rule("fa", net)
    for p in net.parameters():
        p.grad = None
    rule2.credit(x, y)
    index = {id(p): i for i, p in enumerate(net.parameters())}
    last, hidden = rule2.layers[-1].weight, rule2.layers[1].weight
    assert torch.equal(last.grad, fa[index[id(last)]])
    assert not torch.allclose(hidden.grad, fa[index[id(hidden)]])


def test_dfa_on_conv_projects_the_output_error_through_a_kernel():
    """DFA's Conv2d form (BioTorch's): e broadcast over the layer's output positions, sent to the
    layer's input as a transposed convolution with B (n_out × c_in × kh × kw)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5)).double()
    rule = _rule("dfa", net)
    assert rule.B[1].shape == (5, 3, 3, 3) and rule.B[2].shape == (64, 5)
    x = torch.randn(7, 2, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (7,))
    rule.credit(x, y)
    conv1, conv2, fc = rule.layers
    with torch.no_grad():
        h1 = conv1(x)
        z1 = h1.relu()
        h2 = conv2(z1)
        out = fc(h2.relu().flatten(1))
        e = (out.softmax(1) - nn.functional.one_hot(y, 5)) / 7
        d2 = (e @ rule.B[2].T).view_as(h2) * (h2 > 0)  # the linear layer's input error, through relu'
        spread = e[:, :, None, None].expand(7, 5, 4, 4)  # over conv2's output positions
        d1 = nn.grad.conv2d_input(z1.shape, rule.B[1], spread) * (h1 > 0)  # conv2's input error, through relu'

        gw1 = nn.grad.conv2d_weight(x, conv1.weight.shape, d1)
        gw2 = nn.grad.conv2d_weight(z1, conv2.weight.shape, d2)
    torch.testing.assert_close(conv1.weight.grad, gw1)
    torch.testing.assert_close(conv2.weight.grad, gw2)
    torch.testing.assert_close(fc.weight.grad, e.T @ h2.relu().flatten(1))


def test_sign_concordant_feedback_follows_biotorch_conventions():
    net = _resnet()
    usf, brsf, frsf = (_rule(n, net) for n in ("usf", "brsf", "frsf"))
    layer = usf.layers[3]
    w = layer.weight.detach()
    s = float(w.std())
    torch.testing.assert_close(usf.backward_feedback()[3], s * torch.sign(w))
    b1, b2 = brsf.backward_feedback()[3], brsf.backward_feedback()[3]
    assert torch.equal(torch.sign(b1), torch.sign(w)) and not torch.equal(b1, b2)  # redrawn every batch
    assert float(b1.abs().max()) <= math.sqrt(3) * s  # |R| ~ U(0, √3 s): a uniform of std s, in magnitude
    f1, f2 = frsf.backward_feedback()[3], frsf.backward_feedback()[3]
    assert torch.equal(f1, f2) and torch.equal(torch.sign(f1), torch.sign(w))
    with torch.no_grad():
        layer.weight.neg_()
    assert torch.equal(torch.sign(frsf.backward_feedback()[3]), -torch.sign(f1))  # signs follow W


@pytest.mark.parametrize("name", ["tp", "dtp", "er"])
def test_rules_without_a_conv_form_are_refused_naming_the_layer(name):
    net = build_model("lenet", (1, 28, 28), 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=rf"rule '{name}' has no form for a Conv2d layer .*supports Linear"):
        _rule(name, net)


def test_linearised_rf_is_refused_on_a_conv_model():
    with pytest.raises(ConfigError, match="derivative = false .* needs an MLP"):
        _rule("rf", _resnet(), derivative=False)


def test_rf_learns_the_pseudo_inverse_of_conv_kernels():
    """Recirculation on white patches drives each conv layer's B to W⁺ of its flattened kernel."""
    net = build_model("lenet", (1, 28, 28), 10, generator=torch.Generator().manual_seed(0)).double()
    rule = _rule("rf", net, noise_batch=400)
    x = torch.randn(4, 784, dtype=torch.float64)

    def errors():
        return [relative_error(as_matrix(layer, b), pinv(as_matrix(layer)))
                for layer, b in zip(rule.layers[1:3], rule.B[1:3])]
    before = errors()
    for _ in range(40):
        rule._learn_feedback(x)
    after = errors()
    assert min(before) > 0.9 and max(after) < 0.3, (before, after)
    assert rule.B[1].shape == rule.layers[1].weight.shape


def test_pinv_feedback_on_conv_is_the_flattened_kernel_pseudo_inverse():
    net = _resnet()
    rule = _rule("pinv-feedback", net, ridge=0.0)
    layer, b = rule.layers[4], rule.B[4]
    assert b.shape == layer.weight.shape
    torch.testing.assert_close(as_matrix(layer) @ as_matrix(layer, b), torch.eye(layer.weight.shape[0],
                                                                                 dtype=torch.float64))


def test_metrics_on_a_batch_norm_resnet_in_eval_mode():
    net = _resnet()
    net.train()
    rule = _rule("rf", net)
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = [m.running_mean.clone() for m in bn]
    g = torch.Generator().manual_seed(0)
    probe = Probe(torch.randn(20, 192, generator=g, dtype=torch.float64), torch.randint(0, 10, (20,), generator=g))
    out = feedback_metrics(rule, probe)
    n = len(feedback_layers(net))
    assert {f"L{l}.angle_BWt" for l in range(2, n + 1)} <= out.keys()
    assert {f"L{l}.norm_ratio" for l in range(2, n + 1)} <= out.keys()
    assert {f"L{l}.rel_err_white" for l in range(2, n + 1)} <= out.keys()
    assert {f"L{l}.grad_angle" for l in range(1, n + 1)} <= out.keys()
    assert 0 < out["grad_angle"] < 180
    assert net.training and all(torch.equal(m.running_mean, s) for m, s in zip(bn, stats))
    bp = feedback_metrics(_rule("bp", net), probe)
    assert bp["grad_angle"] < 1e-4 and abs(bp["L3.norm_ratio"] - 1) < 1e-12


def test_augmentation_crops_and_flips_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, -1) + 1
    out = augment_images(x, (3, 5, 5), g, pad=2)
    assert out.shape == x.shape
    padded = nn.functional.pad(x.view(2, 3, 5, 5), (2, 2, 2, 2))
    for i in range(2):
        img = out[i].view(3, 5, 5)
        crops = [padded[i, :, r:r + 5, c:c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(img, c) or torch.equal(img, c.flip(-1)) for c in crops)
    many = augment_images(x.repeat(50, 1), (3, 5, 5), torch.Generator().manual_seed(1), pad=2)
    assert len({tuple(r.tolist()) for r in many[::2]}) > 10  # a fresh draw per image


def test_an_image_model_trains_on_digits_through_the_engine(tmp_path):
    """A ResNet-20 (width 4, batch norm) on the 8×8 digits, with sign-concordant
    feedback, through the engine: it learns, and its eval lines carry conv-layer metrics."""
    from plasticity.results import read_cell
    from plasticity.suite import parse_suite
    from plasticity.worker import run_cell
    cell = parse_suite('[budget]\nepochs = 2\n[evaluation]\nper_decade = 1\nfeedback_metrics = 100\n'
                       '[[rules]]\nname = "usf"\n'
                       '[[tasks]]\nname = "digits"\n[tasks.params]\nmodel = "resnet20"\nwidth = 4\n'
                       'activation = "relu"\n').cells[0]
    final = run_cell(cell, tmp_path, torch.device("cpu"), {})
    assert final["status"] == "complete" and final["test_accuracy"] > 0.5
    last = read_cell(tmp_path / f"{cell.cell_id}.jsonl").evals[-1]
    assert "L5.angle_BWt" in last["feedback"] and last["feedback"]["L5.angle_BWt"] < 90


def test_published_figures_name_the_task_parameters_they_belong_to():
    """BioTorch's LeNet and ResNet-20 errors on CIFAR-10 are compared only with cells of that model."""
    import pandas as pd

    from plasticity.report.sections import published_table
    from plasticity.suite import parse_suite
    base = '[[rules]]\nname = "bp"\n[[tasks]]\nname = "digits"\ngrid = { model = ["lenet", "mlp"] }\n'
    entry = ('[[published]]\ntask = "digits"\nrule = "bp"\nmetric = "test_error"\nvalue = 10.0\nsource = "x"\n'
             'task_params = { model = "lenet" }\n')
    assert parse_suite(entry + base).published[0]["task_params"] == {"model": "lenet"}
    with pytest.raises(ConfigError, match="task_params must be a table of single values"):
        parse_suite(entry.replace('{ model = "lenet" }', '{ hidden = [1, 2] }') + base)
    cells = pd.DataFrame({"rule": ["bp", "bp"], "variant": ["bp [lenet]", "bp [resnet20]"],
                          "status": ["complete"] * 2, "test_accuracy": [0.5, 0.9], "task.model": ["lenet", "resnet20"]})
    html = str(published_table(cells, parse_suite(entry + base).published))
    assert "bp [lenet]" in html and "bp [resnet20]" not in html
