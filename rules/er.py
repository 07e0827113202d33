"""Expectation Reflection (ER): multiplicative, closed-form weight updates (Kim, Soh, Jo, Periwal,
"Multiplicative Learning", arXiv 2503.10144).

Output layer L, tanh prediction `Y = tanh(H_L)`, targets `Ŷ = 2·onehot(y) − 1`:

    H_new = (Ŷ / Y) ⊙ H_L = Ŷ ⊙ (H_L / Y)          (observed over predicted)
    ΔH_L  = H_new − H_L
    ΔZ_{l−1} = ΔH_l W_l⁺                            (pseudo-inverse, not the transpose)
    ΔH_{l−1} = (H_{l−1} / Z_{l−1}) ⊙ ΔZ_{l−1}       (H/Z stands in for the inverse tanh's slope)
    ΔW_l = Z_{l−1}⁺ ΔH_l,   W_l ← W_l + η ΔW_l      (a regression with an intercept, ridge α)

With one layer, η = 1, α = 0 and a full batch of full column rank this is the paper's
`W = X⁺ H_new` exactly. Choices where the paper (its algorithm boxes are not available) is silent:

- `algorithm = "simultaneous"` (Algorithm 1): every ΔW_l from one forward pass.
  `"sequential"` (Algorithm 2, "enhanced"): layers are solved bottom-up, l = 1 … L; before each
  layer the forward pass is recomputed and the output error propagated down afresh, so every layer
  fits the activations the layers below it now produce (the covariate-shift fix), and the output
  layer, solved last, is a regression on the final hidden features.
- The weight solve is `linalg.affine_lstsq` on the batch: intercept unpenalised, ridge `α·n`
  (α is per example, so it means the same at every batch size), the minimum-norm solution when
  α = 0. Solving for ΔW rather than W keeps the part of W the batch does not determine (a
  mini-batch smaller than the layer's width), and ridge then shrinks toward the old weights.
- `H/Z` tends to 1 as Z → 0 (tanh(h) ≈ h); where |Z| < `guard` the ratio is set to that limit,
  which at the output gives the authors' `H_new = Ŷ` where `Y ≈ 0`. The share of guarded entries
  is a diagnostic.
- `stop_on_rise` (full batch): when the batch's mean squared error `(Ŷ − Y)²` is higher than at the
  previous update, the last update is undone and the rule stops changing the weights (the authors'
  older code stops when the error stops falling).
- With α = 0 the Gram's eigenvalues below `eps·size·λ_max` are dropped (a Gram formed in float32
  resolves no finer): in float32 a truncated pseudo-inverse, in float64 practically the exact one.
  On MNIST 784-1024-10 float64 scored 0.2–0.3 points above float32 over the first 3 updates.
- `W_l⁺` is the exact (SVD) pseudo-inverse of the small weight matrix.
- The network's output layer stays linear (logits = H_L): argmax H = argmax tanh(H), so the
  engine's accuracy is ER's. The returned loss, `mean((Ŷ − tanh H_L)²)` before the update, is
  reported only; nothing here minimises it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from plasticity import LearningRule, register_rule
from plasticity.errors import ConfigError
from plasticity.linalg import affine_lstsq, gram_rcond, pinv, psd_condition

INVERTIBLE_HIDDEN = "tanh"


@register_rule("er")
class ExpectationReflection(LearningRule):
    """Expectation Reflection: ratio-scaled targets solved by pseudo-inverse regression, no loss gradient."""

    @dataclass(frozen=True)
    class Params:
        #: sequential: layers solved bottom-up, each on a fresh forward pass (Algorithm 2);
        #: simultaneous: every layer from one forward pass (Algorithm 1)
        algorithm: Literal["sequential", "simultaneous"] = "sequential"
        eta: float = 0.5      # 1: take the solved weights; < 1: move that fraction toward them
        alpha: float = 0.1    # ridge per example (the solve uses α·batch size)
        guard: float = 1e-6   # |Z| below which H/Z is set to its limit 1
        stop_on_rise: bool = False  # undo the last update and stop when the batch's squared error rises (full batch)

        def __post_init__(self) -> None:
            if not 0 < self.eta <= 1:
                raise ValueError(f"eta must be in (0, 1], got {self.eta}")
            if self.alpha < 0:
                raise ValueError(f"alpha must be non-negative, got {self.alpha}")
            if self.guard < 0:
                raise ValueError(f"guard must be non-negative, got {self.guard}")

    uses_optimizer = False
    gradient_like = False

    def __init__(self, net, params, optimizer, generator) -> None:
        super().__init__(net, params, optimizer, generator)
        if net.depth > 1 and net.hidden_activation_name != INVERTIBLE_HIDDEN:
            raise ConfigError(f"rule 'er' needs an invertible hidden activation for its ratio H/Z: got "
                              f"'{net.hidden_activation_name}'; supported: '{INVERTIBLE_HIDDEN}' "
                              f"(set the task's activation = \"{INVERTIBLE_HIDDEN}\")")
        if net.output_activation_name != "linear":
            raise ConfigError(f"rule 'er' applies tanh to the output itself and needs a linear output "
                              f"layer, got '{net.output_activation_name}'")
        self._grams: dict[int, tuple[torch.Tensor, float, float]] = {}  # layer -> (Gram, ridge, rcond)
        self._cond: dict[int, float] | None = None
        self._guarded = torch.zeros((), device=net.layers[0].weight.device)
        self._ratio_entries = 0
        self._previous: tuple[float, list[torch.Tensor]] | None = None
        self.stopped = False

    # ---- the algorithm --------------------------------------------------------------------

    def _ratio(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """H/Z elementwise, with the limit 1 where |Z| < guard."""
        small = z.abs() < self.params.guard
        self._guarded = self._guarded + small.sum()
        self._ratio_entries += small.numel()
        return torch.where(small, torch.ones_like(h), h / torch.where(small, torch.ones_like(z), z))

    def _output_delta(self, h_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ΔH_L = (Ŷ/Y) ⊙ H_L − H_L."""
        return target * self._ratio(h_out, torch.tanh(h_out)) - h_out

    def _propagate(self, trace, delta: torch.Tensor, top: int, bottom: int) -> torch.Tensor:
        """ΔH_top sent down to ΔH_bottom through W⁺ and the ratio H/Z of each layer in between."""
        for l in range(top, bottom, -1):
            if l not in self._w_pinv:  # W_l only changes after every use of its W_l⁺ in this update
                self._w_pinv[l] = pinv(self.net.layers[l - 1].weight.T)
            dz = delta @ self._w_pinv[l]               # ΔZ_{l−1} = ΔH_l W_l⁺ (W_l here is in × out)
            delta = self._ratio(trace.h[l - 1], trace.z[l - 1]) * dz
        return delta

    def _solve_layer(self, l: int, z_in: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ΔW_l = Z_{l−1}⁺ ΔH_l with an intercept and ridge α·n; keeps the Gram for diagnostics."""
        ridge = self.params.alpha * z_in.shape[0]
        rcond = gram_rcond(z_in.dtype, min(z_in.shape))
        dw, db, gram = affine_lstsq(z_in, delta, ridge, rcond)
        self._grams[l] = (gram, ridge, rcond)
        return dw, db

    def _apply(self, l: int, dw: torch.Tensor, db: torch.Tensor) -> None:
        layer = self.net.layers[l - 1]
        layer.weight.add_(dw.T, alpha=self.params.eta)
        if layer.bias is not None:
            layer.bias.add_(db, alpha=self.params.eta)

    @torch.no_grad()
    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target = 2 * F.one_hot(y, self.net.sizes[-1]).to(x.dtype) - 1
        trace = self.net.forward_trace(x)
        loss = (target - torch.tanh(trace.h[-1])).pow(2).mean()
        if not torch.isfinite(loss):  # diverged: report it to the engine; pseudo-inverses of NaN would raise
            return {"loss": loss}
        if self.params.stop_on_rise and self._check_rise(loss):
            return {"loss": torch.as_tensor(self._previous[0], dtype=loss.dtype, device=loss.device)}
        self._guarded = torch.zeros((), device=x.device)
        self._ratio_entries = 0
        self._cond = None
        self._w_pinv: dict[int, torch.Tensor] = {}
        depth = self.net.depth
        if self.params.algorithm == "simultaneous":
            delta = self._output_delta(trace.h[depth], target)
            steps = []
            for l in range(depth, 0, -1):
                steps.append((l, *self._solve_layer(l, trace.z[l - 1], delta)))
                if l > 1:
                    delta = self._propagate(trace, delta, l, l - 1)
            for step in steps:
                self._apply(*step)
        else:
            for l in range(1, depth + 1):
                if l > 1:
                    trace = self.net.forward_trace(x)  # the layers below have changed
                delta = self._propagate(trace, self._output_delta(trace.h[depth], target), depth, l)
                self._apply(l, *self._solve_layer(l, trace.z[l - 1], delta))
        return {"loss": loss}

    def _check_rise(self, loss: torch.Tensor) -> bool:
        """stop_on_rise: undo the last update and stop when the error went up; True when stopped."""
        if self.stopped:
            return True
        value = float(loss)
        if self._previous is not None and value > self._previous[0]:
            for p, old in zip(self.net.parameters(), self._previous[1]):
                p.copy_(old)
            self.stopped = True
            return True
        self._previous = (value, [p.detach().clone() for p in self.net.parameters()])
        return False

    # ---- what the report reads ----------------------------------------------------------------

    def diagnostics(self) -> dict[str, float]:
        """Per layer the condition number of the (ridge) Gram last solved; the share of ratio
        entries guarded in the last update; whether stop_on_rise has stopped the rule."""
        if self._cond is None:  # computed once per update, however often the engine asks
            self._cond = {l: psd_condition(g, ridge, rcond) for l, (g, ridge, rcond) in self._grams.items()}
        out = {f"L{l}.gram_cond": c for l, c in sorted(self._cond.items())}
        if self._ratio_entries:
            out["guarded_share"] = float(self._guarded) / self._ratio_entries
        if self.params.stop_on_rise:
            out["stopped"] = float(self.stopped)
        return out
