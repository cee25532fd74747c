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
    """A solved equilibrium h* = F(h*) of a cell on a static input.

    Attributes
    ----------
    h : (B, n_state) array
        The returned state.
    residuals : tuple of float
        ‖F(h_i) − h_i‖_∞ as traced (start first, the returned ``h`` last).
    steps : int
        Iterations spent (as the solver counts them).
    converged : bool
        Whether every example met tol + rtol ‖h_b‖_∞ with no runaway iterate
        (``info.example_converged``).
    info : SolveInfo
        The full report: per-example residuals, relative trace, lowest
        residual and its iterate.
    """

    h: Any
    residuals: tuple
    steps: int
    converged: bool
    info: SolveInfo = None


def residual(cell, theta, x, h, t=None):
    """‖F(h) − h‖_∞, the distance from being an equilibrium, as a float (no validation).

    F(h) = cell.step(θ, h, x, t)[0]; the max is over every example and unit.

    Parameters
    ----------
    cell : refnet cell
        Any cell with ``step``.
    theta : dict {name: array}
        The cell's params.
    x : (B, I) array
        Static input.
    h : (B, n_state) array
        The candidate equilibrium.
    t : int or None
        The step index passed to ``cell.step``.

    Returns
    -------
    float
        max_b,i |F(h) − h|, in units of h (one host read).

    Raises
    ------
    AttributeError
        If ``cell`` has no ``step``.
    ValueError
        If the shapes disagree with the cell (from the array module) or ``h``
        is empty (the max of nothing).
    """
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
    cell : refnet cell
        Any cell under the contract of :class:`refnet.cells.base.Cell`
        (``step``, ``param_shapes``, ``check_params``, ``input_size``, ``n_state``).
    theta : dict {name: array}
        The cell's params (``cell.param_shapes()``).
    x : (B, I) array
        Static input, the same at every iteration; B >= 1.
    h0 : (B, n_state) array or None
        Start; None for zeros.
    tol : float or None
        Absolute part of the rule, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most applications of F beyond the first, >= 0.
    t : int or None
        The step index passed to ``cell.step`` (cells whose parameters vary
        with t read it); None otherwise.

    Returns
    -------
    Equilibrium
        h, the residual trace, the iterations, the verdict and the SolveInfo.

    Raises
    ------
    TypeError
        If ``cell`` lacks a contract method or attribute, ``theta`` is not a
        dict of floating arrays, ``x``/``h0`` is not an array, dtypes are
        mixed, or ``tol``/``rtol``/``maxiter`` is not a number of the right kind.
    ValueError
        If a shape disagrees with the cell, the batch is empty, an input or
        parameter holds NaN/Inf, or ``tol``/``rtol``/``maxiter`` is out of range.
    refnet.ConvergenceError
        If some example has ‖F(h)_b − h_b‖_∞ > tol + rtol ‖h_b‖_∞ after
        ``maxiter``, or its iterate ran away (the map has no fixed point
        within reach), unless ``refnet.solvers.failures("warn"|"ignore")``
        is in force.
    refnet.NumericalError
        If the iteration diverges or overflows (names the first non-finite
        iteration).
    """
    return _solve(nonlinear.fixed_point, cell, theta, x, h0, t, tol=tol, rtol=rtol, maxiter=maxiter)


def anderson(cell, theta, x, h0=None, *, tol=None, rtol=None, maxiter=200, m=5, t=None):
    """Anderson acceleration of a cell's fixed-point iteration (:func:`refnet.solvers.nonlinear.anderson`).

    Anderson (1965) mixing of G(h) = F(h) − h over the last ``m`` residuals,
    F(h) = cell.step(θ, h, x, t)[0]; the claim is re-measured on the returned h.

    Parameters
    ----------
    cell : refnet cell
        Any cell under the contract of :class:`refnet.cells.base.Cell`
        (``step``, ``param_shapes``, ``check_params``, ``input_size``, ``n_state``).
    theta : dict {name: array}
        The cell's params (``cell.param_shapes()``).
    x : (B, I) array
        Static input, the same at every iteration; B >= 1.
    h0 : (B, n_state) array or None
        Start; None for zeros.
    tol : float or None
        Absolute part of the rule, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most Anderson iterations, >= 1.
    m : int
        Mixing depth: how many past residuals are combined, >= 1.
    t : int or None
        The step index passed to ``cell.step`` (cells whose parameters vary
        with t read it); None otherwise.

    Returns
    -------
    Equilibrium
        h, the residual trace, the iterations, the verdict and the SolveInfo.

    Raises
    ------
    TypeError
        If ``cell`` lacks a contract method or attribute, ``theta`` is not a
        dict of floating arrays, ``x``/``h0`` is not an array, dtypes are
        mixed, or ``tol``/``rtol``/``maxiter``/``m`` is not a number of the right kind.
    ValueError
        If a shape disagrees with the cell, the batch is empty, an input or
        parameter holds NaN/Inf, or ``tol``/``rtol``/``maxiter``/``m`` is out of range.
    refnet.ConvergenceError
        If some example has ‖F(h)_b − h_b‖_∞ > tol + rtol ‖h_b‖_∞ after
        ``maxiter``, or its iterate ran away (the map has no fixed point
        within reach), unless ``refnet.solvers.failures("warn"|"ignore")``
        is in force.
    refnet.NumericalError
        If the iteration diverges or overflows (names the first non-finite
        iteration).
    """
    return _solve(nonlinear.anderson, cell, theta, x, h0, t, tol=tol, rtol=rtol, maxiter=maxiter, m=m)


def newton_krylov(cell, theta, x, h0=None, *, tol=None, rtol=None, maxiter=50, t=None):
    """Newton–Krylov on a cell's G(h) = F(h) − h (:func:`refnet.solvers.nonlinear.newton_krylov`).

    Finds equilibria with ρ(J) >= 1 too (Knoll & Keyes 2004), F(h) =
    cell.step(θ, h, x, t)[0].

    Parameters
    ----------
    cell : refnet cell
        Any cell under the contract of :class:`refnet.cells.base.Cell`
        (``step``, ``param_shapes``, ``check_params``, ``input_size``, ``n_state``).
    theta : dict {name: array}
        The cell's params (``cell.param_shapes()``).
    x : (B, I) array
        Static input, the same at every iteration; B >= 1.
    h0 : (B, n_state) array or None
        Start; None for zeros.
    tol : float or None
        Absolute part of the rule, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most Newton steps, >= 1.
    t : int or None
        The step index passed to ``cell.step`` (cells whose parameters vary
        with t read it); None otherwise.

    Returns
    -------
    Equilibrium
        h, the residual trace, the Newton steps, the verdict and the SolveInfo.

    Raises
    ------
    TypeError
        If ``cell`` lacks a contract method or attribute, ``theta`` is not a
        dict of floating arrays, ``x``/``h0`` is not an array, dtypes are
        mixed, or ``tol``/``rtol``/``maxiter`` is not a number of the right kind.
    ValueError
        If a shape disagrees with the cell, the batch is empty, an input or
        parameter holds NaN/Inf, or ``tol``/``rtol``/``maxiter`` is out of range.
    refnet.ConvergenceError
        If some example has ‖F(h)_b − h_b‖_∞ > tol + rtol ‖h_b‖_∞ after
        ``maxiter``, or its iterate ran away (the map has no fixed point
        within reach), unless ``refnet.solvers.failures("warn"|"ignore")``
        is in force.
    refnet.SingularSystemError
        If Newton's system (J − I) δ = −(F(h) − h) is singular (e.g. J = I),
        so no step can be taken (same policy as ConvergenceError).
    refnet.NumericalError
        If the iteration diverges or overflows (names the first non-finite
        iteration).
    """
    return _solve(nonlinear.newton_krylov, cell, theta, x, h0, t, tol=tol, rtol=rtol, maxiter=maxiter)
