"""refnet.solvers.equilibrium: cell-level solvers return equilibria or raise with the residual; ρ(J) diagnostic."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from refnet.solvers import (ConvergenceWarning, Equilibrium, anderson, failures, fixed_point,
                            newton_krylov, residual, spectral_radius)
from refnet.cells.hopfield import Hopfield

from conftest import CONVERGENT

SOLVERS = [fixed_point, anderson, newton_krylov]


def _problem(name, seed=0, B=3):
    r = refnet.rng(seed)
    cell = CONVERGENT[name]()
    return cell, cell.init(r), r.normal((B, cell.input_size))


def _oscillator():
    """h ← tanh(−3 h): the equilibrium 0 has J = −3, so plain iteration falls into a 2-cycle."""
    cell = refnet.ElmanRNN(1, 1, "tanh")
    theta = {"weight_ih": np.zeros((1, 1)), "weight_hh": np.array([[-3.0]]),
             "bias_ih": np.zeros(1), "bias_hh": np.zeros(1)}
    return cell, theta, np.zeros((1, 1)), np.array([[0.3]])


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", list(CONVERGENT))
def test_solvers_return_a_state_whose_measured_residual_is_within_tol(solver, name):
    cell, theta, x = _problem(name)
    eq = solver(cell, theta, x, tol=1e-12, maxiter=2000)
    assert isinstance(eq, Equilibrium) and eq.converged
    assert residual(cell, theta, x, eq.h) == eq.residuals[-1] <= 1e-12
    assert eq.steps == len(eq.residuals) - 1


@pytest.mark.parametrize("solver", [anderson, newton_krylov])
@pytest.mark.parametrize("name", list(CONVERGENT))
def test_scipy_solvers_find_the_fixed_point_iterations_equilibrium(solver, name):
    # Both solve ‖F(h) − h‖_∞ <= 1e-13 around one isolated, attracting root (ρ(J) < 1 here):
    # their distance is at most 2e-13 / (1 − ρ) ≈ 1e-12.
    cell, theta, x = _problem(name)
    reference = fixed_point(cell, theta, x, tol=1e-13, maxiter=5000).h
    np.testing.assert_allclose(solver(cell, theta, x, tol=1e-13).h, reference, rtol=0, atol=1e-11)


@settings(max_examples=6, deadline=None)
@given(name=st.sampled_from(list(CONVERGENT)), B=st.integers(1, 4), seed=st.integers(0, 1000))
def test_a_batch_solve_gives_every_example_its_own_equilibrium(name, B, seed):
    cell, theta, x = _problem(name, seed, B)
    batch = fixed_point(cell, theta, x, tol=1e-13, maxiter=5000).h
    for b in range(B):
        alone = fixed_point(cell, theta, x[b:b + 1], tol=1e-13, maxiter=5000).h
        np.testing.assert_allclose(batch[b:b + 1], alone, rtol=0, atol=1e-11)


def test_fixed_point_returns_the_iterate_whose_residual_it_measured():
    cell, theta, x = _problem("elman_tanh")
    eq = fixed_point(cell, theta, x, tol=1e-8)
    s = [np.zeros((3, 4))]
    for _ in range(eq.steps):
        s.append(cell.step(theta, s[-1], x)[0])
    np.testing.assert_array_equal(eq.h, s[-1])
    assert eq.residuals[-1] == np.abs(cell.step(theta, eq.h, x)[0] - eq.h).max()


def test_maxiter_zero_at_an_equilibrium_returns_it_with_zero_steps():
    cell, theta, x = _problem("gru")
    h = fixed_point(cell, theta, x, tol=1e-13, maxiter=5000).h
    eq = fixed_point(cell, theta, x, h, tol=1e-12, maxiter=0)
    assert eq.steps == 0 and eq.converged and eq.h is h


@pytest.mark.parametrize("solver", SOLVERS)
def test_non_convergence_raises_convergence_error_carrying_the_residual(solver):
    cell, theta, x = _problem("lstm")
    with pytest.raises(refnet.ConvergenceError, match=solver.__name__) as info:
        solver(cell, theta, x, tol=1e-300, maxiter=2)
    assert info.value.residual > 1e-300 and info.value.iterations >= 1


@pytest.mark.parametrize("solver", SOLVERS)
def test_failures_warn_returns_the_unconverged_iterate_flagged(solver):
    cell, theta, x = _problem("lstm")
    with pytest.warns(ConvergenceWarning, match="returned unconverged"), failures("warn"):
        eq = solver(cell, theta, x, tol=1e-300, maxiter=2)
    assert not eq.converged and eq.residuals[-1] == residual(cell, theta, x, eq.h) > 1e-300


def test_fixed_point_iteration_cannot_settle_on_an_unstable_equilibrium():
    cell, theta, x, h0 = _oscillator()
    with pytest.raises(refnet.ConvergenceError) as info:
        fixed_point(cell, theta, x, h0, tol=1e-10, maxiter=200)
    assert info.value.residual > 1.0      # the 2-cycle ±0.9950 never comes closer


def test_newton_krylov_finds_the_unstable_equilibrium_and_the_diagnostic_says_rho_3():
    cell, theta, x, h0 = _oscillator()
    eq = newton_krylov(cell, theta, x, h0, tol=1e-12)
    assert abs(eq.h[0, 0]) <= 1e-12
    # J = −3 (1 − h*²) at h* ≈ 0: a 1×1 J, so the power method is exact after one step.
    assert spectral_radius(cell, theta, x, eq.h)[0] == pytest.approx(3.0, rel=1e-12)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_a_diverging_iteration_raises_numerical_error():
    cell = refnet.ElmanRNN(1, 2, "relu")
    theta = {"weight_ih": np.ones((2, 1)), "weight_hh": 1e200 * np.eye(2),
             "bias_ih": np.ones(2), "bias_hh": np.zeros(2)}
    with pytest.raises(refnet.NumericalError, match="diverged or overflowed"):
        fixed_point(cell, theta, np.ones((1, 1)), maxiter=10)


def test_spectral_radius_matches_the_largest_eigenvalue_of_the_dense_jacobian():
    # Hopfield with a = 1: J = W_ss diag(D) is similar to D^½ W_ss D^½, symmetric, so its
    # eigenvalues are real and the power method converges geometrically; 400 steps reach rounding
    # unless ±ρ are both eigenvalues, which the geometric mean of the growth factors also handles.
    cell = Hopfield(3, 5, 3, init_std=1.0)
    r = refnet.rng(4)
    theta, x = cell.init(r), r.normal((4, 3))
    h = fixed_point(cell, theta, x, tol=1e-13, maxiter=5000).h
    J = cell.jacobians(theta, cell.step(theta, h, x)[1])[0]
    exact = np.abs(np.linalg.eigvals(J)).max(axis=1)
    np.testing.assert_allclose(spectral_radius(cell, theta, x, h, iterations=400), exact, rtol=1e-6)


def test_spectral_radius_of_a_general_jacobian_is_within_a_few_percent():
    # A nonsymmetric J may have a dominant complex pair: the estimate's error is O(1/iterations).
    cell, theta, x = _problem("gru", seed=5)
    h = fixed_point(cell, theta, x, tol=1e-13, maxiter=5000).h
    J = cell.jacobians(theta, cell.step(theta, h, x)[1])[0]
    exact = np.abs(np.linalg.eigvals(J)).max(axis=1)
    np.testing.assert_allclose(spectral_radius(cell, theta, x, h, iterations=1000), exact, rtol=0.03)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"tol": -1.0}, ValueError, "tol must be a finite float >= 0, got -1.0"),
    ({"maxiter": -1}, ValueError, "maxiter must be an int >= 0, got -1"),
    ({"x": np.zeros((3, 5))}, ValueError, r"x must have shape \(\*, 3\), got \(3, 5\)"),
    ({"h0": np.zeros((2, 4))}, ValueError, r"h0 must have shape \(3, 4\), got \(2, 4\)"),
    ({"h0": np.zeros((3, 4), dtype=np.float32)}, TypeError, "mixed dtypes"),
])
def test_bad_input_is_named(kwargs, error, match):
    cell, theta, x = _problem("elman_tanh")
    args = dict(x=x, h0=None)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fixed_point(cell, theta, **args)


def test_spectral_radius_takes_at_least_two_iterations():
    cell, theta, x = _problem("elman_tanh")
    with pytest.raises(ValueError, match="iterations must be an int >= 2, got 1"):
        spectral_radius(cell, theta, x, np.zeros((3, 4)), iterations=1)


def test_warnings_are_not_raised_when_the_solve_converges():
    cell, theta, x = _problem("hopfield")
    with warnings.catch_warnings(), failures("warn"):
        warnings.simplefilter("error")
        assert fixed_point(cell, theta, x).converged
