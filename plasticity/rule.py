"""The learning-rule contract every rule in `rules/` follows.

A rule is a credit-assignment algorithm. `credit(x, y)` writes its descent direction into each
parameter's `.grad` (so every gradient-like rule composes with every optimizer) and returns
scalars; `update(x, y)` performs exactly one weight update. Closed-form rules (ER) override
`update` and set `uses_optimizer = False`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .network import MLP
from .params import NoParams


@dataclass(frozen=True)
class FeedbackPair:
    """One layer's forward matrix W (out × in), the rule's feedback B (in × out), and what B
    should approach (W⁺ for reciprocal rules, Wᵀ for exact backprop, None if nothing)."""
    layer: int
    forward: torch.Tensor
    feedback: torch.Tensor
    target: torch.Tensor | None = None


class LearningRule:
    """Base class of all learning rules; subclass, set `Params`, register with `@register_rule`.

    Subclasses get `self.net`, `self.params`, `self.optimizer` (None when `uses_optimizer` is
    False) and `self.generator` (a torch.Generator on the network's device for any randomness).
    """

    name: ClassVar[str] = "?"
    Params: ClassVar[type] = NoParams
    #: False for closed-form rules that write weights themselves (the suite pairs them with "none").
    uses_optimizer: ClassVar[bool] = True
    #: The optimizer (name, params) a suite uses when it names none for this rule.
    default_optimizer: ClassVar[tuple[str, dict[str, Any]]] = ("sgd", {"lr": 0.05, "momentum": 0.9})
    #: True when `credit` approximates the loss gradient (enables the credit/gradient angle metric).
    gradient_like: ClassVar[bool] = True

    def __init__(self, net: MLP, params: Any, optimizer: torch.optim.Optimizer | None,
                 generator: torch.Generator) -> None:
        self.net = net
        self.params = params
        self.optimizer = optimizer
        self.generator = generator

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Write the descent direction into every parameter's `.grad`; return scalars such as
        `{"loss": tensor}` (tensors, so the engine decides when to synchronise)."""
        raise NotImplementedError(f"rule '{self.name}' defines neither credit() nor update()")

    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Exactly one weight update of the network from the batch (x, y)."""
        assert self.optimizer is not None, f"rule '{self.name}' needs an optimizer"
        self.optimizer.zero_grad(set_to_none=True)
        out = self.credit(x, y)
        self.optimizer.step()
        return out

    def feedback(self) -> list[FeedbackPair] | None:
        """Per-layer (W, B, target) for the pseudo-inverse and alignment metrics, or None."""
        return None

    def diagnostics(self) -> dict[str, float]:
        """Rule-specific scalars recorded at each evaluation (condition numbers, ...)."""
        return {}
