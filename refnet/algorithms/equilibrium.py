"""Equilibria of convergent RNNs: h* = F(x, w, h*) (Liao et al. 2018, "Convergent RNNs").

A convergent model is any cell iterated on a static input:

    F(h) = cell.step(θ, h, x, t)[0],     h_{i+1} = F(h_i),     h* = F(h*)

with x (B, I) held fixed (t too, for the rare cell whose map depends on it).
Three solvers, one function each, share one claim: the returned ``h``
satisfies ``‖F(h) − h‖_∞ <= tol``, measured by refnet on the returned ``h``
itself.  The ∞-norm (max over batch and units) is scipy.optimize's ``f_tol``
norm and does not grow with B.  If the tolerance is not reached within
``maxiter`` the solver raises :class:`refnet.ConvergenceError` carrying the
last residual; only a caller who passes ``on_failure="warn"`` gets the last
iterate back instead, with ``converged=False`` and a
:class:`ConvergenceWarning`.  NaN or Inf always raises
:class:`refnet.NumericalError`.

- :func:`fixed_point` — plain iteration h ← F(h) (the convergent RNN itself).
- :func:`anderson` — Anderson mixing of the residual G(h) = F(h) − h through
  ``scipy.optimize.anderson``.
- :func:`newton_krylov` — Newton's method on G with Krylov inner solves
  through ``scipy.optimize.newton_krylov``.

The whole batch is one root-finding problem (the residual is block-separable
over examples, so its root is every example's own equilibrium); scipy's
solvers work on NumPy arrays, so on CuPy each evaluation of G crosses to the
host and back.

:func:`spectral_radius` estimates ρ(J) at h* by the power method — the
diagnostic for "is this a contraction here?" (ρ < 1 is necessary for the
fixed-point iteration and for RBP's adjoint iteration to converge).
"""
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy
import scipy.optimize

from ..backend import to_numpy, xp_of
from .._validate import check_array, check_int, check_same_dtype
from ..errors import ConvergenceError, NumericalError

__all__ = ["Equilibrium", "ConvergenceWarning", "fixed_point", "anderson", "newton_krylov",
           "spectral_radius", "residual", "DEFAULT_TOL", "check_problem", "check_on_failure",
           "check_finite_value", "report_failure"]

# Default tolerance on ‖F(h) − h‖_∞ by dtype: a few hundred unit roundoffs of O(1) states.
DEFAULT_TOL = {numpy.dtype("float64"): 1e-10, numpy.dtype("float32"): 1e-5}

ON_FAILURE = ("raise", "warn")


class ConvergenceWarning(RuntimeWarning):
    """An iterative solve stopped short of its tolerance and the caller asked to be warned."""


@dataclass(frozen=True)
class Equilibrium:
    """A solved equilibrium.

    h : (B, n_state) the returned state;  residuals : ‖F(h_i) − h_i‖_∞ for the
    start and after every step, the last one being that of ``h``;  steps :
    iterations spent;  converged : whether ``residuals[-1] <= tol``.
    """

    h: Any
    residuals: tuple
    steps: int
    converged: bool


def residual(cell, theta, x, h, t=None):
    """‖F(h) − h‖_∞, the distance from being an equilibrium, as a float."""
    xp = xp_of(h)
    return float(xp.abs(cell.step(theta, h, x, t)[0] - h).max())


def check_on_failure(on_failure):
    """Validate the caller's choice between raising and warning on non-convergence."""
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
    return on_failure


def report_failure(on_failure, message, *, residual, iterations, where):
    """Raise ConvergenceError, or warn where the caller opted in (``on_failure="warn"``)."""
    if on_failure == "raise":
        raise ConvergenceError(message, residual=residual, iterations=iterations, where=where)
    warnings.warn(f"{message} (returned unconverged, as on_failure='warn' asked)",
                  ConvergenceWarning, stacklevel=3)


def check_finite_value(name, value, iterations):
    """Raise NumericalError if a residual norm is NaN or Inf."""
    if not math.isfinite(value):
        raise NumericalError(f"{name}: the residual became {value} after {iterations} iterations "
                             "(the iteration diverged or overflowed)", where=f"iteration {iterations}")


def check_problem(cell, theta, x, h, h_name="h0"):
    """Validate (cell, θ, x, h) once at entry; returns h (zeros if None)."""
    cell.check_params(theta, "theta")
    check_array("x", x, shape=(None, cell.input_size))
    B = x.shape[0]
    if h is None:
        h = xp_of(x).zeros((B, cell.n_state), dtype=x.dtype)
    check_array(h_name, h, shape=(B, cell.n_state))
    first = next(iter(cell.param_shapes()))
    check_same_dtype({"x": x, h_name: h, f"theta[{first!r}]": theta[first]})
    return h


def _check_tol(tol, dtype):
    if tol is None:
        return DEFAULT_TOL[numpy.dtype(dtype)]
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol >= 0:
        raise ValueError(f"tol must be a float >= 0, got {tol!r}")
    return float(tol)


def fixed_point(cell, theta, x, h0=None, *, tol=None, maxiter=1000, t=None, on_failure="raise"):
    """Fixed-point iteration h_{i+1} = F(x, w, h_i) (Liao et al. 2018, convergent RNN dynamics).

    Stops at the first h_i with ‖F(h_i) − h_i‖_∞ <= tol and returns that h_i
    (not F(h_i), whose residual would be unmeasured).

    Parameters
    ----------
    cell, theta : a refnet cell and its params;  x : (B, I) static input
    h0 : (B, n_state) start, or None for zeros
    tol : float, default :data:`DEFAULT_TOL` of the dtype;  maxiter : int >= 0
    t : passed to ``cell.step``;  on_failure : "raise" (default) or "warn"

    Returns
    -------
    Equilibrium
    """
    h = check_problem(cell, theta, x, h0)
    tol = _check_tol(tol, x.dtype)
    maxiter = check_int("maxiter", maxiter, 0)
    check_on_failure(on_failure)
    xp = xp_of(h)
    residuals = []
    for i in range(maxiter + 1):
        h_next = cell.step(theta, h, x, t)[0]
        r = float(xp.abs(h_next - h).max())
        check_finite_value("fixed_point", r, i)
        residuals.append(r)
        if r <= tol:
            return Equilibrium(h, tuple(residuals), i, True)
        if i < maxiter:
            h = h_next
    report_failure(on_failure, f"fixed_point: ‖F(h) − h‖_∞ = {residuals[-1]:.3e} > tol = {tol:.3e} "
                   f"after maxiter = {maxiter} iterations", residual=residuals[-1],
                   iterations=maxiter, where="fixed_point")
    return Equilibrium(h, tuple(residuals), maxiter, False)


def _scipy_root(name, solve, cell, theta, x, h0, tol, maxiter, t, on_failure, options):
    """Run a scipy.optimize.nonlin solver on G(h) = F(h) − h and hold it to refnet's claim."""
    h = check_problem(cell, theta, x, h0)
    tol = _check_tol(tol, x.dtype)
    maxiter = check_int("maxiter", maxiter, 1)
    check_on_failure(on_failure)
    xp = xp_of(h)
    shape = h.shape

    def G(h_host):
        h_dev = xp.asarray(h_host.reshape(shape), dtype=x.dtype)
        return to_numpy(cell.step(theta, h_dev, x, t)[0] - h_dev)

    residuals = [residual(cell, theta, x, h, t)]
    check_finite_value(name, residuals[0], 0)

    def record(_, g):
        residuals.append(float(numpy.abs(g).max()))
        check_finite_value(name, residuals[-1], len(residuals) - 1)

    if residuals[0] <= tol:
        return Equilibrium(h, tuple(residuals), 0, True)
    try:
        h_host = solve(G, to_numpy(h), f_tol=tol, maxiter=maxiter, callback=record, **options)
        failed = None
    except scipy.optimize.NoConvergence as exc:
        h_host, failed = exc.args[0], "did not reach f_tol"
    h = xp.asarray(numpy.asarray(h_host).reshape(shape), dtype=x.dtype)
    final = residual(cell, theta, x, h, t)
    check_finite_value(name, final, len(residuals) - 1)
    # scipy's callback saw the returned h last; refnet's own measure replaces it.
    if len(residuals) > 1:
        residuals[-1] = final
    else:
        residuals.append(final)
    steps = len(residuals) - 1
    if failed is None and final <= tol:
        return Equilibrium(h, tuple(residuals), steps, True)
    report_failure(on_failure, f"{name}: ‖F(h) − h‖_∞ = {final:.3e} > tol = {tol:.3e} after {steps} "
                   f"iterations (maxiter = {maxiter})", residual=final, iterations=steps, where=name)
    return Equilibrium(h, tuple(residuals), steps, False)


def anderson(cell, theta, x, h0=None, *, tol=None, maxiter=200, m=5, t=None, on_failure="raise"):
    """Anderson acceleration of the fixed-point iteration, via ``scipy.optimize.anderson``.

    Solves G(h) = F(h) − h = 0 with Anderson mixing over the last ``m``
    residuals; the initial Jacobian guess −I (scipy's ``alpha = 1``) makes its
    first step the plain iteration h ← F(h).  Arguments and result as
    :func:`fixed_point`; the claim ‖F(h) − h‖_∞ <= tol is re-measured by refnet
    on the returned h, whatever scipy reports.
    """
    m = check_int("m", m, 1)
    return _scipy_root("anderson", scipy.optimize.anderson, cell, theta, x, h0, tol, maxiter, t,
                       on_failure, {"M": m, "alpha": 1.0})


def newton_krylov(cell, theta, x, h0=None, *, tol=None, maxiter=50, t=None, on_failure="raise"):
    """Newton–Krylov on G(h) = F(h) − h, via ``scipy.optimize.newton_krylov``.

    Each outer step solves (J − I) δ = −G(h) by LGMRES with scipy's
    finite-difference products (they only steer the iteration: the returned h
    is accepted on refnet's own measurement of ‖F(h) − h‖_∞ <= tol).  Use it
    where plain iteration converges slowly or not at all (ρ(J) near or
    above 1: Newton does not need a contraction).  Arguments and result as
    :func:`fixed_point`; ``maxiter`` counts Newton steps.
    """
    return _scipy_root("newton_krylov", scipy.optimize.newton_krylov, cell, theta, x, h0, tol, maxiter,
                       t, on_failure, {})


def spectral_radius(cell, theta, x, h_star, *, iterations=200, seed=0, t=None):
    """Power-method estimate of ρ(J), J = ∂F/∂h at h*, for every example.

    v ← J v / ‖J v‖ from a random start (J v by ``cell.step_jvp``); the
    estimate is the geometric mean of the growth factors ‖J v‖ over the second
    half of the iterations, so a dominant complex pair (whose single-step
    factors oscillate) still gives |λ| up to an O(1/iterations) error.  A
    diagnostic, not a certificate: with a gap |λ₂|/|λ₁| close to 1 it
    converges slowly.  Where J v vanishes the estimate is the float's
    smallest normal number, i.e. 0.

    Returns
    -------
    rho : (B,) on the backend of h*
    """
    h_star = check_problem(cell, theta, x, h_star, "h_star")
    iterations = check_int("iterations", iterations, 2)
    xp = xp_of(h_star)
    _, cache = cell.step(theta, h_star, x, t)
    v = xp.asarray(numpy.random.default_rng(seed).standard_normal(h_star.shape), dtype=h_star.dtype)
    v = v / xp.sqrt((v * v).sum(axis=1, keepdims=True))
    tiny = numpy.finfo(h_star.dtype).tiny
    log_growth = xp.zeros(h_star.shape[0], dtype=h_star.dtype)
    for k in range(iterations):
        w = cell.step_jvp(theta, cache, v, None, None)
        norm = xp.sqrt((w * w).sum(axis=1))
        if k >= iterations // 2:
            log_growth = log_growth + xp.log(xp.maximum(norm, tiny))
        v = w / xp.maximum(norm, tiny)[:, None]
    return xp.exp(log_growth / (iterations - iterations // 2))
