"""refnet.cells.ernn_exact: per-step equilibria solved to tolerance, implicit gradients, the toy's failures."""
import numpy as np
import pytest
import scipy.optimize

import refnet
from gradcheck import check_grads
from refnet import params as P
from refnet.solvers import nonlinear, power_method
from refnet.cells.ernn_exact import (ExactERNN, ExactERNNCache, StepMap, ToyERNN, fixed_point_then_hybr,
                                     hybr)


def _theta(cell, r, U_scale=0.3):
    theta = cell.init(r)
    if "U" in theta:
        theta["U"] = r.normal(theta["U"].shape, U_scale)
    theta["b"] = r.normal(theta["b"].shape)
    return theta


def _toy_with_c(c):
    """A one-unit toy whose step from h_{t−1} = 0, x = 0 solves h = tanh(h + c)."""
    cell = ToyERNN(1, 1)
    return cell, {"W": np.zeros((1, 1)), "V": np.zeros((1, 1)), "b": np.array([c])}


@pytest.mark.parametrize("solver", [hybr, nonlinear.fixed_point, nonlinear.anderson,
                                    nonlinear.newton_krylov])
def test_every_solver_returns_the_same_equilibrium_to_rounding(solver):
    # Each solve ends with the cell's own Newton correction from within tol = 1e-10 of a regular
    # root: quadratic convergence leaves them all at the root to rounding.
    r = refnet.rng(0)
    reference = ExactERNN(3, 4)
    theta = _theta(reference, r)
    h_prev, x = r.normal((3, 4), 0.5), r.normal((3, 3))
    h_ref, cache = reference.step(theta, h_prev, x)
    h, _ = ExactERNN(3, 4, solver=solver, maxiter=500).step(theta, h_prev, x)
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=1e-14)
    y = np.tanh(h_ref @ theta["U"].T + h_prev @ theta["V"].T + x @ theta["W"].T + theta["b"])
    assert np.abs(y - h_ref).max() <= 1e-15 and cache.residual <= 1e-10


def test_fixed_point_then_hybr_hands_the_examples_left_unsolved_to_newton():
    # Two fixed-point iterations solve none of the examples; hybr finishes each from there.
    r = refnet.rng(5)
    cell = ExactERNN(3, 4)
    theta = _theta(cell, r)
    c = cell.static_input(theta, r.normal((3, 4), 0.5), r.normal((3, 3)))
    h, info = fixed_point_then_hybr(StepMap(cell, theta, c), np.zeros((3, 4)), tol=1e-10, maxiter=2)
    reference, _ = hybr(StepMap(cell, theta, c), np.zeros((3, 4)), tol=1e-10)
    assert info.converged and info.residual <= 1e-10 and len(info.abs_trace) == 4   # 3 iterates, then hybr
    assert info.diagnostics["hybr_examples"] == [0, 1, 2]
    np.testing.assert_allclose(h, reference, rtol=0, atol=1e-9)   # both within tol of one root


@pytest.mark.parametrize("cell", [ExactERNN(3, 4), ExactERNN(3, 4, "relu"), ToyERNN(3, 4)],
                         ids=["tanh", "relu", "toy"])
def test_bptt_equals_finite_differences_of_the_solved_model(cell):
    r = refnet.rng(1)
    theta = _theta(cell, r, U_scale=0.3 if cell.nonlinearity == "tanh" else 0.1)
    head = refnet.Head(4, 3)
    beta, x, s0, y = head.init(r), r.normal((4, 2, 3)), r.normal((2, 4), 0.5), r.integers(0, 3, (4, 2))
    res = refnet.bptt(cell, theta, x, s0, head, beta, y)

    def f(flat):
        return refnet.loss(cell, {k: flat[k] for k in theta}, x, flat["s0"], head, beta, y)
    check_grads(f, dict(theta, s0=s0), dict(res.dtheta, s0=res.ds0))


def test_jvp_and_vjp_pass_the_dot_product_test_to_1e12():
    # Two solves with I − DU and its transpose: agreement to rounding of a 4×4 solve.
    r = refnet.rng(2)
    for cell in (ExactERNN(3, 4), ToyERNN(3, 4)):
        theta = _theta(cell, r)
        _, cache = cell.step(theta, r.normal((3, 4), 0.5), r.normal((3, 3)))
        u, v, dx = r.normal((3, 4)), r.normal((3, 4)), r.normal((3, 3))
        dtheta = {k: r.normal(w.shape) for k, w in theta.items()}
        lhs = float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum())
        ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
        rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + P.vdot(dparams, dtheta)
        assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs))


@pytest.mark.parametrize("c, h_prev", [(-2.0, 0.0), (-0.3, 0.0), (0.05, 0.0), (1.0, 0.0), (1e-12, 0.5)])
def test_toy_newton_solves_h_equals_tanh_h_plus_c_where_the_root_is_regular(c, h_prev):
    # Oracle: the scalar root bracketed in (−1, 1) by Brent's method (h − tanh(h + c) is monotone).
    # At c = 1e-12 the root h* ≈ (3c)^(1/3) ≈ 1.4e-4 is simple but flat (slope h*² ≈ 2e-8): rounding
    # in h − tanh(h + c) (≈ u h*) moves either answer by ≈ u / h* ≈ 2e-12, hence atol 1e-11.
    cell, theta = _toy_with_c(c)
    h, _ = cell.step(theta, np.full((1, 1), h_prev), np.zeros((1, 1)))
    root = scipy.optimize.brentq(lambda h: h - np.tanh(h + c), -1.0, 1.0, xtol=1e-15)
    assert h[0, 0] == pytest.approx(root, abs=1e-11 if c == 1e-12 else 1e-14)


def test_toy_map_is_not_a_contraction_near_zero():
    # ∂T/∂h = 1 − h*² at the root: the spectral radius climbs to 1 as c → 0 (the paper's Fig. 5).
    rhos = []
    for c in (2.0, 0.5, 0.05, 0.001):
        cell, theta = _toy_with_c(c)
        h, _ = cell.step(theta, np.zeros((1, 1)), np.zeros((1, 1)))
        step_map = StepMap(cell, theta, np.array([[c]]))
        rho = power_method(lambda v: step_map.jvp(h, v), np.ones((1, 1)), iterations=4)
        assert rho[0] == pytest.approx(1.0 - h[0, 0] ** 2, rel=1e-12)
        rhos.append(rho[0])
    assert rhos == sorted(rhos) and rhos[-1] > 0.95


@pytest.mark.parametrize("c, h_prev", [(0.0, 0.5), (0.0, 0.0), (1e-18, 0.5), (1e-18, -0.5)])
def test_toy_raises_convergence_error_with_the_residual_where_the_root_is_degenerate(c, h_prev):
    # h − tanh(h + c) ≈ h³/3 − c: a triple root at c = 0, where Φ'(c) = (1 − h²)/h² is unbounded.
    # At c = 1e-18 the root h* ≈ 1.4e-6 is simple, but rounding in the residual (≈ u h*) hides
    # its position to ≈ u / h* ≈ 1.5e-10 > tol = 1e-10: it cannot be certified either.
    cell, theta = _toy_with_c(c)
    with pytest.raises(refnet.ConvergenceError, match="ToyERNN step t=3") as info:
        cell.step(theta, np.full((1, 1), h_prev), np.zeros((1, 1)), 3)
    assert 0.0 <= info.value.residual <= 1e-10


def test_a_solver_that_runs_out_of_iterations_is_reported_with_its_step():
    r = refnet.rng(3)
    cell = ExactERNN(3, 4, solver=nonlinear.fixed_point, maxiter=2)
    with pytest.raises(refnet.ConvergenceError, match=r"ExactERNN step t=7: fixed_point") as info:
        cell.step(_theta(cell, r), r.normal((2, 4)), r.normal((2, 3)), 7)
    assert info.value.residual > 1e-10


def test_hybr_reports_the_worst_example_when_it_cannot_reach_tol():
    r = refnet.rng(4)
    cell = ExactERNN(3, 4)
    theta = _theta(cell, r)
    c = cell.static_input(theta, r.normal((3, 4)), r.normal((3, 3)))
    with pytest.raises(refnet.ConvergenceError, match=r"hybr: .* \(worst example \d\) .* \(maxiter = 2\)"):
        refnet.solvers.settle(hybr(StepMap(cell, theta, c), np.zeros((3, 4)), tol=1e-10, maxiter=2)[1])


def test_a_singular_implicit_system_raises_numerical_error():
    # σ' = 1 (h* = 0 in the toy, U = I): I − D U = 0, no implicit derivative.
    cell = ToyERNN(1, 2)
    theta = {"W": np.zeros((2, 1)), "V": np.zeros((2, 2)), "b": np.zeros(2)}
    cache = ExactERNNCache(np.zeros((1, 1)), np.zeros((1, 2)), np.zeros((1, 2)), np.ones((1, 2)), 0.0, 1)
    with pytest.raises(refnet.NumericalError, match="singular"):
        cell.step_vjp(theta, cache, np.ones((1, 2)))


def test_toy_has_no_self_feedback_parameter():
    assert set(ToyERNN(2, 3).init(refnet.rng(0))) == {"W", "V", "b"}
    assert set(ExactERNN(2, 3).init(refnet.rng(0))) == {"W", "V", "U", "b"}


@pytest.mark.parametrize("make, match", [
    (lambda: ExactERNN(2, 3, "sigmoid"), "nonlinearity must be 'tanh' or 'relu'"),
    (lambda: ExactERNN(2, 3, tol=0.0), "tol must be None or a float > 0, got 0.0"),
    (lambda: ExactERNN(2, 3, maxiter=0), "maxiter must be a positive int, got 0"),
    (lambda: ToyERNN(2, 3, "relu"), "nonlinearity of the toy ERNN .* is tanh"),
])
def test_bad_configuration_is_rejected_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()
