"""Nonlinear fixed-point solvers on a map F: h* = F(h*) (Liao et al. 2018, convergent RNNs).

Each solver takes a *map* F (see :mod:`refnet.solvers.problem`): a callable
on states h (B, n) returning (B, n), block-separable over the batch, so the
whole batch is one root-finding problem whose root is every example's own
equilibrium.  Each returns ``(h, SolveInfo)`` and makes one claim, measured
by refnet on the returned h itself:

    converged  ⇔  ‖F(h) − h‖_∞ <= tol,

the ∞-norm (max over batch and units: scipy.optimize's ``f_tol`` norm, which
does not grow with B); per example, max over its units.  ``tol`` defaults to
:data:`~refnet.solvers.info.DEFAULT_TOL` of the dtype.  The relative trace
is ‖F(h) − h‖_∞ / ‖F(h)‖_∞.  Non-convergence is reported in ``info``, not
raised (:mod:`refnet.solvers.info`); NaN or Inf raises
:class:`refnet.NumericalError` naming the first non-finite iteration.

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
from .info import DEFAULT_TOL, Lowest, Recorder, SolveInfo, check_interval, raise_non_finite
from .problem import check_tolerance

__all__ = ["fixed_point", "anderson", "newton_krylov", "hybr", "fixed_point_then_hybr", "NORM"]

NORM = "∞-norm of F(h) − h (max over examples and units)"


class _Problem:
    """h = F(h) validated once: the map, the start, the tolerance, the traces."""

    def __init__(self, name, F, h0, tol, needs=()):
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
        self.tol = check_tolerance("tol", tol, DEFAULT_TOL[numpy.dtype(h0.dtype)])
        self.tiny = float(numpy.finfo(h0.dtype).tiny)
        self.recorder = Recorder(self.xp)
        self.lowest = None

    def apply(self, h):
        """F(h), its shape checked against h's."""
        y = self.F(h)
        if tuple(getattr(y, "shape", ())) != self.shape:
            raise ValueError(f"F must map states of shape {self.shape} to the same shape, "
                             f"got {tuple(getattr(y, 'shape', ()))}")
        return y

    def record(self, i, h, Fh):
        """Per-example ‖F(h) − h‖_∞ (device), traced; every example's best kept."""
        xp = self.xp
        d = xp.abs(Fh - h).max(axis=1)
        total = d.max()
        self.recorder.record(i, total, total / xp.maximum(xp.abs(Fh).max(), self.tiny))
        if self.lowest is None:
            self.lowest = Lowest(h, d, i)
        else:
            self.lowest.update(h, d, i)
        return d, total

    def finish(self, h, iterations, Fh=None, diagnostics=None, context=""):
        """Measure ‖F(h) − h‖_∞ on the returned h (unless given F(h)) and build the SolveInfo."""
        if Fh is None:
            Fh = self.apply(h)
        d, total = self.record(iterations, h, Fh)
        residual = float(total)
        if not math.isfinite(residual):
            raise_non_finite(self.name, "‖F(h) − h‖_∞", self.recorder, iterations)
        example = to_numpy(d).astype(float)
        converged = residual <= self.tol
        message = "" if converged else (
            f"{self.name}: ‖F(h) − h‖_∞ = {residual:.3e} > tol = {self.tol:.3e} (worst example "
            f"{int(example.argmax())}) after {iterations} iterations{context}")
        abs_trace, rel_trace, trace_at = self.recorder.host()
        return SolveInfo(
            solver=self.name, converged=converged, iterations=int(iterations), residual=residual,
            tolerance=self.tol, norm=NORM, abs_trace=abs_trace, rel_trace=rel_trace, trace_at=trace_at,
            lowest=float(self.lowest.norms.max()), lowest_x=self.lowest.x, example_residual=example,
            example_converged=example <= self.tol, diagnostics=dict(diagnostics or {}), message=message)


def fixed_point(F, h0, *, tol=None, maxiter=1000):
    """Fixed-point iteration h_{i+1} = F(h_i) (Liao et al. 2018, the convergent RNN's own dynamics).

    Stops at the first checked h_i with ‖F(h_i) − h_i‖_∞ <= tol and returns
    that h_i (not F(h_i), whose residual would be unmeasured).  Checked every
    iteration on NumPy, every :data:`~refnet.solvers.info.CHECK_EVERY` on CuPy.

    Parameters
    ----------
    F : map (B, n) -> (B, n), block-separable over the batch
    h0 : (B, n) start
    tol : float >= 0, default DEFAULT_TOL of the dtype
    maxiter : int >= 0, most applications of F beyond the first

    Returns
    -------
    h : (B, n);  info : SolveInfo (``iterations`` = i, the updates of h)

    Raises
    ------
    TypeError, ValueError
        Bad arguments (the message names which).
    refnet.NumericalError
        The iteration diverged or overflowed.
    """
    p = _Problem("fixed_point", F, h0, tol)
    maxiter = check_int("maxiter", maxiter, 0)
    every = check_interval(p.xp)
    h = h0
    for i in range(maxiter + 1):
        Fh = p.apply(h)
        _, total = p.record(i, h, Fh)
        if i % every == 0 or i == maxiter:
            value = float(total)
            if not math.isfinite(value):
                raise_non_finite(p.name, "‖F(h) − h‖_∞", p.recorder, i)
            if value <= p.tol:
                break
        if i < maxiter:
            h = Fh
    # The last record is that of h itself: finish re-records it (one more F: the trace stays honest).
    p.recorder.abs.pop(), p.recorder.rel.pop(), p.recorder.at.pop()
    return h, p.finish(h, i, Fh, context=f" (maxiter = {maxiter})")


def _scipy_root(name, solve, F, h0, tol, maxiter, options):
    """A scipy.optimize.nonlin solver on G(h) = F(h) − h, held to refnet's own measure."""
    p = _Problem(name, F, h0, tol)
    maxiter = check_int("maxiter", maxiter, 1)
    xp, shape, dtype = p.xp, p.shape, p.dtype

    def G(h_host):
        h_dev = xp.asarray(h_host.reshape(shape), dtype=dtype)
        return to_numpy(p.apply(h_dev) - h_dev)

    F0 = p.apply(h0)
    _, total = p.record(0, h0, F0)
    if not math.isfinite(float(total)):
        raise_non_finite(name, "‖F(h) − h‖_∞", p.recorder, 0)
    if float(total) <= p.tol:
        p.recorder.abs.pop(), p.recorder.rel.pop(), p.recorder.at.pop()
        return h0, p.finish(h0, 0, F0)
    steps = [0]

    def callback(h_host, g_host):
        steps[0] += 1
        h_dev = xp.asarray(numpy.asarray(h_host).reshape(shape), dtype=dtype)
        _, value = p.record(steps[0], h_dev, h_dev + xp.asarray(numpy.asarray(g_host).reshape(shape), dtype=dtype))
        if not math.isfinite(float(value)):
            raise_non_finite(name, "‖F(h) − h‖_∞", p.recorder, steps[0])

    try:
        h_host = solve(G, to_numpy(h0), f_tol=p.tol, maxiter=maxiter, callback=callback, **options)
    except scipy_adapter.NoConvergence as exc:
        h_host = exc.args[0]
    h = xp.asarray(numpy.asarray(h_host).reshape(shape), dtype=dtype)
    if steps[0] > 0:            # scipy's callback saw the returned h last: refnet's measure replaces it
        p.recorder.abs.pop(), p.recorder.rel.pop(), p.recorder.at.pop()
    return h, p.finish(h, max(steps[0], 1), context=f" (maxiter = {maxiter})")


def anderson(F, h0, *, tol=None, maxiter=200, m=5):
    """Anderson acceleration of the fixed-point iteration (Anderson 1965), via ``scipy.optimize.anderson``.

    Solves G(h) = F(h) − h = 0 with Anderson mixing over the last ``m``
    residuals; the initial Jacobian guess −I (scipy's ``alpha = 1``) makes its
    first step the plain iteration h ← F(h).  Arguments and result as
    :func:`fixed_point`, plus ``m`` : int >= 1; the claim ‖F(h) − h‖_∞ <= tol
    is re-measured on the returned h, whatever scipy reports.

    Raises
    ------
    TypeError, ValueError
        Bad arguments.
    refnet.NumericalError
        A non-finite residual.
    """
    m = check_int("m", m, 1)
    return _scipy_root("anderson", scipy.optimize.anderson, F, h0, tol, maxiter, {"M": m, "alpha": 1.0})


def newton_krylov(F, h0, *, tol=None, maxiter=50):
    """Newton–Krylov on G(h) = F(h) − h (Knoll & Keyes 2004), via ``scipy.optimize.newton_krylov``.

    Each outer step solves (J − I) δ = −G(h) by LGMRES with scipy's
    finite-difference products (they only steer the iteration: the returned h
    is accepted on refnet's own measurement).  Newton does not need a
    contraction: it finds equilibria with ρ(J) >= 1 that plain iteration
    cannot.  Arguments and result as :func:`fixed_point`; ``maxiter`` counts
    Newton steps.

    Raises
    ------
    TypeError, ValueError
        Bad arguments.
    refnet.NumericalError
        A non-finite residual.
    """
    return _scipy_root("newton_krylov", scipy.optimize.newton_krylov, F, h0, tol, maxiter, {})


def hybr(F, h0, *, tol=None, maxiter=100):
    """Powell's hybrid method, one example at a time (MINPACK hybrj via ``scipy.optimize.root``).

    For each example b, solves G(h) = F(h) − h = 0 by a trust-region (dogleg)
    Newton method with the exact Jacobian ``F.jacobian`` − I, on the map of
    that example alone (``F.rows([b])``): one example's hard start does not
    shorten every other example's steps, as a line search over the whole
    batch would.  MINPACK stops on a relative step below ``tol`` or after
    ``maxiter`` evaluations of G; refnet then measures ‖F(h) − h‖_∞.

    Parameters
    ----------
    F : map with ``F.rows(index)`` and ``F.jacobian(h) -> (B, n, n)``
    h0 : (B, n) start;  tol : float >= 0;  maxiter : int >= 1, evaluations per example

    Returns
    -------
    h : (B, n);  info : SolveInfo (``iterations`` = the most evaluations of G any
        example took; traces hold the start and the end)

    Raises
    ------
    TypeError, ValueError
        Bad arguments, or F without ``rows``/``jacobian``.
    refnet.NumericalError
        A non-finite residual.
    """
    p = _Problem("hybr", F, h0, tol, needs=("rows", "jacobian"))
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


def fixed_point_then_hybr(F, h0, *, tol=None, maxiter=300):
    """:func:`fixed_point` on the batch (``maxiter`` iterations at most), then :func:`hybr` for the examples it left.

    Fast where F contracts, as robust as :func:`hybr` where it does not.
    ``F`` as for :func:`hybr`.  ``iterations`` counts the fixed-point
    iterations plus hybr's evaluations; the traces are the fixed point's,
    then the final residual.

    Raises
    ------
    TypeError, ValueError
        Bad arguments.
    refnet.NumericalError
        A non-finite residual.
    """
    p = _Problem("fixed_point_then_hybr", F, h0, tol, needs=("rows", "jacobian"))
    h, first = fixed_point(F, h0, tol=p.tol, maxiter=maxiter)
    if first.converged:
        return h, first
    xp = xp_of(h)
    unsolved = xp.asarray(~first.example_converged)
    indices = [int(i) for i in numpy.flatnonzero(~first.example_converged)]
    rest, second = hybr(F.rows(unsolved), h[unsolved], tol=p.tol)
    h = h.copy()
    h[unsolved] = rest
    Fh = p.apply(h)
    d = xp.abs(Fh - h).max(axis=1)
    residual = float(d.max())
    if not math.isfinite(residual):
        raise_non_finite(p.name, "‖F(h) − h‖_∞", None, first.iterations + second.iterations)
    example = to_numpy(d).astype(float)
    converged = residual <= p.tol
    message = "" if converged else (
        f"fixed_point_then_hybr: ‖F(h) − h‖_∞ = {residual:.3e} > tol = {p.tol:.3e} (worst example "
        f"{int(example.argmax())}) after {first.iterations} fixed-point iterations and hybr on the "
        f"examples {indices} they left unsolved ({second.iterations} evaluations at most)")
    lowest_x = xp.where(xp.asarray(example <= first.example_residual)[:, None], h, first.lowest_x)
    return h, SolveInfo(
        solver="fixed_point_then_hybr", converged=converged,
        iterations=first.iterations + second.iterations, residual=residual, tolerance=p.tol, norm=NORM,
        abs_trace=numpy.append(first.abs_trace, residual),
        rel_trace=numpy.append(first.rel_trace, residual / max(float(xp.abs(Fh).max()), p.tiny)),
        trace_at=numpy.append(first.trace_at, first.iterations + second.iterations),
        lowest=float(numpy.minimum(example, first.example_residual).max()), lowest_x=lowest_x,
        example_residual=example, example_converged=example <= p.tol,
        diagnostics={"hybr_examples": indices}, message=message)
