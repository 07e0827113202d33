"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment (Nøkland 2016), on any
model of Linear and Conv2d layers (plasticity.rule.FeedbackRule: autograd's backward with each
layer's error sent down through B instead of Wᵀ, the weight gradients local).

FA: fixed random B_l (drawn once) replace W_lᵀ in the backward pass. On an MLP:

    δ_L = ∂ℓ/∂H_L,   δ_{l−1} = (B_l δ_l) ⊙ f'(H_{l−1}),   ∇W_l = δ_l Z_{l−1}ᵀ,  ∇b_l = δ_l

On a Conv2d layer B_l is a kernel shaped like W_l and the error reaches the layer's input as the
transposed convolution of δ_l with B_l (BioTorch's FA convolution); pooling, batch norm and
residual sums pass it on by autograd.

DFA: the output error e = ∂ℓ/∂y goes straight to every layer's input through a fixed random B_l:

    δ_l = (D_l e) ⊙ f'(H_l)  for l < L   (MLP; D_l is layer l+1's B, n_l × n_out)

On a Conv2d layer B_l is an n_out × c_in × kh × kw kernel and e, broadcast over the layer's output
positions, is sent through it as a transposed convolution: the same projection at every position,
as in BioTorch's DFA convolution (dfa/conv.py).

Both write the batch-mean direction into `.grad`, so any optimizer takes the step. Entries of B
are N(0, s²) with s the standard deviation of the layer's initial weights times `feedback_scale`
(whatever init the task chose). BioTorch draws B from the forward init's own distribution
(Xavier-uniform); the standard deviation is what matters and is the same convention. B of the
first layer (module order) is never needed (it would carry an error to the input) and not drawn.

`feedback()` gives, for FA, (W_l, B_l, target W_lᵀ) for l ≥ 2, kernels flattened to matrices:
angle(B, Wᵀ) falls below 90° as W aligns with B. For DFA on an MLP the pair of "layer l+1" is the
product M = W_L ⋯ W_{l+1} (the linear path from layer l to the output) against D_l, target Mᵀ; on
other models DFA exposes no pairs (no linear path from a layer to the output).
"""
from __future__ import annotations

from dataclasses import dataclass

from plasticity import FeedbackPair, register_rule
from plasticity.feedback import direct_random_feedback, feedback_shape, random_feedback
from plasticity.losses import LossName
from plasticity.network import MLP
from plasticity.rule import FeedbackRule


@dataclass(frozen=True)
class FeedbackParams:
    loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)
    feedback_scale: float = 1.0  # std of the random feedback, in units of the layer's initial weight std

    def __post_init__(self) -> None:
        if not self.feedback_scale > 0:
            raise ValueError(f"feedback_scale must be positive, got {self.feedback_scale}")


@register_rule("fa")
class FeedbackAlignment(FeedbackRule):
    """Feedback alignment: fixed random B_l in place of W_lᵀ (Linear) or of the kernel (Conv2d)."""

    Params = FeedbackParams
    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self.B = [None] + [random_feedback(feedback_shape(layer), float(layer.weight.detach().std())
                                           * params.feedback_scale, layer.weight, generator)
                           for layer in self.layers[1:]]


@register_rule("dfa")
class DirectFeedbackAlignment(FeedbackRule):
    """Direct feedback alignment: the output error projected to each layer's input by a fixed B_l."""

    Params = FeedbackParams
    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})
    direct = True

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self.B = direct_random_feedback(self.layers, params.feedback_scale, generator)

    def feedback(self) -> list[FeedbackPair] | None:
        if not isinstance(self.net, MLP):
            return None
        ws = [w.detach() for w in self.net.weights()]
        pairs, path = [], None
        for l in range(self.net.depth, 1, -1):  # path = W_L ⋯ W_l, built from the top
            path = ws[l - 1] if path is None else path @ ws[l - 1]
            pairs.append(FeedbackPair(l, path, self.B[l - 1], path.T))
        return pairs[::-1]
