"""Equilibria of a cell on a static input, h* = F(x, w, h*): the cell-level door to :mod:`~refnet.solvers.nonlinear`.

``refnet.fixed_point(cell, θ, x)`` and its siblings validate the problem once
(:func:`~refnet.solvers.problem.check_problem`), build the map
F(h) = cell.step(θ, h, x, t)[0] (:class:`~refnet.solvers.problem.CellMap`),
run the map-level solver and apply the failure policy
(:func:`~refnet.solvers.info.settle`): by default a solve that misses
its rule raises :class:`refnet.ConvergenceError` carrying the residual;
inside ``refnet.solvers.failures("warn")`` it warns and returns the last
iterate with ``converged=False``.  The claim is the map-level one
(:mod:`~refnet.solvers.nonlinear`): every example has
‖F(h)_b − h_b‖_∞ <= tol + rtol ‖h_b‖_∞ on the returned h and none ran away
(a map with no fixed point is refused, not certified by rounding).
"""
from dataclasses import dataclass
from typing import Any

from .._validate import as_array
from ..backend import xp_of
from . import nonlinear
from .info import SolveInfo, settle
from .problem import CellMap, check_problem

__all__ = ["Equilibrium", "fixed_point", "anderson", "newton_krylov", "residual"]


@dataclass(frozen=True)
class Equilibrium:
    """A solved equilibrium.

    h : (B, n_state) the returned state;  residuals : ‖F(h_i) − h_i‖_∞ as
    traced (start first, the returned ``h`` last);  steps : iterations
    spent;  converged : whether every example met tol + rtol ‖h_b‖_∞ with no
    runaway iterate (``info.example_converged``);  info : the
    :class:`~refnet.solvers.info.SolveInfo` (per-example residuals, relative
    trace, lowest residual and its iterate).
    """

    h: Any
    residuals: tuple
    steps: int
    converged: bool
    info: SolveInfo = None


def residual(cell, theta, x, h, t=None):
    """‖F(h) − h‖_∞, the distance from being an equilibrium, as a float (no validation)."""
    xp = xp_of(h)
    return float(xp.abs(cell.step(theta, h, x, t)[0] - h).max())


def _solve(solver, cell, theta, x, h0, t, **options):
    x = as_array("x", x)       # array-likes (torch tensors, lists) as the sequence algorithms take them
    h0 = check_problem(cell, theta, x, h0)
    h, info = solver(CellMap(cell, theta, x, t), h0, **options)
    info = settle(info, stacklevel=4)
    return Equilibrium(h, tuple(float(r) for r in info.abs_trace), info.iterations, info.converged, info)


def fixed_point(cell, theta, x, h0=None, *, tol=None, rtol=None, maxiter=1000, t=None):
    """Fixed-point iteration h_{i+1} = F(x, w, h_i) of a cell (Liao et al. 2018, convergent RNN dynamics).

    :func:`refnet.solvers.nonlinear.fixed_point` on F(h) = cell.step(θ, h, x, t)[0].

    Parameters
    ----------
    cell : a refnet cell;  theta : dict, its params
    x : (B, I) static input
    h0 : (B, n_state) start, or None for zeros
    tol : float >= 0, absolute part of the rule, default DEFAULT_TOL of the dtype (1e-10 in float64)
    rtol : float >= 0, part relative to ‖h_b‖_∞, default DEFAULT_FP_RTOL of the dtype (64 u)
    maxiter : int >= 0
    t : passed to ``cell.step``

    Returns
    -------
    Equilibrium

    Raises
    ------
    TypeError, ValueError
        Bad arguments (the message names which).
    refnet.ConvergenceError
        Some example has ‖F(h)_b − h_b‖_∞ > tol + rtol ‖h_b‖_∞ after ``maxiter`` iterations, or its
        iterate ran away ("diverged": the map has no fixed point within reach) (unless
        ``failures("warn"|"ignore")``).
    refnet.NumericalError
        The iteration diverged or overflowed.
    """
    return _solve(nonlinear.fixed_point, cell, theta, x, h0, t, tol=tol, rtol=rtol, maxiter=maxiter)


def anderson(cell, theta, x, h0=None, *, tol=None, rtol=None, maxiter=200, m=5, t=None):
    """Anderson acceleration of a cell's fixed-point iteration (:func:`refnet.solvers.nonlinear.anderson`).

    Arguments, result and exceptions as :func:`fixed_point`; ``m`` : int >= 1, the mixing depth.

    Raises
    ------
    TypeError, ValueError, refnet.ConvergenceError, refnet.NumericalError
        As :func:`fixed_point`.
    """
    return _solve(nonlinear.anderson, cell, theta, x, h0, t, tol=tol, rtol=rtol, maxiter=maxiter, m=m)


def newton_krylov(cell, theta, x, h0=None, *, tol=None, rtol=None, maxiter=50, t=None):
    """Newton–Krylov on a cell's G(h) = F(h) − h (:func:`refnet.solvers.nonlinear.newton_krylov`).

    Finds equilibria with ρ(J) >= 1 too.  Arguments, result and exceptions as
    :func:`fixed_point`; ``maxiter`` counts Newton steps.

    Raises
    ------
    TypeError, ValueError, refnet.ConvergenceError, refnet.NumericalError
        As :func:`fixed_point`.
    refnet.SingularSystemError
        Newton's system (J − I) δ = −(F(h) − h) is singular (e.g. J = I), so no step can be taken.
    """
    return _solve(nonlinear.newton_krylov, cell, theta, x, h0, t, tol=tol, rtol=rtol, maxiter=maxiter)
