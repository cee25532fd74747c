"""The solver layer: linear operators from VJP/JVP, linear and nonlinear solvers, SolveInfo.

Below the cells in refnet's layers (the README's "Layout"): it imports only the
backend, errors and argument checks, and knows a cell only through its
duck-typed contract (``step``, ``step_vjp``, ``step_jvp``).  One concept per
module:

======================  =====================================================================
:mod:`.info`            :class:`SolveInfo` (claim + traces + per-example results), the failure
                        policy :func:`failures` / :func:`settle`, warnings
:mod:`.problem`         a cell on a static input: validation, its map F (:class:`CellMap`)
:mod:`.operators`       :class:`LinearOperator`, ``I − M``, a cell linearised at a point
                        (A = I − Jᵀ of Liao et al. 2018, Eq. 2)
:mod:`.linear`          ``solve(A, b, x0=None, *, rtol, atol, maxiter) -> (x, info)``:
                        fixed_point_iteration (RBP, Alg. 1), neumann (Alg. 2), cg_normal, gmres
:mod:`.nonlinear`       solvers of h = F(h) on a map F: fixed_point, anderson, newton_krylov,
                        hybr, fixed_point_then_hybr
:mod:`.equilibrium`     the same for a cell: ``refnet.fixed_point(cell, θ, x)`` -> Equilibrium
:mod:`.spectral`        ρ(J) by the power method
:mod:`.scipy_adapter`   the one place that knows SciPy's and cupyx's keyword and maxiter differences
======================  =====================================================================

The names re-exported here are the cell-level ones (``fixed_point`` is
:func:`.equilibrium.fixed_point`); the map-level solvers are
``refnet.solvers.nonlinear.fixed_point`` etc.
"""
from . import equilibrium, info, linear, nonlinear, operators, problem, scipy_adapter, spectral
from .equilibrium import Equilibrium, anderson, fixed_point, newton_krylov, residual
from .info import (CHECK_EVERY, DEFAULT_FP_RTOL, DEFAULT_RTOL, DEFAULT_TOL, RUNAWAY, ConvergenceWarning, SeriesDivergenceWarning,
                   SolveInfo, failure_mode, failures, settle)
from .linear import cg_normal, fixed_point_iteration, gmres, neumann
from .operators import IdentityMinus, LinearOperator, Linearisation, linearise
from .problem import CellMap
from .spectral import power_method, spectral_radius

__all__ = [
    "equilibrium", "info", "linear", "nonlinear", "operators", "problem", "scipy_adapter", "spectral",
    "Equilibrium", "anderson", "fixed_point", "newton_krylov", "residual",
    "CHECK_EVERY", "DEFAULT_FP_RTOL", "DEFAULT_RTOL", "DEFAULT_TOL", "RUNAWAY", "ConvergenceWarning", "SeriesDivergenceWarning",
    "SolveInfo", "failure_mode", "failures", "settle",
    "cg_normal", "fixed_point_iteration", "gmres", "neumann",
    "IdentityMinus", "LinearOperator", "Linearisation", "linearise", "CellMap",
    "power_method", "spectral_radius",
]
