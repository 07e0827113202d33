"""GOFAU: multiplicative and hybrid update rules as torch optimizers (Kirtas, Passalis, Tefas 2023).

The framework splits an optimizer into a momentum φ (giving m_t), an adaptive rate ψ (giving
l_t) and an update rule ξ. Each base optimizer here supplies the direction `m_t·l_t`:

    SGD      m·l = g + wd·θ, or its (heavy-ball / Nesterov) momentum buffer
    Adagrad  m·l = g / (√Σg² + ε)
    RMSprop  m·l = g / (√v + ε), or the momentum buffer of that ratio
    Adam     m·l = m̂ / (√v̂ + ε)

and the update mode picks ξ:

    additive        θ ← θ − η m·l                                  (exactly torch's optimizer)
    multiplicative  θ ← θ − η_out |θ| tanh(η_in m·l)                (every sign kept, 0 stays 0)
    hybrid          θ ← θ − γ η_out |θ| tanh(η_in m·l) − (1 − γ) η m·l

η is `lr`; η_out defaults to `lr` (the authors' code sets η_out = η), so that a learning-rate
schedule or grid moves both terms. γ follows a schedule: "constant"; "decay" (γ for
`gamma_patience` steps, then ×`gamma_decay` per step: multiplicative early, additive late);
"random" (each step γ ∈ {0, 1}, 1 with probability `gamma`, drawn from the optimizer's own
seeded generator, which `state_dict` carries). The papers give the schedules' names, not their
exact form: these are this package's choices.

Adam's first-moment bias correction 1/(1 − β₁ᵗ) has two places (`bias_correction`):

    "inside"   (default)  ξ = η_out |θ| tanh(η_in m̂/(√v̂ + ε)),              m̂ = m/(1 − β₁ᵗ)
    "outside"  (authors') ξ = (η_out/(1 − β₁ᵗ)) |θ| tanh(η_in m/(√v̂ + ε))

The additive term is η m̂/(√v̂ + ε) in both. They differ while the correction is large: on the
first step m/(√v̂ + ε) ≈ (1 − β₁) sign(g), so with β₁ = 0.9, η_in = 1 the multiplicative step is
tanh(1) = 0.762 η_out |θ| inside and 10 tanh(0.1) = 0.997 η_out |θ| outside (×1.31); after a
few hundred steps the two agree. The suites use "inside": it is torch's Adam direction fed to the
paper's ξ, so its step stays within the paper's stated bound η_out|θ| and keeps every sign for
any η_out < 1; "outside" (the authors' code) can step up to η_out/(1 − β₁) |θ| early on, so it
keeps signs only for η_out < 1 − β₁, which is checked.

SGD also has a "tanh-momentum" form (`tanh_momentum=True`), which the papers leave unspecified
too: momentum averages the already normalised steps, u_t = β u_{t−1} + (1 − β) tanh(η_in g_t),
and ξ uses u_t where the plain form uses tanh(η_in m·l) (multiplicative) and m·l (additive), so
each multiplicative step stays within ±η_out |θ|.

Every class is a `torch.optim.Optimizer` (param groups, `state_dict`, closures) vectorised over
the parameter list with `torch._foreach_*`, usable on any model:

    opt = HybridSGD(model.parameters(), lr=0.05, momentum=0.9, gamma=0.5)
"""
from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

UpdateMode = Literal["additive", "multiplicative", "hybrid"]
GammaSchedule = Literal["constant", "decay", "random"]
UPDATE_MODES = ("additive", "multiplicative", "hybrid")
GAMMA_SCHEDULES = ("constant", "decay", "random")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class GOFAU(Optimizer):
    """Base class: a base optimizer's direction m·l (`_direction`) fed to an update rule ξ.

    Subclasses implement `_direction(group, params, grads) -> (directions, normalised)`, where
    `normalised` says the directions already are tanh(η_in m·l)-like (the tanh-momentum form).
    The directions may be state buffers: they are never written to here.
    """

    def __init__(self, params: Any, defaults: dict[str, Any], update: UpdateMode = "hybrid",
                 eta_in: float = 1.0, eta_out: float | None = None, gamma: float = 0.5,
                 gamma_schedule: GammaSchedule = "constant", gamma_patience: int = 0,
                 gamma_decay: float = 0.999, seed: int = 0) -> None:
        _check(update in UPDATE_MODES, f"update must be one of {', '.join(UPDATE_MODES)}, got {update!r}")
        _check(gamma_schedule in GAMMA_SCHEDULES,
               f"gamma_schedule must be one of {', '.join(GAMMA_SCHEDULES)}, got {gamma_schedule!r}")
        _check(defaults["lr"] > 0, f"lr must be positive, got {defaults['lr']}")
        _check(defaults.get("weight_decay", 0.0) >= 0,
               f"weight_decay must be non-negative, got {defaults.get('weight_decay')}")
        _check(eta_in > 0, f"eta_in must be positive, got {eta_in}")
        _check(0 <= gamma <= 1, f"gamma must lie in [0, 1], got {gamma}")
        _check(gamma_patience >= 0, f"gamma_patience must be non-negative, got {gamma_patience}")
        _check(0 < gamma_decay <= 1, f"gamma_decay must lie in (0, 1], got {gamma_decay}")
        defaults = {**defaults, "update": update, "eta_in": eta_in, "eta_out": eta_out, "gamma": gamma,
                    "gamma_schedule": gamma_schedule, "gamma_patience": gamma_patience,
                    "gamma_decay": gamma_decay}
        super().__init__(params, defaults)
        self._steps = 0  # optimizer steps taken: the clock of the γ schedules
        self._gamma_generator = torch.Generator().manual_seed(seed)  # CPU: no device sync per draw

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["update"] != "additive":  # checked per group: a group may set its own rates
            out = group["lr"] if group["eta_out"] is None else group["eta_out"]
            # |η_out tanh(·)| < 1 is what keeps every sign: θ(1 ∓ η_out tanh) never crosses 0.
            _check(0 < out < 1, f"eta_out must lie in (0, 1) so that a multiplicative step keeps the weight's "
                                f"sign, got {out}" + (" (eta_out defaults to lr)" if group["eta_out"] is None else ""))

    # ---- the update rule ξ -----------------------------------------------------------------

    def _gamma(self, group: dict[str, Any]) -> float:
        """This step's weight of the multiplicative term (0 additive, 1 multiplicative)."""
        if group["update"] == "additive":
            return 0.0
        if group["update"] == "multiplicative":
            return 1.0
        schedule, gamma = group["gamma_schedule"], group["gamma"]
        if schedule == "decay":
            return gamma * group["gamma_decay"] ** max(0, self._steps - group["gamma_patience"])
        if schedule == "random":
            return 1.0 if float(torch.rand((), generator=self._gamma_generator)) < gamma else 0.0
        return gamma

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter with a gradient; `closure` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._steps += 1
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            gamma = self._gamma(group)  # drawn every step, so a random schedule's stream is fixed
            directions, normalised = self._direction(group, params, grads)
            self._apply(group, params, directions, normalised, gamma)
        return loss

    def _apply(self, group: dict[str, Any], params: list[Tensor], directions: list[Tensor],
               normalised: bool, gamma: float, outer: list[float] | None = None) -> None:
        """θ ← θ − (1 − γ)η·c·d − γη_out·|θ|·c·tanh(η_in d); `outer` is each parameter's c (1 if None),
        a factor taken outside the tanh (Adam's first-moment correction in the authors' form)."""
        lr = group["lr"]
        eta_out = lr if group["eta_out"] is None else group["eta_out"]
        mult, add = gamma * eta_out, (1.0 - gamma) * lr
        scaled = None
        if mult:
            if normalised:
                scaled = directions
            elif group["eta_in"] == 1.0:  # one pass fewer for the default
                scaled = torch._foreach_tanh(directions)
            else:
                scaled = torch._foreach_mul(directions, group["eta_in"])
                torch._foreach_tanh_(scaled)
            if outer is not None:  # not in place: `scaled` may be `directions`
                scaled = torch._foreach_mul(scaled, outer)
            magnitude = torch._foreach_abs(params)  # |θ_{t−1}|, taken before either term moves θ
        if add:
            torch._foreach_add_(params, directions if outer is None else torch._foreach_mul(directions, outer),
                                alpha=-add)
        if mult:
            torch._foreach_addcmul_(params, magnitude, scaled, value=-mult)

    def _direction(self, group: dict[str, Any], params: list[Tensor],
                   grads: list[Tensor]) -> tuple[list[Tensor], bool]:
        raise NotImplementedError

    # ---- state ------------------------------------------------------------------------------

    def _state_list(self, params: list[Tensor], key: str, init: Callable[[Tensor], Tensor]) -> list[Tensor]:
        out = []
        for p in params:
            state = self.state[p]
            if key not in state:
                state[key] = init(p)
            out.append(state[key])
        return out

    def _step_counts(self, params: list[Tensor]) -> list[float]:
        """Advance and return each parameter's own step count (kept as torch keeps it, on the CPU)."""
        steps = self._state_list(params, "step", lambda p: torch.tensor(0.0))
        torch._foreach_add_(steps, 1.0)
        return [float(s) for s in steps]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["gofau"] = {"steps": self._steps, "gamma_generator": self._gamma_generator.get_state()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("gofau", None)
        super().load_state_dict(state_dict)
        if extra is not None:
            self._steps = int(extra["steps"])
            self._gamma_generator.set_state(extra["gamma_generator"])


def _with_weight_decay(params: list[Tensor], grads: list[Tensor], weight_decay: float) -> list[Tensor]:
    return torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay else grads


class GofauSGD(GOFAU):
    """SGD direction: the gradient, its heavy-ball or Nesterov momentum, or tanh-momentum."""

    def __init__(self, params: Any, lr: float = 0.1, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, tanh_momentum: bool = False,
                 **gofau: Any) -> None:
        _check(momentum >= 0, f"momentum must be non-negative, got {momentum}")
        _check(0 <= dampening <= 1, f"dampening must lie in [0, 1], got {dampening}")
        _check(not nesterov or (momentum > 0 and dampening == 0), "nesterov needs momentum > 0 and dampening 0")
        _check(not tanh_momentum or 0 < momentum < 1, f"tanh_momentum needs momentum in (0, 1), got {momentum}")
        _check(not (tanh_momentum and nesterov), "tanh_momentum and nesterov do not combine")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "nesterov": nesterov, "weight_decay": weight_decay,
                                  "tanh_momentum": tanh_momentum}, **gofau)

    def _direction(self, group, params, grads):
        d = _with_weight_decay(params, grads, group["weight_decay"])
        momentum = group["momentum"]
        if momentum == 0:
            return d, False
        if group["tanh_momentum"]:  # u ← β u + (1 − β) tanh(η_in d)
            t = torch._foreach_mul(d, group["eta_in"])
            torch._foreach_tanh_(t)
            return self._momentum(params, t, lambda old, new: torch._foreach_lerp_(old, new, 1.0 - momentum)), True
        # buf ← μ buf + (1 − dampening) d, as torch.optim.SGD
        def accumulate(old: list[Tensor], new: list[Tensor]) -> None:
            torch._foreach_mul_(old, momentum)
            torch._foreach_add_(old, new, alpha=1.0 - group["dampening"])
        bufs = self._momentum(params, d, accumulate)
        if group["nesterov"]:
            return torch._foreach_add(d, bufs, alpha=momentum), False
        return bufs, False

    def _momentum(self, params: list[Tensor], new: list[Tensor],
                  accumulate: Callable[[list[Tensor], list[Tensor]], None]) -> list[Tensor]:
        """The momentum buffers after this step; as in torch, a first buffer is the first step itself."""
        old, old_new = [], []
        for p, x in zip(params, new):
            state = self.state[p]
            if "momentum_buffer" in state:
                old.append(state["momentum_buffer"])
                old_new.append(x)
            else:
                state["momentum_buffer"] = torch.clone(x).detach()
        if old:
            accumulate(old, old_new)
        return [self.state[p]["momentum_buffer"] for p in params]


BiasCorrection = Literal["inside", "outside"]
BIAS_CORRECTIONS = ("inside", "outside")


class GofauAdam(GOFAU):
    """Adam direction m̂ / (√v̂ + ε) with bias-corrected moments (torch.optim.Adam's arithmetic);
    `bias_correction="outside"` moves the first moment's correction outside the tanh (module doc)."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, bias_correction: BiasCorrection = "inside",
                 **gofau: Any) -> None:
        _check(eps > 0, f"eps must be positive, got {eps}")
        _check(all(0 <= b < 1 for b in betas), f"betas must lie in [0, 1), got {tuple(betas)}")
        _check(bias_correction in BIAS_CORRECTIONS, f"bias_correction must be one of "
                                                    f"{', '.join(BIAS_CORRECTIONS)}, got {bias_correction!r}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "bias_correction": bias_correction}, **gofau)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["update"] != "additive" and group["bias_correction"] == "outside":
            out = group["lr"] if group["eta_out"] is None else group["eta_out"]
            bound = 1.0 - group["betas"][0]
            # the first step's factor 1/(1 − β₁) is the largest: η_out/(1 − β₁) < 1 keeps every sign
            _check(out < bound, f"eta_out must be below 1 - beta1 = {bound:g} with bias_correction 'outside' "
                                f"(the step reaches eta_out/(1 - beta1) |θ| early on), got {out}")

    def _apply(self, group: dict[str, Any], params: list[Tensor], directions: list[Tensor],
               normalised: bool, gamma: float, outer: list[float] | None = None) -> None:
        # "outside": `directions` are m/(√v̂ + ε), uncorrected, and c = 1/(1 − β₁ᵗ) multiplies both
        # terms from outside the tanh: the authors' (η_out/(1 − β₁ᵗ)) tanh(η_in m/(√v̂ + ε))
        if group["bias_correction"] == "outside":
            outer = self._corrections
        super()._apply(group, params, directions, normalised, gamma, outer)

    def _direction(self, group, params, grads):
        beta1, beta2 = group["betas"]
        g = _with_weight_decay(params, grads, group["weight_decay"])
        m = self._state_list(params, "exp_avg", lambda p: torch.zeros_like(p, memory_format=torch.preserve_format))
        v = self._state_list(params, "exp_avg_sq", lambda p: torch.zeros_like(p, memory_format=torch.preserve_format))
        steps = self._step_counts(params)
        torch._foreach_lerp_(m, g, 1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, 1.0 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [math.sqrt(1.0 - beta2 ** s) for s in steps])
        torch._foreach_add_(denom, group["eps"])
        d = torch._foreach_div(m, denom)
        if group["bias_correction"] == "outside":
            self._corrections = [1.0 / (1.0 - beta1 ** s) for s in steps]  # applied in _apply
            return d, False
        torch._foreach_div_(d, [1.0 - beta1 ** s for s in steps])
        return d, False


class GofauAdagrad(GOFAU):
    """Adagrad direction g / (√Σg² + ε)."""

    def __init__(self, params: Any, lr: float = 1e-2, eps: float = 1e-10, weight_decay: float = 0.0,
                 **gofau: Any) -> None:
        _check(eps > 0, f"eps must be positive, got {eps}")
        super().__init__(params, {"lr": lr, "eps": eps, "weight_decay": weight_decay}, **gofau)

    def _direction(self, group, params, grads):
        g = _with_weight_decay(params, grads, group["weight_decay"])
        sums = self._state_list(params, "sum", lambda p: torch.zeros_like(p, memory_format=torch.preserve_format))
        self._step_counts(params)
        torch._foreach_addcmul_(sums, g, g, 1.0)
        std = torch._foreach_sqrt(sums)
        torch._foreach_add_(std, group["eps"])
        return torch._foreach_div(g, std), False


class GofauRMSprop(GOFAU):
    """RMSprop direction g / (√v + ε), or the momentum buffer of that ratio."""

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0, **gofau: Any) -> None:
        _check(eps > 0, f"eps must be positive, got {eps}")
        _check(0 <= alpha < 1, f"alpha must lie in [0, 1), got {alpha}")
        _check(momentum >= 0, f"momentum must be non-negative, got {momentum}")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum,
                                  "weight_decay": weight_decay}, **gofau)

    def _direction(self, group, params, grads):
        g = _with_weight_decay(params, grads, group["weight_decay"])
        v = self._state_list(params, "square_avg", lambda p: torch.zeros_like(p, memory_format=torch.preserve_format))
        self._step_counts(params)
        alpha = group["alpha"]
        torch._foreach_mul_(v, alpha)
        torch._foreach_addcmul_(v, g, g, 1.0 - alpha)
        avg = torch._foreach_sqrt(v)
        torch._foreach_add_(avg, group["eps"])
        if group["momentum"] > 0:
            bufs = self._state_list(params, "momentum_buffer",
                                    lambda p: torch.zeros_like(p, memory_format=torch.preserve_format))
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_addcdiv_(bufs, g, avg)
            return bufs, False
        return torch._foreach_div(g, avg), False


# The registered variants: each base optimizer with its update mode fixed.

class MultSGD(GofauSGD):
    """SGD direction, multiplicative update θ ← θ − η_out |θ| tanh(η_in m·l)."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="multiplicative", **kwargs)


class HybridSGD(GofauSGD):
    """SGD direction, hybrid update (γ-blend of the multiplicative and the additive step)."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="hybrid", **kwargs)


class MultAdam(GofauAdam):
    """Adam direction, multiplicative update."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="multiplicative", **kwargs)


class HybridAdam(GofauAdam):
    """Adam direction, hybrid update."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="hybrid", **kwargs)


class MultAdagrad(GofauAdagrad):
    """Adagrad direction, multiplicative update."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="multiplicative", **kwargs)


class HybridAdagrad(GofauAdagrad):
    """Adagrad direction, hybrid update."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="hybrid", **kwargs)


class MultRMSprop(GofauRMSprop):
    """RMSprop direction, multiplicative update."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="multiplicative", **kwargs)


class HybridRMSprop(GofauRMSprop):
    """RMSprop direction, hybrid update."""
    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(params, *args, update="hybrid", **kwargs)
