"""Recurrent back-propagation: one implicit VJP at an equilibrium, four solvers (Liao et al. 2018).

At h* = F(x, w, h*) the implicit function theorem gives (Liao et al. 2018,
"Reviving and Improving Recurrent Back-Propagation", Eqs. 1–2; Almeida 1987,
Pineda 1987)

    dL/dw = zᵀ ∂F/∂w,      (I − Jᵀ) z = ∂L/∂h*,      J = ∂F/∂h at h*,

so the gradient needs no trajectory, only a linear solve.  :func:`implicit_vjp`
is that VJP, given any linear solver ``solve(A, b) -> (z, info)`` of
:mod:`refnet.solvers.linear`; the named variants differ only in the solver:

=================  ================================================================  ===================
:func:`rbp`        z ← Jᵀ z + ∂L/∂h* (Eq. 3) until converged                         Alg. 1
:func:`neumann_rbp`  z = Σ_{k=0..K} (Jᵀ)^k ∂L/∂h*                                     Alg. 2, Props 1–3
:func:`cg_rbp`     CG on (I − J)(I − Jᵀ) z = (I − J) ∂L/∂h*, optional damping        CG-RBP (§3)
:func:`gmres_rbp`  GMRES on (I − Jᵀ) z = ∂L/∂h* (Eq. 2) directly                     (Saad & Schultz 1986)
=================  ================================================================  ===================

Every product with Jᵀ is the cell's hand-written ``step_vjp`` at h*, every
product with J its ``step_jvp`` (:func:`refnet.solvers.linearise`); the
batch is one block-diagonal operator over B·n.  The caller gives the
cotangent ``dh`` = ∂L/∂h* (B, n_state) and gets back dθ = zᵀ ∂F/∂θ (summed
over the batch, as every refnet VJP), dx = zᵀ ∂F/∂x (B, I) and z.

**Index convention (Liao et al. 2018, Alg. 2 and Prop. 2; README, Reference).**
Neumann-RBP(K) sums K + 1 terms (Jᵀ)^0 … (Jᵀ)^K;
back-propagating through m applications of F sums m terms.  So Neumann-RBP(K)
equals TBPTT through K + 1 applications of F on a trajectory that sat at h*
for those steps (Prop. 2, with this indexing); K → ∞ gives RBP and BPTT
through a converged trajectory (Prop. 1), with error
‖(I − Jᵀ)^{-1}‖ ‖J‖^{K+1} ‖∂L/∂h*‖ at most (Prop. 3).

**Claims, premises, failures.**
- ``converged`` means that every example b of the batch meets
  ‖∂L/∂h*_b − (I − J_bᵀ) z_b‖₂ <= max(rtol ‖∂L/∂h*_b‖₂, atol) on the
  returned z, each against its own cotangent, for every variant (CG-RBP's
  normal equations are only its means; one 2-norm over the stacked batch
  would let an example with a small cotangent go unsolved).  A solve that
  leaves any example short raises, naming the example.  Neumann-RBP without
  a tolerance claims nothing (None).
- A singular or nearly singular I − J (the residual left is a null vector of
  I − J) raises :class:`refnet.SingularSystemError`; any other miss raises
  :class:`refnet.ConvergenceError`; both carry the residual and the
  iteration count.  ``with refnet.solvers.failures("warn"):`` turns them into
  a :class:`refnet.solvers.ConvergenceWarning` (policy in
  :mod:`refnet.solvers.info`).  NaN/Inf always raises :class:`refnet.NumericalError`.
- h* must be an equilibrium: every example has ‖F(h*)_b − h*_b‖_∞ <=
  ``equilibrium_tol`` + ``equilibrium_rtol`` ‖h*_b‖_∞ (defaults
  :data:`refnet.solvers.DEFAULT_TOL` and :data:`refnet.solvers.DEFAULT_FP_RTOL`
  of the dtype: the rule the fixed-point solvers certify), else ValueError; pass
  ``check_equilibrium=False`` to linearise at any state (as the
  truncated-backprop uses of Neumann-RBP do), the residual is then reported
  in ``fixed_point_residual``.
- Neumann-RBP reports the growth of ‖(Jᵀ)^k ∂L/∂h*‖ per example (an estimate
  of ρ(J)) in ``info.diagnostics["growth"]`` and warns
  (:class:`refnet.solvers.SeriesDivergenceWarning`) where it is >= 1.
"""
import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Optional

import numpy

from .._validate import as_array, check_array, check_int, check_same_dtype
from ..backend import to_numpy, xp_of
from ..errors import NumericalError
from ..solvers import linear
from ..solvers.info import DEFAULT_FP_RTOL, DEFAULT_TOL, SolveInfo, settle
from ..solvers.operators import linearise
from ..solvers.problem import check_problem, check_tolerance
from .trainable import check_trainable, restrict

__all__ = ["ImplicitGradient", "implicit_vjp", "rbp", "cg_rbp", "gmres_rbp", "neumann_rbp"]


@dataclass(frozen=True)
class ImplicitGradient:
    """What an RBP variant returns (Liao et al. 2018, Eqs. 1–2): the adjoint z and the gradients it gives.

    Attributes
    ----------
    dtheta : dict {name: array}
        zᵀ ∂F/∂θ summed over the batch, shaped as in ``cell.param_shapes()`` (trainable ones only).
    dx : (B, I) array
        zᵀ ∂F/∂x, per example.
    z : (B, n_state) array
        The adjoint, the solution of (I − Jᵀ) z = ∂L/∂h*.
    iterations : int
        The solver's iterations (what each variant counts: updates of z, K, CG iterations,
        products with I − Jᵀ).
    residual : float
        ‖∂L/∂h* − (I − Jᵀ) z‖₂ over the stacked batch.
    converged : bool or None
        Whether every example met its own rule, ``info.example_residual`` <=
        ``info.example_tolerance``; None where no tolerance was asked (Neumann-RBP without rtol).
    fixed_point_residual : float
        max_b ‖F(h*)_b − h*_b‖_∞, the equilibrium's own residual.
    info : refnet.solvers.info.SolveInfo
        The solver's record: residual traces, per-example results, diagnostics.
    """

    dtheta: dict
    dx: Any
    z: Any
    iterations: int
    residual: float
    converged: Optional[bool]
    fixed_point_residual: float
    info: SolveInfo = None


def implicit_vjp(cell, theta, x, h_star, dh, *, solve, t=None, check_equilibrium=True,
                 equilibrium_tol=None, equilibrium_rtol=None, name="implicit_vjp", trainable=None):
    """The VJP of the equilibrium map θ, x ↦ h*(θ, x) (Liao et al. 2018, Eqs. 1–2; Almeida 1987, Pineda 1987).

    Linearises F at h*, solves (I − Jᵀ) z = ∂L/∂h* (Eq. 2) with ``solve``, applies
    the failure policy to its :class:`~refnet.solvers.info.SolveInfo`, and returns
    dθ = zᵀ ∂F/∂θ, dx = zᵀ ∂F/∂x from one more ``step_vjp``.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``step``, ``step_vjp`` and ``step_jvp``: F(x, θ, h) = ``cell.step``.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (B, I) array-like
        The static input (the same at every application of F).
    h_star : (B, n_state) array-like
        The equilibrium h* = F(x, θ, h*) (e.g. ``refnet.fixed_point(...).h``).
    dh : (B, n_state) array-like
        The cotangent ∂L/∂h*.
    solve : callable
        ``solve(A, b) -> (z, SolveInfo)`` on A = I − Jᵀ, an
        :class:`~refnet.solvers.operators.IdentityMinus` on (B, n_state); e.g.
        ``functools.partial(refnet.solvers.gmres, rtol=1e-12)``.
    t : int or None
        The time index passed to ``cell.step`` (None for most cells).
    check_equilibrium : bool
        Whether to require ‖F(h*)_b − h*_b‖_∞ <= equilibrium_tol + equilibrium_rtol ‖h*_b‖_∞ for
        every example b (default True); False linearises at any state, reporting the residual in
        ``fixed_point_residual``.
    equilibrium_tol : float or None
        Absolute part of that rule, >= 0, in h's units; None for ``DEFAULT_TOL`` of the dtype.
    equilibrium_rtol : float or None
        Relative part, >= 0 (dimensionless); None for ``DEFAULT_FP_RTOL`` of the dtype.
    name : str
        The entry point named in messages (default ``"implicit_vjp"``).
    trainable : collection of str or None
        Names of the parameters in ``dtheta`` (default None: all); z and dx do not depend on it:
        the adjoint system is the state's.

    Returns
    -------
    ImplicitGradient
        dθ, dx (B, I), z (B, n_state), the iteration count, residuals and the solver's info.

    Raises
    ------
    TypeError
        ``cell`` lacks ``step``/``step_vjp``/``step_jvp``; ``theta`` not a dict of floating
        arrays; an argument that is neither an array nor a nested list of numbers; mixed dtypes or backends; ``solve`` not
        callable; ``check_equilibrium`` not a bool; a tolerance not a number; ``trainable`` a str.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, a negative or
        non-finite tolerance, a ``trainable`` name the cell lacks, or ``h_star`` not an
        equilibrium (with ``check_equilibrium``); and what ``solve`` raises for its own arguments.
    refnet.SingularSystemError
        The solve reports I − J (nearly) singular (unless ``refnet.solvers.failures("warn")`` is
        in force, which warns instead).
    refnet.ConvergenceError
        The solve left some example short of its tolerance (same policy).
    refnet.NumericalError
        F(h*) is not finite, or the solve, dθ or dx overflowed.
    """
    x, dh = as_array("x", x), as_array("dh", dh)    # array-likes (torch tensors, lists) as bptt takes them
    h_star = check_problem(cell, theta, x, h_star, "h_star", needs=("step", "step_vjp", "step_jvp"))
    names = check_trainable(cell, trainable)
    check_array("dh", dh, shape=h_star.shape)
    check_same_dtype({"h_star": h_star, "dh": dh})
    if not callable(solve):
        raise TypeError(f"solve must be a callable (A, b) -> (z, SolveInfo), got {type(solve).__name__}")
    if not isinstance(check_equilibrium, bool):
        raise TypeError(f"check_equilibrium must be a bool, got {type(check_equilibrium).__name__}")
    equilibrium_tol = check_tolerance("equilibrium_tol", equilibrium_tol,
                                      DEFAULT_TOL[numpy.dtype(h_star.dtype)])
    equilibrium_rtol = check_tolerance("equilibrium_rtol", equilibrium_rtol,
                                       DEFAULT_FP_RTOL[numpy.dtype(h_star.dtype)])
    lin = linearise(cell, theta, x, h_star, t)
    per_example = to_numpy(lin.fixed_point_residual)
    fp_residual = float(per_example.max())
    if not math.isfinite(fp_residual):
        raise NumericalError(f"{name}: F(h_star) is not finite (example {int(numpy.argmax(~numpy.isfinite(per_example)))}): "
                             "the cell overflowed at h_star", where="F(h_star)")
    allowed = equilibrium_tol + equilibrium_rtol * to_numpy(xp_of(h_star).abs(h_star).max(axis=1))
    if check_equilibrium and (per_example > allowed).any():
        worst = int(numpy.argmax(per_example / numpy.maximum(allowed, numpy.finfo(float).tiny)))
        raise ValueError(f"h_star must be an equilibrium of the cell on x: ‖F(h_star) − h_star‖_∞ = "
                         f"{per_example[worst]:.3e} > equilibrium_tol + equilibrium_rtol ‖h_star‖_∞ = "
                         f"{allowed[worst]:.3e} (example {worst}); solve it further (refnet.fixed_point) "
                         "or pass check_equilibrium=False to linearise at a non-equilibrium")
    z, info = solve(lin.adjoint_system(), dh)
    if info.message:
        info = replace(info, solver=f"{name} ({info.solver})", message=f"{name}: {info.message}")
    settle(info, stacklevel=4)
    _, dtheta, dx = lin.vjp(z)
    dtheta = restrict(dtheta, names)
    xp = xp_of(z)
    for quantity, value in [("dx", dx)] + [(f"dtheta[{k!r}]", v) for k, v in dtheta.items()]:
        if not bool(xp.isfinite(value).all()):
            raise NumericalError(f"{name}: {quantity} is not finite (the adjoint z overflowed?)", where=quantity)
    return ImplicitGradient(dtheta, dx, z, info.iterations, info.residual, info.converged, fp_residual, info)


def rbp(cell, theta, x, h_star, dh, *, z0=None, rtol=None, atol=0.0, maxiter=1000, t=None,
        check_equilibrium=True, trainable=None):
    """Original RBP (Liao et al. 2018, Alg. 1): z_i = Jᵀ z_{i−1} + ∂L/∂h* (Eq. 3) by :func:`refnet.solvers.fixed_point_iteration`.

    Stops when every example b has ‖∂L/∂h*_b − (I − J_bᵀ) z_i,b‖₂ <=
    max(rtol ‖∂L/∂h*_b‖₂, atol) (Alg. 1's ‖z_{i+1} − z_i‖ is that residual):
    it iterates until the slowest example meets its own rule; it converges iff
    ρ(J) < 1.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``step``, ``step_vjp`` and ``step_jvp``: F(x, θ, h) = ``cell.step``.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (B, I) array-like
        The static input (the same at every application of F).
    h_star : (B, n_state) array-like
        The equilibrium h* = F(x, θ, h*) (e.g. ``refnet.fixed_point(...).h``).
    dh : (B, n_state) array-like
        The cotangent ∂L/∂h*.
    z0 : (B, n_state) array-like or None
        Start of the iteration; None for 0 (Liao et al.'s code draws U(0, 1):
        ``refnet.rng(seed).uniform(dh.shape)``).
    rtol : float or None
        Relative tolerance per example, >= 0 (dimensionless); None for ``DEFAULT_RTOL`` of the
        dtype.
    atol : float
        Absolute tolerance per example, >= 0, in the units of ∂L/∂h* (default 0).
    maxiter : int
        Most updates of z, >= 0 (default 1000).
    t : int or None
        The time index passed to ``cell.step`` (None for most cells).
    check_equilibrium : bool
        Whether to require ‖F(h*)_b − h*_b‖_∞ <= tol + rtol ‖h*_b‖_∞ for every example b (the
        dtype's defaults, :func:`implicit_vjp`); False linearises at any state.
    trainable : collection of str or None
        Names of the parameters in ``dtheta`` (default None: all); z and dx do not depend on it.

    Returns
    -------
    ImplicitGradient
        ``iterations`` counts updates of z.

    Raises
    ------
    TypeError
        ``cell`` lacks ``step``/``step_vjp``/``step_jvp``; ``theta`` not a dict of floating
        arrays; an argument that is neither an array nor a nested list of numbers; mixed dtypes or backends; a tolerance or
        iteration count of the wrong type; ``check_equilibrium`` not a bool; ``trainable`` a str.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, a negative or
        non-finite tolerance, an iteration count below its minimum, a ``trainable`` name the
        cell lacks, or ``h_star`` not an equilibrium (with ``check_equilibrium``).
    refnet.SingularSystemError
        I − J is (nearly) singular: the residual left is a null vector of I − J (unless
        ``refnet.solvers.failures("warn")`` is in force, which warns instead).
    refnet.ConvergenceError
        Some example missed its tolerance within the iterations (same policy); carries the
        residual and the iteration count.
    refnet.NumericalError
        F(h*), the solve's residual, z, dθ or dx is not finite.
    """
    if z0 is not None:
        z0 = as_array("z0", z0)
        check_array("z0", z0, shape=getattr(h_star, "shape", None))
    return implicit_vjp(cell, theta, x, h_star, dh, t=t, check_equilibrium=check_equilibrium, trainable=trainable,
                        name="rbp",
                        solve=partial(linear.fixed_point_iteration, x0=z0, rtol=rtol, atol=atol, maxiter=maxiter))


def neumann_rbp(cell, theta, x, h_star, dh, *, K, rtol=None, t=None, check_equilibrium=True, trainable=None):
    """Neumann-RBP(K) (Liao et al. 2018, Alg. 2): z = Σ_{k=0..K} (Jᵀ)^k ∂L/∂h* by :func:`refnet.solvers.neumann`.

    K + 1 terms, K VJPs (plus one for dθ): equals TBPTT through K + 1
    applications of F at h* (Prop. 2, module docstring).  The residual
    ‖(Jᵀ)^{K+1} ∂L/∂h*‖ is reported; without ``rtol`` no tolerance is
    claimed (``converged`` None); with it the rule of :func:`rbp` decides.
    Warns (:class:`refnet.solvers.SeriesDivergenceWarning`) where
    ‖(Jᵀ)^k ∂L/∂h*‖ grows (ρ(J) >= 1: Prop. 3 does not hold).

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``step``, ``step_vjp`` and ``step_jvp``: F(x, θ, h) = ``cell.step``.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (B, I) array-like
        The static input (the same at every application of F).
    h_star : (B, n_state) array-like
        The equilibrium h* = F(x, θ, h*) (e.g. ``refnet.fixed_point(...).h``).
    dh : (B, n_state) array-like
        The cotangent ∂L/∂h*.
    K : int
        The truncation, >= 0 (keyword-only): the number of products with Jᵀ.
    rtol : float or None
        Relative tolerance per example, >= 0; None claims no tolerance (``converged`` None).
    t : int or None
        The time index passed to ``cell.step`` (None for most cells).
    check_equilibrium : bool
        Whether to require ‖F(h*)_b − h*_b‖_∞ <= tol + rtol ‖h*_b‖_∞ for every example b (the
        dtype's defaults, :func:`implicit_vjp`); False linearises at any state.
    trainable : collection of str or None
        Names of the parameters in ``dtheta`` (default None: all); z and dx do not depend on it.

    Returns
    -------
    ImplicitGradient
        ``iterations`` = K.

    Raises
    ------
    TypeError
        ``cell`` lacks ``step``/``step_vjp``/``step_jvp``; ``theta`` not a dict of floating
        arrays; an argument that is neither an array nor a nested list of numbers; mixed dtypes or backends; a tolerance or
        iteration count of the wrong type; ``check_equilibrium`` not a bool; ``trainable`` a str.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, a negative or
        non-finite tolerance, an iteration count below its minimum, a ``trainable`` name the
        cell lacks, or ``h_star`` not an equilibrium (with ``check_equilibrium``).
    refnet.SingularSystemError
        I − J is (nearly) singular: the residual left is a null vector of I − J (unless
        ``refnet.solvers.failures("warn")`` is in force, which warns instead).
    refnet.ConvergenceError
        Some example missed its tolerance within the iterations (same policy); carries the
        residual and the iteration count.
    refnet.NumericalError
        F(h*), the solve's residual, z, dθ or dx is not finite.
    """
    return implicit_vjp(cell, theta, x, h_star, dh, t=t, check_equilibrium=check_equilibrium, trainable=trainable,
                        name="neumann_rbp", solve=partial(linear.neumann, rtol=rtol, maxiter=check_int("K", K, 0)))


def cg_rbp(cell, theta, x, h_star, dh, *, rtol=None, atol=0.0, maxiter=None, damping=0.0, t=None,
           check_equilibrium=True, trainable=None):
    """CG-RBP (Liao et al. 2018): CG on (I − J)(I − Jᵀ) z = (I − J) ∂L/∂h* by :func:`refnet.solvers.cg_normal`.

    Converged is decided on (I − Jᵀ) z = ∂L/∂h* itself, per example (the rule of
    :func:`rbp`), not on the normal equations (whose condition number is
    squared); ``damping`` η adds η I (Liao et al.'s code: 1e-5) and biases z by O(η).

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``step``, ``step_vjp`` and ``step_jvp``: F(x, θ, h) = ``cell.step``.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (B, I) array-like
        The static input (the same at every application of F).
    h_star : (B, n_state) array-like
        The equilibrium h* = F(x, θ, h*) (e.g. ``refnet.fixed_point(...).h``).
    dh : (B, n_state) array-like
        The cotangent ∂L/∂h*.
    rtol : float or None
        Relative tolerance per example, >= 0; None for ``DEFAULT_RTOL`` of the dtype.
    atol : float
        Absolute tolerance per example, >= 0, in the units of ∂L/∂h* (default 0).
    maxiter : int or None
        CG iterations in all, >= 1; None for 10·B·n.
    damping : float
        η >= 0 added to the normal equations' diagonal (default 0).
    t : int or None
        The time index passed to ``cell.step`` (None for most cells).
    check_equilibrium : bool
        Whether to require ‖F(h*)_b − h*_b‖_∞ <= tol + rtol ‖h*_b‖_∞ for every example b (the
        dtype's defaults, :func:`implicit_vjp`); False linearises at any state.
    trainable : collection of str or None
        Names of the parameters in ``dtheta`` (default None: all); z and dx do not depend on it.

    Returns
    -------
    ImplicitGradient
        ``iterations`` counts CG iterations.

    Raises
    ------
    TypeError
        ``cell`` lacks ``step``/``step_vjp``/``step_jvp``; ``theta`` not a dict of floating
        arrays; an argument that is neither an array nor a nested list of numbers; mixed dtypes or backends; a tolerance or
        iteration count of the wrong type; ``check_equilibrium`` not a bool; ``trainable`` a str.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, a negative or
        non-finite tolerance, an iteration count below its minimum, a ``trainable`` name the
        cell lacks, or ``h_star`` not an equilibrium (with ``check_equilibrium``).
    refnet.SingularSystemError
        I − J is (nearly) singular: the residual left is a null vector of I − J (unless
        ``refnet.solvers.failures("warn")`` is in force, which warns instead).
    refnet.ConvergenceError
        Some example missed its tolerance within the iterations (same policy); carries the
        residual and the iteration count.
    refnet.NumericalError
        F(h*), the solve's residual, z, dθ or dx is not finite.
    """
    return implicit_vjp(cell, theta, x, h_star, dh, t=t, check_equilibrium=check_equilibrium, trainable=trainable,
                        name="cg_rbp",
                        solve=partial(linear.cg_normal, rtol=rtol, atol=atol, maxiter=maxiter, damping=damping))


def gmres_rbp(cell, theta, x, h_star, dh, *, rtol=None, atol=0.0, restart=20, maxiter=None, t=None,
              check_equilibrium=True, trainable=None):
    """GMRES-RBP: GMRES(restart) on (I − Jᵀ) z = ∂L/∂h* (Liao et al. 2018, Eq. 2) by :func:`refnet.solvers.gmres`.

    The system itself (not the normal equations), no JVP, and no need for
    ρ(J) < 1 (only I − J invertible); GMRES is Saad & Schultz's (1986).
    Converged per example (the rule of :func:`rbp`).

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``step``, ``step_vjp`` and ``step_jvp``: F(x, θ, h) = ``cell.step``.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (B, I) array-like
        The static input (the same at every application of F).
    h_star : (B, n_state) array-like
        The equilibrium h* = F(x, θ, h*) (e.g. ``refnet.fixed_point(...).h``).
    dh : (B, n_state) array-like
        The cotangent ∂L/∂h*.
    rtol : float or None
        Relative tolerance per example, >= 0; None for ``DEFAULT_RTOL`` of the dtype.
    atol : float
        Absolute tolerance per example, >= 0, in the units of ∂L/∂h* (default 0).
    restart : int
        Krylov vectors per cycle, >= 1 (default 20).
    maxiter : int or None
        Most products with I − Jᵀ, >= 1, rounded up to whole restart cycles; None for 10·B·n.
    t : int or None
        The time index passed to ``cell.step`` (None for most cells).
    check_equilibrium : bool
        Whether to require ‖F(h*)_b − h*_b‖_∞ <= tol + rtol ‖h*_b‖_∞ for every example b (the
        dtype's defaults, :func:`implicit_vjp`); False linearises at any state.
    trainable : collection of str or None
        Names of the parameters in ``dtheta`` (default None: all); z and dx do not depend on it.

    Returns
    -------
    ImplicitGradient
        ``iterations`` counts products with I − Jᵀ.

    Raises
    ------
    TypeError
        ``cell`` lacks ``step``/``step_vjp``/``step_jvp``; ``theta`` not a dict of floating
        arrays; an argument that is neither an array nor a nested list of numbers; mixed dtypes or backends; a tolerance or
        iteration count of the wrong type; ``check_equilibrium`` not a bool; ``trainable`` a str.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, a negative or
        non-finite tolerance, an iteration count below its minimum, a ``trainable`` name the
        cell lacks, or ``h_star`` not an equilibrium (with ``check_equilibrium``).
    refnet.SingularSystemError
        I − J is (nearly) singular: the residual left is a null vector of I − J (unless
        ``refnet.solvers.failures("warn")`` is in force, which warns instead).
    refnet.ConvergenceError
        Some example missed its tolerance within the iterations (same policy); carries the
        residual and the iteration count.
    refnet.NumericalError
        F(h*), the solve's residual, z, dθ or dx is not finite.
    """
    return implicit_vjp(cell, theta, x, h_star, dh, t=t, check_equilibrium=check_equilibrium, trainable=trainable,
                        name="gmres_rbp",
                        solve=partial(linear.gmres, rtol=rtol, atol=atol, restart=restart, maxiter=maxiter))
