"""Nonlinear fixed-point solvers on a map F: h* = F(h*) (Liao et al. 2018, convergent RNNs).

Each solver takes a *map* F (see :mod:`refnet.solvers.problem`): a callable
on states h (B, n) returning (B, n), block-separable over the batch, so the
whole batch is one root-finding problem whose root is every example's own
equilibrium.  Each returns ``(h, SolveInfo)`` and makes one claim, measured
by refnet on the returned h itself:

    converged  ⇔  for every example b:  ‖F(h)_b − h_b‖_∞ <= tol + rtol ‖h_b‖_∞,
                   and no example has run away (below),

the ∞-norm over each example's units (scipy.optimize's ``f_tol`` norm);
``info.residual`` is the largest over the batch.  ``tol`` (absolute)
defaults to :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype and
``rtol`` to :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` (64 u: F(h) − h
cannot be computed more accurately than a few roundings of h, so an absolute
tol alone is unreachable for large states).  The relative trace is
‖F(h) − h‖_∞ / ‖F(h)‖_∞.

**Runaway iterates.**  A map without a fixed point can still produce a
residual below any tolerance in floating point: for F(h) = h + 0.1 (a ReLU
iRNN with W_hh = I and positive drive) an extrapolating solver runs h out to
1e15, where h + 0.1 rounds back to h and ‖F(h) − h‖ = 0.  So an example
whose iterate grows beyond :data:`~refnet.solvers.info.RUNAWAY` (1/√u) times
its starting scale max(‖h0_b‖_∞, ‖F(h0)_b‖_∞, 1) is never claimed converged:
the solve stops (``info.diagnostics["runaway"]`` names the examples) and the
message says it diverged.  A genuine equilibrium that far out would need
1/(1 − ρ(J)) > 1/√u, beyond what the dtype can resolve anyway.

Non-convergence is reported in ``info``, not raised (:mod:`refnet.solvers.info`;
:class:`refnet.ConvergenceError` at the entry points, or
:class:`refnet.SingularSystemError` where Newton's linear system is
singular); NaN or Inf raises :class:`refnet.NumericalError` naming the first
non-finite iteration.

- :func:`fixed_point`: plain iteration h ← F(h) (the convergent RNN itself).
- :func:`anderson`: Anderson mixing of G(h) = F(h) − h (``scipy.optimize.anderson``).
- :func:`newton_krylov`: Newton with Krylov inner solves (``scipy.optimize.newton_krylov``).
- :func:`hybr`: Powell's hybrid method per example (MINPACK hybrj via ``scipy.optimize.root``),
  needing ``F.jacobian`` and ``F.rows``.
- :func:`fixed_point_then_hybr`: the plain iteration on the batch, hybr for the examples it leaves.

scipy.optimize works on NumPy arrays, so on CuPy each evaluation of G in
:func:`anderson`, :func:`newton_krylov` and :func:`hybr` crosses to the host
and back; :func:`fixed_point` stays on the device and reads its residual
every :data:`~refnet.solvers.info.CHECK_EVERY` iterations.
"""
import math

import numpy
import scipy.optimize

from .._validate import check_array, check_int
from ..backend import to_numpy, xp_of
from . import scipy_adapter
from .info import (DEFAULT_FP_RTOL, DEFAULT_TOL, RUNAWAY, Lowest, Recorder, SolveInfo, check_interval,
                   raise_non_finite)
from .problem import check_tolerance

__all__ = ["fixed_point", "anderson", "newton_krylov", "hybr", "fixed_point_then_hybr", "NORM"]

NORM = "∞-norm of F(h) − h (max over examples and units)"


class _Runaway(Exception):
    """Raised inside a scipy callback to stop a solve whose iterate ran away (module docstring)."""


class _Problem:
    """h = F(h) validated once: the map, the start, the tolerances, the traces, the verdict."""

    def __init__(self, name, F, h0, tol, rtol=None, needs=()):
        if not callable(F):
            raise TypeError(f"F must be a callable map h -> F(h), got {type(F).__name__}")
        for attribute in needs:
            if not callable(getattr(F, attribute, None)):
                raise TypeError(f"F must provide F.{attribute}(...) for {name} (refnet.solvers.problem); "
                                f"{type(F).__name__} does not")
        check_array("h0", h0, ndim=2)
        if h0.shape[0] == 0:
            raise ValueError(f"h0 must hold at least one example, got a batch of size 0 (shape {tuple(h0.shape)})")
        self.name, self.F, self.xp, self.shape, self.dtype = name, F, xp_of(h0), tuple(h0.shape), h0.dtype
        dtype = numpy.dtype(h0.dtype)
        self.tol = check_tolerance("tol", tol, DEFAULT_TOL[dtype])
        self.rtol = check_tolerance("rtol", rtol, DEFAULT_FP_RTOL[dtype])
        self.runaway = RUNAWAY[dtype]
        self.tiny = float(numpy.finfo(h0.dtype).tiny)
        self.recorder = Recorder(self.xp)
        self.lowest = None
        self.limit = None          # per-example bound on ‖h_b‖_∞ (set from the start: module docstring)

    def apply(self, h):
        """F(h), its shape checked against h's."""
        y = self.F(h)
        if tuple(getattr(y, "shape", ())) != self.shape:
            raise ValueError(f"F must map states of shape {self.shape} to the same shape, "
                             f"got {tuple(getattr(y, 'shape', ()))}")
        return y

    def start(self, h0, Fh0):
        """Fix the runaway bound from the start: RUNAWAY · max(‖h0_b‖_∞, ‖F(h0)_b‖_∞, 1)."""
        xp = self.xp
        scale = xp.maximum(xp.maximum(xp.abs(h0).max(axis=1), xp.abs(Fh0).max(axis=1)), 1.0)
        self.limit = self.runaway * scale

    def record(self, i, h, Fh):
        """Per-example ‖F(h) − h‖_∞ (device), traced; every example's best kept."""
        xp = self.xp
        if self.limit is None:
            self.start(h, Fh)
        d = xp.abs(Fh - h).max(axis=1)
        total = d.max()
        self.recorder.record(i, total, total / xp.maximum(xp.abs(Fh).max(), self.tiny))
        if self.lowest is None:
            self.lowest = Lowest(h, d, i)
        else:
            self.lowest.update(h, d, i)
        return d, total

    def met(self, h, d):
        """Every example within tol + rtol ‖h_b‖_∞ (one host read)."""
        return bool((d <= self.tol + self.rtol * self.xp.abs(h).max(axis=1)).all())

    def ran_away(self, h):
        """Whether some example's ‖h_b‖_∞ exceeds its runaway bound (one host read)."""
        return bool((self.xp.abs(h).max(axis=1) > self.limit).any())

    def verdict(self, h, d):
        """Host arrays: per-example residual, threshold, runaway flag, ‖h_b‖_∞, and converged flags."""
        xp = self.xp
        size = xp.abs(h).max(axis=1)
        example = to_numpy(d).astype(float)
        threshold = self.tol + self.rtol * to_numpy(size).astype(float)
        runaway = to_numpy(size > self.limit).astype(bool)
        return example, threshold, runaway, to_numpy(size).astype(float), (example <= threshold) & ~runaway

    def message(self, example, threshold, runaway, size, ok, iterations, context=""):
        """Why the solve failed, naming the worst example ("" when it did not)."""
        if ok.all():
            return ""
        if runaway.any():
            worst = int(numpy.flatnonzero(runaway)[numpy.argmax(size[runaway])])
            return (f"{self.name}: diverged after {iterations} iterations{context}: the iterate ran away "
                    f"without bound (example {worst}: ‖h‖_∞ = {size[worst]:.3e} > {self.runaway:.1e} × its "
                    f"starting scale); a residual ‖F(h) − h‖_∞ = {example[worst]:.3e} there is not "
                    "evidence of a fixed point (at that size F(h) − h is lost to rounding), so the map "
                    "likely has none")
        unmet = numpy.flatnonzero(~ok)
        worst = int(unmet[numpy.argmax(example[unmet] / numpy.maximum(threshold[unmet], self.tiny))])
        return (f"{self.name}: ‖F(h) − h‖_∞ = {example[worst]:.3e} > tol + rtol ‖h‖_∞ = {threshold[worst]:.3e} "
                f"(worst example {worst}) with {unmet.size} of {len(ok)} examples unsolved after {iterations} "
                f"iterations{context}")

    def finish(self, h, iterations, Fh=None, diagnostics=None, context="", singular_message=None):
        """Measure ‖F(h) − h‖_∞ on the returned h (unless given F(h)) and build the SolveInfo."""
        if Fh is None:
            Fh = self.apply(h)
        d, total = self.record(iterations, h, Fh)
        residual = float(total)
        if not math.isfinite(residual):
            raise_non_finite(self.name, "‖F(h) − h‖_∞", self.recorder, iterations)
        example, threshold, runaway, size, ok = self.verdict(h, d)
        converged = bool(ok.all()) and singular_message is None
        message = singular_message or self.message(example, threshold, runaway, size, ok, iterations, context)
        diagnostics = dict(diagnostics or {})
        diagnostics["runaway"] = [int(i) for i in numpy.flatnonzero(runaway)]
        abs_trace, rel_trace, trace_at = self.recorder.host()
        return SolveInfo(
            solver=self.name, converged=converged, iterations=int(iterations), residual=residual,
            tolerance=float(threshold.max()), norm=NORM, abs_trace=abs_trace, rel_trace=rel_trace,
            trace_at=trace_at, lowest=float(self.lowest.norms.max()), lowest_x=self.lowest.x,
            example_residual=example, example_converged=ok, example_tolerance=threshold,
            singular=singular_message is not None, diagnostics=diagnostics, message=message)


def fixed_point(F, h0, *, tol=None, rtol=None, maxiter=1000):
    """Fixed-point iteration h_{i+1} = F(h_i) (Liao et al. 2018, the convergent RNN's own dynamics).

    Stops at the first checked h_i whose every example meets
    ‖F(h_i)_b − h_i,b‖_∞ <= tol + rtol ‖h_i,b‖_∞ and returns that h_i (not
    F(h_i), whose residual would be unmeasured), or as soon as an example runs
    away (module docstring).  Checked every iteration on NumPy, every
    :data:`~refnet.solvers.info.CHECK_EVERY` on CuPy.  Non-convergence and
    runaway are reported in ``info`` (``converged=False``), not raised.

    Parameters
    ----------
    F : callable
        The map (B, n) -> (B, n), block-separable over the batch
        (:mod:`refnet.solvers.problem`).
    h0 : (B, n) array
        Start, floating, finite, B >= 1.
    tol : float or None
        Absolute part of the rule, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most applications of F beyond the first, >= 0.

    Returns
    -------
    h : (B, n) array
        The returned iterate, on the backend and in the dtype of ``h0``.
    info : SolveInfo
        ``converged`` per the rule above; ``iterations`` = i, the updates of h.

    Raises
    ------
    TypeError
        If ``F`` is not callable, ``h0`` is not a floating NumPy/CuPy
        array, or ``tol``/``rtol``/``maxiter`` is not a number of the right kind.
    ValueError
        If ``h0`` is not 2-D, holds NaN/Inf or no example, ``tol``/``rtol`` is
        negative or infinite, ``maxiter`` is below its minimum, or ``F``
        returns another shape than ``h0``'s.
    refnet.NumericalError
        If ‖F(h) − h‖_∞ becomes NaN/Inf (names the first such iteration).
    """
    p = _Problem("fixed_point", F, h0, tol, rtol)
    maxiter = check_int("maxiter", maxiter, 0)
    every = check_interval(p.xp)
    h = h0
    for i in range(maxiter + 1):
        Fh = p.apply(h)
        d, total = p.record(i, h, Fh)
        if i % every == 0 or i == maxiter:
            value = float(total)
            if not math.isfinite(value):
                raise_non_finite(p.name, "‖F(h) − h‖_∞", p.recorder, i)
            if p.met(h, d) or p.ran_away(h):
                break
        if i < maxiter:
            h = Fh
    # The last record is that of h itself: finish re-records it (one more F: the trace stays honest).
    p.recorder.abs.pop(), p.recorder.rel.pop(), p.recorder.at.pop()
    return h, p.finish(h, i, Fh, context=f" (maxiter = {maxiter})")


def _singular_newton(name, step, exc):
    """The message for scipy's "Jacobian inversion yielded zero vector" (a singular Newton system)."""
    return (f"{name}: the Newton system (J − I) δ = −(F(h) − h) is singular at step {step}: the inner "
            f"Krylov solve returned δ = 0 (SciPy: {exc}): J = ∂F/∂h has the eigenvalue 1 along the "
            "residual (e.g. J = I for a ReLU/identity cell with W_hh = I, where a nonzero F(h) − h "
            "means the map has no isolated fixed point there), or SciPy's finite-difference products "
            "are lost to rounding because |F(h) − h| is far larger than |h|; try anderson or hybr")


def _scipy_root(name, solve, F, h0, tol, rtol, maxiter, options):
    """A scipy.optimize.nonlin solver on G(h) = F(h) − h, held to refnet's own measure."""
    p = _Problem(name, F, h0, tol, rtol)
    maxiter = check_int("maxiter", maxiter, 1)
    xp, shape, dtype = p.xp, p.shape, p.dtype

    def G(h_host):
        h_dev = xp.asarray(h_host.reshape(shape), dtype=dtype)
        return to_numpy(p.apply(h_dev) - h_dev)

    F0 = p.apply(h0)
    d0, total = p.record(0, h0, F0)
    if not math.isfinite(float(total)):
        raise_non_finite(name, "‖F(h) − h‖_∞", p.recorder, 0)
    if p.met(h0, d0):
        p.recorder.abs.pop(), p.recorder.rel.pop(), p.recorder.at.pop()
        return h0, p.finish(h0, 0, F0)
    steps, last = [0], [to_numpy(h0)]

    def callback(h_host, g_host):
        steps[0] += 1
        last[0] = numpy.array(h_host, copy=True)
        h_dev = xp.asarray(numpy.asarray(h_host).reshape(shape), dtype=dtype)
        _, value = p.record(steps[0], h_dev, h_dev + xp.asarray(numpy.asarray(g_host).reshape(shape), dtype=dtype))
        if not math.isfinite(float(value)):
            raise_non_finite(name, "‖F(h) − h‖_∞", p.recorder, steps[0])
        if p.ran_away(h_dev):
            raise _Runaway                                   # stop: no fixed point out there
    singular = None
    try:
        h_host = solve(G, to_numpy(h0), f_tol=p.tol, maxiter=maxiter, callback=callback, **options)
    except scipy_adapter.NoConvergence as exc:
        h_host = exc.args[0]
    except _Runaway:
        h_host = last[0]
    except (ValueError, numpy.linalg.LinAlgError) as exc:
        # scipy.optimize.nonlin's own words for a singular Newton system; anything else is not ours.
        if "Jacobian inversion yielded zero vector" not in str(exc) and not isinstance(
                exc, numpy.linalg.LinAlgError):
            raise
        h_host, singular = last[0], _singular_newton(name, steps[0] + 1, exc)
    h = xp.asarray(numpy.asarray(h_host).reshape(shape), dtype=dtype)
    if steps[0] > 0:            # scipy's callback saw the returned h last: refnet's measure replaces it
        p.recorder.abs.pop(), p.recorder.rel.pop(), p.recorder.at.pop()
    return h, p.finish(h, max(steps[0], 1), context=f" (maxiter = {maxiter})", singular_message=singular)


def anderson(F, h0, *, tol=None, rtol=None, maxiter=200, m=5):
    """Anderson acceleration of the fixed-point iteration (Anderson 1965), via ``scipy.optimize.anderson``.

    Solves G(h) = F(h) − h = 0 with Anderson mixing over the last ``m``
    residuals; the initial Jacobian guess −I (scipy's ``alpha = 1``) makes its
    first step the plain iteration h ← F(h).  The claim (every example
    within tol + rtol ‖h_b‖_∞, none run away) is re-measured on the returned h,
    whatever scipy reports: extrapolation can run h out until F(h) − h rounds
    to 0 on a map with no fixed point (module docstring), which is refused.
    Non-convergence and runaway are reported in ``info``, not raised.

    Parameters
    ----------
    F : callable
        The map (B, n) -> (B, n), block-separable over the batch
        (:mod:`refnet.solvers.problem`).
    h0 : (B, n) array
        Start, floating, finite, B >= 1.
    tol : float or None
        Absolute part of the rule, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most Anderson iterations (scipy's ``maxiter``), >= 1.
    m : int
        Mixing depth: how many past residuals are combined, >= 1.

    Returns
    -------
    h : (B, n) array
        The returned iterate, on the backend and in the dtype of ``h0``.
    info : SolveInfo
        ``converged`` per the rule of :func:`fixed_point`; ``iterations`` = the
        steps scipy took (at least 1 unless h0 already met the rule).

    Raises
    ------
    TypeError
        If ``F`` is not callable, ``h0`` is not a floating NumPy/CuPy
        array, or ``tol``/``rtol``/``maxiter``/``m`` is not a number of the right kind.
    ValueError
        If ``h0`` is not 2-D, holds NaN/Inf or no example, ``tol``/``rtol`` is
        negative or infinite, ``maxiter``/``m`` is below its minimum, or ``F``
        returns another shape than ``h0``'s.
    refnet.NumericalError
        If ‖F(h) − h‖_∞ becomes NaN/Inf (names the first such iteration).
    """
    m = check_int("m", m, 1)
    return _scipy_root("anderson", scipy.optimize.anderson, F, h0, tol, rtol, maxiter, {"M": m, "alpha": 1.0})


def newton_krylov(F, h0, *, tol=None, rtol=None, maxiter=50):
    """Newton–Krylov on G(h) = F(h) − h (Knoll & Keyes 2004), via ``scipy.optimize.newton_krylov``.

    Each outer step solves (J − I) δ = −G(h) by LGMRES with scipy's
    finite-difference products (they only steer the iteration: the returned h
    is accepted on refnet's own measurement).  Newton does not need a
    contraction: it finds equilibria with ρ(J) >= 1 that plain iteration
    cannot.  Arguments and result as :func:`fixed_point`; ``maxiter`` counts
    Newton steps.  Where J − I is singular along the residual (scipy's
    "Jacobian inversion yielded zero vector") the result is reported failed
    with ``info.singular`` set (:class:`refnet.SingularSystemError` at the
    entry points); any other ValueError from scipy's solver is passed on.

    Parameters
    ----------
    F : callable
        The map (B, n) -> (B, n), block-separable over the batch
        (:mod:`refnet.solvers.problem`).
    h0 : (B, n) array
        Start, floating, finite, B >= 1.
    tol : float or None
        Absolute part of the rule, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most Newton steps, >= 1.

    Returns
    -------
    h : (B, n) array
        The returned iterate, on the backend and in the dtype of ``h0``.
    info : SolveInfo
        ``converged`` per the rule of :func:`fixed_point`; ``singular`` when the
        Newton system was singular; ``iterations`` = Newton steps taken.

    Raises
    ------
    TypeError
        If ``F`` is not callable, ``h0`` is not a floating NumPy/CuPy
        array, or ``tol``/``rtol``/``maxiter`` is not a number of the right kind.
    ValueError
        If ``h0`` is not 2-D, holds NaN/Inf or no example, ``tol``/``rtol`` is
        negative or infinite, ``maxiter`` is below its minimum, or ``F``
        returns another shape than ``h0``'s.
    refnet.NumericalError
        If ‖F(h) − h‖_∞ becomes NaN/Inf (names the first such iteration).
    """
    return _scipy_root("newton_krylov", scipy.optimize.newton_krylov, F, h0, tol, rtol, maxiter, {})


def hybr(F, h0, *, tol=None, rtol=None, maxiter=100):
    """Powell's hybrid method, one example at a time (MINPACK hybrj via ``scipy.optimize.root``).

    For each example b, solves G(h) = F(h) − h = 0 by a trust-region (dogleg)
    Newton method with the exact Jacobian ``F.jacobian`` − I, on the map of
    that example alone (``F.rows([b])``): one example's hard start does not
    shorten every other example's steps, as a line search over the whole
    batch would.  MINPACK stops on a relative step below ``tol`` or after
    ``maxiter`` evaluations of G; refnet then measures every example against
    tol + rtol ‖h_b‖_∞ and the runaway bound (module docstring).

    Parameters
    ----------
    F : callable
        The map (B, n) -> (B, n), block-separable over the batch, with
        ``F.rows(index)`` (the map of a subset of the examples) and
        ``F.jacobian(h) -> (B, n, n)`` (∂F/∂h per example).
    h0 : (B, n) array
        Start, floating, finite, B >= 1.
    tol : float or None
        Absolute part of the rule, and MINPACK's ``xtol``, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most evaluations of G per example (MINPACK's ``maxfev``), >= 1.

    Returns
    -------
    h : (B, n) array
        The returned iterate, on the backend and in the dtype of ``h0``.
    info : SolveInfo
        ``iterations`` = the most evaluations of G any example took; the traces
        hold the start and the end.

    Raises
    ------
    TypeError
        If ``F`` is not callable or lacks ``rows``/``jacobian``, ``h0`` is not a floating NumPy/CuPy
        array, or ``tol``/``rtol``/``maxiter`` is not a number of the right kind.
    ValueError
        If ``h0`` is not 2-D, holds NaN/Inf or no example, ``tol``/``rtol`` is
        negative or infinite, ``maxiter`` is below its minimum, or ``F``
        returns another shape than ``h0``'s.
    refnet.NumericalError
        If ‖F(h) − h‖_∞ becomes NaN/Inf (names the first such iteration).
    """
    p = _Problem("hybr", F, h0, tol, rtol, needs=("rows", "jacobian"))
    maxiter = check_int("maxiter", maxiter, 1)
    xp, dtype, n = p.xp, p.dtype, p.shape[1]
    F0 = p.apply(h0)
    _, total = p.record(0, h0, F0)
    if not math.isfinite(float(total)):
        raise_non_finite("hybr", "‖F(h) − h‖_∞", p.recorder, 0)
    eye = numpy.eye(n)
    roots, evaluations = [], 0
    for b in range(p.shape[0]):
        F_b = F.rows(slice(b, b + 1))

        def G_and_jacobian(h_host, F_b=F_b):
            h_b = xp.asarray(h_host[None], dtype=dtype)
            return to_numpy(F_b(h_b) - h_b)[0], to_numpy(F_b.jacobian(h_b))[0] - eye
        solution = scipy.optimize.root(G_and_jacobian, to_numpy(h0[b]).astype(numpy.float64), jac=True,
                                       method="hybr", options={"xtol": p.tol, "maxfev": maxiter})
        roots.append(solution.x)
        evaluations = max(evaluations, int(solution.nfev))
    h = xp.asarray(numpy.stack(roots), dtype=dtype)
    return h, p.finish(h, evaluations, context=f", i.e. evaluations of G per example at most (maxiter = {maxiter})")


def fixed_point_then_hybr(F, h0, *, tol=None, rtol=None, maxiter=300):
    """:func:`fixed_point` on the batch (``maxiter`` iterations at most), then :func:`hybr` for the examples it left.

    Fast where F contracts, as robust as :func:`hybr` where it does not.
    ``F`` as for :func:`hybr`; ``tol``, ``rtol`` and the claim as
    :func:`fixed_point` (measured on the returned h, runaway bound from h0).
    ``iterations`` counts the fixed-point iterations plus hybr's evaluations;
    the traces are the fixed point's, then the final residual.

    Parameters
    ----------
    F : callable
        The map (B, n) -> (B, n), block-separable over the batch, with
        ``F.rows(index)`` (the map of a subset of the examples) and
        ``F.jacobian(h) -> (B, n, n)`` (∂F/∂h per example).
    h0 : (B, n) array
        Start, floating, finite, B >= 1.
    tol : float or None
        Absolute part of the rule, >= 0 (units of h); None for
        :data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype (1e-10 in float64).
    rtol : float or None
        Part relative to ‖h_b‖_∞ (dimensionless), >= 0; None for
        :data:`~refnet.solvers.info.DEFAULT_FP_RTOL` of the dtype (64 u).
    maxiter : int
        Most fixed-point iterations, >= 0 (hybr then runs with its own
        default of 100 evaluations per example).

    Returns
    -------
    h : (B, n) array
        The returned iterate, on the backend and in the dtype of ``h0``.
    info : SolveInfo
        ``diagnostics["hybr_examples"]`` lists the examples hybr was run on.

    Raises
    ------
    TypeError
        If ``F`` is not callable or lacks ``rows``/``jacobian``, ``h0`` is not a floating NumPy/CuPy
        array, or ``tol``/``rtol``/``maxiter`` is not a number of the right kind.
    ValueError
        If ``h0`` is not 2-D, holds NaN/Inf or no example, ``tol``/``rtol`` is
        negative or infinite, ``maxiter`` is below its minimum, or ``F``
        returns another shape than ``h0``'s.
    refnet.NumericalError
        If ‖F(h) − h‖_∞ becomes NaN/Inf (names the first such iteration).
    """
    p = _Problem("fixed_point_then_hybr", F, h0, tol, rtol, needs=("rows", "jacobian"))
    h, first = fixed_point(F, h0, tol=p.tol, rtol=p.rtol, maxiter=maxiter)
    if first.converged:
        return h, first
    xp = xp_of(h)
    p.start(h0, p.apply(h0))                                 # the runaway bound comes from h0
    unsolved = xp.asarray(~first.example_converged)
    indices = [int(i) for i in numpy.flatnonzero(~first.example_converged)]
    rest, second = hybr(F.rows(unsolved), h[unsolved], tol=p.tol, rtol=p.rtol)
    h = h.copy()
    h[unsolved] = rest
    Fh = p.apply(h)
    d = xp.abs(Fh - h).max(axis=1)
    residual = float(d.max())
    iterations = first.iterations + second.iterations
    if not math.isfinite(residual):
        raise_non_finite(p.name, "‖F(h) − h‖_∞", None, iterations)
    example, threshold, runaway, size, ok = p.verdict(h, d)
    converged = bool(ok.all())
    message = p.message(example, threshold, runaway, size, ok, first.iterations,
                        context=f" of the fixed point, then hybr on the examples {indices} they left "
                                f"unsolved ({second.iterations} evaluations at most)")
    lowest_x = xp.where(xp.asarray(example <= first.example_residual)[:, None], h, first.lowest_x)
    return h, SolveInfo(
        solver="fixed_point_then_hybr", converged=converged,
        iterations=iterations, residual=residual, tolerance=float(threshold.max()), norm=NORM,
        abs_trace=numpy.append(first.abs_trace, residual),
        rel_trace=numpy.append(first.rel_trace, residual / max(float(xp.abs(Fh).max()), p.tiny)),
        trace_at=numpy.append(first.trace_at, iterations),
        lowest=float(numpy.minimum(example, first.example_residual).max()), lowest_x=lowest_x,
        example_residual=example, example_converged=ok, example_tolerance=threshold,
        diagnostics={"hybr_examples": indices, "runaway": [int(i) for i in numpy.flatnonzero(runaway)]},
        message=message)
