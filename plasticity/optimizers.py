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
        lr: float = 0.1  # learning rate η
        momentum: float = 0.0  # heavy-ball momentum (0: none)
        nesterov: bool = False  # Nesterov momentum (needs momentum > 0)
        weight_decay: float = 0.0  # L2 penalty added to the gradient

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
        lr: float = 1e-3  # learning rate η
        beta1: float = 0.9  # decay of the first-moment (mean) estimate
        beta2: float = 0.999  # decay of the second-moment estimate
        eps: float = 1e-8  # added to the denominator for numerical stability
        weight_decay: float = 0.0  # L2 penalty added to the gradient

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
        lr: float = 1e-2  # learning rate η
        eps: float = 1e-10  # added to the denominator for numerical stability
        weight_decay: float = 0.0  # L2 penalty added to the gradient

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
        lr: float = 1e-3  # learning rate η
        alpha: float = 0.99  # decay of the running mean of squared gradients
        eps: float = 1e-8  # added to the denominator for numerical stability
        momentum: float = 0.0  # heavy-ball momentum (0: none)
        weight_decay: float = 0.0  # L2 penalty added to the gradient

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


# ---- GOFAU: the multiplicative and hybrid variants of each (see plasticity/gofau.py) -------------

from . import gofau as _gofau  # noqa: E402  (kept beside the specs that use it)
from .params import as_dict  # noqa: E402


@dataclass(frozen=True)
class _MultiplicativeParams:
    """Parameters of the multiplicative term θ ← θ − η_out |θ| tanh(η_in m·l)."""
    eta_in: float = 1.0  # scale inside tanh: η_in in |θ| tanh(η_in m·l)
    eta_out: float | None = None  # None: the same as lr (the authors' default)


@dataclass(frozen=True)
class _HybridParams(_MultiplicativeParams):
    """Parameters of the hybrid blend γ·multiplicative + (1 − γ)·additive and of γ's schedule."""
    gamma: float = 0.5  # share of the multiplicative term (1: multiplicative only, 0: additive only)
    gamma_schedule: _gofau.GammaSchedule = "constant"  # constant, decay (after gamma_patience steps), random
    gamma_patience: int = 0  # steps at the initial γ before the decay schedule starts
    gamma_decay: float = 0.999  # factor on γ per step once the decay schedule runs
    seed: int | None = None  # of the random γ schedule; None: drawn from torch's seeded global RNG


@dataclass(frozen=True)
class _AdamMultiplicativeParams(_MultiplicativeParams):
    """Adam's multiplicative term, with the place of its first-moment bias correction."""
    bias_correction: _gofau.BiasCorrection = "inside"  # inside tanh (default) or outside (the authors' code)


@dataclass(frozen=True)
class _AdamHybridParams(_HybridParams):
    bias_correction: _gofau.BiasCorrection = "inside"  # inside tanh (default) or outside (the authors' code)


def _gofau_kwargs(p: Any, draw_seed: bool = True) -> dict[str, Any]:
    """A GOFAU Params instance as keyword arguments of its optimizer class."""
    values = as_dict(p)
    if "beta1" in values:
        values["betas"] = (values.pop("beta1"), values.pop("beta2"))
    if "seed" in values and values["seed"] is None:
        # The engine seeds torch per cell before it builds the optimizer, so this is per cell too;
        # the global RNG is touched only where a random γ schedule needs it.
        values["seed"] = (int(torch.randint(2**62, ())) if draw_seed and values["gamma_schedule"] == "random"
                          else 0)
    return values


class _GofauParamsCheck:
    """Mixin: validate a GOFAU Params by building its optimizer on a dummy tensor, so that a
    suite file fails before any cell runs and the checks live in one place (the optimizer)."""
    _optimizer: ClassVar[type]

    def _check_gofau(self) -> None:
        self._optimizer([torch.zeros(1)], **_gofau_kwargs(self, draw_seed=False))


class _GofauSpec(OptimizerSpec):
    @classmethod
    def build(cls, parameters, p):  # type: ignore[override]
        return p._optimizer(parameters, **_gofau_kwargs(p))


def _gofau_sgd_params(optimizer: type, mode_params: type) -> type:
    @dataclass(frozen=True)
    class Params(_GofauParamsCheck, mode_params, SGD.Params):
        tanh_momentum: bool = False  # momentum averages tanh(η_in g): each step bounded by η_out |θ|
        _optimizer: ClassVar[type] = optimizer

        def __post_init__(self) -> None:
            SGD.Params.__post_init__(self)
            self._check_gofau()
    return Params


def _gofau_params(base: type, optimizer: type, mode_params: type) -> type:
    @dataclass(frozen=True)
    class Params(_GofauParamsCheck, mode_params, base):
        _optimizer: ClassVar[type] = optimizer

        def __post_init__(self) -> None:
            base.__post_init__(self)
            self._check_gofau()
    return Params


@register_optimizer("mult-sgd")
class MultSGD(_GofauSpec):
    """GOFAU multiplicative SGD: θ ← θ − η_out |θ| tanh(η_in m), m the gradient or its momentum."""
    Params = _gofau_sgd_params(_gofau.MultSGD, _MultiplicativeParams)


@register_optimizer("hybrid-sgd")
class HybridSGD(_GofauSpec):
    """GOFAU hybrid SGD: γ × the multiplicative step + (1 − γ) × the additive step."""
    Params = _gofau_sgd_params(_gofau.HybridSGD, _HybridParams)


@register_optimizer("mult-adam")
class MultAdam(_GofauSpec):
    """GOFAU multiplicative Adam: θ ← θ − η_out |θ| tanh(η_in m̂/(√v̂ + ε))."""
    Params = _gofau_params(Adam.Params, _gofau.MultAdam, _AdamMultiplicativeParams)


@register_optimizer("hybrid-adam")
class HybridAdam(_GofauSpec):
    """GOFAU hybrid Adam: γ × the multiplicative step + (1 − γ) × Adam's step."""
    Params = _gofau_params(Adam.Params, _gofau.HybridAdam, _AdamHybridParams)


@register_optimizer("mult-adagrad")
class MultAdagrad(_GofauSpec):
    """GOFAU multiplicative Adagrad: θ ← θ − η_out |θ| tanh(η_in g/(√Σg² + ε))."""
    Params = _gofau_params(Adagrad.Params, _gofau.MultAdagrad, _MultiplicativeParams)


@register_optimizer("hybrid-adagrad")
class HybridAdagrad(_GofauSpec):
    """GOFAU hybrid Adagrad: γ × the multiplicative step + (1 − γ) × Adagrad's step."""
    Params = _gofau_params(Adagrad.Params, _gofau.HybridAdagrad, _HybridParams)


@register_optimizer("mult-rmsprop")
class MultRMSprop(_GofauSpec):
    """GOFAU multiplicative RMSprop: θ ← θ − η_out |θ| tanh(η_in g/(√v + ε))."""
    Params = _gofau_params(RMSprop.Params, _gofau.MultRMSprop, _MultiplicativeParams)


@register_optimizer("hybrid-rmsprop")
class HybridRMSprop(_GofauSpec):
    """GOFAU hybrid RMSprop: γ × the multiplicative step + (1 − γ) × RMSprop's step."""
    Params = _gofau_params(RMSprop.Params, _gofau.HybridRMSprop, _HybridParams)
