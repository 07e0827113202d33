"""Feedback and alignment metrics recorded at each evaluation (the eval line's "feedback" dict).

For every `FeedbackPair` a rule's `feedback()` returns (layer l: forward W, feedback B):

- `L{l}.angle_BWt`: angle between B and Wᵀ in degrees (0 for backprop; FA's falls below 90°);
- `L{l}.norm_ratio`: ‖B‖/‖W‖ (Frobenius; BioTorch's "weight ratio");
- for reciprocal pairs (a target other than Wᵀ, i.e. B should approach an inverse):
  `L{l}.rel_err_white` = ‖B − W⁺‖/‖W⁺‖, `L{l}.rel_err_data` = ‖B − B*‖/‖B*‖ against the
  data-weighted inverse B* = ΣWᵀ(WΣWᵀ)⁻¹, and the Penrose residuals `L{l}.penrose_p1..p4`.
  Σ = ⟨zzᵀ⟩ is the raw second moment (not the covariance) of the layer's input z = Z_{l−1} on the
  probe batch: recirculation driven by activity sees the uncentred activity, and its fixed point
  is this B*. Alignment pairs (target Wᵀ or None) skip these: B is not meant to invert W.

For every `gradient_like` rule that defines `credit()`: `L{l}.grad_angle` and `grad_angle`, the angle between the rule's
credit (the `.grad` its `credit()` writes on the probe batch, weight and bias of layer l) and the
true gradient of the rule's loss (`params.loss`, cross-entropy if it declares none) by autograd
on the same batch; the overall angle concatenates all parameters. Backprop gives 0.

Layers are the model's Linear and Conv2d layers in module order (plasticity.feedback); a Conv2d
layer's W is its kernel as an out × (in·kh·kw) matrix and its input z the receptive-field patches
(Σ from the patches of the first CONV_PROBE_IMAGES probe images). Any model is probed in eval mode
(batch norm on its running statistics, which the probe does not move), then put back.

The probe batch is drawn once per cell from the training data. Computing the metrics leaves
training untouched: every `.grad`, the rule's generator state and torch's global RNG state are
saved and restored, and no optimizer is called. All metrics are computed in float64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .feedback import feedback_layers, layer_inputs, patches
from .linalg import angle, data_weighted_inverse, penrose_residuals, pinv, relative_error
from .losses import LOSSES
from .network import weights_finite
from .rule import FeedbackPair, LearningRule
from .task import Split

PROBE_SIZE = 1000
PROBE_SEED_OFFSET = 3_000_003
CONV_PROBE_IMAGES = 50  # probe images whose patches give a conv layer's input second moment


@dataclass(frozen=True)
class Probe:
    """The fixed batch the metrics are computed on."""
    x: torch.Tensor
    y: torch.Tensor

    @classmethod
    def draw(cls, train: Split, seed: int, size: int = PROBE_SIZE) -> "Probe":
        g = torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET)
        idx = torch.randperm(len(train), generator=g)[:size].to(train.x.device)
        return cls(train.x[idx], train.y[idx])


def has_credit(rule: LearningRule) -> bool:
    """A gradient-like rule that defines `credit()` (a rule may define only `update()`)."""
    return bool(rule.gradient_like) and type(rule).credit is not LearningRule.credit


def applies(rule: LearningRule) -> bool:
    """True when the rule has anything to measure: feedback matrices or a gradient-like credit."""
    return has_credit(rule) or rule.feedback() is not None


def is_reciprocal(pair: FeedbackPair) -> bool:
    """B is meant to approach an inverse of W (its target is set and is not Wᵀ)."""
    t = pair.target
    return t is not None and not (t.shape == pair.forward.T.shape and torch.equal(t, pair.forward.T))


def pair_metrics(pair: FeedbackPair, layer_input: torch.Tensor) -> dict[str, float]:
    """Angle to Wᵀ and, for reciprocal pairs, distances to W⁺ and to the data-weighted inverse."""
    w, b = pair.forward.double(), pair.feedback.double()
    key = f"L{pair.layer}."
    out = {key + "angle_BWt": angle(b, w.T), key + "norm_ratio": float(b.norm() / w.norm().clamp_min(1e-300))}
    if is_reciprocal(pair):
        z = layer_input.double()  # rows: the inputs W acts on (a conv layer's patches)
        sigma = z.T @ z / z.shape[0]
        out[key + "rel_err_white"] = relative_error(b, pinv(w))
        out[key + "rel_err_data"] = relative_error(b, data_weighted_inverse(w, sigma))
        out.update({key + f"penrose_{k}": v for k, v in penrose_residuals(w, b).items()})
    return out


def _layer_slices(rule: LearningRule) -> list[tuple[int, list[int]]]:
    """Indices into `list(net.parameters())` of each layer's weight and bias."""
    index = {id(p): i for i, p in enumerate(rule.net.parameters())}
    return [(l, [index[id(p)] for p in layer.parameters()])
            for l, layer in enumerate(feedback_layers(rule.net), start=1)]


def gradient_angles(rule: LearningRule, probe: Probe) -> dict[str, float]:
    """Angle between the rule's credit and the autograd gradient, per layer and overall."""
    params = list(rule.net.parameters())
    saved = [p.grad for p in params]
    gen_state = rule.generator.get_state()
    cpu_rng = torch.get_rng_state()
    try:
        for p in params:
            p.grad = None
        with torch.enable_grad():
            rule.credit(probe.x, probe.y)
        credit = [p.grad.detach().double().clone() if p.grad is not None else torch.zeros_like(p, dtype=torch.float64)
                  for p in params]
        for p in params:
            p.grad = None
        loss_name = getattr(rule.params, "loss", "ce")
        with torch.enable_grad():
            # the loss of the rule's predictions (rule.predict); an inference autograd cannot
            # differentiate (a fixed point, a goodness per label) falls back to the network's output
            scores = rule.predict(probe.x)
            if not scores.requires_grad:
                scores = rule.net(probe.x)
            loss = LOSSES.get(loss_name, LOSSES["ce"])(scores, probe.y)
            true = [g.double() for g in torch.autograd.grad(loss, params)]
    finally:
        for p, g in zip(params, saved):
            p.grad = g
        rule.generator.set_state(gen_state)
        torch.set_rng_state(cpu_rng)
    out = {f"L{l}.grad_angle": angle(torch.cat([credit[i].flatten() for i in idx]),
                                     torch.cat([true[i].flatten() for i in idx]))
           for l, idx in _layer_slices(rule)}
    out["grad_angle"] = angle(torch.cat([c.flatten() for c in credit]), torch.cat([t.flatten() for t in true]))
    return out


def feedback_metrics(rule: LearningRule, probe: Probe) -> dict[str, Any]:
    """Everything above for one rule at its current weights (empty if nothing applies)."""
    out: dict[str, Any] = {}
    net = rule.net
    if not weights_finite(net):
        return out  # a diverged network: the engine records the divergence, nothing to measure
    was_training = net.training
    net.eval()
    try:
        pairs = rule.feedback()
        if pairs:
            layers = feedback_layers(net)
            inputs = layer_inputs(net, layers, probe.x)
            for pair in pairs:
                layer = layers[pair.layer - 1]
                z = inputs[pair.layer - 1]
                if isinstance(layer, torch.nn.Conv2d):
                    z = patches(layer, z[:CONV_PROBE_IMAGES])
                out.update(pair_metrics(pair, z))
        if has_credit(rule):
            out.update(gradient_angles(rule, probe))
    finally:
        net.train(was_training)
    return out
