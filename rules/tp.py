"""Target propagation (TP), difference target propagation (DTP) and direct DTP with linear
feedback (DDTP-linear, at the end of this file): layer targets through a learned feedback path.

Lee et al. 2015 (DTP), Bartunov et al. 2018 (MNIST 5×256 / CIFAR-10 3×1024 tanh), in the
network's notation z_l = f(W_l z_{l−1} + b_l), z_0 = x, layers 1..L, output linear (logits):

    top target (top = L−1, "penultimate", Lee/Bartunov DTP):  ẑ_{L−1} = z_{L−1} − β ∂ℓ/∂z_{L−1}
               (top = L,   "output", Meulemans 2020 / SDTP):   ẑ_L     = z_L     − β ∂ℓ/∂z_L
    inverses   g_l(z) = tanh(V_l z + c_l)                      for l = 2..top (none for the input)
    TP:        ẑ_{l−1} = g_l(ẑ_l)
    DTP:       ẑ_{l−1} = z_{l−1} − g_l(z_l) + g_l(ẑ_l)         (exact when ẑ_l = z_l, whatever g_l)
    forward:   output layer on the task loss ℓ; hidden layer l on (1/2β) ‖f(W_l z_{l−1} + b_l) − ẑ_l‖²
               with z_{l−1} and ẑ_l held fixed (layer-local; written to .grad, the optimizer steps)
    inverses:  ½ ‖g_l(f_l(z̃)) − z̃‖²,  z̃ = z_{l−1} + N(0, σ²)   (the rule's own optimizer, feedback_lr)

ℓ is per example (the batch mean's gradient times the batch size), so β is a step in activity
units. Choices where the papers are silent or differ, documented here:
- The 1/β factor in the local loss makes the top hidden layer's credit the gradient (exactly for
  the penultimate target, as β → 0 for the output one), so the rule composes with SGD at BP-like
  learning rates (Adam is indifferent to the scale).
- "penultimate" (default) is Lee's and Bartunov's DTP: one layer of gradient transport sets the
  top hidden target; with one hidden layer no inverse is used and the rule is BP up to the local
  loss. "output" removes that transport (Bartunov's SDTP target, Meulemans' DTP), g_L inverting
  the output layer; the output layer is still trained on ℓ.
- schedule "alternating" (Bartunov): the inverses take `inverse_steps` steps on the batch, then
  the targets are computed with the updated inverses and the forward weights step once.
  "parallel": targets from the inverses as they were, inverse steps on the same forward pass.
- Inverse weights start like the forward ones (U(±1/√fan_in)), drawn from the rule's generator;
  the feedback optimizer is Adam (Meulemans), RMSprop (Lee) or SGD, chosen by a parameter.
- Bartunov's own hyperparameters are not in REFERENCE.md; defaults are Meulemans' MNIST DTP
  values (β 0.22, σ 0.084, feedback lr 1.96e-3) except the forward Adam lr (the suite sets it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from plasticity import FeedbackPair, LearningRule, register_rule, registry
from plasticity.feedback import write_grads
from plasticity.losses import LossName, loss_and_error
from plasticity.network import Trace
from plasticity.optimizers import build_optimizer


@dataclass(frozen=True)
class TargetParams:
    """What every target rule here shares: the target step, the feedback path's training, the schedule."""
    beta: float = 0.22                  # output-side target step (Meulemans MNIST DTP)
    noise: float = 0.084                # σ of the corruption the feedback path learns on
    feedback_lr: float = 1.96e-3        # learning rate of the feedback path
    feedback_optimizer: str = "adam"    # any registered optimizer, at lr = feedback_lr
    inverse_steps: int = 1              # feedback-path updates per forward update
    #: alternating: the inverses step on the batch first, then the targets; parallel: both at once
    schedule: Literal["alternating", "parallel"] = "alternating"
    loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)

    def __post_init__(self) -> None:
        for name in ("beta", "feedback_lr"):
            if not getattr(self, name) > 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not self.noise >= 0 or not math.isfinite(self.noise):
            raise ValueError(f"noise must be a non-negative number (the σ of the inverse's corruption), "
                             f"got {self.noise}")
        if self.inverse_steps < 0:
            raise ValueError(f"inverse_steps must be 0 or more, got {self.inverse_steps}")
        if self.schedule not in ("alternating", "parallel"):
            raise ValueError(f"schedule must be 'alternating' or 'parallel', got {self.schedule!r}")
        if self.feedback_optimizer not in registry.names("optimizer"):
            raise ValueError(f"feedback_optimizer must be one of {', '.join(registry.names('optimizer'))}, "
                             f"got {self.feedback_optimizer!r}")


@dataclass(frozen=True)
class TargetPropParams(TargetParams):
    #: the first target: on the penultimate layer (Lee/Bartunov DTP) or the output (Meulemans)
    top_target: Literal["penultimate", "output"] = "penultimate"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_target not in ("penultimate", "output"):
            raise ValueError(f"top_target must be 'penultimate' or 'output', got {self.top_target!r}")


class LayerTargetRule(LearningRule):
    """Forward side shared by the target rules: one forward pass, the feedback path trained before
    ("alternating") or beside ("parallel") the target computation, layer-local losses in .grad.

    Subclasses hold the feedback path and define `targets(trace, y)` and `train_feedback(trace)`.
    """

    default_optimizer = ("adam", {"lr": 1e-3})
    gradient_like = True

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self.inverse_steps = 0
        self._inv_err: dict[int, torch.Tensor] = {}
        self.feedback_optimizer: torch.optim.Optimizer | None = None

    def _uniform(self, shape: tuple[int, ...], bound: float) -> torch.Tensor:
        like = self.net.layers[0].weight
        u = torch.rand(shape, generator=self.generator, device=like.device, dtype=like.dtype)
        return ((2 * u - 1) * bound).requires_grad_(False)

    def _feedback_optimizer(self, tensors: list[torch.Tensor]) -> torch.optim.Optimizer | None:
        if not tensors:
            return None
        return build_optimizer(self.params.feedback_optimizer, {"lr": self.params.feedback_lr}, tensors)

    def _noisy(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.params.noise * torch.randn(z.shape, generator=self.generator, device=z.device, dtype=z.dtype)

    def targets(self, trace: Trace, y: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor]:
        """(loss, {l: ẑ_l for every hidden l}, ∂ℓ/∂output of the batch-mean loss)."""
        raise NotImplementedError

    def train_feedback(self, trace: Trace) -> None:
        """`inverse_steps` steps of the feedback path on this batch's activity."""
        raise NotImplementedError

    @torch.no_grad()
    def write_grads(self, trace: Trace, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer-local losses' gradients into .grad: output on ℓ, hidden layers on their targets."""
        loss, hat, error = self.targets(trace, y)
        z, h, L, B = trace.z, trace.h, self.net.depth, y.shape[0]
        deltas = [self.net.activation_vjp(l, h[l], (z[l] - hat[l]) / (self.params.beta * B)) for l in range(1, L)]
        deltas.append(self.net.activation_vjp(L, h[L], error))  # the output layer: the task loss itself
        write_grads(self.net, trace, deltas)
        return {"loss": loss}

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The forward weights' local-loss gradients from the current feedback path (no other effect)."""
        with torch.no_grad():
            trace = self.net.forward_trace(x)
        return self.write_grads(trace, y)

    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One forward pass; the feedback path's steps (before or beside the targets); one forward step."""
        with torch.no_grad():
            trace = self.net.forward_trace(x)
        if self.params.schedule == "alternating":
            self.train_feedback(trace)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.write_grads(trace, y)
        if self.params.schedule == "parallel":
            self.train_feedback(trace)
        self.optimizer.step()
        return out

    def diagnostics(self) -> dict[str, float]:
        """Cumulative feedback steps and each layer's relative reconstruction error on its last batch."""
        out = {"inverse_steps": float(self.inverse_steps)}
        out.update({f"L{l}.inv_err": float(e) for l, e in sorted(self._inv_err.items())})
        return out


class TargetPropagation(LayerTargetRule):
    """TP and DTP: layer-wise learned inverses g_l; subclasses set `difference`."""

    Params = TargetPropParams
    #: True: DTP's difference correction; False: plain TP, ẑ_{l−1} = g_l(ẑ_l).
    difference: bool = True

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        L = net.depth
        self.top = L - 1 if params.top_target == "penultimate" else L
        self.V: dict[int, torch.Tensor] = {}  # V_l: n_{l−1} × n_l, maps layer l back to l−1
        self.c: dict[int, torch.Tensor] = {}
        for l in range(2, self.top + 1):
            n_below, n_here = net.sizes[l - 1], net.sizes[l]
            bound = 1.0 / math.sqrt(n_here)
            self.V[l] = self._uniform((n_below, n_here), bound)
            self.c[l] = self._uniform((n_below,), bound)
        self.feedback_optimizer = self._feedback_optimizer([*self.V.values(), *self.c.values()])

    # ----- the algorithm -------------------------------------------------------------------
    def g(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """Inverse of layer l: tanh(V_l z + c_l), from layer l's activity to layer l−1's."""
        return torch.tanh(torch.addmm(self.c[l], z, self.V[l].T))

    def propagate(self, l: int, z_below: torch.Tensor, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Target of layer l−1 from layer l's target (DTP's difference correction, or TP)."""
        if self.difference:
            # z_{l−1} + (g(ẑ) − g(z)): the bracket is exactly 0 when ẑ = z, so the target is z_{l−1} bit for bit.
            return z_below + (self.g(l, target) - self.g(l, z))
        return self.g(l, target)

    @torch.no_grad()
    def targets(self, trace: Trace, y: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor]:
        """(loss, {l: ẑ_l for l = 1..top}, ∂ℓ/∂output of the batch-mean loss)."""
        z, L = trace.z, self.net.depth
        loss, error = loss_and_error(self.params.loss, z[L], y)
        step = error * y.shape[0]  # ∂ℓ/∂z_L of the per-example loss
        if self.top == L - 1:  # ∂ℓ/∂z_{L−1}: one layer of gradient transport
            step = self.net.activation_vjp(L, trace.h[L], step) @ self.net.layers[L - 1].weight
        hat = {self.top: z[self.top] - self.params.beta * step}
        for l in range(self.top, 1, -1):
            hat[l - 1] = self.propagate(l, z[l - 1], z[l], hat[l])
        return loss, hat, error

    @torch.no_grad()
    def train_feedback(self, trace: Trace) -> None:
        """`inverse_steps` steps of each g_l on ½‖g_l(f_l(z̃)) − z̃‖², z̃ = z_{l−1} + N(0, σ²)."""
        if self.feedback_optimizer is None:
            return
        for _ in range(self.params.inverse_steps):
            for l in self.V:
                layer = self.net.layers[l - 1]
                z_below = trace.z[l - 1]
                noisy = self._noisy(z_below)
                up = self.net.act(l)(layer(noisy))
                rec = self.g(l, up)
                diff = rec - noisy
                d_pre = diff * (1 - rec * rec) / noisy.shape[0]
                self.V[l].grad = d_pre.T @ up
                self.c[l].grad = d_pre.sum(dim=0)
                self._inv_err[l] = diff.pow(2).sum() / noisy.pow(2).sum().clamp_min(1e-30)
            self.feedback_optimizer.step()
            self.inverse_steps += 1

    def feedback(self) -> list[FeedbackPair] | None:
        # V_l is shaped like W_lᵀ; no target: the noisy, data-weighted nonlinear inverse has no
        # closed form to compare with (linearised it approaches a data-weighted W_l⁺).
        pairs = [FeedbackPair(l, self.net.layers[l - 1].weight.detach(), self.V[l].detach())
                 for l in self.V]
        return pairs or None


@register_rule("dtp")
class DifferenceTargetPropagation(TargetPropagation):
    """Difference target propagation (Lee et al. 2015; Bartunov et al. 2018): TP with the
    correction ẑ_{l−1} = z_{l−1} − g_l(z_l) + g_l(ẑ_l), exact whenever the target equals the activity."""
    difference = True


@register_rule("tp")
class PlainTargetPropagation(TargetPropagation):
    """Target propagation: targets through the learned inverses alone, ẑ_{l−1} = g_l(ẑ_l).

    Default β = 1: with β = 0.22 the lower layers chase the inverses' reconstruction error, which
    the small target step cannot outweigh, and the representation collapses (digits 4×64 tanh:
    chance within 10 epochs; β = 1: 0.91, β = 3: 0.95 after 20). No published TP values are in REFERENCE.md.
    """
    difference = False

    @dataclass(frozen=True)
    class Params(TargetPropParams):
        beta: float = 1.0


@register_rule("ddtp-linear")
class DirectDifferenceTargetPropagation(LayerTargetRule):
    """Direct difference target propagation with linear feedback (Meulemans et al. 2020, DDTP-linear).

        ẑ_L = z_L − β ∂ℓ/∂z_L;   ẑ_l = z_l + Q_l (ẑ_L − z_L)   for every hidden l (Q_l: n_l × n_L)
        Q_l trained on the difference reconstruction loss ½‖Q_l (f_{L←l}(z_l + ε) − z_L) − ε‖²,
        ε ~ N(0, σ²): Q_l learns to undo, to first order, what a perturbation of layer l does to
        the output (a Gauss-Newton-like feedback).

    Meulemans' second, regularising loss term (noise at the output) is left out; their DDTP-linear
    hyperparameters are not in REFERENCE.md, so the defaults are their MNIST DTP values.
    `L<l>.inv_err` here is ‖Q_l Δz_L − ε‖² / ‖ε‖² (the part of the perturbation not recovered).
    """

    Params = TargetParams

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        n_out = net.sizes[-1]
        self.Q = {l: self._uniform((net.sizes[l], n_out), 1.0 / math.sqrt(n_out)) for l in range(1, net.depth)}
        self.feedback_optimizer = self._feedback_optimizer(list(self.Q.values()))

    @torch.no_grad()
    def targets(self, trace: Trace, y: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor]:
        z, L = trace.z, self.net.depth
        loss, error = loss_and_error(self.params.loss, z[L], y)
        out_shift = -self.params.beta * error * y.shape[0]  # ẑ_L − z_L
        return loss, {l: z[l] + out_shift @ Q.T for l, Q in self.Q.items()}, error

    def output_from(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """The network's output when layer l's activity is z (layers l+1..L applied)."""
        for k in range(l + 1, self.net.depth + 1):
            z = self.net.act(k)(self.net.layers[k - 1](z))
        return z

    @torch.no_grad()
    def train_feedback(self, trace: Trace) -> None:
        """`inverse_steps` steps of each Q_l on the difference reconstruction loss."""
        z_out = trace.z[-1]
        for _ in range(self.params.inverse_steps):
            for l, Q in self.Q.items():
                noisy = self._noisy(trace.z[l])
                eps = noisy - trace.z[l]
                d_out = self.output_from(l, noisy) - z_out
                diff = d_out @ Q.T - eps
                Q.grad = diff.T @ d_out / noisy.shape[0]
                self._inv_err[l] = diff.pow(2).sum() / eps.pow(2).sum().clamp_min(1e-30)
            self.feedback_optimizer.step()
            self.inverse_steps += 1
