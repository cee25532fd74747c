"""Convergence is every example's own: a batch solve never claims an example it left unsolved.

The batch is one block-diagonal operator; the rule is ‖b_b − A_b x_b‖₂ <= max(rtol ‖b_b‖₂, atol)
for every example b (refnet.solvers.linear).  One 2-norm over the stacked batch let an example
with a small right-hand side stay unsolved while the large ones dominated the norm.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from refnet.solvers import IdentityMinus, LinearOperator, cg_normal, fixed_point_iteration, gmres, neumann

LINEAR = [fixed_point_iteration, cg_normal, gmres]


def _block_system(seed, scales, n=4, rho=0.9):
    """A = I − M on (B, n) with ‖M_b‖₂ = rho, and b whose rows have norms ``scales``."""
    g = np.random.default_rng(seed)
    B = len(scales)
    M = g.standard_normal((B, n, n))
    M *= rho / np.linalg.norm(M, 2, axis=(1, 2))[:, None, None]
    op = LinearOperator((B, n), np.float64, lambda v: np.einsum("bij,bj->bi", M, v),
                        lambda v: np.einsum("bji,bj->bi", M, v), block_diagonal=True)
    b = g.standard_normal((B, n))
    b *= (np.asarray(scales) / np.linalg.norm(b, axis=1))[:, None]
    return IdentityMinus(op), M, b


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), solver=st.sampled_from(LINEAR),
       exponents=st.lists(st.integers(-9, 0), min_size=2, max_size=4))
def test_every_example_meets_its_own_rule_whatever_the_other_examples_scale(seed, solver, exponents):
    # Rows of b differ by up to 1e9 in norm: the stacked rule would be met by the largest alone.
    A, M, b = _block_system(seed, [10.0 ** e for e in exponents])
    x, info = solver(A, b, rtol=1e-10, maxiter=5000)
    r = np.linalg.norm(b - A.matvec(x), axis=1)
    assert info.converged
    assert (r <= 1e-10 * np.linalg.norm(b, axis=1)).all()
    np.testing.assert_allclose(info.example_tolerance, 1e-10 * np.linalg.norm(b, axis=1), rtol=1e-12)
    # κ(I − M_b) <= 19 (ρ = 0.9): each row is within 19 · 1e-10 of its own solution (relative).
    exact = np.linalg.solve(np.eye(4)[None] - M, b[:, :, None])[:, :, 0]
    np.testing.assert_allclose(x / np.linalg.norm(b, axis=1)[:, None],
                               exact / np.linalg.norm(b, axis=1)[:, None], rtol=0, atol=1e-8)


def test_a_zero_right_hand_side_row_is_solved_exactly_by_zero():
    A, _, b = _block_system(3, [1.0, 1.0, 1.0])
    b[1] = 0.0
    for solver in LINEAR:
        x, info = solver(A, b, rtol=1e-10)
        assert info.converged and np.all(x[1] == 0.0), solver.__name__


def test_neumann_with_a_tolerance_judges_every_example():
    # Example 0 has ρ = 0.9 and a small b; after K = 10 terms its residual is 0.9^11 ≈ 0.31 of
    # ‖b_0‖ (measured on the stacked norm it is 3e-4 of ‖b‖, under rtol 1e-2).
    M = np.stack([0.9 * np.eye(2), 0.0 * np.eye(2)])
    A = IdentityMinus(LinearOperator((2, 2), np.float64, lambda v: np.einsum("bij,bj->bi", M, v),
                                     lambda v: np.einsum("bji,bj->bi", M, v), block_diagonal=True))
    b = np.array([[1e-3, 1e-3], [1.0, 1.0]])
    _, info = neumann(A, b, rtol=1e-2, maxiter=10)
    assert info.residual <= 1e-2 * np.linalg.norm(b)                   # the stacked rule holds
    assert info.converged is False and list(info.example_converged) == [False, True]
    assert "example 0" in info.message


def _two_examples():
    """ρ(J) = 0.99 at h* = 0 for example 0; example 1 saturates tanh (J ≈ 0)."""
    cell = refnet.ElmanRNN(2, 3)
    th = {k: np.zeros_like(v) for k, v in cell.init(refnet.rng(0)).items()}
    th["weight_hh"] = 0.99 * np.eye(3)
    th["weight_ih"] = np.ones((3, 2))
    x = np.array([[0.0, 0.0], [20.0, 20.0]])
    return cell, th, x, refnet.fixed_point(cell, th, x).h


@pytest.mark.parametrize("variant", [refnet.rbp, refnet.gmres_rbp, refnet.cg_rbp])
def test_rbp_variants_solve_the_example_with_the_small_cotangent(variant):
    cell, th, x, h = _two_examples()
    dh = np.array([[1e-3] * 3, [1.0] * 3])
    res = variant(cell, th, x, h, dh, rtol=1e-3)
    # Exact: z_0 = dh_0 / (1 − 0.99) = 0.1, z_1 ≈ dh_1 (J_1 ≈ 0); dL/d bias_ih = Σ_b z_b tanh'(a_b).
    exact = dh[0] / (1 - 0.99) + dh[1] * (1 - np.tanh(40.0) ** 2)
    assert res.converged and res.info.example_converged.all()
    # rtol 1e-3 on the residual and κ(I − J_0) = 100 bound the error of z_0 by 0.1 (relative).
    np.testing.assert_allclose(res.dtheta["bias_ih"], exact, rtol=0.1)


def test_rbp_raises_naming_the_example_it_could_not_solve():
    cell, th, x, h = _two_examples()
    dh = np.array([[1e-9] * 3, [1.0] * 3])
    # 0.99^300 ≈ 0.05: example 0 stays far above rtol 1e-10 of its own ‖dh_0‖.
    with pytest.raises(refnet.ConvergenceError, match="example 0"):
        refnet.rbp(cell, th, x, h, dh, maxiter=300)
    with pytest.raises(refnet.ConvergenceError, match="example 0"):
        refnet.neumann_rbp(cell, th, x, h, dh, K=50, rtol=1e-2)
