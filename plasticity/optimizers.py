"""Optimizers registered by name, each a small spec: its `Params` and how to `build` it.

Any `torch.optim.Optimizer` can be registered; the GOFAU multiplicative and hybrid variants
join these under their own names. `build_optimizer` is what the engine calls.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .params import NoParams, make_params
from .registry import get_optimizer, register_optimizer


class OptimizerSpec:
    """Base class: `Params` (a dataclass) and `build(parameters, params) -> torch.optim.Optimizer`."""
    name: ClassVar[str] = "?"
    Params: ClassVar[type] = NoParams

    @staticmethod
    def build(parameters: Iterable[torch.nn.Parameter], params: Any) -> torch.optim.Optimizer:
        raise NotImplementedError


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be non-negative, got {value}")


@register_optimizer("sgd")
class SGD(OptimizerSpec):
    """Stochastic gradient descent with optional heavy-ball or Nesterov momentum."""

    @dataclass(frozen=True)
    class Params:
        lr: float = 0.1
        momentum: float = 0.0
        nesterov: bool = False
        weight_decay: float = 0.0

        def __post_init__(self) -> None:
            _positive("lr", self.lr)
            _non_negative("momentum", self.momentum)
            _non_negative("weight_decay", self.weight_decay)
            if self.nesterov and self.momentum == 0:
                raise ValueError("nesterov=true needs momentum > 0")

    @staticmethod
    def build(parameters, p):
        return torch.optim.SGD(parameters, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov,
                               weight_decay=p.weight_decay, foreach=True)


@register_optimizer("adam")
class Adam(OptimizerSpec):
    """Adam (Kingma & Ba 2015): bias-corrected first and second moment estimates."""

    @dataclass(frozen=True)
    class Params:
        lr: float = 1e-3
        beta1: float = 0.9
        beta2: float = 0.999
        eps: float = 1e-8
        weight_decay: float = 0.0

        def __post_init__(self) -> None:
            _positive("lr", self.lr)
            _positive("eps", self.eps)
            for n in ("beta1", "beta2"):
                if not 0 <= getattr(self, n) < 1:
                    raise ValueError(f"{n} must lie in [0, 1), got {getattr(self, n)}")

    @staticmethod
    def build(parameters, p):
        return torch.optim.Adam(parameters, lr=p.lr, betas=(p.beta1, p.beta2), eps=p.eps,
                                weight_decay=p.weight_decay, foreach=True)


@register_optimizer("adagrad")
class Adagrad(OptimizerSpec):
    """Adagrad (Duchi et al. 2011): step scaled by the root of the summed squared gradients."""

    @dataclass(frozen=True)
    class Params:
        lr: float = 1e-2
        eps: float = 1e-10
        weight_decay: float = 0.0

        def __post_init__(self) -> None:
            _positive("lr", self.lr)
            _positive("eps", self.eps)

    @staticmethod
    def build(parameters, p):
        return torch.optim.Adagrad(parameters, lr=p.lr, eps=p.eps, weight_decay=p.weight_decay, foreach=True)


@register_optimizer("rmsprop")
class RMSprop(OptimizerSpec):
    """RMSprop (Tieleman & Hinton 2012): step scaled by a running RMS of the gradients."""

    @dataclass(frozen=True)
    class Params:
        lr: float = 1e-3
        alpha: float = 0.99
        eps: float = 1e-8
        momentum: float = 0.0
        weight_decay: float = 0.0

        def __post_init__(self) -> None:
            _positive("lr", self.lr)
            _positive("eps", self.eps)
            if not 0 <= self.alpha < 1:
                raise ValueError(f"alpha must lie in [0, 1), got {self.alpha}")

    @staticmethod
    def build(parameters, p):
        return torch.optim.RMSprop(parameters, lr=p.lr, alpha=p.alpha, eps=p.eps, momentum=p.momentum,
                                   weight_decay=p.weight_decay, foreach=True)


def build_optimizer(name: str, values: dict[str, Any] | None,
                    parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The registered optimizer `name` with `values`, over `parameters` (outside suites too)."""
    spec = get_optimizer(name)
    return spec.build(parameters, make_params(spec.Params, values, f"optimizer '{name}'"))
