"""Linear algebra shared by rules and metrics: (ridge) pseudo-inverses, Penrose residuals, angles.

Rules never form an explicit inverse of a Gram matrix. A ridge solve (α > 0) factorises
`AᵀA + αI` (or `AAᵀ + αI`, whichever side is smaller) by Cholesky; without ridge (α = 0) the
pseudo-inverse comes from an SVD with small singular values cut at `rcond`, which is exact on
rank-deficient matrices. Both work in the input's dtype and on its device (CPU or CUDA).
Least squares with an intercept (`AffineSystem`, `affine_lstsq`) streams tall matrices in row
chunks into a float64 Gram and solves it in float64, whatever the rows' dtype.
"""
from __future__ import annotations

import math

import torch


def _rcond(a: torch.Tensor) -> float:
    """numpy/LAPACK's default cut-off: machine epsilon times the larger dimension."""
    return torch.finfo(a.dtype).eps * max(a.shape[-2:])


def pinv(a: torch.Tensor, alpha: float = 0.0, rcond: float | None = None) -> torch.Tensor:
    """The pseudo-inverse `A⁺` of a matrix (n × d → d × n), or its ridge form with α > 0.

    Ridge: `(AᵀA + αI)⁻¹Aᵀ = Aᵀ(AAᵀ + αI)⁻¹`, computed on the smaller side by Cholesky; it tends to
    `A⁺` as α → 0. Without ridge: SVD, singular values below `rcond·σ_max` treated as zero.
    """
    if alpha < 0:
        raise ValueError(f"ridge alpha must be non-negative, got {alpha}")
    if alpha > 0:
        n, d = a.shape
        if d <= n:
            return solve_psd(a.T @ a, a.T, alpha)
        return solve_psd(a @ a.T, a, alpha).T
    return torch.linalg.pinv(a, rtol=_rcond(a) if rcond is None else rcond)


def lstsq(a: torch.Tensor, b: torch.Tensor, alpha: float = 0.0, rcond: float | None = None) -> torch.Tensor:
    """`A⁺ B` (the minimum-norm least-squares solution of `A X ≈ B`), or the ridge solution.

    Cheaper than `pinv(a) @ b` for tall A: the ridge path solves the d × d normal equations
    `(AᵀA + αI) X = AᵀB` by Cholesky; without ridge an SVD of A gives the exact minimum-norm
    solution even when A is rank-deficient.
    """
    if alpha < 0:
        raise ValueError(f"ridge alpha must be non-negative, got {alpha}")
    n, d = a.shape
    if alpha > 0:
        if d <= n:
            return solve_psd(a.T @ a, a.T @ b, alpha)
        return a.T @ solve_psd(a @ a.T, b, alpha)
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    cut = (_rcond(a) if rcond is None else rcond) * (s.max() if s.numel() else 0.0)
    s_inv = torch.where(s > cut, 1.0 / s.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(s))
    return vh.T @ (s_inv[:, None] * (u.T @ b))


def relative_error(b: torch.Tensor, target: torch.Tensor) -> float:
    """‖B − T‖_F / ‖T‖_F (float64)."""
    b, target = b.double(), target.double()
    return float(torch.linalg.norm(b - target) / torch.linalg.norm(target).clamp_min(1e-300))


def penrose_residuals(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """How far B is from A⁺, condition by condition (all zero iff B = A⁺), each relative:

        p1 = ‖ABA − A‖/‖A‖,  p2 = ‖BAB − B‖/‖B‖,  p3 = ‖(AB)ᵀ − AB‖/‖AB‖,  p4 = ‖(BA)ᵀ − BA‖/‖BA‖
    """
    a, b = a.double(), b.double()
    ab, ba = a @ b, b @ a

    def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
        return float(torch.linalg.norm(x) / torch.linalg.norm(ref).clamp_min(1e-300))

    return {"p1": rel(ab @ a - a, a), "p2": rel(ba @ b - b, b),
            "p3": rel(ab.T - ab, ab), "p4": rel(ba.T - ba, ba)}


def data_weighted_inverse(w: torch.Tensor, sigma: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """`ΣWᵀ(WΣWᵀ)⁻¹`: the fixed point of recirculation's feedback update under input covariance Σ.

    W is out × in, Σ is in × in; with Σ = I this is W⁺ for a full-row-rank W. Solved by Cholesky
    on `WΣWᵀ` (out × out), never by an explicit inverse.
    """
    w, sigma = w.double(), sigma.double()
    sw = sigma @ w.T  # in × out
    return solve_psd(w @ sw, sw.T, alpha).T


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle in degrees between two tensors seen as flat vectors (nan if either is zero or not finite)."""
    a, b = a.double().flatten(), b.double().flatten()
    na, nb = torch.linalg.norm(a), torch.linalg.norm(b)
    if float(na) == 0.0 or float(nb) == 0.0:
        return float("nan")
    cos = float((a @ b) / (na * nb))
    if not math.isfinite(cos):  # min(1.0, nan) is 1.0: a blown-up B would read as perfectly aligned
        return float("nan")
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


# ---- least squares with an intercept (Expectation Reflection's weight solve) -------------------

#: Rows per chunk when a tall matrix is streamed into its Gram (bounds the temporary copies).
CENTRE_CHUNK = 8192
#: Width of the column blocks that form only the upper triangle of a large Gram (≈ half the work).
GRAM_BLOCK = 1024
#: Power / inverse-iteration steps that estimate a Gram's extreme eigenvalues (condition check).
_ITERATIONS = 40


def solve_psd(gram: torch.Tensor, rhs: torch.Tensor, alpha: float = 0.0,
              rcond: float | None = None) -> torch.Tensor:
    """Solve `(G + αI) X = R` for a symmetric positive semi-definite Gram G, never inverting it.

    α > 0: Cholesky (falling back to the eigen route if the factorisation fails). α = 0: the
    minimum-norm solution `G⁺R` with eigenvalues below `rcond·λ_max` treated as zero (default
    rcond: G's dtype epsilon times the size); see `solve_psd_cond` for how it is computed.
    """
    return solve_psd_cond(gram, rhs, alpha, rcond)[0]


def solve_psd_cond(gram: torch.Tensor, rhs: torch.Tensor, alpha: float = 0.0,
                   rcond: float | None = None, estimate: bool = True) -> tuple[torch.Tensor, float]:
    """`solve_psd`, and the condition number of the system it solved (over the kept eigenvalues).

    A symmetric eigendecomposition costs about 10× a Cholesky factorisation (at d = 8192 it was
    most of an ER update), so both paths try Cholesky first. With α = 0 its answer is accepted
    only when G is safely above the cut: inverse iteration on the factor estimates λ_min (from
    above, so with a 100× margin) and power iteration λ_max; a Gram with eigenvalues near or
    below `rcond·λ_max` (rank-deficient, or nearly so) takes the eigen route, which drops them.
    The condition number is exact on the eigen route and an estimate on the Cholesky one; with
    α > 0 and `estimate=False` it is not computed (nan) and the solve is a bare Cholesky.
    """
    if alpha < 0:
        raise ValueError(f"ridge alpha must be non-negative, got {alpha}")
    size = gram.shape[-1]
    if size == 0:
        return rhs.new_zeros(rhs.shape), float("nan")
    if rcond is None:
        rcond = torch.finfo(gram.dtype).eps * size
    system = gram + alpha * torch.eye(size, dtype=gram.dtype, device=gram.device) if alpha > 0 else gram
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        if alpha > 0 and not estimate:
            return torch.cholesky_solve(rhs, factor), float("nan")
        top, bottom = _extreme_eigenvalues(system, factor)
        if alpha > 0 or bottom > 100 * rcond * top:
            return torch.cholesky_solve(rhs, factor), top / bottom
    del factor
    if not bool(torch.isfinite(gram).all()):
        # A diverged rule's Gram: LAPACK's eigh fails on it ("failed to converge"). A non-finite answer
        # lets the engine report the cell as diverged, as it does for a non-finite loss or weight.
        return torch.full_like(rhs, float("nan")), float("nan")
    evals, evecs = torch.linalg.eigh(gram)
    evals = evals + alpha
    cut = rcond * evals.max().clamp_min(0)
    keep = evals > cut
    inv = torch.where(keep, 1.0 / evals.clamp_min(torch.finfo(evals.dtype).tiny), torch.zeros_like(evals))
    cond = float(evals.max() / evals[keep].min()) if bool(keep.any()) else float("nan")
    return evecs @ (inv[:, None] * (evecs.T @ rhs)), cond


def _extreme_eigenvalues(system: torch.Tensor, factor: torch.Tensor) -> tuple[float, float]:
    """(λ_max, λ_min) of a positive definite matrix by power and inverse iteration on its Cholesky
    factor: λ_max from below, λ_min from above (a fixed start vector: no global random state)."""
    start = torch.randn(system.shape[-1], 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = u = start.to(dtype=system.dtype, device=system.device)
    top = bottom = 0.0
    for _ in range(_ITERATIONS):
        v = system @ (v / torch.linalg.vector_norm(v))
        u = torch.cholesky_solve(u / torch.linalg.vector_norm(u), factor)
    top = float(torch.linalg.vector_norm(v))
    bottom = 1.0 / float(torch.linalg.vector_norm(u))
    return top, bottom


def gram_rcond(dtype: torch.dtype, size: int) -> float:
    """Relative eigenvalue cut-off for a Gram formed in `dtype`: its epsilon times the size."""
    return torch.finfo(dtype).eps * size


def psd_condition(gram: torch.Tensor, alpha: float = 0.0, rcond: float | None = None) -> float:
    """Condition number of `G + αI` over the eigenvalues `solve_psd` keeps (the system it solves);
    nan for a non-finite Gram (a diverged rule's: the engine reports the divergence, a diagnostic
    must not end the cell with LAPACK's "failed to converge")."""
    if not bool(torch.isfinite(gram).all()):
        return float("nan")
    evals = torch.linalg.eigvalsh(gram.double()) + alpha
    if evals.numel() == 0:
        return float("nan")
    top = float(evals.max())
    cut = (torch.finfo(torch.float64).eps * gram.shape[-1] if rcond is None else rcond) * max(top, 0.0)
    kept = evals[evals > cut]
    return float("nan") if kept.numel() == 0 else top / float(kept.min())


def add_gram(gram: torch.Tensor, a: torch.Tensor) -> None:
    """`gram += AᵀA` on the upper triangle only (plus its diagonal blocks), in column blocks of
    `GRAM_BLOCK`: about half the multiply-adds of the full product. `symmetrize` finishes it."""
    d = a.shape[1]
    if d <= 2 * GRAM_BLOCK:
        gram.addmm_(a.T, a)
        return
    for i in range(0, d, GRAM_BLOCK):
        gram[i:i + GRAM_BLOCK, i:].addmm_(a[:, i:i + GRAM_BLOCK].T, a[:, i:])


def symmetrize(gram: torch.Tensor) -> torch.Tensor:
    """The full symmetric matrix from the block upper triangle `add_gram` filled, in place."""
    d = gram.shape[-1]
    if d > 2 * GRAM_BLOCK:
        for i in range(0, d - GRAM_BLOCK, GRAM_BLOCK):
            gram[i + GRAM_BLOCK:, i:i + GRAM_BLOCK] = gram[i:i + GRAM_BLOCK, i + GRAM_BLOCK:].T
    return gram


class AffineSystem:
    """The normal equations of `affine_lstsq`, accumulated over row chunks of (A, B).

    Rows arrive in chunks (`add`), so the caller never holds more than a chunk of A and B; the
    d × d Gram of the centred A and the d × k cross-product with the centred B are summed in
    float64 (a chunk is cast before its product: a Gram formed in float32 resolves eigenvalues
    only down to ~1e-5 of the largest). Centring uses the first chunk's mean as a shift and
    corrects by the final mean at the end (`Σ(a−s)(a−s)ᵀ − n(μ−s)(μ−s)ᵀ`), so tanh features
    with a large mean lose nothing to cancellation. When the batch is wider than tall (n < d)
    the chunks are kept and the n × n Gram is solved instead (it is the smaller one).
    """

    def __init__(self, n: int, d: int, k: int, device: torch.device | str = "cpu") -> None:
        self.n, self.d, self.k = n, d, k
        self.seen = 0
        self.wide = d > n
        self._kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        f64 = {"dtype": torch.float64, "device": device}
        if not self.wide:
            self.gram = torch.zeros(d, d, **f64)
            self.cross = torch.zeros(d, k, **f64)
            self.sum_a = torch.zeros(d, **f64)
            self.sum_b = torch.zeros(k, **f64)
        self.shift_a: torch.Tensor | None = None
        self.shift_b: torch.Tensor | None = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Take the next rows of A (m × d) and B (m × k)."""
        self.seen += a.shape[0]
        self.dtype = a.dtype
        if self.wide:
            self._kept.append((a, b))
            return
        if self.shift_a is None:
            self.shift_a = a.mean(dim=0, dtype=torch.float64)
            self.shift_b = b.mean(dim=0, dtype=torch.float64)
        ac = a.double() - self.shift_a
        bc = b.double() - self.shift_b
        self.sum_a += ac.sum(dim=0)
        self.sum_b += bc.sum(dim=0)
        add_gram(self.gram, ac)
        self.cross.addmm_(ac.T, bc)

    def solve(self, alpha: float = 0.0, rcond: float | None = None, estimate: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
        """W (d × k) and c (k) in the rows' dtype, the condition number of the system solved (nan
        when `estimate=False` spared it: see `solve_psd_cond`) and the float64 Gram solved."""
        if self.seen != self.n:
            raise ValueError(f"AffineSystem expected {self.n} rows, got {self.seen}")
        if rcond is None:
            rcond = gram_rcond(torch.float64, min(self.n, self.d))
        if self.wide:
            a = torch.cat([p[0] for p in self._kept]) if len(self._kept) > 1 else self._kept[0][0]
            b = torch.cat([p[1] for p in self._kept]) if len(self._kept) > 1 else self._kept[0][1]
            self._kept = []
            mu = a.mean(dim=0, dtype=torch.float64)
            nu = b.mean(dim=0, dtype=torch.float64)
            ac = a.double() - mu
            gram = ac @ ac.T
            x, cond = solve_psd_cond(gram, b.double() - nu, alpha, rcond, estimate)
            w = ac.T @ x
        else:
            mean_a, mean_b = self.sum_a / self.n, self.sum_b / self.n
            gram = symmetrize(self.gram)
            gram.addr_(mean_a, mean_a, alpha=-float(self.n))
            cross = self.cross.addr_(mean_a, mean_b, alpha=-float(self.n))
            mu, nu = self.shift_a + mean_a, self.shift_b + mean_b
            w, cond = solve_psd_cond(gram, cross, alpha, rcond, estimate)
            self.gram = self.cross = None  # the caller's reference is the only one left
        c = nu - mu @ w
        return w.to(self.dtype), c.to(self.dtype), cond, gram


def affine_lstsq(a: torch.Tensor, b: torch.Tensor, alpha: float = 0.0,
                 rcond: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least squares with an unpenalised intercept: `W, c = argmin ‖A W + 1cᵀ − B‖² + α‖W‖²`.

    Solved on centred data (`c = mean(B) − mean(A) W`) through the smaller Gram, formed and solved
    in float64 (`AffineSystem`, fed in chunks of `CENTRE_CHUNK` rows): d × d for a tall A, n × n
    for a wide one. With α = 0 this is the minimum-norm solution, equal to `[A 1]⁺ B` whenever
    `[A 1]` has full column rank; eigenvalues below `rcond·λ_max` are dropped (default: float64
    epsilon times the Gram's size). Returns W (d × k) and c (k) in A's dtype, and the float64
    Gram solved (for condition numbers).
    """
    n, d = a.shape
    system = AffineSystem(n, d, b.shape[1], a.device)
    for s in range(0, n, CENTRE_CHUNK):
        system.add(a[s:s + CENTRE_CHUNK], b[s:s + CENTRE_CHUNK])
    w, c, _, gram = system.solve(alpha, rcond, estimate=False)
    return w, c, gram


def recirculate(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, lr: float,
                lr_a: float = 0.0, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One linearised recirculation step on a forward/feedback pair, in place; returns (ΔA, ΔB).

        h = A x,   x̂ = B h,   ĥ = A x̂
        ΔB = lr · ⟨(x − x̂) hᵀ⟩,   ΔA = lr_a · ⟨(h − ĥ) xᵀ⟩       (⟨·⟩: mean over the batch)

    `a` is out × in (the forward matrix), `b` in × out, `x` a batch n × in (rows are samples).
    With A fixed, the expected ΔB vanishes at `ΣAᵀ(AΣAᵀ)⁻¹` with Σ = ⟨xxᵀ⟩ (the raw second
    moment, not the covariance): `A⁺` for white x; it is stable while lr·λ_max(AΣAᵀ) < 2.
    `h` may be passed when the caller already has A x.
    """
    n = x.shape[0]
    h = x @ a.T if h is None else h
    x_hat = h @ b.T
    delta_b = (lr / n) * ((x - x_hat).T @ h)
    delta_a = torch.zeros((), dtype=a.dtype, device=a.device)
    if lr_a:
        h_hat = x_hat @ a.T
        delta_a = (lr_a / n) * ((h - h_hat).T @ x)
        a.add_(delta_a)
    b.add_(delta_b)
    return delta_a, delta_b
