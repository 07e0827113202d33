"""Linear algebra shared by rules and metrics: (ridge) pseudo-inverses, Penrose residuals, angles.

Rules never form an explicit inverse of a Gram matrix. A ridge solve (α > 0) factorises
`AᵀA + αI` (or `AAᵀ + αI`, whichever side is smaller) by Cholesky; without ridge (α = 0) the
pseudo-inverse comes from an SVD with small singular values cut at `rcond`, which is exact on
rank-deficient matrices. Both work in the input's dtype and on its device (CPU or CUDA).
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

#: Rows per chunk when a tall matrix is centred on the fly (bounds the temporary copy).
CENTRE_CHUNK = 8192


def solve_psd(gram: torch.Tensor, rhs: torch.Tensor, alpha: float = 0.0,
              rcond: float | None = None) -> torch.Tensor:
    """Solve `(G + αI) X = R` for a symmetric positive semi-definite Gram G, never inverting it.

    α > 0: Cholesky (falling back to the eigen route if the factorisation fails). α = 0: the
    minimum-norm solution `G⁺R` from a symmetric eigendecomposition, eigenvalues below
    `rcond·λ_max` treated as zero (default rcond: float64 epsilon times the size).
    """
    if alpha < 0:
        raise ValueError(f"ridge alpha must be non-negative, got {alpha}")
    if alpha > 0:
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        factor, info = torch.linalg.cholesky_ex(gram + alpha * eye)
        if int(info) == 0:
            return torch.cholesky_solve(rhs, factor)
    evals, evecs = torch.linalg.eigh(gram)
    evals = evals + alpha
    cut = (torch.finfo(gram.dtype).eps * gram.shape[-1] if rcond is None else rcond) * evals.max().clamp_min(0)
    inv = torch.where(evals > cut, 1.0 / evals.clamp_min(torch.finfo(evals.dtype).tiny), torch.zeros_like(evals))
    return evecs @ (inv[:, None] * (evecs.T @ rhs))


def gram_rcond(dtype: torch.dtype, size: int) -> float:
    """Relative eigenvalue cut-off for a Gram formed in `dtype`: its epsilon times the size."""
    return torch.finfo(dtype).eps * size


def psd_condition(gram: torch.Tensor, alpha: float = 0.0, rcond: float | None = None) -> float:
    """Condition number of `G + αI` over the eigenvalues `solve_psd` keeps (the system it solves)."""
    evals = torch.linalg.eigvalsh(gram.double()) + alpha
    if evals.numel() == 0:
        return float("nan")
    top = float(evals.max())
    cut = (torch.finfo(torch.float64).eps * gram.shape[-1] if rcond is None else rcond) * max(top, 0.0)
    kept = evals[evals > cut]
    return float("nan") if kept.numel() == 0 else top / float(kept.min())


def affine_lstsq(a: torch.Tensor, b: torch.Tensor, alpha: float = 0.0,
                 rcond: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least squares with an unpenalised intercept: `W, c = argmin ‖A W + 1cᵀ − B‖² + α‖W‖²`.

    Solved on centred data (`c = mean(B) − mean(A) W`), through the smaller Gram: d × d
    `(A − μ)ᵀ(A − μ)` accumulated over row chunks for a tall A (no centred copy of the whole
    matrix, no n × n matrix), or n × n `(A − μ)(A − μ)ᵀ` for a wide one. The Gram is formed in A's
    dtype and solved in float64 by `solve_psd`; with α = 0 this is the minimum-norm solution, equal
    to `[A 1]⁺ B` whenever `[A 1]` has full column rank. Returns W (d × k) and c (k) in A's dtype,
    and the float64 Gram (for condition numbers). The default cut-off for α = 0 is A's dtype
    epsilon times the Gram's size: a Gram formed in float32 resolves no finer than that.
    """
    n, d = a.shape
    if rcond is None:
        rcond = gram_rcond(a.dtype, min(n, d))
    mu = a.mean(dim=0, dtype=torch.float64)
    nu = b.mean(dim=0, dtype=torch.float64)
    if d <= n:
        gram = torch.zeros(d, d, dtype=torch.float64, device=a.device)
        rhs = torch.zeros(d, b.shape[1], dtype=torch.float64, device=a.device)
        mu_a, nu_b = mu.to(a.dtype), nu.to(b.dtype)
        for s in range(0, n, CENTRE_CHUNK):
            ac = a[s:s + CENTRE_CHUNK] - mu_a
            gram += (ac.T @ ac).double()
            rhs += (ac.T @ (b[s:s + CENTRE_CHUNK] - nu_b)).double()
        w = solve_psd(gram, rhs, alpha, rcond)
    else:
        ac = a.double() - mu
        gram = ac @ ac.T
        w = ac.T @ solve_psd(gram, b.double() - nu, alpha, rcond)
    c = nu - mu @ w
    return w.to(a.dtype), c.to(a.dtype), gram


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
