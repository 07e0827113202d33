"""Sign-concordant feedback (Liao, Leibo & Poggio 2016; Moskovitz, Litwin-Kumar & Abbott 2018) as
BioTorch defines it (Sanfiz & Akrout 2021, layers/fa_constructor): the error goes down through a B
that shares W's signs, on any model of Linear and Conv2d layers (plasticity.rule.FeedbackRule).

    usf    B_l = s_l · sign(W_l)              uniform magnitude, recomputed from W every batch
    brsf   B_l = |R_l| ⊙ sign(W_l)            magnitudes R_l redrawn every batch
    frsf   B_l = |R_l| ⊙ sign(W_l)            magnitudes R_l drawn once and kept

(B in W's layout for a Conv2d kernel, transposed for a Linear layer; the error reaches the
layer's input as Bδ, the weight gradient stays local.) Scale convention, BioTorch's: s_l is the
standard deviation of the layer's initial weights (BioTorch's `scaling_factor`, the std of its
init: √(2/(fan_in+fan_out)) for Xavier, 1/√(3·fan_in) for torch's default), here measured on
the initial weights, times `feedback_scale`; |R_l| is the magnitude of a draw from a uniform of
that std, i.e. R ~ U(0, √3·s_l) (BioTorch: |xavier_uniform|). uSF's B then has norm s_l·√n, the
norm of the initial W. B of the first layer is not used (it would carry an error to the input).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from plasticity import register_rule, registry
from plasticity.rule import FeedbackRule

# Plugin files are not importable modules: load the sibling fa.py and take its Params.
registry.load_plugin_file(Path(__file__).with_name("fa.py"))
FeedbackParams = registry.get_rule("fa").Params


class _SignConcordant(FeedbackRule):
    Params = FeedbackParams
    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        #: s_l per layer (None for the first); a comparison script may set BioTorch's own.
        self.scale: list[float | None] = [None] + [float(layer.weight.detach().std()) * params.feedback_scale
                                                  for layer in self.layers[1:]]

    def magnitudes(self, l: int) -> torch.Tensor | float:
        """|B| of layer l (1-based) for this batch."""
        raise NotImplementedError

    def _draw(self, l: int) -> torch.Tensor:
        w = self.layers[l - 1].weight
        return torch.rand(w.shape, generator=self.generator, device=w.device, dtype=w.dtype) \
            * (math.sqrt(3.0) * self.scale[l - 1])

    @torch.no_grad()
    def backward_feedback(self) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = [None]
        for l, layer in enumerate(self.layers[1:], start=2):
            b = torch.sign(layer.weight.detach()) * self.magnitudes(l)
            out.append(b.T if isinstance(layer, torch.nn.Linear) else b)
        return out


@register_rule("usf")
class UniformSignFeedback(_SignConcordant):
    """Uniform sign-concordant feedback: B = s·sign(W), s the std of the layer's initial weights."""

    def magnitudes(self, l: int) -> float:
        return self.scale[l - 1]


@register_rule("brsf")
class BatchRandomSignFeedback(_SignConcordant):
    """Batchwise random-magnitude sign-concordant feedback: B = |R| ⊙ sign(W), R redrawn each batch."""

    def magnitudes(self, l: int) -> torch.Tensor:
        return self._draw(l)


@register_rule("frsf")
class FixedRandomSignFeedback(_SignConcordant):
    """Fixed random-magnitude sign-concordant feedback: B = |R| ⊙ sign(W), R drawn once."""

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self.R = [None] + [self._draw(l) for l in range(2, len(self.layers) + 1)]

    def magnitudes(self, l: int) -> torch.Tensor:
        return self.R[l - 1]
