"""The learning-rule contract every rule in `rules/` follows.

A rule is a credit-assignment algorithm. `credit(x, y)` writes its descent direction into each
parameter's `.grad` (so every gradient-like rule composes with every optimizer) and returns
scalars; it changes nothing but `.grad` (the metrics call it on probe batches), so learning of a
rule's own feedback or inverse happens in `update`. `update(x, y)` performs exactly one weight
update. Closed-form rules (ER) override `update` and set `uses_optimizer = False`.
`predict(x)` gives the scores the rule's network assigns to each class (default: `net(x)`); a
rule whose inference differs (equilibrium propagation's free phase, forward-forward's goodness
per label) overrides it, and the engine, the metrics and `plasticity check` evaluate through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .feedback import FEEDBACK_LAYERS, OutputError, as_matrix, check_layers, feedback_layers, feedback_path, tap_output
from .losses import LOSSES
from .network import MLP
from .params import NoParams


@dataclass(frozen=True)
class FeedbackPair:
    """One layer's forward matrix W (out × in), the rule's feedback B (in × out), and what B
    should approach (W⁺ for reciprocal rules, Wᵀ for exact backprop, None if nothing).

    A Conv2d layer's W is its kernel as an out × (in·kh·kw) matrix, the map from one receptive-field
    patch to the output channels at one position, and B the matching (in·kh·kw) × out matrix."""
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
    #: The parametric layer types the rule has a form for (None: any model, through autograd).
    #: Building the rule on a model with another one (batch norm aside) is an error naming it.
    layer_types: ClassVar[tuple[type[nn.Module], ...] | None] = (nn.Linear,)

    def __init__(self, net: MLP, params: Any, optimizer: torch.optim.Optimizer | None,
                 generator: torch.Generator) -> None:
        check_layers(net, self.layer_types, self.name)
        self.net = net
        self.params = params
        self.optimizer = optimizer
        self.generator = generator

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Write the descent direction into every parameter's `.grad`; return scalars such as
        `{"loss": tensor}` (tensors, so the engine decides when to synchronise). Changes nothing
        but `.grad` (checked by `plasticity.testing`)."""
        raise NotImplementedError(f"rule '{self.name}' defines neither credit() nor update()")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (batch × classes) for inputs `x`, the larger the likelier: what accuracy and
        evaluation loss are computed from. Default: the network's output."""
        return self.net(x)

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


class FeedbackRule(LearningRule):
    """Base of the feedback family on any model of Linear and Conv2d layers (plus pooling, batch
    norm, residual sums, flattening): autograd's backward pass, with every layer's error sent to its
    input through the rule's B (`backward_feedback()`) instead of Wᵀ, its weight gradient local.

    `self.layers` lists the layers (layer l is `self.layers[l - 1]`). Subclasses set `self.B`
    (one tensor per layer, None for the first: see `plasticity.feedback`) or override
    `backward_feedback()` when B changes with W (sign symmetry); `direct = True` sends the
    network's output error straight to every layer (DFA). The rule's `params.loss` names the loss.
    """

    layer_types = FEEDBACK_LAYERS
    #: True: each layer's input error is B e with e the output error (DFA), not B δ.
    direct: ClassVar[bool] = False

    def __init__(self, net: torch.nn.Module, params: Any, optimizer: torch.optim.Optimizer | None,
                 generator: torch.Generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self.layers = feedback_layers(net)
        self.B: list[torch.Tensor | None] = [None] * len(self.layers)
        self._holder = OutputError() if self.direct else None

    def backward_feedback(self) -> list[torch.Tensor | None]:
        """The B of every layer for this update."""
        return self.B

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with feedback_path(self.layers, self.backward_feedback(), self._holder):
            out = self.net(x)
        if self._holder is not None:
            out = tap_output(out, self._holder)
        loss = LOSSES[self.params.loss](out, y)
        loss.backward()
        if self._holder is not None:
            self._holder.e = None
        return {"loss": loss.detach()}

    def feedback(self) -> list[FeedbackPair]:
        """(W, B, Wᵀ) of every layer with a layer-to-layer B, kernels as matrices (a B drawn per
        batch is drawn with the generator's state restored after, so measuring changes nothing)."""
        state = self.generator.get_state()
        try:
            feedback = self.backward_feedback()
        finally:
            self.generator.set_state(state)
        pairs = []
        for l, (layer, b) in enumerate(zip(self.layers, feedback), start=1):
            if b is not None:
                w = as_matrix(layer)
                pairs.append(FeedbackPair(l, w, as_matrix(layer, b), w.T))
        return pairs
