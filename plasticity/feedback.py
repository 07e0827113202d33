"""Backward passes through feedback matrices other than Wᵀ, shared by the feedback-family rules.

Layer l (1..L) has `H_l = Z_{l−1} W_lᵀ + b_l`; a rule supplies, for each layer l ≥ 2, a feedback
matrix B_l (in × out, shaped like W_lᵀ) that carries the error of layer l down to layer l − 1:

    δ_L = ∂ℓ/∂H_L,   δ_{l−1} = (B_l δ_l) ⊙ f'(H_{l−1})      (with B_l = W_lᵀ this is backprop)
    ∇W_l = δ_l Z_{l−1}ᵀ,   ∇b_l = δ_l                          (summed over the batch; the
                                                               loss error is already a batch mean)
"""
from __future__ import annotations

import torch

from .losses import loss_and_error
from .network import MLP, Trace


@torch.no_grad()
def output_error(net: MLP, x: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[Trace, torch.Tensor, torch.Tensor]:
    """Forward trace, batch loss and δ_L = ∂ℓ/∂H_L (through the output activation)."""
    trace = net.forward_trace(x)
    value, error = loss_and_error(loss, trace.output, y)
    return trace, value, net.activation_vjp(net.depth, trace.h[-1], error)


@torch.no_grad()
def layered_deltas(net: MLP, trace: Trace, delta_out: torch.Tensor, feedback: list[torch.Tensor | None],
                   derivative: bool = True) -> list[torch.Tensor]:
    """δ_1..δ_L sent down layer by layer: `feedback[l-1]` is B_l (used for l ≥ 2). With
    `derivative=False` the f' factors are left out (the linearised rule of the RF poster)."""
    deltas = [delta_out]
    for l in range(net.depth, 1, -1):
        down = deltas[0] @ feedback[l - 1].T
        deltas.insert(0, net.activation_vjp(l - 1, trace.h[l - 1], down) if derivative else down)
    return deltas


@torch.no_grad()
def write_grads(net: MLP, trace: Trace, deltas: list[torch.Tensor]) -> None:
    """`.grad` of every layer from its δ_l and input Z_{l−1} (replacing what was there)."""
    for layer, delta, z in zip(net.layers, deltas, trace.z[:-1]):
        layer.weight.grad = delta.T @ z
        if layer.bias is not None:
            layer.bias.grad = delta.sum(dim=0)


def random_feedback(shape: tuple[int, int], scale: float, like: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
    """A fixed Gaussian feedback matrix, N(0, scale²), on `like`'s device and dtype (FA's and DFA's
    B, and RF's starting B)."""
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype) * scale
