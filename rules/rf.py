"""Reciprocal feedback (Cameron, Chen, Wagner, Sejnowski): the error travels down through feedback
matrices B_l ≈ W_l⁺ learned by recirculation, and the pinv-feedback oracle with B_l = W_l⁺ exactly,
on any model of Linear and Conv2d layers (plasticity.rule.FeedbackRule).

Credit (both rules), the poster's δW_l = (∏_{i>l} B_i) e Z_{l−1}ᵀ with the hidden nonlinearities:

    δ_L = ∂ℓ/∂H_L,   δ_{l−1} = (B_l δ_l) ⊙ f'(H_{l−1}),   ∇W_l = δ_l Z_{l−1}ᵀ,  ∇b_l = δ_l

(`derivative = false` leaves out the f' factors: the poster's linearised rule, on an MLP only; the
reference notes that the authors' code lost the nonlinearities by a bug, so the default keeps them.)

Convolutions. A Conv2d layer applies the same matrix W (out × in·kh·kw: its kernel flattened) to
every receptive-field patch p of its input, h = W p at each position. Its B is the matching
(in·kh·kw) × out matrix, used as the kernel of the transposed convolution that carries the error
down, and what B approximates is the pseudo-inverse of that per-patch matrix: B → W⁺, the least-
squares reconstruction p ≈ B W p of a white patch from the layer's output at one position (W⁺ of
the flattened kernel; not the inverse of the whole-image operator, whose overlapping patches
would couple positions: a local rule at one position sees one patch). Recirculation runs on
patches: white N(0, I) patches under `drive = "noise"`, the layer's input patches under
"activity" (fixed point ΣWᵀ(WΣWᵀ)⁻¹ with Σ the patches' second moment). The metrics report the
distance of B to W⁺ per layer (`L{l}.rel_err_white`), conv layers included.

Feedback learning (rule "rf"), after each weight update, on every layer l ≥ 2 (B_1 would only carry
an error to the input and is never learned), `steps` times, with W_l fixed:

    h = W x,   x̂ = B h,   ΔB = η ⟨(x − x̂) hᵀ⟩ / λ̂                 (plasticity.linalg.recirculate)

The drive x is the layer's input activity on the batch (`drive = "activity"`), `noise_batch`
samples of white N(0, I) noise ("noise", the default), or both stacked. Its fixed point is
ΣWᵀ(WΣWᵀ)⁻¹ with Σ = ⟨xxᵀ⟩ the raw second moment of the drive: W⁺ under noise, a data-weighted
inverse under activity (see plasticity.metrics). The forward half of recirculation (ΔA on W) is
not used: W is trained by the task's error. λ̂ ≈ λ_max(⟨hhᵀ⟩), tracked by power iteration
(30 steps at the first recirculation, then one warm-started step per recirculation step), makes
`feedback_lr` scale-free: the step is stable for η < 2 whatever the drive's or W's scale, as long
as λ̂ keeps up with λ_max (λ̂ ≤ λ_max, so a lagging estimate means a larger step; the default
η = 0.5 leaves a margin of 4). Choice of ours; the poster gives no step size. B_l starts
as FA's random matrix, so RF begins as feedback alignment and moves toward W⁺.

Fresh noise leaves a floor: for a contracting W the null-space part of each sample, (I − W⁺W)x,
is uncorrelated with h but not zero, so B jitters around W⁺ by ~sqrt(η / noise_batch) (measured in
benchmarks/recirculation.py), in W's null space: WB = I and the Penrose conditions 1–3 are met far
more closely than 4. A fixed white probe set removes the floor (geometric convergence).

"pinv-feedback" recomputes B_l = W_l⁺ (plasticity.linalg.pinv; `ridge` > 0 takes the Cholesky
route, 0 an exact SVD) after every `refresh_every`-th update, i.e. before the next one uses it:
the learned inverse's upper bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from plasticity import ConfigError, FeedbackPair, register_rule
from plasticity.feedback import (
    as_matrix,
    feedback_shape,
    from_matrix,
    layer_inputs,
    layered_deltas,
    output_error,
    patches,
    random_feedback,
    write_grads,
)
from plasticity.linalg import pinv, recirculate
from plasticity.losses import LossName
from plasticity.network import MLP
from plasticity.rule import FeedbackRule

Drive = Literal["noise", "activity", "both"]
DRIVES = ("noise", "activity", "both")
POWER_WARMUP = 30  # power-iteration steps on a layer's first recirculation (then one per step)


class _Reciprocal(FeedbackRule):
    """Credit through per-layer feedback `self.B[l-1]` (l ≥ 2); subclasses keep B."""

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        if not params.derivative and not isinstance(net, MLP):
            raise ConfigError(f"rule '{self.name}': derivative = false (the linearised rule, no f′ between "
                              f"layers) needs an MLP's per-layer trace; this model is a {type(net).__name__}")

    def credit(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.params.derivative:
            return super().credit(x, y)
        trace, loss, delta = output_error(self.net, x, y, self.params.loss)
        write_grads(self.net, trace, layered_deltas(self.net, trace, delta, self.B, derivative=False))
        return {"loss": loss}

    def feedback(self) -> list[FeedbackPair]:
        pairs = []
        for l, layer in enumerate(self.layers[1:], start=2):
            w = as_matrix(layer)
            pairs.append(FeedbackPair(l, w, as_matrix(layer, self.B[l - 1]), pinv(w.double()).to(w.dtype)))
        return pairs


@register_rule("rf")
class ReciprocalFeedback(_Reciprocal):
    """Error sent down through feedback matrices learned concurrently by recirculation."""

    @dataclass(frozen=True)
    class Params:
        loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)
        drive: Drive = "noise"  # what recirculation runs on: white noise, the layer's input activity, or both
        feedback_lr: float = 0.5  # normalised recirculation step η (ΔB = η⟨(x − x̂)hᵀ⟩/λ̂); stable below 2
        steps: int = 1  # recirculation steps per weight update
        noise_batch: int = 100  # white-noise samples per recirculation step
        derivative: bool = True  # apply f′ between layers (false: the poster's linearised rule)
        feedback_scale: float = 1.0  # std of the initial random B, in units of the layer's initial weight std

        def __post_init__(self) -> None:
            if self.drive not in DRIVES:
                raise ValueError(f"drive must be one of {', '.join(DRIVES)}, got {self.drive!r}")
            if not 0 < self.feedback_lr < 2:
                raise ValueError(f"feedback_lr must lie in (0, 2) (the normalised step is unstable "
                                 f"beyond 2), got {self.feedback_lr}")
            if self.steps < 1:
                raise ValueError(f"steps must be at least 1, got {self.steps}")
            if self.drive != "activity" and self.noise_batch < 1:
                raise ValueError(f"noise_batch must be at least 1 with drive {self.drive!r}, got {self.noise_batch}")
            if not self.feedback_scale > 0:
                raise ValueError(f"feedback_scale must be positive, got {self.feedback_scale}")

    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        ws = [layer.weight.detach() for layer in self.layers]
        kw = {"device": ws[0].device, "dtype": ws[0].dtype, "generator": generator}
        self.B = [None] + [random_feedback(feedback_shape(layer), float(w.std()) * params.feedback_scale, w, generator)
                           for layer, w in zip(self.layers[1:], ws[1:])]
        # Power-iteration vectors for λ_max(⟨hhᵀ⟩) of each layer's recirculation.
        self._v = [None] + [torch.randn(w.shape[0], **kw) for w in ws[1:]]
        for v in self._v[1:]:
            v /= v.norm()
        self._warm = [False] * len(self._v)

    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().update(x, y)
        self._learn_feedback(x)
        return out

    @torch.no_grad()
    def _learn_feedback(self, x: torch.Tensor) -> None:
        p = self.params
        inputs = layer_inputs(self.net, self.layers, x) if p.drive != "noise" else None
        for l in range(2, len(self.layers) + 1):
            layer = self.layers[l - 1]
            w = as_matrix(layer)  # out × in·kh·kw; B as the matching matrix is a view of the kernel
            b = as_matrix(layer, self.B[l - 1])
            activity = None if inputs is None else patches(layer, inputs[l - 1])  # the same at every step
            for _ in range(p.steps):
                parts = [] if activity is None else [activity]
                if p.drive != "activity":
                    parts.append(torch.randn(p.noise_batch, w.shape[1], generator=self.generator,
                                             device=w.device, dtype=w.dtype))
                drive = parts[0] if len(parts) == 1 else torch.cat(parts)
                h = drive @ w.T
                recirculate(w, b, drive, p.feedback_lr / self._top_eigenvalue(l, h), h=h)

    def _top_eigenvalue(self, l: int, h: torch.Tensor) -> torch.Tensor:
        """λ̂ ≈ λ_max(hᵀh/n) by warm-started power iteration, kept as a device tensor.

        λ̂ = ‖Mv‖ never exceeds λ_max, so an unconverged v would make the step η/λ̂ too large: the
        first call runs POWER_WARMUP steps from the random start, later calls one step each."""
        tiny = torch.finfo(h.dtype).tiny
        for _ in range(1 if self._warm[l - 1] else POWER_WARMUP):
            u = (h.T @ (h @ self._v[l - 1])) / h.shape[0]
            lam = u.norm().clamp_min(tiny)
            self._v[l - 1] = u / lam
        self._warm[l - 1] = True
        return lam


@register_rule("pinv-feedback")
class PinvFeedback(_Reciprocal):
    """The oracle: B_l = W_l⁺ recomputed from the current weights."""

    @dataclass(frozen=True)
    class Params:
        loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)
        ridge: float = 1e-6  # ridge of the pseudo-inverse (0: exact SVD)
        refresh_every: int = 1  # recompute B = W⁺ every this many updates
        derivative: bool = True  # apply f′ between layers (false: the poster's linearised rule)

        def __post_init__(self) -> None:
            if self.ridge < 0:
                raise ValueError(f"ridge must be non-negative (0: exact SVD pseudo-inverse), got {self.ridge}")
            if self.refresh_every < 1:
                raise ValueError(f"refresh_every must be at least 1, got {self.refresh_every}")

    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self._updates = 0
        self._refresh()

    @torch.no_grad()
    def _refresh(self) -> None:
        self.B = [None] + [from_matrix(layer, pinv(as_matrix(layer), alpha=self.params.ridge))
                           for layer in self.layers[1:]]

    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().update(x, y)
        # Refreshed after the step rather than before the next one (the same B for every update):
        # the feedback metrics, measured between updates, then see B = W⁺ of the weights they
        # read, so the oracle measures as exact instead of one weight step stale.
        self._updates += 1
        if self._updates % self.params.refresh_every == 0:
            self._refresh()
        return out
