"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment (Nøkland 2016).

FA: fixed random matrices B_l (in × out, drawn once) replace W_lᵀ in the backward pass:

    δ_L = ∂ℓ/∂H_L,   δ_{l−1} = (B_l δ_l) ⊙ f'(H_{l−1}),   ∇W_l = δ_l Z_{l−1}ᵀ,  ∇b_l = δ_l

DFA: the output error goes straight to every hidden layer through a fixed random D_l (n_l × n_L):

    δ_l = (D_l δ_L) ⊙ f'(H_l)  for l < L

Both write the batch-mean direction into `.grad`, so any optimizer takes the step. The feedback
entries are N(0, s²) with s the standard deviation of the forward layer's initial weights times
`feedback_scale` (the forward init's scale, whatever init the task chose); FA's B_1 is never
needed (it would carry an error to the input) and is not drawn.

`feedback()` gives, for FA, (W_l, B_l, target W_lᵀ) for l ≥ 2: angle(B, Wᵀ) falls below 90° as W
aligns with B. For DFA the pair of "layer l+1" is the product M = W_L ⋯ W_{l+1} (the linear path
from layer l to the output, n_L × n_l) against D_l, target Mᵀ; for l = L − 1 that is W_L, as in FA.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity import FeedbackPair, LearningRule, register_rule
from plasticity.feedback import layered_deltas, output_error, random_feedback, write_grads
from plasticity.losses import LossName


@dataclass(frozen=True)
class FeedbackParams:
    loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)
    feedback_scale: float = 1.0  # std of the random feedback, in units of the layer's initial weight std

    def __post_init__(self) -> None:
        if not self.feedback_scale > 0:
            raise ValueError(f"feedback_scale must be positive, got {self.feedback_scale}")


@register_rule("fa")
class FeedbackAlignment(LearningRule):
    """Feedback alignment: fixed random B_l in place of W_lᵀ, layer by layer."""

    Params = FeedbackParams
    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        ws = net.weights()
        self.B: list[torch.Tensor | None] = [None] + [
            random_feedback(tuple(w.T.shape), float(w.detach().std()) * params.feedback_scale, w, generator)
            for w in ws[1:]]

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        trace, loss, delta = output_error(self.net, x, y, self.params.loss)
        write_grads(self.net, trace, layered_deltas(self.net, trace, delta, self.B))
        return {"loss": loss}

    def feedback(self) -> list[FeedbackPair]:
        ws = self.net.weights()
        return [FeedbackPair(l, ws[l - 1].detach(), self.B[l - 1], ws[l - 1].detach().T)
                for l in range(2, self.net.depth + 1)]


@register_rule("dfa")
class DirectFeedbackAlignment(LearningRule):
    """Direct feedback alignment: the output error projected to each hidden layer by a fixed D_l."""

    Params = FeedbackParams
    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        ws = net.weights()
        n_out = net.sizes[-1]
        # D_l reaches layer l (width n_l) from the output; scaled like the layer above it.
        self.D = [random_feedback((net.sizes[l], n_out), float(ws[l].detach().std()) * params.feedback_scale,
                               ws[l], generator) for l in range(1, net.depth)]

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        trace, loss, delta = output_error(self.net, x, y, self.params.loss)
        deltas = [self.net.activation_vjp(l, trace.h[l], delta @ d.T) for l, d in enumerate(self.D, start=1)]
        write_grads(self.net, trace, deltas + [delta])
        return {"loss": loss}

    def feedback(self) -> list[FeedbackPair]:
        ws = [w.detach() for w in self.net.weights()]
        pairs, path = [], None
        for l in range(self.net.depth, 1, -1):  # path = W_L ⋯ W_l, built from the top
            path = ws[l - 1] if path is None else path @ ws[l - 1]
            pairs.append(FeedbackPair(l, path, self.D[l - 2], path.T))
        return pairs[::-1]
