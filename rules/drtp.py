"""Direct random target projection (Frenkel, Lefebvre & Bol 2021, Front. Neurosci. 15:629892): DFA's
path, fed by a fixed random projection of the one-hot target y* instead of the output error, on any
model of Linear and Conv2d layers (plasticity.rule.FeedbackRule, `direct = True`).

On an MLP (layers 1..L, B_l in × n_out the projection to layer l's input, i.e. to hidden layer l−1):

    hidden l < L:  δ_l = (B_{l+1} y*) ⊙ f'(H_l),   ∇W_l = δ_l Z_{l−1}ᵀ,   ∇b_l = δ_l
    output L:      δ_L = ∂ℓ/∂H_L  (its own error, as backprop's last layer)

summed over the batch with y* / N (N the batch size), the batch-mean convention of every rule
here. The hidden updates depend on the target and on the layer's own activity only: neither the
output, nor the output error, nor any weight above reaches them, so each hidden layer can update
as soon as its forward pass is done (no update locking). As in the authors' code
(ChFrenkel/DirectRandomTargetProjection, function.py) the signal is +y* B (DFA's is (y − y*) B);
B is symmetric about zero, so the sign is a relabelling of B.

On a Conv2d layer B is an n_out × c_in × kh × kw kernel and y*, broadcast over the layer's output
positions, goes through it as a transposed convolution (the one layer mechanism's direct form,
BioTorch's DFA convolution); the authors' code instead projects y* onto every (channel, position)
of the conv output with a full matrix. Entries of B: N(0, s²) with s the std of the layer's
initial weights × `feedback_scale`, DFA's convention here (the authors: Kaiming-uniform, std
√(2/n_l) for a hidden width n_l).

Defaults: the authors' code trains with SGD + Nesterov momentum 0.9 at lr 1e-4 under a sigmoid
output and binary cross-entropy; the paper's per-experiment learning rates were not retrievable
here. This package's loss is softmax cross-entropy (or mse) on a linear output, and the default
step (SGD lr 0.01, momentum 0.9) is ours (on the MNIST MLP 784-256-256-10 tanh after one epoch:
lr 0.01 → 90.2 %, 0.03 → 91.3 % test accuracy). The hidden signal y* B does not shrink as the error
falls: with bounded units (tanh, sigmoid: the paper's) a unit saturates; with ReLU the pushed-up
units grow without bound, and the MNIST MLP stays at chance (9.8 % after one epoch, measured).
Use tanh or sigmoid hidden units with this rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from plasticity import register_rule
from plasticity.feedback import direct_random_feedback, feedback_path
from plasticity.losses import LOSSES, LossName
from plasticity.rule import FeedbackPair, FeedbackRule


@register_rule("drtp")
class DirectRandomTargetProjection(FeedbackRule):
    """Direct random target projection (Frenkel et al. 2021): hidden layers learn from B·y* (one-hot target)."""

    @dataclass(frozen=True)
    class Params:
        loss: LossName = "ce"  # output loss of the last layer: ce (softmax cross-entropy) or mse (squared error)
        feedback_scale: float = 1.0  # std of the random projection, in units of the layer's initial weight std

        def __post_init__(self) -> None:
            if not self.feedback_scale > 0:
                raise ValueError(f"feedback_scale must be positive, got {self.feedback_scale}")

    default_optimizer = ("sgd", {"lr": 0.01, "momentum": 0.9})
    direct = True

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self.B = direct_random_feedback(self.layers, params.feedback_scale, generator)

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with feedback_path(self.layers, self.B, self._holder):
            out = self.net(x)
        # The projected signal is the target, set before the backward pass (no output tap).
        self._holder.e = F.one_hot(y, out.shape[1]).to(out.dtype) / out.shape[0]
        try:
            loss = LOSSES[self.params.loss](out, y)
            loss.backward()
        finally:
            self._holder.e = None
        return {"loss": loss.detach()}

    def feedback(self) -> list[FeedbackPair] | None:
        return None  # B projects the target, not an error: no matrix it should align with
