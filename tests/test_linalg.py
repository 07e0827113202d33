"""The shared linear algebra: pseudo-inverses against torch.linalg.pinv, Penrose residuals, the
data-weighted inverse and angles."""
from __future__ import annotations

import math

import pytest
import torch

from plasticity import linalg


def _matrix(n: int, d: int, rank: int | None = None, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if rank is None:
        return torch.randn(n, d, generator=g, dtype=dtype)
    return torch.randn(n, rank, generator=g, dtype=dtype) @ torch.randn(rank, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("shape,rank", [((50, 20), None), ((20, 50), None), ((40, 30), 10), ((30, 40), 5)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_pinv_and_lstsq_match_torch(shape, rank, dtype, tol):
    a = _matrix(*shape, rank=rank, dtype=dtype)
    b = _matrix(shape[0], 7, dtype=dtype, seed=1)
    reference = torch.linalg.pinv(a.double(), rtol=1e-6 if dtype == torch.float32 else 1e-12)
    assert linalg.relative_error(linalg.pinv(a), reference) < tol
    assert linalg.relative_error(linalg.lstsq(a, b), reference @ b.double()) < tol


@pytest.mark.parametrize("shape", [(60, 20), (20, 60)])
def test_ridge_tends_to_pinv_and_equals_the_normal_equations(shape):
    a = _matrix(*shape)
    assert linalg.relative_error(linalg.pinv(a, alpha=1e-10), torch.linalg.pinv(a)) < 1e-8
    alpha = 3.0
    n, d = shape
    explicit = torch.linalg.solve(a.T @ a + alpha * torch.eye(d, dtype=a.dtype), a.T)
    assert linalg.relative_error(linalg.pinv(a, alpha=alpha), explicit) < 1e-10
    b = _matrix(n, 4, seed=2)
    assert linalg.relative_error(linalg.lstsq(a, b, alpha=alpha), explicit @ b) < 1e-10


def test_ridge_on_a_singular_gram_stays_finite():
    a = _matrix(40, 30, rank=3)
    out = linalg.pinv(a, alpha=1e-30)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="non-negative"):
        linalg.pinv(a, alpha=-1.0)


def test_penrose_residuals_vanish_for_pinv_and_not_for_the_transpose():
    for a in (_matrix(30, 50), _matrix(50, 30, rank=8)):
        exact = linalg.penrose_residuals(a, torch.linalg.pinv(a))
        assert max(exact.values()) < 1e-10
        wrong = linalg.penrose_residuals(a, a.T)
        assert wrong["p1"] > 0.1 and wrong["p2"] > 0.1


def test_data_weighted_inverse():
    w = _matrix(10, 30)
    assert linalg.relative_error(linalg.data_weighted_inverse(w, torch.eye(30, dtype=w.dtype)),
                                 torch.linalg.pinv(w)) < 1e-10
    m = _matrix(30, 30, seed=3)
    sigma = m @ m.T / 30
    b = linalg.data_weighted_inverse(w, sigma)
    assert linalg.relative_error(w @ b, torch.eye(10, dtype=w.dtype)) < 1e-10  # still a right inverse
    assert linalg.relative_error(b, torch.linalg.pinv(w)) > 0.05  # but not the Moore-Penrose one


def test_angle():
    x = torch.tensor([1.0, 0.0])
    assert linalg.angle(x, torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    assert linalg.angle(x, -x) == pytest.approx(180.0)
    assert math.isnan(linalg.angle(x, torch.zeros(2)))
    assert math.isnan(linalg.angle(x, torch.tensor([math.nan, 1.0])))  # not 0°: a NaN B is no alignment
    assert math.isnan(linalg.angle(torch.tensor([math.inf, 1.0]), x))


# ---- least squares with an intercept (ER's weight solve) --------------------------------------

def _with_ones(a: torch.Tensor) -> torch.Tensor:
    return torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], dim=1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_affine_lstsq_is_the_augmented_pseudo_inverse_on_tall_full_rank(dtype, tol, monkeypatch):
    monkeypatch.setattr(linalg, "CENTRE_CHUNK", 17)  # several chunks: the accumulation is exact
    a = _matrix(60, 12, dtype=dtype) + 3.0  # an offset the centring must remove
    b = _matrix(60, 5, dtype=dtype, seed=1)
    w, c, gram = linalg.affine_lstsq(a, b)
    expected = torch.linalg.pinv(_with_ones(a).double()) @ b.double()
    assert linalg.relative_error(torch.cat([w, c[None]]), expected) < tol
    assert w.dtype == dtype and gram.shape == (12, 12)


@pytest.mark.parametrize("shape", [(60, 12), (8, 30)])
def test_affine_lstsq_ridge_leaves_the_intercept_unpenalised(shape):
    a, b = _matrix(*shape) + 1.0, _matrix(shape[0], 3, seed=1)
    alpha = 2.5
    ac, bc = a - a.mean(0), b - b.mean(0)
    w_ref = torch.linalg.solve(ac.T @ ac + alpha * torch.eye(shape[1], dtype=a.dtype), ac.T @ bc)
    w, c, _ = linalg.affine_lstsq(a, b, alpha)
    assert linalg.relative_error(w, w_ref) < 1e-10
    assert linalg.relative_error(c, b.mean(0) - a.mean(0) @ w_ref) < 1e-10


def test_affine_lstsq_rank_deficient_gives_the_minimum_norm_fit():
    a = _matrix(50, 10, rank=4) + 0.5
    a[:, 3] = 7.0  # a constant column: no information beyond the intercept
    b = _matrix(50, 2, seed=3)
    w, c, _ = linalg.affine_lstsq(a, b)
    ac = a - a.mean(0)
    w_ref = torch.linalg.pinv(ac) @ (b - b.mean(0))
    assert linalg.relative_error(w, w_ref) < 1e-8
    assert float(w[3].abs().max()) < 1e-10


def test_solve_psd_and_condition():
    g = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    r = torch.ones(3, 1, dtype=torch.float64)
    assert torch.allclose(linalg.solve_psd(g, r), torch.tensor([[0.25], [1.0], [0.0]], dtype=torch.float64))
    assert torch.allclose(linalg.solve_psd(g, r, alpha=1.0), torch.tensor([[0.2], [0.5], [1.0]], dtype=torch.float64))
    assert linalg.psd_condition(g) == pytest.approx(4.0)  # the zero eigenvalue is cut, as in the solve
    assert linalg.psd_condition(g, alpha=1.0) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="alpha"):
        linalg.solve_psd(g, r, alpha=-1.0)


# ---- the streamed Gram (ER at scale) ----------------------------------------------------------

def test_affine_system_streamed_in_chunks_with_block_gram_equals_one_shot(monkeypatch):
    """Chunks of any size and the upper-triangle block Gram give the solve of the whole matrix."""
    monkeypatch.setattr(linalg, "GRAM_BLOCK", 4)  # 21 columns: several blocks, a ragged last one
    a, b = _matrix(90, 21) + 2.0, _matrix(90, 3, seed=1)
    system = linalg.AffineSystem(90, 21, 3)
    for s in range(0, 90, 13):
        system.add(a[s:s + 13], b[s:s + 13])
    w, c, cond, gram = system.solve()
    ac = a - a.mean(0)
    assert torch.allclose(gram, ac.T @ ac, rtol=1e-12, atol=1e-10)  # symmetric: the lower half is filled
    expected = torch.linalg.pinv(_with_ones(a)) @ b
    assert linalg.relative_error(torch.cat([w, c[None]]), expected) < 1e-10
    assert cond == pytest.approx(linalg.psd_condition(gram), rel=1e-3)


def test_affine_system_float32_rows_with_a_large_mean_lose_nothing_to_cancellation():
    """tanh-like features with a large common mean: the Gram of float32 rows is formed in float64
    from a shifted sum, so it matches the float64 Gram of the same numbers to float64 accuracy."""
    g = torch.Generator().manual_seed(0)
    a32 = (0.9 + 0.05 * torch.rand(4000, 40, generator=g)).float()
    b = torch.randn(4000, 2, generator=g)
    system = linalg.AffineSystem(4000, 40, 2)
    for s in range(0, 4000, 1000):
        system.add(a32[s:s + 1000], b[s:s + 1000].float())
    *_, gram = system.solve()
    a64 = a32.double()
    ref = (a64 - a64.mean(0)).T @ (a64 - a64.mean(0))
    assert linalg.relative_error(gram, ref) < 1e-12
    # the one-pass float32 formula ZᵀZ − nμμᵀ (no shift) cancels away most of its digits
    mu = a32.mean(0)
    naive = (a32.T @ a32 - 4000 * torch.outer(mu, mu)).double()
    assert linalg.relative_error(naive, ref) > 1e-3


def test_affine_system_wide_batch_keeps_rows_and_solves_the_small_gram():
    a, b = _matrix(12, 40) + 1.0, _matrix(12, 2, seed=2)
    system = linalg.AffineSystem(12, 40, 2)
    system.add(a[:5], b[:5])
    system.add(a[5:], b[5:])
    w, _, _, gram = system.solve()
    assert gram.shape == (12, 12)
    ac = a - a.mean(0)
    assert linalg.relative_error(w, torch.linalg.pinv(ac) @ (b - b.mean(0))) < 1e-9
    with pytest.raises(ValueError, match="expected 12 rows, got 5"):
        short = linalg.AffineSystem(12, 40, 2)
        short.add(a[:5], b[:5])
        short.solve()


@pytest.mark.parametrize("spectrum,route", [([5.0, 2.0, 1.0, 0.5], "cholesky"), ([5.0, 2.0, 1.0, 1e-20], "eigen")])
def test_solve_psd_cond_takes_cholesky_only_when_the_gram_is_well_above_the_cut(spectrum, route, monkeypatch):
    q, _ = torch.linalg.qr(_matrix(4, 4))
    g = q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ q.T
    r = _matrix(4, 2, seed=5)
    calls, eigh = [], torch.linalg.eigh

    def counting_eigh(m):
        calls.append(1)
        return eigh(m)

    monkeypatch.setattr(torch.linalg, "eigh", counting_eigh)
    x, cond = linalg.solve_psd_cond(g, r, rcond=1e-10)
    assert (route == "eigen") == bool(calls)
    kept = [s for s in spectrum if s > 1e-10 * max(spectrum)]
    expected = q[:, :len(kept)] @ torch.diag(1 / torch.tensor(kept, dtype=torch.float64)) @ q[:, :len(kept)].T @ r
    assert linalg.relative_error(x, expected) < 1e-8
    assert cond == pytest.approx(max(kept) / min(kept), rel=1e-3)


@pytest.mark.parametrize("alpha", [0.0, 7.5])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gram_gives_a_non_finite_answer_not_a_lapack_error(alpha, bad):
    """A diverged rule's Gram made eigh raise "failed to converge" (an ER trial with alpha 7.5): the
    answer is now NaN, which the engine reports as divergence, as for any non-finite weight."""
    g = torch.eye(6, dtype=torch.float64)
    g[2, 3] = g[3, 2] = bad
    x, cond = linalg.solve_psd_cond(g, torch.ones(6, 2, dtype=torch.float64), alpha)
    assert x.shape == (6, 2) and torch.isnan(x).all() and math.isnan(cond)


def test_the_condition_of_a_non_finite_gram_is_nan_not_an_error():
    g = torch.eye(4, dtype=torch.float64)
    g[0, 1] = g[1, 0] = float("inf")
    assert math.isnan(linalg.psd_condition(g, 0.5))
