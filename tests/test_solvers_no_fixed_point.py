"""A map with no fixed point is never certified, and a large genuine equilibrium still is.

F(h) = relu(h + δ) (a ReLU iRNN, W_hh = I, positive drive δ) has no fixed point: F(h) − h = δ for
h >= 0.  An extrapolating solver can run h out until h + δ rounds back to h (‖F(h) − h‖ = 0 at
|h| ≈ 1e15 for δ = 0.1); refnet refuses such runaway iterates (refnet.solvers.nonlinear).
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from refnet.solvers import nonlinear


class _Affine:
    """F(h) = max(a h + c, 0) per unit (a = 1: a shift with no fixed point), as a solver map."""

    def __init__(self, a, c):
        self.a, self.c = a, c

    def __call__(self, h):
        return np.maximum(self.a * h + self.c, 0.0)

    def rows(self, index):
        return self

    def jacobian(self, h):
        active = (self.a * h + self.c > 0).astype(h.dtype)
        return self.a * active[:, :, None] * np.eye(h.shape[1])[None]


MAP_SOLVERS = [nonlinear.fixed_point, nonlinear.anderson, nonlinear.newton_krylov, nonlinear.hybr,
               nonlinear.fixed_point_then_hybr]


@settings(max_examples=20, deadline=None)
@given(solver=st.sampled_from(MAP_SOLVERS), drive=st.sampled_from([1e-6, 1e-3, 0.1, 10.0]),
       start=st.sampled_from([0.0, 1.0, 1e3]))
def test_no_solver_claims_a_fixed_point_of_a_shift(solver, drive, start):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)        # scipy's own overflow warnings
        _, info = solver(_Affine(1.0, drive), np.full((2, 3), start))
    assert info.converged is False and info.message
    assert not info.example_converged.any()


def _irnn_shift():
    cell = refnet.ElmanRNN(2, 3, nonlinearity="relu")
    theta = {k: np.zeros_like(v) for k, v in cell.init(refnet.rng(0)).items()}
    theta["weight_hh"] = np.eye(3)
    theta["bias_ih"] = 0.1 * np.ones(3)
    return cell, theta, np.zeros((2, 2)), np.ones((2, 3))


def test_anderson_refuses_the_runaway_iterate_by_name():
    cell, theta, x, h0 = _irnn_shift()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(refnet.ConvergenceError, match="anderson: diverged"):
            refnet.anderson(cell, theta, x, h0)
        with refnet.solvers.failures("ignore"):
            eq = refnet.anderson(cell, theta, x, h0)
    assert eq.converged is False and eq.info.diagnostics["runaway"] == [0, 1]
    # Stopped at the bound, long before h + 0.1 rounds to h (|h| ≈ 4.5e14).
    assert np.abs(eq.h).max() < 1e14


def test_newton_krylov_names_the_singular_newton_system():
    cell, theta, x, h0 = _irnn_shift()
    with pytest.raises(refnet.SingularSystemError, match="newton_krylov: the Newton system .* is singular"):
        refnet.newton_krylov(cell, theta, x, h0)


def test_fixed_point_reports_the_constant_residual():
    cell, theta, x, h0 = _irnn_shift()
    with pytest.raises(refnet.ConvergenceError, match=r"‖F\(h\) − h‖_∞ = 1.000e-01"):
        refnet.fixed_point(cell, theta, x, h0, maxiter=50)


@pytest.mark.parametrize("solver", [nonlinear.fixed_point, nonlinear.anderson])
def test_a_large_genuine_equilibrium_is_certified_by_the_relative_rule(solver):
    # F(h) = 0.5 h + 1e8: h* = 2e8.  F(h) − h is computed with rounding ~ u·2e8 = 4e-8, far above
    # the absolute tol 1e-10, so only tol + rtol ‖h‖ (64 u · 2e8 = 2.8e-6) can be met.  (SciPy's
    # Newton–Krylov loses its finite-difference products to rounding at this scale, and MINPACK's
    # trust region needs more than 100 evaluations to travel 2e8: they are not asked here.)
    h, info = solver(_Affine(0.5, 1e8), np.zeros((2, 3)))
    assert info.converged, info.message
    np.testing.assert_allclose(h, 2e8, rtol=1e-13)


def test_rtol_is_validated_by_name():
    with pytest.raises(ValueError, match="rtol"):
        nonlinear.fixed_point(_Affine(0.5, 1.0), np.zeros((1, 2)), rtol=-1.0)
