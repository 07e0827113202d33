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
- The weight solve is a regression with an intercept (`linalg.AffineSystem`): intercept
  unpenalised, ridge `α·n` (α is per example, so it means the same at every batch size), the
  minimum-norm solution when α = 0. Solving for ΔW rather than W keeps the part of W the batch
  does not determine (a mini-batch smaller than the layer's width), and ridge then shrinks toward
  the old weights.
- `H/Z` tends to 1 as Z → 0 (tanh(h) ≈ h); where |Z| < `guard` the ratio is set to that limit,
  which at the output gives the authors' `H_new = Ŷ` where `Y ≈ 0`. The share of guarded entries
  is a diagnostic.
- `stop_on_rise` (full batch): when the batch's mean squared error `(Ŷ − Y)²` is higher than at the
  previous update, the last update is undone and the rule stops changing the weights (the authors'
  older code stops when the error stops falling).
- `W_l⁺` is the exact (SVD) pseudo-inverse of the small weight matrix.
- The network's output layer stays linear (logits = H_L): argmax H = argmax tanh(H), so the
  engine's accuracy is ER's. The returned loss, `mean((Ŷ − tanh H_L)²)` before the update, is
  reported only; nothing here minimises it.

Scale (issue 12). Every step of an update is row-separable but the solve, so the batch is
streamed in chunks of `CHUNK_ELEMENTS` (rows × widest layer): forward trace, ratio and propagated
error exist one chunk at a time and each layer's normal equations (d × d Gram of the centred
Z_{l−1}, d × k cross-product) are summed in float64 (`linalg.AffineSystem`: shifted sums, so a large
feature mean cancels nothing; upper-triangle blocks, half the multiply-adds). The solve tries
Cholesky first and takes the eigen route only when the Gram is near its cut. Before, 784-8192-10
on 60k images held the whole trace and several N × d temporaries (22.3 GB peak).

Float32 (issue 12). It failed as the layer widened because of the eigenvalue cut, not the Gram's
arithmetic: at 10k MNIST images, 784-4096-10, the output layer's centred Gram has condition 4.3e5
(λ_min/λ_max 2.3e-6); the old float32 cut `eps32·size` = 4.9e-4·λ_max dropped about 3,500 of its
4,096 directions (3,151 lie below 1e-4·λ_max, 3,747 below 1e-3), a regression on a few hundred
principal components, worse than a narrower layer. Forming the Gram in float32 was accurate to
2.5e-7 (its eigenvalues to 7e-9·λ_max), and tanh's Z₁ differed from float64's by 3e-7. Now the
Gram is formed and solved in float64 for both dtypes; the cut is float64's `eps·size` for float64
rows and float32's epsilon (on the eigenvalue scale: a singular-value cut of ~3e-4) for float32
rows, which keeps every direction of that Gram and still drops the near-null directions that make
η = 1, α = 0 mini-batches diverge (the conformance kit's separable task).

Depth (issue 12). Multilayer ER in the paper's form collapses: with 784-1024-1024-10 (10k MNIST
images, η = 1, α = 0) the first update gives 86.8 % and the second 73.9 %. `ΔZ₁ = ΔH₂ W₂⁺` goes
through a square, ill-conditioned W₂ (its exact inverse): 91 % of the layer-1 targets Z₁ + ΔZ₁ lie
outside (−1, 1), up to |66|, mean |ΔZ₁| 7.8, which tanh cannot reach; the fit makes ‖W₁‖ 6,850
and saturates 73 % of layer 1 (|Z| > 0.99). `target_bound` > 0 clips every hidden target into
±(1 − bound) before the ratio (ΔZ := clip(Z + ΔZ) − Z), the reachable part of the paper's
target-propagation reading: at 10k images the first update rises to 90.4 % (‖W₁‖ 577, no
saturation; 31 % of targets clipped), on digits 256-256 from 78.9 % to 96.9 % (a 512-wide single
layer: 97.2 %). Later updates still fall (the square W₂⁺ again sends most targets to the bound);
with `stop_on_rise` the first update's network is kept. 0 (the default) is the paper's form.

The cause is the exact pseudo-inverse, not the ratio: W₂⁺ divides by W₂'s smallest singular
values, so the part of ΔH₂ along them becomes a huge ΔZ₁. `target_ridge` = ρ > 0 sends targets
down through the ridge (Tikhonov) pseudo-inverse `W⁺_ρ = (WᵀW + ρ σ_max(W)² I)⁻¹ Wᵀ`, which
keeps W⁺'s action on the directions W transmits strongly and damps the ones it barely transmits
(ρ is relative to the largest squared singular value, so it means the same at every width and
scale). With ρ = 1e-2, 784-1024-1024-10 on 10k MNIST images rises with every update: 93.36,
93.60, 93.80 % (the paper's form: 86.79, 73.93, 67.96 %; one layer of the same total width,
784-2048-10: 93.72, 93.93, 94.00 %; ρ = 1e-3: 93.54 % and ρ = 1e-1: 93.58 % after three).
0 (the default) is the paper's exact W⁺; the ER suites declare the ridge variant beside it.

`train_hidden = false` solves the output layer only, the hidden layers stay at their
initialisation: the control for what ER's hidden update adds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from plasticity import LearningRule, register_rule
from plasticity.errors import ConfigError
from plasticity.linalg import AffineSystem, gram_rcond, pinv, psd_condition
from plasticity.network import weights_finite

INVERTIBLE_HIDDEN = "tanh"
#: Elements (rows × widest layer) of one chunk of the batch: every N × d temporary of an update
#: (trace, ratio, propagated error) exists one chunk at a time, 64 MB each in float64.
CHUNK_ELEMENTS = 1 << 23
#: Grams at most this wide get their condition number exactly, and only when the report asks.
SMALL_GRAM = 256


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
        train_hidden: bool = True   # False: solve the output layer only (hidden layers stay at init)
        target_bound: float = 0.0   # > 0: hidden targets Z + ΔZ clipped into ±(1 − bound) (see docstring)
        target_ridge: float = 0.0   # > 0: targets go down through the ridge W⁺, α = target_ridge·σ_max(W)²

        def __post_init__(self) -> None:
            if not 0 < self.eta <= 1:
                raise ValueError(f"eta must be in (0, 1], got {self.eta}")
            if self.alpha < 0:
                raise ValueError(f"alpha must be non-negative, got {self.alpha}")
            if self.guard < 0:
                raise ValueError(f"guard must be non-negative, got {self.guard}")
            if self.target_ridge < 0:
                raise ValueError(f"target_ridge must be non-negative (0: the exact pseudo-inverse), "
                                 f"got {self.target_ridge}")
            if not 0 <= self.target_bound < 1:
                raise ValueError(f"target_bound must be in [0, 1) (0: the paper's unclipped form), "
                                 f"got {self.target_bound}")

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
        # layer -> its condition number, or (Gram, ridge, rcond) of a small Gram to compute it from
        self._conds: dict[int, float | tuple[torch.Tensor, float, float]] = {}
        self._cond: dict[int, float] | None = None
        self._guarded = torch.zeros((), device=net.layers[0].weight.device)
        self._clipped = torch.zeros((), device=net.layers[0].weight.device)
        self._ratio_entries = 0
        self._hidden_entries = 0
        self._previous: tuple[float, list[torch.Tensor]] | None = None
        self._w_pinv: dict[int, torch.Tensor] = {}
        self.stopped = False

    # ---- the algorithm --------------------------------------------------------------------

    def _ratio(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """H/Z elementwise, with the limit 1 where |Z| < guard."""
        small = z.abs() < self.params.guard
        self._guarded = self._guarded + small.sum()
        self._ratio_entries += small.numel()
        return torch.where(small, 1.0, h / torch.where(small, 1.0, z))

    def _output_delta(self, h_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ΔH_L = (Ŷ/Y) ⊙ H_L − H_L."""
        return target * self._ratio(h_out, torch.tanh(h_out)) - h_out

    def _hidden_delta(self, dz: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ΔH = (H/Z) ⊙ ΔZ, with ΔZ first cut so that the target Z + ΔZ stays inside ±(1 − bound)
        when `target_bound` > 0 (tanh reaches no target outside (−1, 1))."""
        bound = self.params.target_bound
        if bound > 0:
            limit = 1.0 - bound
            outside = (z + dz).abs() > limit
            self._clipped = self._clipped + outside.sum()
            self._hidden_entries += outside.numel()
            dz = (z + dz).clamp(-limit, limit) - z
        return self._ratio(h, z) * dz

    def _propagate(self, trace, delta: torch.Tensor, top: int, bottom: int) -> torch.Tensor:
        """ΔH_top sent down to ΔH_bottom through W⁺ and the ratio H/Z of each layer in between."""
        for l in range(top, bottom, -1):
            if l not in self._w_pinv:  # W_l only changes after every use of its W_l⁺ in this update
                w = self.net.layers[l - 1].weight.T
                t = self.params.target_ridge  # relative to ‖W‖₂² (an SVD): only computed when asked for
                ridge = t * float(torch.linalg.matrix_norm(w, ord=2)) ** 2 if t else 0.0
                self._w_pinv[l] = pinv(w, alpha=ridge)
            dz = delta @ self._w_pinv[l]               # ΔZ_{l−1} = ΔH_l W_l⁺ (W_l here is in × out)
            delta = self._hidden_delta(dz, trace.h[l - 1], trace.z[l - 1])
        return delta

    def _accumulate(self, x: torch.Tensor, target: torch.Tensor,
                    layers: list[int]) -> tuple[dict[int, AffineSystem], torch.Tensor]:
        """One pass over the batch in row chunks: each listed layer's regression system
        (Z_{l−1}, ΔH_l) and the loss `mean((Ŷ − tanh H_L)²)` of the weights as they are now."""
        n, depth, lowest = x.shape[0], self.net.depth, min(layers)
        systems = {l: AffineSystem(n, self.net.sizes[l - 1], self.net.sizes[l], x.device) for l in layers}
        rows = max(1, CHUNK_ELEMENTS // max(self.net.sizes))
        squared = torch.zeros((), dtype=x.dtype, device=x.device)
        for s in range(0, n, rows):
            trace = self.net.forward_trace(x[s:s + rows])
            t, h_out = target[s:s + rows], trace.h[depth]
            squared = squared + (t - torch.tanh(h_out)).pow(2).sum()
            delta = self._output_delta(h_out, t)
            for l in range(depth, lowest - 1, -1):
                if l in systems:
                    systems[l].add(trace.z[l - 1], delta)
                if l > lowest:
                    delta = self._propagate(trace, delta, l, l - 1)
            del trace, delta
        return systems, squared / target.numel()

    def _solve_layer(self, l: int, system: AffineSystem) -> tuple[torch.Tensor, torch.Tensor]:
        """ΔW_l = Z_{l−1}⁺ ΔH_l with an intercept and ridge α·n; keeps what the condition number needs."""
        ridge = self.params.alpha * system.n
        size = min(system.n, system.d)
        # float64 rows: the float64 Gram's own resolution. float32 rows: their epsilon on the
        # eigenvalue scale (a singular-value cut of ~3e-4); eps32·size, the old cut, dropped most
        # of a wide layer's directions (3,500 of 4,096 at 10k MNIST images).
        rcond = max(gram_rcond(torch.float64, size), torch.finfo(system.dtype).eps)
        dw, db, cond, gram = system.solve(ridge, rcond, estimate=size > SMALL_GRAM)
        self._conds[l] = (gram, ridge, rcond) if math.isnan(cond) else cond  # nan: not estimated
        return dw, db

    def _apply(self, l: int, dw: torch.Tensor, db: torch.Tensor) -> None:
        layer = self.net.layers[l - 1]
        layer.weight.add_(dw.T, alpha=self.params.eta)
        if layer.bias is not None:
            layer.bias.add_(db, alpha=self.params.eta)

    @torch.no_grad()
    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.params.stop_on_rise and self.stopped:
            return {"loss": torch.as_tensor(self._previous[0], dtype=x.dtype, device=x.device)}
        if not weights_finite(self.net):  # diverged: report it to the engine; pseudo-inverses of NaN raise
            return {"loss": torch.full((), float("nan"), dtype=x.dtype, device=x.device)}
        target = 2 * F.one_hot(y, self.net.sizes[-1]).to(x.dtype) - 1
        self._guarded = torch.zeros((), device=x.device)
        self._clipped = torch.zeros((), device=x.device)
        self._ratio_entries = self._hidden_entries = 0
        self._cond = None
        self._w_pinv = {}
        depth = self.net.depth
        layers = list(range(1, depth + 1)) if self.params.train_hidden else [depth]
        # Algorithm 1: every layer from one pass; Algorithm 2: bottom-up, a fresh pass per layer
        # (the layers below have changed), the output layer last.
        groups = [layers] if self.params.algorithm == "simultaneous" else [[l] for l in layers]
        loss = None
        for group in groups:
            systems, group_loss = self._accumulate(x, target, group)
            if loss is None:  # the first pass sees the weights before the update
                loss = group_loss
                if not torch.isfinite(loss):
                    return {"loss": loss}
                if self.params.stop_on_rise and self._check_rise(loss):
                    return {"loss": torch.as_tensor(self._previous[0], dtype=loss.dtype, device=loss.device)}
            steps = [(l, *self._solve_layer(l, systems.pop(l))) for l in group]
            for step in steps:
                self._apply(*step)
        self._w_pinv = {}
        return {"loss": loss}

    def _check_rise(self, loss: torch.Tensor) -> bool:
        """stop_on_rise: undo the last update and stop when the error went up; True when stopped."""
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
        entries guarded and, with `target_bound`, of hidden targets clipped in the last update;
        whether stop_on_rise has stopped the rule."""
        if self._cond is None:  # computed once per update, however often the engine asks
            self._cond = {l: c if isinstance(c, float) else psd_condition(*c) for l, c in self._conds.items()}
        out = {f"L{l}.gram_cond": c for l, c in sorted(self._cond.items())}
        if self._ratio_entries:
            out["guarded_share"] = float(self._guarded) / self._ratio_entries
        if self._hidden_entries:
            out["clipped_share"] = float(self._clipped) / self._hidden_entries
        if self.params.stop_on_rise:
            out["stopped"] = float(self.stopped)
        return out
