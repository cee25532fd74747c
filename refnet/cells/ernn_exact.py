"""Exact-equilibrium ERNN (beyond the ERNN paper): solve every step's fixed point to tolerance.

The ERNN paper's constraint h_t = φ(h_t, h_{t−1}, x_t) (§3.1) with Eq. 10's
linear dynamics inside the nonlinearity (see the README's Reference section, "ERNN"):

    h_t = T(h_t),      T(h) = σ(g(h)),      g(h) = U h + V h_{t−1} + W x_t + b

solved at every step instead of approximated by K inexact-Newton iterations
(:mod:`refnet.cells.ernn`).  σ = tanh (default) or ReLU.

**Forward.**  ``solver`` drives ‖T(h) − h‖_∞ below ``tol`` from h_{t−1}.
The default, :func:`hybr`, is Newton's method globalised by a trust region
(MINPACK's hybrj through ``scipy.optimize.root(method="hybr")``, exact
Jacobian J − I with J = ∂T/∂h = diag(σ'(g)) U), one example at a time: each
example is its own system, so one example's hard start does not shorten every
other example's steps, as a line search over the whole batch would (with
:func:`refnet.algorithms.equilibrium.newton_krylov` on :class:`ToyERNN` that
stalled at a residual of 0.3 after 100 iterations for B = 3, H = 4).  Any
solver of :mod:`refnet.algorithms.equilibrium` fits too (``fixed_point`` and
``anderson`` are much faster on a batch where T contracts, as ERNNs with small
U do), and so does :func:`fixed_point_then_hybr`, the plain iteration on the
batch and hybr for the examples it leaves unsolved.  A small residual alone does not make h accurate where the root is
nearly degenerate, so the step then takes an exact Newton correction
h ← h + (I − J)^{-1} (T(h) − h) and accepts the result only if its residual
is ≤ ``tol`` and so is the estimate of its distance to the root,
‖(I − J)^{-1} (T(h) − h)‖_∞ + ‖(I − J)^{-1} u (|h| + |T(h)|)‖_∞ (the next
Newton correction plus what rounding, unit roundoff u, can hide in the
residual, amplified as the correction would be).  At a regular root
quadratic convergence makes that so; where I − J is nearly singular the root
is not isolated to tolerance and :class:`refnet.ConvergenceError` is raised
with the residual.

**Backward** (implicit function theorem).  At h* = T(h*), with
D = diag(σ'(g*)):

    dh* = (I − D U)^{-1} D (dU h* + dV h_{t−1} + V dh_{t−1} + dW x + W dx + db)      (JVP)
    (I − D U)ᵀ z = ds,   dg = D z,   dU = dgᵀ h*,  dV = dgᵀ h_{t−1},  dW = dgᵀ x,
    db = Σ dg,  dh_{t−1} = dg V,  dx = dg W                                           (VJP)

one batched H×H solve per step; a numerically singular I − D U raises
:class:`refnet.NumericalError`.  BPTT then runs over time with this implicit
solve inside every step.

**The toy** :class:`ToyERNN` is the paper's Eq. 2, h_t = tanh(h_t + V h_{t−1} + W x_t + b):
U = I, fixed.  Its map is entrywise, h = tanh(h + c), with ∂T/∂h = 1 − h² at
the root: not a contraction near h = 0, where the root becomes a triple root
(h − tanh h ≈ h³/3) and Φ'(c) = (1 − h²)/h² is unbounded (the paper's Fig. 5).
Newton solves it wherever the root is regular; near c = 0 the error bound
above fails and the step raises ConvergenceError — never a silent answer.
In float64 with tol = 1e-10 that is |c| ≲ 1e-17 (h* ≲ 3e-6, where rounding in
the residual, ≈ u h*, hides the root's position to u / h* > tol), and small c
from the start h = 0, where Newton has almost no slope to follow (c = 1e-6
from h_{t−1} = 0 fails; from ±0.5 it is solved).

:class:`StepMap` presents T to the solvers as a cell on the static input
c_t = V h_{t−1} + W x_t + b, the form :mod:`refnet.algorithms.equilibrium` solves.

Parameters (the paper's names; init as :class:`refnet.cells.ernn.ERNN`):
W (H, I), V (H, H), U (H, H) (not in :class:`ToyERNN`), b (H,).
"""
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy
import scipy.optimize

from .._validate import check_int
from ..algorithms import equilibrium
from ..backend import get_dtype, get_xp, to_numpy, xp_of
from ..errors import ConvergenceError, NumericalError
from .activations import ACTIVATIONS
from .base import Cell

__all__ = ["ExactERNN", "ToyERNN", "ExactERNNCache", "StepMap", "hybr", "fixed_point_then_hybr"]


class ExactERNNCache(NamedTuple):
    x: object           # (B, I) input
    h_prev: object      # (B, H) h_{t−1}
    h: object           # (B, H) the equilibrium h*
    d_sigma: object     # (B, H) σ'(g*), the diagonal of D
    residual: float     # ‖T(h*) − h*‖_∞ at the returned h*
    iterations: int     # the solver's iterations, plus 1 for the Newton correction


class _MapCache(NamedTuple):
    d_sigma: object     # (B, H) σ'(g) at the point the map was applied to


@dataclass(frozen=True)
class StepMap(Cell):
    """One step's map h ↦ T(h) = σ(U h + c) as a cell on the static input c = V h_{t−1} + W x_t + b (B, H).

    This is how the per-step solve reuses :mod:`refnet.algorithms.equilibrium`,
    whose solvers find h* = F(h*) for a cell F on a static input.  Its
    ``step_jvp`` takes state tangents only (J v = D U v), which is what
    :func:`~refnet.algorithms.equilibrium.spectral_radius` asks of it.
    """

    ernn: "ExactERNN"

    @property
    def input_size(self):
        return self.ernn.hidden_size

    @property
    def hidden_size(self):
        return self.ernn.hidden_size

    def param_shapes(self):
        return self.ernn.param_shapes()

    def step(self, params, s_prev, x, t=None):
        """T(h) = σ(U h + c) with c = ``x``."""
        y = self.ernn.sigma.fn(self.ernn.feedback(params, s_prev) + x)
        return y, _MapCache(self.ernn.sigma.grad(y))

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """J v = D U v (state tangents only)."""
        if dparams is not None or dx is not None:
            raise ValueError("StepMap.step_jvp takes a state tangent only (dparams and dx must be None)")
        xp = xp_of(cache.d_sigma)
        if ds_prev is None:
            return xp.zeros_like(cache.d_sigma)
        return cache.d_sigma * self.ernn.feedback(params, ds_prev)

    def state_jacobian(self, params, cache):
        """J = ∂T/∂h = D U for every example, (B, H, H)."""
        return cache.d_sigma[:, :, None] * self.ernn.feedback_matrix(params, cache.d_sigma)[None]


def hybr(cell, theta, x, h0=None, *, tol=None, maxiter=100, t=None):
    """Powell's hybrid method, one example at a time (MINPACK hybrj via ``scipy.optimize.root``).

    For each example b, solves G(h) = F(h) − h = 0 by a trust-region
    (dogleg) Newton method with the exact Jacobian ``cell.state_jacobian`` − I.
    MINPACK stops on a relative step below ``tol`` or after ``maxiter``
    evaluations of G; refnet then measures ‖F(h) − h‖_∞ on the returned h
    and raises :class:`refnet.ConvergenceError` (carrying it, and naming the
    worst example) if it exceeds ``tol``.  The signature and result are those
    of the solvers of :mod:`refnet.algorithms.equilibrium`.

    Parameters
    ----------
    cell : a cell with ``state_jacobian`` (such as :class:`StepMap`);  theta : its params
    x : (B, I) static input (for :class:`StepMap`, c);  h0 : (B, n_state) start, or None for zeros
    tol : float, default ``equilibrium.DEFAULT_TOL`` of the dtype;  maxiter : int >= 1
    t : passed to ``cell.step``

    Returns
    -------
    refnet.algorithms.equilibrium.Equilibrium
        residuals = (at h0, at h); steps = the most evaluations of G any example took.
    """
    h = equilibrium.check_problem(cell, theta, x, h0)
    tol = equilibrium.DEFAULT_TOL[numpy.dtype(x.dtype)] if tol is None else tol
    maxiter = check_int("maxiter", maxiter, 1)
    xp = xp_of(h)
    eye = numpy.eye(cell.n_state)
    start = equilibrium.residual(cell, theta, x, h, t)
    equilibrium.check_finite_value("hybr", start, 0)
    roots, evaluations = [], 0
    for b in range(h.shape[0]):
        def G_and_jacobian(h_host, x_b=x[b:b + 1]):
            h_b = xp.asarray(h_host[None], dtype=x.dtype)
            y, cache = cell.step(theta, h_b, x_b, t)
            return to_numpy(y - h_b)[0], to_numpy(cell.state_jacobian(theta, cache))[0] - eye
        solution = scipy.optimize.root(G_and_jacobian, to_numpy(h[b]).astype(numpy.float64), jac=True,
                                       method="hybr", options={"xtol": tol, "maxfev": maxiter})
        roots.append(solution.x)
        evaluations = max(evaluations, int(solution.nfev))
    h = xp.asarray(numpy.stack(roots), dtype=x.dtype)
    per_example = xp.abs(cell.step(theta, h, x, t)[0] - h).max(axis=1)
    final = float(per_example.max())
    equilibrium.check_finite_value("hybr", final, evaluations)
    if not final <= tol:
        raise ConvergenceError(
            f"hybr: ‖F(h) − h‖_∞ = {final:.3e} > tol = {tol:.3e} (worst example "
            f"{int(per_example.argmax())}) after at most {evaluations} evaluations per example "
            f"(maxiter = {maxiter})", residual=final, iterations=evaluations, where="hybr")
    return equilibrium.Equilibrium(h, (start, final), evaluations, True)


def fixed_point_then_hybr(cell, theta, x, h0=None, *, tol=None, maxiter=300, t=None):
    """The plain fixed-point iteration on the batch, then :func:`hybr` for the examples it left unsolved.

    ``equilibrium.fixed_point`` runs ``maxiter`` iterations at most; every
    example whose residual is still above ``tol`` (where T contracts slowly or
    not at all) is then solved by :func:`hybr` from its last iterate.  Fast
    where T contracts, as robust as :func:`hybr` where it does not.  Raises
    :class:`refnet.ConvergenceError` where :func:`hybr` does.  Arguments and
    result as :func:`hybr`; ``steps`` counts the fixed-point iterations plus
    hybr's evaluations.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", equilibrium.ConvergenceWarning)   # handled below, by hybr
        eq = equilibrium.fixed_point(cell, theta, x, h0, tol=tol, maxiter=maxiter, t=t, on_failure="warn")
    if eq.converged:
        return eq
    xp = xp_of(eq.h)
    tol = equilibrium.DEFAULT_TOL[numpy.dtype(x.dtype)] if tol is None else tol
    h = eq.h.copy()
    unsolved = xp.abs(cell.step(theta, h, x, t)[0] - h).max(axis=1) > tol
    indices = [int(i) for i in xp.nonzero(unsolved)[0]]
    try:
        rest = hybr(cell, theta, x[unsolved], h[unsolved], tol=tol, t=t)
    except ConvergenceError as exc:
        raise ConvergenceError(f"{exc}; hybr ran on the examples {indices} that {eq.steps} fixed-point "
                               "iterations left unsolved, numbered from 0 in that order",
                               residual=exc.residual, iterations=eq.steps + exc.iterations,
                               where=exc.where) from exc
    h[unsolved] = rest.h
    final = equilibrium.residual(cell, theta, x, h, t)
    return equilibrium.Equilibrium(h, eq.residuals + (final,), eq.steps + rest.steps, final <= tol)


@dataclass(frozen=True)
class ExactERNN(Cell):
    """ERNN with every step's equilibrium solved to tolerance (module docstring).

    Parameters
    ----------
    input_size, hidden_size : int
    nonlinearity : 'tanh' (default) or 'relu'
    tol : float or None
        Bound on ‖T(h) − h‖_∞ and on the estimated distance to the root (module
        docstring); None for ``refnet.algorithms.equilibrium.DEFAULT_TOL`` of the dtype.
    maxiter : int
        Iterations allowed to ``solver``.
    solver : callable
        :func:`hybr` (default), :func:`fixed_point_then_hybr`, or a solver of
        :mod:`refnet.algorithms.equilibrium` (``fixed_point``, ``anderson``,
        ``newton_krylov``); it raises ConvergenceError on failure.
    """

    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"
    tol: Optional[float] = None
    maxiter: int = 100
    solver: Callable = hybr

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.tol is not None and not (isinstance(self.tol, float) and self.tol > 0):
            raise ValueError(f"tol must be None or a float > 0, got {self.tol!r}")
        if isinstance(self.maxiter, bool) or not isinstance(self.maxiter, int) or self.maxiter < 1:
            raise ValueError(f"maxiter must be a positive int, got {self.maxiter!r}")

    @property
    def sigma(self):
        return ACTIVATIONS[self.nonlinearity]

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"W": (H, I), "V": (H, H), "U": (H, H), "b": (H,)}

    def init(self, rng):
        """W, V ~ 0.1·N(0, 1); U = 0; b = 1 (as :class:`refnet.cells.ernn.ERNN`)."""
        xp, dtype, H, I = get_xp(), get_dtype(), self.hidden_size, self.input_size
        theta = {"W": rng.normal((H, I), 0.1), "V": rng.normal((H, H), 0.1),
                 "U": xp.zeros((H, H), dtype=dtype), "b": xp.ones(H, dtype=dtype)}
        return {k: theta[k] for k in self.param_shapes()}

    def feedback(self, params, h):
        """U h, row-wise (B, H)."""
        return h @ params["U"].T

    def feedback_vjp(self, dg, h):
        """∂/∂U of ⟨dg, U h⟩: {'U': dgᵀ h}."""
        return {"U": dg.T @ h}

    def feedback_jvp(self, dparams, h):
        """dU h."""
        return h @ dparams["U"].T

    def feedback_matrix(self, params, like):
        """U as an (H, H) array."""
        return params["U"]

    def static_input(self, params, h_prev, x):
        """c = V h_{t−1} + W x_t + b, the part of g = U h + c that does not move with h."""
        return h_prev @ params["V"].T + x @ params["W"].T + params["b"]

    def _I_minus_DU(self, params, d_sigma):
        """I − D U for every example, (B, H, H)."""
        xp = xp_of(d_sigma)
        eye = xp.eye(self.hidden_size, dtype=d_sigma.dtype)
        return eye[None] - d_sigma[:, :, None] * self.feedback_matrix(params, d_sigma)[None]

    def _solve(self, A, rhs, where):
        """Solve A z = rhs per example; rhs (B, H), or (B, H, k) for k right-hand sides returned
        as a tuple of k arrays (B, H).  NumericalError where A is numerically singular."""
        xp = xp_of(A)
        columns = rhs if rhs.ndim == 3 else rhs[:, :, None]
        try:
            z = xp.linalg.solve(A, columns)
        except numpy.linalg.LinAlgError as exc:
            raise NumericalError(f"{where}: I − diag(σ')U is singular at the equilibrium "
                                 f"({exc}); the implicit derivative does not exist", where=where) from exc
        if not bool(xp.isfinite(z).all()):
            raise NumericalError(f"{where}: the implicit solve with I − diag(σ')U gave NaN or Inf "
                                 "(the equilibrium's Jacobian is numerically singular)", where=where)
        return z[:, :, 0] if rhs.ndim == 2 else tuple(z[:, :, j] for j in range(z.shape[2]))

    def step(self, params, s_prev, x, t=None):
        """Solve h_t = σ(U h_t + V h_{t−1} + W x_t + b) to ``tol`` (module docstring)."""
        xp = xp_of(s_prev, x)
        where = f"{type(self).__name__} step t={t}"
        tol = equilibrium.DEFAULT_TOL[numpy.dtype(x.dtype)] if self.tol is None else self.tol
        c = self.static_input(params, s_prev, x)
        try:
            eq = self.solver(StepMap(self), params, c, s_prev, tol=tol, maxiter=self.maxiter)
        except ConvergenceError as exc:
            raise ConvergenceError(f"{where}: {exc}", residual=exc.residual, iterations=exc.iterations,
                                   where=where) from exc
        # An exact Newton correction polishes h; the next one bounds its error (module docstring).
        h = eq.h
        rounding = numpy.finfo(x.dtype).eps
        try:
            y = self.sigma.fn(self.feedback(params, h) + c)
            h = h + self._solve(self._I_minus_DU(params, self.sigma.grad(y)), y - h, where)
            y = self.sigma.fn(self.feedback(params, h) + c)
            next_correction, hidden = self._solve(
                self._I_minus_DU(params, self.sigma.grad(y)),
                xp.stack([y - h, rounding * (xp.abs(h) + xp.abs(y))], axis=2), where)
        except NumericalError as exc:
            raise ConvergenceError(f"{where}: the solver's h has ‖T(h) − h‖_∞ = {eq.residuals[-1]:.3e}, "
                                   f"but the Newton correction failed ({exc}): the root is not isolated",
                                   residual=eq.residuals[-1], iterations=eq.steps, where=where) from exc
        residual = float(xp.abs(y - h).max())
        error = float(xp.abs(next_correction).max() + xp.abs(hidden).max())
        if not (residual <= tol and error <= tol):
            raise ConvergenceError(
                f"{where}: after a Newton correction ‖T(h) − h‖_∞ = {residual:.3e} and the estimated "
                f"distance to the root ‖(I − J)^-1 (T(h) − h)‖ + ‖(I − J)^-1 u (|h| + |T(h)|)‖ = "
                f"{error:.3e}, not both <= tol = {tol:.3e}: I − diag(σ')U is nearly singular at this "
                "root, which is not isolated to tolerance", residual=residual, iterations=eq.steps + 1,
                where=where)
        return h, ExactERNNCache(x, s_prev, h, self.sigma.grad(y), residual, eq.steps + 1)

    def step_vjp(self, params, cache, ds):
        """Implicit function theorem: (I − D U)ᵀ z = ds, then back through g at h* (module docstring)."""
        A = self._I_minus_DU(params, cache.d_sigma)
        z = self._solve(A.transpose(0, 2, 1), ds, f"{type(self).__name__}.step_vjp")
        dg = cache.d_sigma * z
        dparams = {"W": dg.T @ cache.x, "V": dg.T @ cache.h_prev, "b": dg.sum(axis=0),
                   **self.feedback_vjp(dg, cache.h)}
        return dg @ params["V"], {k: dparams[k] for k in self.param_shapes()}, dg @ params["W"]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """dh* = (I − D U)^{-1} D (∂g/∂θ dθ + V dh_{t−1} + W dx)."""
        xp = xp_of(cache.x)
        dg = xp.zeros_like(cache.h)
        if ds_prev is not None:
            dg = dg + ds_prev @ params["V"].T
        if dx is not None:
            dg = dg + dx @ params["W"].T
        if dparams is not None:
            dg = (dg + self.feedback_jvp(dparams, cache.h) + cache.h_prev @ dparams["V"].T
                  + cache.x @ dparams["W"].T + dparams["b"])
        return self._solve(self._I_minus_DU(params, cache.d_sigma), cache.d_sigma * dg,
                           f"{type(self).__name__}.step_jvp")


@dataclass(frozen=True)
class ToyERNN(ExactERNN):
    """The paper's toy (Eq. 2): h_t = tanh(h_t + V h_{t−1} + W x_t + b), U = I fixed.

    Same solve and implicit gradient as :class:`ExactERNN` with U = I; the
    parameters are W, V, b.
    """

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity != "tanh":
            raise ValueError(f"nonlinearity of the toy ERNN (Eq. 2) is tanh, got {self.nonlinearity!r}")

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"W": (H, I), "V": (H, H), "b": (H,)}

    def feedback(self, params, h):
        """U h = h."""
        return h

    def feedback_vjp(self, dg, h):
        """U = I is not a parameter."""
        return {}

    def feedback_jvp(self, dparams, h):
        """U = I is not a parameter: no tangent."""
        return 0.0

    def feedback_matrix(self, params, like):
        """U = I."""
        return xp_of(like).eye(self.hidden_size, dtype=like.dtype)
