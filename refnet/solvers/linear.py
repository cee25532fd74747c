"""Linear solvers ``solve(A, b, x0=None, *, rtol, atol, maxiter) -> (x, SolveInfo)`` (scipy.sparse.linalg's shape).

A is a :class:`~refnet.solvers.operators.LinearOperator` on arrays of shape
``A.vshape`` (for recurrent back-propagation, A = I − Jᵀ on (B, n): Liao et
al. 2018, "Reviving and Improving Recurrent Back-Propagation", Eq. 2) or a
dense square matrix.

**One stopping rule, on the caller's system, for every example.**  For a
block-diagonal A on (B, n) (a batch: example b's block A_b acts on row b)
every solver here reports

    converged  ⇔  for every example b:  ‖b_b − A_b x_b‖₂ <= max(rtol ‖b_b‖₂, atol),

each example held to its own right-hand side, measured by refnet on the
returned x — never the residual of a surrogate such as the normal
equations, and never one 2-norm over the stacked batch (that rule lets an
example with a small ‖b_b‖ stay unsolved while the others dominate the
norm: its gradient would come back wrong by orders of magnitude).  An
example with b_b = 0 and ``atol`` = 0 has no scale of its own; it is held to
rtol ‖b‖₂ of the whole batch (its exact answer is x_b = 0, which every solver
here returns from a zero start).  For an operator that is not block-diagonal
the batch is one example.  ``rtol`` defaults to
:data:`~refnet.solvers.info.DEFAULT_RTOL` of the dtype.

The batch stays one operator (one batched product per iteration).  The
Krylov solvers run on the row-equilibrated system A y = D⁻¹ b, D = diag(each
example's threshold) (A commutes with D because it is block-diagonal), to
‖D⁻¹(b − A x)‖₂ <= 1, which implies every example's rule (D is floored at
√u ‖b_b‖ so that D⁻¹ b cannot overflow; the target then shrinks by the same
factor); refnet then
re-measures each example and, where the backend's recursive residual was
optimistic, restarts from x with a tighter target (at most 3 times).

**Singular systems.**  When a solve fails, refnet measures ‖Aᵀ r‖ / ‖r‖
per example, an upper bound on the smallest singular value of A seen
along the residual r = b − A x.  Where it is at most
:data:`~refnet.solvers.info.SINGULAR_TOL` (√u), r is numerically a null
vector of Aᵀ: b has a component outside A's range, no x can remove it, and
``info.singular`` is set (:func:`~refnet.solvers.info.settle` then raises
:class:`refnet.SingularSystemError`).  This is how a zero returned by CG for
a singular I − J (J = I: the normal equations' right-hand side vanishes) is
caught instead of reported as converged.

=============================  ===============================================================
:func:`fixed_point_iteration`  x ← x + (b − A x) = M x + b for A = I − M (RBP, Alg. 1)
:func:`neumann`                x = Σ_{k=0..K} M^k b for A = I − M (Neumann-RBP, Alg. 2)
:func:`cg_normal`              CG on Aᵀ A x = Aᵀ b (CG-RBP), optional damping
:func:`gmres`                  restarted GMRES on A x = b
=============================  ===============================================================

None of them raises for non-convergence: ``info.converged`` is False and
``info.message`` says why (see :mod:`refnet.solvers.info` for the policy
applied by the entry points).  NaN or Inf raises :class:`refnet.NumericalError`.
"""
import math
import warnings

import numpy

from .._validate import check_array, check_int
from ..backend import to_numpy, xp_of
from ..errors import NumericalError
from . import scipy_adapter
from .info import (CHECK_EVERY, DEFAULT_RTOL, SINGULAR_TOL, Lowest, Recorder, SeriesDivergenceWarning,
                   SolveInfo, check_interval, raise_non_finite)
from .operators import LinearOperator, as_operator
from .problem import check_tolerance

__all__ = ["fixed_point_iteration", "neumann", "cg_normal", "gmres", "NORM"]

NORM = "2-norm of b − A x over all entries"


def _norms(A, v):
    """Per-example 2-norms (B,) of v for a block-diagonal A on (B, n); else the one norm as (1,)."""
    xp = xp_of(v)
    if A.block_diagonal:
        return xp.sqrt((v * v).sum(axis=1))
    return xp.sqrt((v * v).sum()).reshape(1)


def _total(norms):
    xp = xp_of(norms)
    return xp.sqrt((norms * norms).sum())


def _rows(A, v):
    """A per-example (B,) array shaped to scale the rows of an array of ``A.vshape``."""
    return v.reshape(-1, 1) if A.block_diagonal else v


class _System:
    """A x = b validated once: operator, tolerances, ‖b‖, per-example thresholds (module docstring)."""

    def __init__(self, name, A, b, x0, rtol, atol, claim=True):
        self.name = name
        self.A = A = as_operator(A)
        check_array("b", b, shape=A.vshape)
        if b.dtype != A.dtype:
            raise TypeError(f"mixed dtypes: A is {A.dtype} but b is {b.dtype}; cast them to one dtype")
        if x0 is not None:
            check_array("x0", x0, shape=A.vshape)
            if x0.dtype != b.dtype:
                raise TypeError(f"mixed dtypes: b is {b.dtype} but x0 is {x0.dtype}; cast them to one dtype")
        self.b, self.xp, self.claim = b, xp_of(b), claim
        self.rtol = check_tolerance("rtol", rtol, DEFAULT_RTOL[numpy.dtype(b.dtype)])
        self.atol = check_tolerance("atol", atol, 0.0)
        self.b_norms = _norms(A, b)
        self.b_norm = float(_total(self.b_norms))
        # Stacked max(rtol ‖b‖, atol): reported as ``info.tolerance``; it decides nothing.
        self.threshold = max(self.rtol * self.b_norm, self.atol)
        xp = self.xp
        ex = xp.maximum(self.rtol * self.b_norms, self.atol)
        # b_b = 0 with atol = 0 gives no scale of its own: the batch's (module docstring).
        self.ex_threshold = xp.where(ex > 0, ex, self.threshold)
        self.tiny = float(numpy.finfo(b.dtype).tiny)
        # Row scale D of the equilibrated system: each example's threshold, but at least √u ‖b_b‖
        # so that D⁻¹ b cannot overflow for a tiny rtol (1 where everything is 0: b = 0, atol = 0).
        # The Krylov target ‖D⁻¹ r‖₂ <= target (<= 1) then implies every example's rule.
        scale = xp.maximum(self.ex_threshold, float(numpy.sqrt(numpy.finfo(b.dtype).eps)) * self.b_norms)
        self.scale = xp.where(scale > 0, scale, 1.0).astype(b.dtype)
        self.target = float((self.ex_threshold / self.scale).min()) if bool((scale > 0).all()) else 1.0
        self.recorder = Recorder(self.xp)
        self.lowest = None

    def record(self, i, x, r_norms):
        """Trace ‖r‖ of iterate x and keep every example's best (device operations only)."""
        total = _total(r_norms)
        self.recorder.record(i, total, total / max(self.b_norm, self.tiny))
        if self.lowest is None:
            self.lowest = Lowest(x, r_norms, i)
        else:
            self.lowest.update(x, r_norms, i)
        return total

    def met(self, r_norms):
        """Whether every example meets its own threshold (one host read)."""
        return bool((r_norms <= self.ex_threshold).all())

    def worst_ratio(self, r_norms):
        """max_b ‖r_b‖ / threshold_b on the host: how far the worst example is from its rule."""
        return float((r_norms / self.xp.maximum(self.ex_threshold, self.tiny)).max())

    def finish(self, x, iterations, r=None, diagnostics=None, context=""):
        """Measure ‖b − A x‖ on the returned x and build its SolveInfo (module docstring)."""
        A = self.A
        if r is None:
            r = self.b - A.matvec(x)
        r_norms = _norms(A, r)
        self.record(iterations, x, r_norms)
        residual = float(_total(r_norms))
        if not math.isfinite(residual):
            raise_non_finite(self.name, "the residual ‖b − A x‖₂", self.recorder, iterations)
        example_residual = to_numpy(r_norms).astype(float)
        example_threshold = to_numpy(self.ex_threshold).astype(float)
        diagnostics = dict(diagnostics or {})
        converged = example_converged = None
        singular, message = False, ""
        if self.claim:
            example_converged = example_residual <= example_threshold
            converged = bool(example_converged.all())
        if converged is False:
            unmet = numpy.flatnonzero(~example_converged)
            worst = int(unmet[numpy.argmax(example_residual[unmet] / numpy.maximum(example_threshold[unmet],
                                                                                   self.tiny))])
            shown = ", ".join(str(int(i)) for i in unmet[:10]) + (", …" if unmet.size > 10 else "")
            message = (f"{self.name}: example{'s' if unmet.size > 1 else ''} {shown} of {len(example_residual)} "
                       f"not solved: example {worst} has ‖b_b − A_b x_b‖₂ = {example_residual[worst]:.3e} > "
                       f"max(rtol ‖b_b‖₂, atol) = {example_threshold[worst]:.3e} after {iterations} "
                       f"iterations{context}")
            if A.has_rmatvec:
                bound = to_numpy(_norms(A, A.rmatvec(r))).astype(float) / numpy.maximum(
                    example_residual, self.tiny)
                diagnostics["sigma_min_bound"] = bound
                failed = ~example_converged if (~example_converged).any() else numpy.ones_like(
                    example_converged)
                worst = int(numpy.flatnonzero(failed)[numpy.argmin(bound[failed])])
                limit = SINGULAR_TOL[numpy.dtype(self.b.dtype)]
                if bound[worst] <= limit:
                    singular = True
                    message += (f"; A is singular or nearly so: the residual left is a null vector of Aᵀ "
                                f"(‖Aᵀ r‖/‖r‖ = {bound[worst]:.1e} <= {limit:.1e}, example {worst}), so "
                                "no x solves the system to this tolerance")
        abs_trace, rel_trace, trace_at = self.recorder.host()
        lowest = self.lowest
        return SolveInfo(
            solver=self.name, converged=converged, iterations=int(iterations), residual=residual,
            tolerance=self.threshold if self.claim else None, norm=NORM, abs_trace=abs_trace,
            example_tolerance=example_threshold if self.claim else None,
            rel_trace=rel_trace, trace_at=trace_at, lowest=float(_total(lowest.norms)),
            lowest_x=lowest.x, example_residual=example_residual, example_converged=example_converged,
            singular=singular, diagnostics=diagnostics, message=message)


def _series_operator(A):
    """M with A = I − M: ``A.M`` for an IdentityMinus (exact products), else v ↦ v − A v."""
    M = getattr(A, "M", None)
    if M is not None:
        return M.matvec
    return lambda v: v - A.matvec(v)


def fixed_point_iteration(A, b, x0=None, *, rtol=None, atol=0.0, maxiter=1000):
    """Fixed-point (Richardson) iteration x_{i+1} = M x_i + b for A = I − M: original RBP (Liao et al. 2018, Alg. 1, Eq. 3).

    With A = I − Jᵀ it is RBP's z_i = Jᵀ z_{i−1} + ∂L/∂h* (Alg. 1, line 4).
    Alg. 1 stops on ‖z_i − z_{i−1}‖, which is the residual ‖b − A z_{i−1}‖₂;
    here the rule is ‖b_b − A_b x_b‖₂ <= max(rtol ‖b_b‖₂, atol) for every
    example b on the iterate returned (module docstring): the iteration runs
    on until the slowest example meets its own rule.  Checked every iteration on NumPy and every
    :data:`~refnet.solvers.info.CHECK_EVERY` on CuPy.  Converges for every b
    iff ρ(M) < 1.

    Parameters
    ----------
    A : LinearOperator or (N, N) array
        A = I − M; an :class:`~refnet.solvers.operators.IdentityMinus` gives
        M v exactly (otherwise M v = v − A v).
    b : array of shape ``A.vshape``, e.g. (B, n)
        Right-hand side (for RBP, ∂L/∂h*), floating, finite, A's dtype.
    x0 : array of shape ``A.vshape`` or None
        Start, b's dtype; None for zeros (Liao et al.'s code draws U(0, 1)).
    rtol : float or None
        Relative part of the rule (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_RTOL` of the dtype (1e-10 in float64).
    atol : float
        Absolute part of the rule (units of b), >= 0.
    maxiter : int
        Most updates of x, >= 0.

    Returns
    -------
    x : array of shape ``A.vshape``
        The last iterate x_i, i = ``info.iterations`` updates.
    info : SolveInfo
        ``converged`` per example against the rule above.

    Raises
    ------
    TypeError
        If ``A`` is neither a LinearOperator nor a square floating matrix,
        ``b``/``x0`` is not a floating array, dtypes differ, or a tolerance or
        count is not a number of the right kind.
    ValueError
        If ``b``/``x0`` does not have shape ``A.vshape`` or holds NaN/Inf, a
        tolerance is negative or infinite, or a count is below its minimum.
    refnet.NumericalError
        The iteration overflowed (ρ(M) > 1), naming the first non-finite iteration.
    """
    s = _System("fixed_point_iteration", A, b, x0, rtol, atol)
    maxiter = check_int("maxiter", maxiter, 0)
    M = _series_operator(s.A)
    xp = s.xp
    x = xp.zeros_like(b) if x0 is None else x0
    every = check_interval(xp)
    for i in range(maxiter + 1):
        Mx = M(x)
        r = b - x + Mx                                       # b − (I − M) x
        r_norms = _norms(s.A, r)
        total = s.record(i, x, r_norms)
        if i % every == 0 or i == maxiter:
            value = float(total)
            if not math.isfinite(value):
                raise_non_finite(s.name, "the residual ‖b − A x‖₂", s.recorder, i)
            if s.met(r_norms):
                return x, s.finish(x, i, r)
        if i < maxiter:
            x = Mx + b                                       # Alg. 1, line 4
    return x, s.finish(x, maxiter, r)


def neumann(A, b, x0=None, *, rtol=None, atol=0.0, maxiter):
    """Truncated Neumann series x = Σ_{k=0..K} M^k b for A = I − M: Neumann-RBP (Liao et al. 2018, Alg. 2).

    v_0 = g_0 = b;  v_k = M v_{k−1},  g_k = g_{k−1} + v_k  for k = 1..K = ``maxiter``;
    returns g_K: K products with M, K + 1 terms.  Its residual is
    b − A g_K = M^{K+1} b.  Prop. 3: ‖g_K − A^{-1} b‖ <= ‖A^{-1}‖ ‖M‖^{K+1} ‖b‖
    when the series converges (ρ(M) < 1).

    A truncated series claims no tolerance: with ``rtol`` None and ``atol``
    0 (default) ``info.converged`` is None; given either, the rule
    ‖b_b − A_b g_K,b‖₂ <= max(rtol ‖b_b‖₂, atol) for every example b decides
    it (module docstring).

    **Divergence diagnostic.**  The norms ‖v_k‖ = ‖M^k b‖ per example are
    the power method on M from b: ``info.diagnostics["growth"]`` (B,) is
    their mean growth factor per term over k = ⌊K/2⌋..K, an estimate of
    ρ(M) (a lower bound where b misses the dominant eigenvector), and
    ``["term_norms"]`` (K + 1, B) the norms themselves.  Where a growth factor
    is >= 1 the terms are not shrinking: a
    :class:`~refnet.solvers.info.SeriesDivergenceWarning` says so, since the
    series cannot converge there and Prop. 3's bound does not apply.

    Parameters
    ----------
    A : LinearOperator or (N, N) array
        A = I − M (an IdentityMinus gives M v exactly).
    b : array of shape ``A.vshape``, e.g. (B, n)
        Right-hand side (for RBP, ∂L/∂h*), floating, finite, A's dtype.
    x0 : None
        Must be None: the series starts at b (Alg. 2, line 1); a start belongs
        to :func:`fixed_point_iteration`.
    rtol : float or None
        Relative part of the rule, >= 0; None (default) claims no tolerance
        unless ``atol`` is given.
    atol : float
        Absolute part of the rule (units of b), >= 0; 0 (default) claims none
        unless ``rtol`` is given.
    maxiter : int
        K, the number of terms after the first, >= 0.

    Returns
    -------
    x : array of shape ``A.vshape``
        g_K = Σ_{k=0..K} M^k b.
    info : SolveInfo
        ``iterations`` = K; ``diagnostics["growth"]`` (B,) and
        ``["term_norms"]`` (K + 1, B) as above.

    Warns
    -----
    SeriesDivergenceWarning
        Where an example's growth factor is >= 1.

    Raises
    ------
    TypeError
        If ``A`` is neither a LinearOperator nor a square floating matrix,
        ``b``/``x0`` is not a floating array, dtypes differ, or a tolerance or
        count is not a number of the right kind.
    ValueError
        If ``b``/``x0`` does not have shape ``A.vshape`` or holds NaN/Inf, a
        tolerance is negative or infinite, a count is below its minimum, or
        ``x0`` is not None.
    refnet.NumericalError
        A term overflowed, naming the first non-finite one.
    """
    if x0 is not None:
        raise ValueError("x0 must be None for neumann: the series starts at b (Liao et al. 2018, Alg. 2, "
                         f"line 1), got an array of shape {getattr(x0, 'shape', None)}; use "
                         "fixed_point_iteration for a start")
    claim = rtol is not None or (atol is not None and not isinstance(atol, bool) and atol != 0)
    s = _System("neumann", A, b, None, rtol, atol, claim=claim)
    K = check_int("maxiter", maxiter, 0)
    M = _series_operator(s.A)
    every = check_interval(s.xp)
    v = g = b
    term_norms = [_norms(s.A, v)]
    for k in range(1, K + 1):
        v = M(v)                                             # Alg. 2, line 3
        term_norms.append(_norms(s.A, v))
        total = s.record(k - 1, g, term_norms[-1])           # ‖b − A g_{k−1}‖ = ‖M^k b‖
        if k % every == 0 and not math.isfinite(float(total)):
            raise_non_finite(s.name, "the term ‖M^k b‖₂", s.recorder, k)
        g = g + v                                            # Alg. 2, line 4
    xp = s.xp
    norms = to_numpy(xp.stack(term_norms)).astype(float)     # one transfer: (K + 1, B)
    diagnostics = {"term_norms": norms, "growth": None}
    if K >= 1:
        half = K // 2
        with numpy.errstate(divide="ignore", invalid="ignore"):
            growth = numpy.where(norms[half] > 0, (norms[K] / norms[half]) ** (1.0 / (K - half)), 0.0)
        diagnostics["growth"] = growth
        if numpy.isfinite(growth).all() and (growth >= 1.0).any():
            worst = int(growth.argmax())
            warnings.warn(f"neumann: ‖M^k b‖ grew by a factor {growth[worst]:.4g} per term over k = {half}..{K} "
                          f"(example {worst}): the series is not converging (ρ(M) >= 1 likely), so g_K "
                          "has no error bound (Liao et al. 2018, Prop. 3 needs a convergent series)",
                          SeriesDivergenceWarning, stacklevel=2)
    return g, s.finish(g, K, diagnostics=diagnostics)


def _check_maxiter_or_none(maxiter, default):
    return default if maxiter is None else check_int("maxiter", maxiter, 1)


def cg_normal(A, b, x0=None, *, rtol=None, atol=0.0, maxiter=None, damping=0.0):
    """Conjugate gradients on the normal equations (Aᵀ A + η I) x = Aᵀ b: CG-RBP (Liao et al. 2018, §3).

    For A = I − Jᵀ these are (I − J)(I − Jᵀ) z = (I − J) ∂L/∂h*, symmetric
    positive (semi)definite but with κ(A)² for condition number.  The CG
    itself runs in the backend (``scipy.sparse.linalg.cg`` or cupyx's, via
    :mod:`~refnet.solvers.scipy_adapter`), each iteration one product with A
    and one with Aᵀ.

    Stopping rule (module docstring): ‖b_b − A_b x_b‖₂ <= max(rtol ‖b_b‖₂,
    atol) for every example b of the caller's system.  CG runs on the
    row-equilibrated normal equations (Aᵀ A + η I) y = Aᵀ D⁻¹ b, x = D y, and
    stops on their residual, which can be small while ‖b − A x‖ is not (by up
    to κ(A)); so when CG stops with some example's rule unmet, it is
    restarted from x with the normal-equations target tightened by the worst
    example's missing ratio (at most 3 times, within ``maxiter`` in all).  Where the residual
    is a null vector of Aᵀ (singular A: e.g. J = I gives Aᵀ b = 0 and x = 0)
    no restart can help and ``info.singular`` is set.

    ``damping`` η is the η I that Liao et al.'s code adds (1e-5 there, 0
    here).  It biases x by O(η): the result is then converged only where
    that bias is within the tolerance.

    Parameters
    ----------
    A : LinearOperator or (N, N) array
        The operator, with ``rmatvec`` (Aᵀ v); a dense matrix has it.
    b : array of shape ``A.vshape``, e.g. (B, n)
        Right-hand side (for RBP, ∂L/∂h*), floating, finite, A's dtype.
    x0 : array of shape ``A.vshape`` or None
        Start, b's dtype; None for zeros.
    rtol : float or None
        Relative part of the rule (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_RTOL` of the dtype (1e-10 in float64).
    atol : float
        Absolute part of the rule (units of b), >= 0.
    maxiter : int or None
        Most CG iterations in all, restarts included, >= 1; None for 10·N
        (N = b.size).
    damping : float
        η (units of A²), >= 0.

    Returns
    -------
    x : array of shape ``A.vshape``
        The solution.
    info : SolveInfo
        ``iterations`` counts CG iterations; the residual is recorded every
        :data:`~refnet.solvers.info.CHECK_EVERY` iterations (one extra product
        each) and at every restart; ``singular`` where A is singular.

    Raises
    ------
    TypeError
        If ``A`` is neither a LinearOperator nor a square floating matrix or has no ``rmatvec``,
        ``b``/``x0`` is not a floating array, dtypes differ, or a tolerance or
        count is not a number of the right kind.
    ValueError
        If ``b``/``x0`` does not have shape ``A.vshape`` or holds NaN/Inf, a
        tolerance is negative or infinite, or a count is below its minimum.
    refnet.NumericalError
        Breakdown of the backend's CG or a non-finite result.
    """
    s = _System("cg_normal", A, b, x0, rtol, atol)
    A = s.A
    if not A.has_rmatvec:
        raise TypeError("A must provide rmatvec (Aᵀ v) for cg_normal: the normal equations need it")
    maxiter = _check_maxiter_or_none(maxiter, 10 * A.size)
    eta = check_tolerance("damping", damping, 0.0)
    xp = s.xp
    D = _rows(A, s.scale)
    # The row-equilibrated system A y = D⁻¹ b (module docstring); D commutes with Aᵀ A + η I.
    normal = LinearOperator(A.vshape, A.dtype, lambda v: A.rmatvec(A.matvec(v)) + eta * v)
    b_scaled = b / D
    rhs = A.rmatvec(b_scaled).reshape(-1)
    backend = scipy_adapter.backend_for(xp)
    count = [0]

    def callback(yk):
        count[0] += 1
        if count[0] % CHECK_EVERY == 0:
            xk = D * yk.reshape(A.vshape)
            s.record(count[0], xk, _norms(A, b - A.matvec(xk)))

    y = (xp.zeros_like(b) if x0 is None else x0 / D).reshape(-1)
    rhs_norm = float(xp.sqrt((rhs * rhs).sum()))
    # Target ‖D⁻¹ r‖₂ <= 1; CG measures Aᵀ D⁻¹ r, so start at the same relative reduction of it.
    inner_atol = s.target * rhs_norm / max(float(xp.sqrt((b_scaled * b_scaled).sum())), s.tiny)
    floor = 10 * float(numpy.finfo(b.dtype).eps) * rhs_norm
    restarts = 0
    while True:
        if inner_atol > 0:
            y, code = scipy_adapter.cg(backend, normal, rhs, y, rtol=0.0, atol=inner_atol,
                                       maxiter=maxiter - count[0], callback=callback)
            if code < 0:
                raise NumericalError(f"cg_normal: the backend's CG broke down (info = {code})", where="x")
        else:
            code = 0                                         # Aᵀ D⁻¹ b = 0: CG's answer is its start
        x = D * y.reshape(A.vshape)
        r = b - A.matvec(x)
        r_norms = _norms(A, r)
        total = float(_total(r_norms))
        if not math.isfinite(total):
            raise_non_finite(s.name, "the residual ‖b − A x‖₂", s.recorder, count[0])
        if s.met(r_norms) or code > 0 or count[0] >= maxiter or restarts == 3 or eta > 0:
            break
        # The normal equations are solved to their target but some example's system is not: tighten.
        s.record(count[0], x, r_norms)
        r_scaled = r / D
        normal_residual = float(xp.sqrt((A.rmatvec(r_scaled) ** 2).sum()))
        if normal_residual <= SINGULAR_TOL[numpy.dtype(b.dtype)] * float(xp.sqrt((r_scaled ** 2).sum())):
            break                                            # r is a null vector of Aᵀ: singular A
        inner_atol = 0.5 * normal_residual / max(s.worst_ratio(r_norms), 1.0)
        if inner_atol < floor:
            break                                            # below the rounding of Aᵀ D⁻¹ b
        restarts += 1
    return x, s.finish(x, count[0], r, diagnostics={"restarts": restarts},
                       context=f" (CG on the normal equations, damping {eta:g}, {restarts} restarts)")


def gmres(A, b, x0=None, *, rtol=None, atol=0.0, restart=20, maxiter=None):
    """Restarted GMRES on A x = b (Saad & Schultz 1986), via the backend (:mod:`~refnet.solvers.scipy_adapter`).

    Works on A directly: its conditioning is A's, not κ(A)² as in
    :func:`cg_normal`, it needs no Aᵀ, and it does not need ρ(M) < 1 (only A
    invertible).  Stopping rule: ‖b_b − A_b x_b‖₂ <= max(rtol ‖b_b‖₂, atol)
    for every example b (module docstring), re-measured by refnet on the
    returned x.  The backend runs on the row-equilibrated system
    A y = D⁻¹ b to half its target (module docstring) and is restarted from x with a
    tighter target (at most 3 times) where refnet's measure of an example
    still misses its rule.

    Parameters
    ----------
    A : LinearOperator or (N, N) array
        The operator (no Aᵀ needed).
    b : array of shape ``A.vshape``, e.g. (B, n)
        Right-hand side (for RBP, ∂L/∂h*), floating, finite, A's dtype.
    x0 : array of shape ``A.vshape`` or None
        Start, b's dtype; None for zeros.
    rtol : float or None
        Relative part of the rule (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_RTOL` of the dtype (1e-10 in float64).
    atol : float
        Absolute part of the rule (units of b), >= 0.
    restart : int
        Krylov dimension between restarts, >= 1 (capped at N).
    maxiter : int or None
        Most inner iterations (products with A), >= 1, rounded up to whole
        restart cycles; None for 10·N.  (SciPy counts restart cycles and
        cupyx inner iterations; the adapter translates.)

    Returns
    -------
    x : array of shape ``A.vshape``
        The solution.
    info : SolveInfo
        ``iterations`` counts the backend's products with A; the residual is
        recorded once per restart cycle (one extra product each).

    Raises
    ------
    TypeError
        If ``A`` is neither a LinearOperator nor a square floating matrix,
        ``b``/``x0`` is not a floating array, dtypes differ, or a tolerance or
        count is not a number of the right kind.
    ValueError
        If ``b``/``x0`` does not have shape ``A.vshape`` or holds NaN/Inf, a
        tolerance is negative or infinite, or a count is below its minimum.
    refnet.NumericalError
        Breakdown, or a non-finite result (cupyx's GMRES divides by a zero
        Arnoldi norm when the Krylov space is exactly invariant).
    """
    s = _System("gmres", A, b, x0, rtol, atol)
    A = s.A
    restart = min(check_int("restart", restart, 1), A.size)
    maxiter = _check_maxiter_or_none(maxiter, 10 * A.size)
    xp = s.xp
    D = _rows(A, s.scale)
    count = [0]

    def counted(v):
        count[0] += 1
        return A.matvec(v)
    solver_view = LinearOperator(A.vshape, A.dtype, counted)

    def callback(yk):
        xk = D * yk.reshape(A.vshape)
        s.record(count[0], xk, _norms(A, b - A.matvec(xk)))

    # The row-equilibrated system A y = D⁻¹ b (module docstring): ‖D⁻¹ r‖₂ <= 1 implies every
    # example's rule; 0.5 leaves room for the backend's recursive residual being optimistic.
    b_scaled = (b / D).reshape(-1)
    y = None if x0 is None else (x0 / D).reshape(-1)
    inner_atol, restarts = 0.5 * s.target, 0
    while True:
        y, code = scipy_adapter.gmres(scipy_adapter.backend_for(xp), solver_view, b_scaled, y,
                                      rtol=0.0, atol=inner_atol, restart=restart,
                                      maxiter=max(maxiter - count[0], 1), callback=callback)
        if code < 0:
            raise NumericalError(f"gmres: the backend's GMRES broke down (info = {code})", where="x")
        x = D * y.reshape(A.vshape)
        if not bool(xp.isfinite(x).all()):
            raise NumericalError(f"gmres: the backend returned a non-finite x after {count[0]} products "
                                 "(an invariant Krylov space: breakdown)", where="x")
        r = b - A.matvec(x)
        r_norms = _norms(A, r)
        if s.met(r_norms) or code > 0 or count[0] >= maxiter or restarts == 3:
            break
        # The backend met its target on its recursive residual but refnet's measure of some
        # example is above its rule: restart from x with the target tightened by that ratio.
        inner_atol = 0.5 * inner_atol / max(s.worst_ratio(r_norms), 1.0)
        restarts += 1
    return x, s.finish(x, count[0], r, diagnostics={"restarts": restarts},
                       context=f" (GMRES({restart}), maxiter = {maxiter})")
