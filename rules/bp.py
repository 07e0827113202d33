"""Backpropagation: the exact gradient of the output loss, the baseline every rule is measured against.

    δ_L = ∂ℓ/∂H_L                     (softmax cross-entropy: softmax(H_L) − onehot(y))
    δ_l = (W_{l+1}ᵀ δ_{l+1}) ⊙ f'(H_l)
    ∇W_l = δ_l Z_{l−1}ᵀ,  ∇b_l = δ_l  (averaged over the batch; the optimizer takes the step)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity import FeedbackPair, LearningRule, register_rule
from plasticity.feedback import as_matrix, feedback_layers
from plasticity.losses import LOSSES, LossName


@register_rule("bp")
class Backprop(LearningRule):
    """Backpropagation of the output loss (autograd); softmax cross-entropy or squared error."""

    @dataclass(frozen=True)
    class Params:
        loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)

    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})
    layer_types = None  # plain autograd: any model

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = LOSSES[self.params.loss](self.net(x), y)
        loss.backward()
        return {"loss": loss.detach()}

    def feedback(self) -> list[FeedbackPair]:
        # Backprop's feedback is Wᵀ itself: the zero line of the alignment metrics.
        pairs = []
        for l, layer in enumerate(feedback_layers(self.net), start=1):
            w = as_matrix(layer)
            pairs.append(FeedbackPair(l, w, w.T, w.T))
        return pairs
