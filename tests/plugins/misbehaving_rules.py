"""Rules that misbehave on purpose, loaded only by the tests that need them."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from plasticity import LearningRule, register_rule
from plasticity.losses import cross_entropy


@register_rule("test_nan")
class NaNRule(LearningRule):
    """Diverges on purpose: writes NaN into the first layer's weights from update `at` on."""

    @dataclass(frozen=True)
    class Params:
        at: int = 3

    uses_optimizer = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.count = 0

    @torch.no_grad()
    def update(self, x, y):
        self.count += 1
        if self.count >= self.params.at:
            self.net.layers[0].weight.fill_(float("nan"))
        return {"loss": cross_entropy(self.net(x), y)}
