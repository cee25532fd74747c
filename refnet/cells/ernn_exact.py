"""Exact-equilibrium ERNN (beyond the ERNN paper): solve every step's fixed point to tolerance.

The ERNN paper's constraint h_t = φ(h_t, h_{t−1}, x_t) (§3.1) with Eq. 10's
linear dynamics inside the nonlinearity (see the README's Reference section, "ERNN"):

    h_t = T(h_t),      T(h) = σ(g(h)),      g(h) = U h + V h_{t−1} + W x_t + b

solved at every step instead of approximated by K inexact-Newton iterations
(:mod:`refnet.cells.ernn`).  σ = tanh (default) or ReLU.

**Forward.**  ``solver`` drives ‖T(h) − h‖_∞ below ``tol`` from h_{t−1}.
It is a map-level solver of :mod:`refnet.solvers.nonlinear`, called as
``solver(StepMap(...), h_prev, tol=tol, maxiter=maxiter) -> (h, SolveInfo)``.
The default, :func:`~refnet.solvers.nonlinear.hybr`, is Newton's method
globalised by a trust region (MINPACK's hybrj through
``scipy.optimize.root(method="hybr")``, exact Jacobian J − I with
J = ∂T/∂h = diag(σ'(g)) U), one example at a time: each example is its own
system, so one example's hard start does not shorten every other example's
steps, as a line search over the whole batch would (with
:func:`~refnet.solvers.nonlinear.newton_krylov` on :class:`ToyERNN` that
stalled at a residual of 0.3 after 100 iterations for B = 3, H = 4).  Any
solver of :mod:`refnet.solvers.nonlinear` fits (``fixed_point`` and
``anderson`` are much faster on a batch where T contracts, as ERNNs with small
U do), and so does :func:`~refnet.solvers.nonlinear.fixed_point_then_hybr`,
the plain iteration on the batch and hybr for the examples it leaves unsolved.
A failed solve goes through the solver layer's failure policy
(:func:`refnet.solvers.settle`: ConvergenceError by default).  A small
residual alone does not make h accurate where the root is
nearly degenerate, so the step then takes an exact Newton correction
h ← h + (I − J)^{-1} (T(h) − h) and accepts the result only if its residual
is ≤ ``tol`` and so is the estimate of its distance to the root,
‖(I − J)^{-1} (T(h) − h)‖_∞ + ‖(I − J)^{-1} u (|h| + |T(h)|)‖_∞ (the next
Newton correction plus what rounding, unit roundoff u, can hide in the
residual, amplified as the correction would be).  At a regular root
quadratic convergence makes that so; where I − J is nearly singular the root
is not isolated to tolerance and :class:`refnet.ConvergenceError` is raised
with the residual (through the same policy).

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

:class:`StepMap` presents T to the solvers as a map h ↦ σ(U h + c) on the
static input c_t = V h_{t−1} + W x_t + b, with the ``rows`` and ``jacobian``
that :func:`~refnet.solvers.nonlinear.hybr` needs.  The cell imports the
solver layer, which sits below the cells (the README's Layout).

**Cost on a device.**  This cell certifies every step's root before the
next step starts, so it reads back to the host inside the time loop, by
design: a failed solve is settled (ConvergenceError) at the step where it
happens.  The default solver, :func:`~refnet.solvers.nonlinear.hybr`
(MINPACK), solves each *example* on the host, with two device-to-host copies
per evaluation of G and of its H×H Jacobian: O(B · evaluations) transfers
per step.  :func:`~refnet.solvers.nonlinear.fixed_point_then_hybr` iterates
the whole batch on the device (one read-back per
:data:`~refnet.solvers.info.CHECK_EVERY` iterations) and hands only the
examples it leaves to hybr.  The Newton polish adds four read-backs per step
(two finiteness checks of its solves, the residual, the error bound).
Measured with the device double (``REFNET_BACKEND=strict``, B = 2, H = 4, hybr):
about 9 read-backs per time step.  On a GPU this cell is for checking
gradients, not for speed.

Parameters (the paper's names; init as :class:`refnet.cells.ernn.ERNN`):
W (H, I), V (H, H), U (H, H) (not in :class:`ToyERNN`), b (H,).
"""
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple, Optional

import numpy

from ..backend import xp_of
from ..errors import NumericalError
from ..solvers.info import DEFAULT_TOL, settle
from ..solvers.nonlinear import fixed_point_then_hybr, hybr
from .activations import ACTIVATIONS
from .base import Cell

# hybr and fixed_point_then_hybr are re-exported: they are the solvers ExactERNN is built with.
__all__ = ["ExactERNN", "ToyERNN", "ExactERNNCache", "StepMap", "hybr", "fixed_point_then_hybr"]


class ExactERNNCache(NamedTuple):
    """What :meth:`ExactERNN.step` keeps: the certified equilibrium and D for the implicit gradient.

    Attributes
    ----------
    x : (B, I) array
        The input x_t.
    h_prev : (B, H) array
        h_{t−1}.
    h : (B, H) array
        The equilibrium h* = T(h*).
    d_sigma : (B, H) array
        σ'(g*), the diagonal of D.
    residual : float
        ‖T(h*) − h*‖_∞ at the returned h* (the state's units).
    iterations : int
        The solver's iterations, plus 1 for the Newton correction.
    """

    x: object
    h_prev: object
    h: object
    d_sigma: object
    residual: float
    iterations: int


def _failure(info, message, residual, iterations):
    """The solver's SolveInfo turned into the step's certification failure (settled by the caller)."""
    return replace(info, solver=message.split(":", 1)[0], converged=False, residual=float(residual),
                   iterations=int(iterations), message=message)


@dataclass(frozen=True)
class StepMap:
    """One step's map T(h) = σ(U h + c) on the static input c = V h_{t−1} + W x_t + b (B, H).

    A map for :mod:`refnet.solvers.nonlinear` (block-separable over the
    batch), with ``rows`` and ``jacobian`` for :func:`~refnet.solvers.nonlinear.hybr`.
    Calling it on h (B, H) returns T(h) (B, H) (Zhang et al. 2019, Eq. 10
    inside σ; the module docstring).

    Attributes
    ----------
    ernn : ExactERNN
        The cell (an :class:`ExactERNN` or :class:`ToyERNN`) whose step this is;
        it supplies σ and the feedback U h.
    params : dict
        The cell's parameters {name: array}.
    c : (B, H) array
        The static input c_t = V h_{t−1} + W x_t + b.
    """

    ernn: Any
    params: dict
    c: Any

    def __call__(self, h):
        """T(h) = σ(U h + c): the map whose fixed point is the step's state.

        Parameters
        ----------
        h : (B, H) array
            The iterate.

        Returns
        -------
        (B, H) array

        Raises
        ------
        ValueError
            If ``h``'s shape does not fit U (the array module's matmul error).
        """
        return self.ernn.sigma.fn(self.ernn.feedback(self.params, h) + self.c)

    def rows(self, index):
        """The map restricted to the examples ``index`` (hybr solves one example at a time).

        Parameters
        ----------
        index : int array, slice or boolean (B,) mask
            The examples kept, as NumPy indexing of the batch axis takes them.

        Returns
        -------
        StepMap
            The same map on ``c[index]``.

        Raises
        ------
        IndexError
            If ``index`` is out of range for the batch of ``c``.
        """
        return StepMap(self.ernn, self.params, self.c[index])

    def jacobian(self, h):
        """J = ∂T/∂h = D U for every example, D = diag(σ'(U h + c)).

        Parameters
        ----------
        h : (B, H) array
            Where the Jacobian is taken.

        Returns
        -------
        (B, H, H) array
            J[b] = diag(σ'(g[b])) U.

        Raises
        ------
        ValueError
            If ``h`` is not (B, H) for the batch of ``c`` (from the array product).
        KeyError
            If the parameters lack U (not for :class:`ToyERNN`, whose U = I).
        """
        d_sigma = self.ernn.sigma.grad(self(h))
        return d_sigma[:, :, None] * self.ernn.feedback_matrix(self.params, d_sigma)[None]

    def jvp(self, h, v):
        """J v = D (U v) at h, without forming J.

        Parameters
        ----------
        h : (B, H) array
            Where J is taken.
        v : (B, H) array
            The direction.

        Returns
        -------
        (B, H) array
            diag(σ'(U h + c)) U v per example.

        Raises
        ------
        ValueError
            If ``h`` or ``v`` is not (B, H) for the batch of ``c`` (from the array product).
        KeyError
            If the parameters lack U (not for :class:`ToyERNN`).
        """
        return self.ernn.sigma.grad(self(h)) * self.ernn.feedback(self.params, v)


@dataclass(frozen=True)
class ExactERNN(Cell):
    """ERNN with every step's equilibrium h_t = σ(U h_t + V h_{t−1} + W x_t + b) solved to tolerance.

    The constraint of Zhang et al. 2019, §3.1, with Eq. 10's linear dynamics
    inside σ, solved exactly instead of by K inexact-Newton iterations
    (:class:`refnet.cells.ernn.ERNN`); the gradient is the implicit function
    theorem's (module docstring).  The state is h (B, H).

    Parameters
    ----------
    input_size : int
        I, the width of x_t, >= 1.
    hidden_size : int
        H, the width of h, >= 1.
    nonlinearity : {'tanh', 'relu'}
        σ; 'tanh' by default.
    tol : float or None
        Bound (the state's units) on ‖T(h) − h‖_∞ and on the estimated
        distance to the root (module docstring), > 0; None for
        ``refnet.solvers.DEFAULT_TOL`` of the dtype (1e-10 in float64, 1e-5 in float32).
    maxiter : int
        Iterations allowed to ``solver``, >= 1.
    solver : callable
        A map-level solver of :mod:`refnet.solvers.nonlinear`: :func:`hybr`
        (default), :func:`fixed_point_then_hybr`, ``fixed_point``,
        ``anderson``, ``newton_krylov``; called as
        ``solver(StepMap(self, params, c), h_prev, tol=, maxiter=) -> (h, SolveInfo)``.

    Raises
    ------
    ValueError
        If ``input_size``, ``hidden_size`` or ``maxiter`` is not a positive
        int, ``nonlinearity`` is not 'tanh' or 'relu', or ``tol`` is neither
        None nor a float > 0.
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
        """σ, the activation (``fn`` and ``grad`` read from the output) named by ``nonlinearity``."""
        return ACTIVATIONS[self.nonlinearity]

    def param_shapes(self):
        """The parameters' names and shapes.

        Returns
        -------
        dict
            {'W': (H, I), 'V': (H, H), 'U': (H, H), 'b': (H,)}.

        Raises
        ------
        TypeError
            Only if called with arguments (it takes none); the sizes it reads
            were validated when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        return {"W": (H, I), "V": (H, H), "U": (H, H), "b": (H,)}

    def init(self, rng):
        """Initial parameters: W, V ~ 0.1·N(0, 1); U = 0; b = 1 (as :class:`refnet.cells.ernn.ERNN`).

        Only the names of :meth:`param_shapes` are returned (:class:`ToyERNN` has no U).

        Parameters
        ----------
        rng : refnet.backend.Rng
            Source of the random draws; its dtype and backend are the parameters'.

        Returns
        -------
        dict
            {name: array} with the shapes of :meth:`param_shapes`.

        Raises
        ------
        AttributeError
            If ``rng`` is not a :class:`refnet.backend.Rng` (it lacks ``normal`` or ``constant``).
        """
        H, I = self.hidden_size, self.input_size
        theta = {"W": rng.normal((H, I), 0.1), "V": rng.normal((H, H), 0.1),   # all in the rng's dtype
                 "U": rng.constant(numpy.zeros((H, H))), "b": rng.constant(numpy.ones(H))}
        return {k: theta[k] for k in self.param_shapes()}

    def feedback(self, params, h):
        """U h, the self-feedback term of g = U h + c, row-wise.

        Parameters
        ----------
        params : dict
            The cell's parameters; U (H, H) is read.
        h : (B, H) array
            The iterate.

        Returns
        -------
        (B, H) array
            h Uᵀ.

        Raises
        ------
        KeyError
            If ``params`` lacks U.
        ValueError
            If ``h`` is not (B, H) (from the array product).
        """
        return h @ params["U"].T

    def feedback_vjp(self, dg, h):
        """∂/∂U of ⟨dg, U h⟩, summed over the batch.

        Parameters
        ----------
        dg : (B, H) array
            Cotangent of g.
        h : (B, H) array
            The equilibrium h* the feedback multiplied.

        Returns
        -------
        dict
            {'U': dgᵀ h} (H, H).

        Raises
        ------
        ValueError
            If the batch sizes of ``dg`` and ``h`` differ (from the array product).
        """
        return {"U": dg.T @ h}

    def feedback_jvp(self, dparams, h):
        """dU h, the tangent of U h along a parameter tangent.

        Parameters
        ----------
        dparams : dict
            Parameter tangents; dU (H, H) is read.
        h : (B, H) array
            The equilibrium h*.

        Returns
        -------
        (B, H) array
            h dUᵀ.

        Raises
        ------
        KeyError
            If ``dparams`` lacks U.
        ValueError
            If ``h`` is not (B, H) (from the array product).
        """
        return h @ dparams["U"].T

    def feedback_matrix(self, params, like):
        """U as an (H, H) array, for J = D U and I − D U.

        Parameters
        ----------
        params : dict
            The cell's parameters; U is read.
        like : array
            Unused here; :class:`ToyERNN` builds its U = I in this array's dtype and backend.

        Returns
        -------
        (H, H) array
            ``params['U']`` itself (not a copy).

        Raises
        ------
        KeyError
            If ``params`` lacks U.
        """
        return params["U"]

    def static_input(self, params, h_prev, x):
        """c = V h_{t−1} + W x_t + b, the part of g = U h + c that does not move with h.

        Parameters
        ----------
        params : dict
            The cell's parameters; V, W and b are read.
        h_prev : (B, H) array
            h_{t−1}.
        x : (B, I) array
            x_t.

        Returns
        -------
        (B, H) array
            c_t.

        Raises
        ------
        KeyError
            If ``params`` lacks V, W or b.
        ValueError
            If the shapes disagree (from the array product).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
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
        """Solve h_t = σ(U h_t + V h_{t−1} + W x_t + b) to ``tol``, from h_{t−1} (module docstring).

        The equilibrium of Zhang et al. 2019, §3.1 (Eq. 10 inside σ): ``solver``
        first, then one exact Newton correction whose residual and estimated
        distance to the root must both be ≤ ``tol``.  Failures go through
        :func:`refnet.solvers.settle` (ConvergenceError by default; under
        ``refnet.solvers.failures("warn")`` a warning and the uncertified h).

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        s_prev : (B, H) array
            h_{t−1}, also the solver's start.
        x : (B, I) array
            x_t, float32 or float64 when ``tol`` is None.
        t : int or None
            0-based index of x_t (steps); only named in failure messages.

        Returns
        -------
        h : (B, H) array
            The certified equilibrium h_t = h*.
        cache : ExactERNNCache
            What :meth:`step_vjp` and :meth:`step_jvp` read.

        Raises
        ------
        refnet.ConvergenceError
            Under the default failure policy: if ``solver`` does not reach
            ``tol`` in ``maxiter`` iterations, the Newton correction meets a
            numerically singular I − D U, or after it the residual or the error
            bound exceeds ``tol`` (the root is not isolated to tolerance).
        refnet.NumericalError
            If the solver's residual becomes NaN or Inf.
        KeyError
            If ``params`` lacks a parameter, or ``tol`` is None and the dtype of
            ``x`` is neither float32 nor float64.
        ValueError
            If the shapes of ``params``, ``s_prev`` and ``x`` disagree (from the array product).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(s_prev, x)
        where = f"{type(self).__name__} step t={t}"
        tol = DEFAULT_TOL[numpy.dtype(x.dtype)] if self.tol is None else self.tol
        c = self.static_input(params, s_prev, x)
        h, info = self.solver(StepMap(self, params, c), s_prev, tol=tol, maxiter=self.maxiter)
        if info.failed:
            settle(replace(info, solver=where, message=f"{where}: {info.message}"), stacklevel=3)
        # An exact Newton correction polishes h; the next one bounds its error (module docstring).
        rounding = numpy.finfo(x.dtype).eps
        try:
            y = self.sigma.fn(self.feedback(params, h) + c)
            h_new = h + self._solve(self._I_minus_DU(params, self.sigma.grad(y)), y - h, where)
            y_new = self.sigma.fn(self.feedback(params, h_new) + c)
            next_correction, hidden = self._solve(
                self._I_minus_DU(params, self.sigma.grad(y_new)),
                xp.stack([y_new - h_new, rounding * (xp.abs(h_new) + xp.abs(y_new))], axis=2), where)
        except NumericalError as exc:
            settle(_failure(info, f"{where}: the solver's h has ‖T(h) − h‖_∞ = {info.residual:.3e}, but the "
                            f"Newton correction failed ({exc}): the root is not isolated", info.residual,
                            info.iterations), stacklevel=3)
            return h, ExactERNNCache(x, s_prev, h, self.sigma.grad(y), info.residual, info.iterations)
        h, y = h_new, y_new
        residual = float(xp.abs(y - h).max())
        error = float(xp.abs(next_correction).max() + xp.abs(hidden).max())
        if not (residual <= tol and error <= tol):
            settle(_failure(
                info, f"{where}: after a Newton correction ‖T(h) − h‖_∞ = {residual:.3e} and the estimated "
                f"distance to the root ‖(I − J)^-1 (T(h) − h)‖ + ‖(I − J)^-1 u (|h| + |T(h)|)‖ = "
                f"{error:.3e}, not both <= tol = {tol:.3e}: I − diag(σ')U is nearly singular at this "
                "root, which is not isolated to tolerance", residual, info.iterations + 1), stacklevel=3)
        return h, ExactERNNCache(x, s_prev, h, self.sigma.grad(y), residual, info.iterations + 1)

    def step_vjp(self, params, cache, ds):
        """VJP of :meth:`step` by the implicit function theorem: (I − D U)ᵀ z = ds, then back through g at h*.

        dg = D z; dU = dgᵀ h*, dV = dgᵀ h_{t−1}, dW = dgᵀ x, db = Σ_b dg,
        dh_{t−1} = dg V, dx = dg W (module docstring), one batched H×H solve.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        cache : ExactERNNCache
            What :meth:`step` returned for this step.
        ds : (B, H) array
            Cotangent of h_t = h*.

        Returns
        -------
        ds_prev : (B, H) array
            ∂/∂h_{t−1}.
        dparams : dict
            ∂/∂θ for every parameter of :meth:`param_shapes`, summed over the batch.
        dx : (B, I) array
            ∂/∂x_t.

        Raises
        ------
        refnet.NumericalError
            If I − D U is numerically singular at h* (the solve fails or gives NaN or Inf).
        KeyError
            If ``params`` lacks a parameter.
        ValueError
            If the shape of ``ds`` disagrees with the cache's.
        """
        A = self._I_minus_DU(params, cache.d_sigma)
        z = self._solve(A.transpose(0, 2, 1), ds, f"{type(self).__name__}.step_vjp")
        dg = cache.d_sigma * z
        dparams = {"W": dg.T @ cache.x, "V": dg.T @ cache.h_prev, "b": dg.sum(axis=0),
                   **self.feedback_vjp(dg, cache.h)}
        return dg @ params["V"], {k: dparams[k] for k in self.param_shapes()}, dg @ params["W"]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of :meth:`step` (implicit function theorem): dh* = (I − D U)^{-1} D (∂g/∂θ dθ + V dh_{t−1} + W dx).

        ∂g/∂θ dθ = dU h* + dV h_{t−1} + dW x + db (module docstring).

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        cache : ExactERNNCache
            What :meth:`step` returned for this step.
        ds_prev : (B, H) array or None
            Tangent of h_{t−1}; None for zero.
        dparams : dict or None
            Tangent of every parameter, shared by the batch; None for zero.
        dx : (B, I) array or None
            Tangent of x_t; None for zero.

        Returns
        -------
        (B, H) array
            Tangent of h_t = h*.

        Raises
        ------
        refnet.NumericalError
            If I − D U is numerically singular at h*.
        KeyError
            If ``params`` or ``dparams`` lacks a parameter.
        ValueError
            If a tangent's shape disagrees with the cache's (from the array product).
        """
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
    """The paper's toy (Zhang et al. 2019, Eq. 2): h_t = tanh(h_t + V h_{t−1} + W x_t + b), U = I fixed.

    Same solve and implicit gradient as :class:`ExactERNN` with U = I; the
    parameters are W, V, b.  Near c = V h_{t−1} + W x_t + b = 0 the root is
    nearly triple and the step raises ConvergenceError (module docstring).

    Parameters
    ----------
    input_size : int
        I, the width of x_t, >= 1.
    hidden_size : int
        H, the width of h, >= 1.
    nonlinearity : {'tanh'}
        σ; Eq. 2 has tanh, and nothing else is accepted.
    tol : float or None
        As :class:`ExactERNN`: the bound on ‖T(h) − h‖_∞ and on the estimated
        distance to the root, > 0; None for the dtype's default.
    maxiter : int
        Iterations allowed to ``solver``, >= 1.
    solver : callable
        A map-level solver of :mod:`refnet.solvers.nonlinear` (default :func:`hybr`).

    Raises
    ------
    ValueError
        If ``nonlinearity`` is not 'tanh', or any argument fails
        :class:`ExactERNN`'s checks.
    """

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity != "tanh":
            raise ValueError(f"nonlinearity of the toy ERNN (Eq. 2) is tanh, got {self.nonlinearity!r}")

    def param_shapes(self):
        """The parameters' names and shapes (no U: it is I).

        Returns
        -------
        dict
            {'W': (H, I), 'V': (H, H), 'b': (H,)}.

        Raises
        ------
        TypeError
            Only if called with arguments (it takes none); the sizes it reads
            were validated when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        return {"W": (H, I), "V": (H, H), "b": (H,)}

    def feedback(self, params, h):
        """U h = h (U = I, Eq. 2).

        Parameters
        ----------
        params : dict
            The cell's parameters (not read).
        h : (B, H) array
            The iterate.

        Returns
        -------
        (B, H) array
            ``h`` itself.

        Raises
        ------
        TypeError
            Only if called with the wrong number of arguments; nothing is computed.
        """
        return h

    def feedback_vjp(self, dg, h):
        """No parameter gradient: U = I is not a parameter.

        Parameters
        ----------
        dg : (B, H) array
            Cotangent of g (not read).
        h : (B, H) array
            The equilibrium (not read).

        Returns
        -------
        dict
            {} (empty).

        Raises
        ------
        TypeError
            Only if called with the wrong number of arguments; nothing is computed.
        """
        return {}

    def feedback_jvp(self, dparams, h):
        """No tangent: U = I is not a parameter.

        Parameters
        ----------
        dparams : dict
            Parameter tangents (not read).
        h : (B, H) array
            The equilibrium (not read).

        Returns
        -------
        float
            0.0, which broadcasts against the other (B, H) terms of dg.

        Raises
        ------
        TypeError
            Only if called with the wrong number of arguments; nothing is computed.
        """
        return 0.0

    def feedback_matrix(self, params, like):
        """U = I as an (H, H) array in the dtype and backend of ``like``.

        Parameters
        ----------
        params : dict
            The cell's parameters (not read).
        like : array
            Gives the dtype and backend (NumPy or CuPy), e.g. D (B, H).

        Returns
        -------
        (H, H) array
            The identity.

        Raises
        ------
        AttributeError
            If ``like`` has no ``dtype`` (not an array).
        """
        return xp_of(like).eye(self.hidden_size, dtype=like.dtype)
