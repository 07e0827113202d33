"""PEPITA, "Present the Error to Perturb the Input To modulate Activity" (Dellaferrera & Kreiman 2022,
ICML, "Error-driven input modulation: solving the credit assignment problem without a backward
pass"): two forward passes, the second on the input perturbed by a fixed random projection of the
first pass's error, and no backward pass. On an MLP, h_l = f(W_l h_{l−1} + b_l), h_0 = x (the
paper's Algorithm 1; the paper's nets have no biases, ours get the same rule with input 1):

    standard pass:    h_0 = x,            h_l = f(W_l h_{l−1} + b_l),   e = ∂ℓ/∂h_L   (ce: softmax(h_L) − y*)
    modulated pass:   h^err_0 = x + F e,   h^err_l = f(W_l h^err_{l−1} + b_l)
    hidden l < L:     ΔW_l = (h_l − h^err_l) (h^err_{l−1})ᵀ,        Δb_l = h_l − h^err_l
    output L:         ΔW_L = e (h^err_{L−1})ᵀ,                       Δb_L = e
    W_l ← W_l − η ΔW_l   (averaged over the batch: written to .grad, the optimizer takes the step)

F is d_in × n_out, fixed, entries U(−a, a) with a = `feedback_scale` · √(6/d_in) (the paper's and
the authors' code: 0.05 · He-uniform's bound of the input layer). e in the output layer's update is
the standard pass's error, Algorithm 1's form; the authors' code (GiorgiaD/PEPITA, functions.py and
main_pytorch.py) uses the modulated pass's error there, `output_error = "modulated"`. The paper's
dropout (keep 0.9, the same masks in both passes) is not part of the rule: the harness has no
dropout.

Layers. The paper states the rule applies to convolutional models too (its code trains one conv
layer + one fully connected layer, the conv update the patch-averaged correlation of the activity
difference with the modulated input); this file implements the MLP form only: the difference
h_l − h^err_l needs each layer's post-activation, which an MLP's trace gives and a general model's
modules do not. A model with a Conv2d layer is refused when the rule is built, naming the layer.

`feedback()` gives one pair, the alignment the paper plots: F against the product M = W_L ⋯ W_1
(n_out × d_in), target Mᵀ, as `L1.angle_BWt` (PEPITA's W align so that Mᵀ turns toward F).

Defaults: F scale 0.05 (paper, code); SGD with momentum 0.9 (paper, code); lr 0.1 and batch 64 are
the authors' MNIST fully connected command (GiorgiaD/PEPITA README; its PyTorch conv command uses
lr 0.01, batch 50): the step here is 0.1, the batch is the task's. Their schedule (lr ×0.1 at
epochs 60 and 90 of 100) is a suite's choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from plasticity import ConfigError, FeedbackPair, LearningRule, register_rule
from plasticity.losses import LossName, loss_and_error
from plasticity.network import MLP

OUTPUT_ERRORS = ("standard", "modulated")


@register_rule("pepita")
class Pepita(LearningRule):
    """PEPITA (Dellaferrera & Kreiman 2022): a second forward pass on x + F·e replaces the backward pass."""

    @dataclass(frozen=True)
    class Params:
        loss: LossName = "ce"  # output loss whose error e is projected: ce (softmax cross-entropy) or mse
        feedback_scale: float = 0.05  # F ~ U(±a), a = feedback_scale · √(6/d_in) (the paper's 0.05)
        #: the error in the output layer's update: the standard pass's (Algorithm 1) or the modulated pass's (code)
        output_error: Literal["standard", "modulated"] = "standard"

        def __post_init__(self) -> None:
            if not (self.feedback_scale > 0 and math.isfinite(self.feedback_scale)):
                raise ValueError(f"feedback_scale must be a positive number, got {self.feedback_scale}")
            if self.output_error not in OUTPUT_ERRORS:
                raise ValueError(f"output_error must be one of {', '.join(OUTPUT_ERRORS)}, got {self.output_error!r}")

    default_optimizer = ("sgd", {"lr": 0.1, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        if not isinstance(net, MLP):
            raise ConfigError(f"rule 'pepita' needs an MLP's per-layer activity (its update compares each "
                              f"layer's post-activation in two passes); this model is a {type(net).__name__}")
        w = net.layers[0].weight
        d_in, n_out = net.sizes[0], net.sizes[-1]
        bound = params.feedback_scale * math.sqrt(6.0 / d_in)
        self.F = (torch.rand(d_in, n_out, generator=generator, device=w.device, dtype=w.dtype) * 2 - 1) * bound

    @torch.no_grad()
    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        net, n = self.net, x.shape[0]
        std = net.forward_trace(x)
        loss, e = loss_and_error(self.params.loss, std.output, y)  # e = ∂(batch-mean ℓ)/∂h_L = per-example error / N
        mod = net.forward_trace(x + (e * n) @ self.F.T)
        if self.params.output_error == "modulated":
            _, e = loss_and_error(self.params.loss, mod.output, y)
        for l, layer in enumerate(net.layers, start=1):
            delta = e if l == net.depth else (std.z[l] - mod.z[l]) / n
            layer.weight.grad = delta.T @ mod.z[l - 1]
            if layer.bias is not None:
                layer.bias.grad = delta.sum(dim=0)
        return {"loss": loss}

    def feedback(self) -> list[FeedbackPair]:
        path = None
        for w in self.net.weights():  # M = W_L ⋯ W_1, built from the input side
            path = w.detach() if path is None else w.detach() @ path
        return [FeedbackPair(1, path, self.F, path.T)]
