"""Feedback learned toward Wᵀ without weight transport (Akrout, Wilson, Humphreys, Lillicrap & Tweed
2019, "Deep learning without weight transport"): Kolen–Pollack and weight mirrors, on any model of
Linear and Conv2d layers (plasticity.rule.FeedbackRule: autograd's backward with each layer's error
sent down through B instead of Wᵀ, the weight gradients local). B starts as FA's random matrix
(N(0, s²), s = std of the layer's initial weights × `feedback_scale`), so both rules begin as
feedback alignment and move toward backprop.

Credit (both rules), as FA:

    δ_L = ∂ℓ/∂H_L,   δ_{l−1} = (B_l δ_l) ⊙ f'(H_{l−1}),   ∇W_l = δ_l Z_{l−1}ᵀ,  ∇b_l = δ_l

Kolen–Pollack ("kp"), the paper's eqs. 16–17: forward and feedback synapses receive the same
change and the same decay,

    W_l(t+1) = W_l(t) + ΔW_l(t) − λ W_l(t)
    B_l(t+1) = B_l(t) + ΔW_l(t)ᵀ − λ B_l(t)

so B_l(t) − W_l(t)ᵀ = (1 − λ)ᵗ (B_l(0) − W_l(0)ᵀ) → 0 whatever the data. ΔW_l is the change the
optimizer made in this update (−η δ_l Z_{l−1}ᵀ for plain SGD, the paper's form; the filtered step
for momentum or Adam, so that B tracks Wᵀ under any optimizer); λ acts on every layer's weights
(not biases). λ is `decay` at the optimizer's first step size and follows its schedule
(λ_t = decay · η_t/η_0, as torch's weight decay lr · wd does): a decay that stayed put while a
cosine schedule takes η to zero would shrink W with nothing to restore it (measured: MNIST MLP,
5 epochs cosine, decay 1e-3 fixed: 94.8 % against FA's 96.3 %). With B_l(0) = W_l(0)ᵀ and λ = 0,
kp is backprop exactly.

Weight mirror ("weight-mirror"), the paper's mirror mode, after each weight update (engaged mode),
on every layer l ≥ 2 with W_l fixed: the layer's input neurons fire noise, its output neurons
relay it through W_l, and B_l learns the input–output correlation with decay,

    x ~ N(0, σ² I)  (n samples),   y = W_l x,   ΔB_l = η ⟨x yᵀ⟩ − λ B_l

⟨x yᵀ⟩ = σ² W_lᵀ in expectation, so B_l → (η σ² / λ) W_lᵀ; the defaults set η σ² = λ, so B_l
approaches W_lᵀ itself, with time constant 1/λ updates and a noise floor that falls with the
number of noise samples n (`mirror_batch`). The mirror is linear (y = W x, the paper's derivation
in the small-noise regime; the authors' numpy sketch passes y through the layer's sigmoid). On a
Conv2d layer x is a white patch (in·kh·kw) and W the flattened kernel, as `rf` learns on patches.

`feedback()` gives (W_l, B_l, W_lᵀ) for l ≥ 2 (kernels as matrices): `L{l}.angle_BWt` falls toward 0
as B learns; the per-layer angle of the credit to the true gradient is `L{l}.grad_angle`.

Defaults. The paper's tables of hyperparameters were not retrievable here (see the issue note);
λ, η, σ, n are this package's, chosen so that B converges within the first epoch on MNIST at the
suites' budgets: λ_KP = 1e-3 per update (B − Wᵀ shrinks ×e⁻¹ every 1,000 updates; the same decay
on W acts as weight decay 1e-3/lr under SGD); λ_WM = η = 0.05 with σ = 1 (B* = Wᵀ, time constant
20 updates) and n = 128 noise samples (the floor: ‖B − Wᵀ‖/‖Wᵀ‖ ≈ √(λ d_in / 2n), about 0.2 for
d_in = 256). The rule contract has one default per rule (no per-model defaults yet), so these hold
for the MLP, LeNet and the ResNets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from plasticity import register_rule
from plasticity.feedback import as_matrix, feedback_shape, random_feedback
from plasticity.losses import LossName
from plasticity.rule import FeedbackRule


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value}")


class _LearnedFeedback(FeedbackRule):
    """FA's credit through `self.B`, B starting random; subclasses learn B in `update`."""

    default_optimizer = ("sgd", {"lr": 0.05, "momentum": 0.9})

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        # FA's draw, stored in W's layout (a Linear layer's B is a transposed view of an out × in
        # tensor) so that B's learning runs over contiguous memory alongside W.
        self.B = [None] + [_in_w_layout(layer, random_feedback(feedback_shape(layer), float(layer.weight.detach().std())
                                                               * params.feedback_scale, layer.weight, generator))
                           for layer in self.layers[1:]]


def _in_w_layout(layer: torch.nn.Module, b: torch.Tensor) -> torch.Tensor:
    """The same B, its storage laid out like W (B.T contiguous for a Linear layer)."""
    return b.T.contiguous().T if isinstance(layer, torch.nn.Linear) else b


def _as_w(layer: torch.nn.Module, b: torch.Tensor) -> torch.Tensor:
    """B seen in W's shape (out × in, or the kernel's): a view, so in-place changes reach B."""
    return b.T if isinstance(layer, torch.nn.Linear) else b


@register_rule("kp")
class KolenPollack(_LearnedFeedback):
    """Kolen–Pollack (Akrout et al. 2019): B_l receives W_l's own change ΔW_lᵀ, both decay by λ."""

    @dataclass(frozen=True)
    class Params:
        loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)
        decay: float = 1e-3  # λ: W ← W + ΔW − λW, B ← B + ΔWᵀ − λB each update; scaled by lr_t/lr_0 (0: none)
        feedback_scale: float = 1.0  # std of the initial random B, in units of the layer's initial weight std

        def __post_init__(self) -> None:
            if not (0 <= self.decay < 1):
                raise ValueError(f"decay must lie in [0, 1) (a fraction per update), got {self.decay}")
            _check_positive("feedback_scale", self.feedback_scale)

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        self._lr0 = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0

    def decay_now(self) -> float:
        """λ at this update: `decay` scaled by the optimizer's current step over its first one, so
        that a learning-rate schedule scales the decay as it does torch's weight decay (lr · wd)."""
        if not self._lr0:
            return self.params.decay
        return self.params.decay * float(self.optimizer.param_groups[0]["lr"]) / self._lr0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        assert self.optimizer is not None, "rule 'kp' needs an optimizer"
        self.optimizer.zero_grad(set_to_none=True)
        out = self.credit(x, y)
        self._decay_and_hold_difference()
        self.optimizer.step()
        self._add_weights_back()
        return out

    # The transport without copying W: B(t+1) = B + ΔWᵀ − λB equals W(t+1)ᵀ + (1 − λ)(B − W(t)ᵀ), so B
    # holds the decayed difference while the optimizer steps, then W's new value is added back.
    # W's own decay is applied before the step (the same W + ΔW − λW for any step that does not
    # read W; an optimizer's own weight decay then reads (1 − λ)W).

    @torch.no_grad()
    def _decay_and_hold_difference(self) -> None:
        lam = self.decay_now()
        for layer, b in zip(self.layers, self.B):
            w = layer.weight.detach()
            if b is not None:
                m = _as_w(layer, b)
                m.sub_(w)
                if lam:
                    m.mul_(1 - lam)
            if lam:
                w.mul_(1 - lam)

    @torch.no_grad()
    def _add_weights_back(self) -> None:
        for layer, b in zip(self.layers[1:], self.B[1:]):
            _as_w(layer, b).add_(layer.weight.detach())


@register_rule("weight-mirror")
class WeightMirror(_LearnedFeedback):
    """Weight mirrors (Akrout et al. 2019): after each update B_l learns ⟨x (W_l x)ᵀ⟩ from noise, with decay."""

    @dataclass(frozen=True)
    class Params:
        loss: LossName = "ce"  # output loss: ce (softmax cross-entropy) or mse (squared error)
        mirror_lr: float = 0.05  # η of the mirror phase: ΔB = η⟨x yᵀ⟩ − λB
        decay: float = 0.05  # λ of the mirror phase (B → ησ²/λ · Wᵀ; the defaults make it Wᵀ)
        noise_std: float = 1.0  # σ of the noise the layer's input neurons fire in mirror mode
        mirror_batch: int = 128  # noise samples per mirror step
        mirror_steps: int = 1  # mirror steps after each weight update
        feedback_scale: float = 1.0  # std of the initial random B, in units of the layer's initial weight std

        def __post_init__(self) -> None:
            _check_positive("mirror_lr", self.mirror_lr)
            _check_positive("noise_std", self.noise_std)
            _check_positive("feedback_scale", self.feedback_scale)
            if not (0 <= self.decay < 1):
                raise ValueError(f"decay must lie in [0, 1) (a fraction per mirror step), got {self.decay}")
            if self.mirror_batch < 1 or self.mirror_steps < 1:
                raise ValueError(f"mirror_batch and mirror_steps must be at least 1, got "
                                 f"{self.mirror_batch} and {self.mirror_steps}")

    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().update(x, y)
        self.mirror()
        return out

    @torch.no_grad()
    def mirror(self) -> None:
        """The mirror phase: `mirror_steps` steps on every layer with a B, forward weights fixed."""
        p = self.params
        for _ in range(p.mirror_steps):
            for layer, b in zip(self.layers[1:], self.B[1:]):
                w = as_matrix(layer)  # out × in·kh·kw
                noise = torch.randn(p.mirror_batch, w.shape[1], generator=self.generator,
                                    device=w.device, dtype=w.dtype) * p.noise_std
                m = as_matrix(layer, b)  # a view of B as (in·kh·kw) × out
                m.mul_(1 - p.decay).add_(noise.T @ (noise @ w.T), alpha=p.mirror_lr / p.mirror_batch)
