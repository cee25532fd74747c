"""Recurrent back-propagation at an equilibrium (Almeida 1987, Pineda 1987; Liao et al. 2018).

At h* = F(x, w, h*) the implicit function theorem gives (Liao et al., Eqs. 1–2)

    dL/dw = zᵀ ∂F/∂w,      (I − Jᵀ) z = ∂L/∂h*,      J = ∂F/∂h at h*,

so the gradient needs no trajectory, only a linear solve.  The variants
differ only in the solver for z; each is its own function:

=================  ==========================================================
:func:`rbp`        z ← Jᵀ z + ∂L/∂h* until converged (Alg. 1)
:func:`cg_rbp`     CG on the normal equations (I − J)(I − Jᵀ) z = (I − J) ∂L/∂h*
:func:`gmres_rbp`  GMRES on (I − Jᵀ) z = ∂L/∂h* directly (better conditioned)
:func:`neumann_rbp`  z = Σ_{t=0..K} (Jᵀ)^t ∂L/∂h* (Alg. 2)
=================  ==========================================================

Every product with Jᵀ is the cell's hand-written ``step_vjp`` at h*, every
product with J its ``step_jvp``.  The interface is a VJP: the caller gives the
cotangent ``dh`` = ∂L/∂h* (B, n_state) and gets back dθ = zᵀ ∂F/∂θ (summed
over the batch, as every refnet VJP), dx = zᵀ ∂F/∂x (B, I) and z.

**Batches.**  The adjoint system is block-diagonal over the batch: example
b's block is I − J_bᵀ.  The Krylov solvers treat the batch as one
LinearOperator on vectors of length B·n rather than B separate solves: each
product is then one batched VJP (a GEMM over all B rows instead of B
matrix-vector products and B times the Python overhead), and the stopping
rule is on the residual of the stacked system, ‖r‖₂ over all B·n entries —
the quantity that bounds the error of the batch gradient dθ = Σ_b z_bᵀ ∂F_b/∂θ,
which is what the caller receives.  The price: the Krylov space is shared,
so a joint solve may take more iterations than the hardest single example.

**Index convention (Liao et al. 2018, Alg. 2 and Prop. 2; README, Reference).**  Neumann-RBP(K) sums K + 1 terms
(Jᵀ)^0 … (Jᵀ)^K; back-propagating through m applications of F sums m terms.
So Neumann-RBP(K) equals TBPTT through K + 1 applications of F on a
trajectory that sat at h* for those steps (Liao et al. Prop. 2, with this
indexing); K → ∞ gives RBP and BPTT through a converged trajectory (Prop. 1),
with error ‖(I − Jᵀ)^{-1}‖ ‖J‖^{K+1} ‖∂L/∂h*‖ at most (Prop. 3).

**Claims and failures.**  Every result reports the iterations used and the
final linear residual ‖∂L/∂h* − (I − Jᵀ) z‖₂, measured on the returned z
(it costs nothing: the VJP that gives dθ gives Jᵀ z too).  A solver that
misses its tolerance raises :class:`refnet.ConvergenceError` carrying that
residual, or warns where the caller passed ``on_failure="warn"`` (then
``converged`` is False).  NaN/Inf raises :class:`refnet.NumericalError`.
The given h* is not re-solved; how far it is from an equilibrium,
‖F(h*) − h*‖_∞, is reported as ``fixed_point_residual``.
"""
import math
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy
import scipy.sparse.linalg

from .._validate import check_array, check_int, check_same_dtype
from ..backend import xp_of
from ..errors import NumericalError
from .equilibrium import check_on_failure, check_problem, report_failure

__all__ = ["ImplicitGradient", "rbp", "cg_rbp", "gmres_rbp", "neumann_rbp", "DEFAULT_RTOL"]

# Default relative tolerance on the linear residual, by dtype.
DEFAULT_RTOL = {numpy.dtype("float64"): 1e-10, numpy.dtype("float32"): 1e-5}


@dataclass(frozen=True)
class ImplicitGradient:
    """What an RBP variant returns.

    dtheta : dict, zᵀ ∂F/∂θ summed over the batch;  dx : (B, I) zᵀ ∂F/∂x;
    z : (B, n_state) the adjoint;  iterations : solver iterations (see each
    function);  residual : ‖∂L/∂h* − (I − Jᵀ) z‖₂ over the batch;
    converged : whether the stopping rule was met (None where no tolerance was
    asked: Neumann-RBP without ``rtol``);  fixed_point_residual : ‖F(h*) − h*‖_∞.
    """

    dtheta: dict
    dx: Any
    z: Any
    iterations: int
    residual: float
    converged: Optional[bool]
    fixed_point_residual: float


class _Linearisation:
    """F linearised at h*: products with Jᵀ and J from one step's cache."""

    def __init__(self, cell, theta, x, h_star, t):
        xp = xp_of(h_star)
        self.cell, self.theta = cell, theta
        h_next, self.cache = cell.step(theta, h_star, x, t)
        self.fixed_point_residual = float(xp.abs(h_next - h_star).max())

    def vjp(self, z):
        """(Jᵀ z, zᵀ ∂F/∂θ, zᵀ ∂F/∂x)."""
        return self.cell.step_vjp(self.theta, self.cache, z)

    def jvp(self, v):
        """J v."""
        return self.cell.step_jvp(self.theta, self.cache, v, None, None)


def _norm(a):
    return float(xp_of(a).sqrt((a * a).sum()))


def _setup(cell, theta, x, h_star, dh, rtol, atol, t, on_failure):
    """Validate once; returns (linearisation, threshold max(rtol‖dh‖₂, atol), rtol, atol)."""
    h_star = check_problem(cell, theta, x, h_star, "h_star")
    check_array("dh", dh, shape=h_star.shape)
    check_same_dtype({"h_star": h_star, "dh": dh})
    check_on_failure(on_failure)
    if rtol is None:
        rtol = DEFAULT_RTOL[numpy.dtype(h_star.dtype)]
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a float >= 0, got {value!r}")
    lin = _Linearisation(cell, theta, x, h_star, t)
    if not math.isfinite(lin.fixed_point_residual):
        raise NumericalError("F(h*) is not finite: the cell overflowed at h_star", where="h_star")
    return lin, max(rtol * _norm(dh), atol), float(rtol), float(atol)


def _result(name, lin, dh, z, iterations, converged):
    """dθ, dx and the residual of z from one more VJP; checks finiteness."""
    Jt_z, dtheta, dx = lin.vjp(z)
    residual = _norm(dh - z + Jt_z)
    if not math.isfinite(residual):
        raise NumericalError(f"{name}: the adjoint z became non-finite after {iterations} iterations "
                             "(the iteration diverged: is ρ(J) < 1 at h*?)", where="z")
    return ImplicitGradient(dtheta, dx, z, iterations, residual, converged, lin.fixed_point_residual)


def rbp(cell, theta, x, h_star, dh, *, z0=None, rtol=None, atol=0.0, maxiter=1000, t=None,
        on_failure="raise"):
    """Original RBP (Almeida 1987, Pineda 1987; Liao et al. 2018, Alg. 1).

    Fixed-point iteration on the adjoint, z_i = Jᵀ z_{i−1} + ∂L/∂h*, stopped at
    the first z_i with ‖∂L/∂h* − (I − Jᵀ) z_i‖₂ <= max(rtol ‖∂L/∂h*‖₂, atol).
    (Alg. 1 stops on ‖z_{i+1} − z_i‖, which is that same residual.)  It
    converges iff ρ(J) < 1.

    Parameters
    ----------
    cell, theta : a refnet cell and its params;  x : (B, I) static input
    h_star : (B, n_state) the equilibrium;  dh : (B, n_state) ∂L/∂h*
    z0 : (B, n_state) start, default 0.  Liao et al.'s code starts from
        U(0, 1): pass ``refnet.rng(seed).uniform(dh.shape)``.
    rtol, atol : stopping rule above; rtol defaults to :data:`DEFAULT_RTOL`
    maxiter : most updates of z;  t : passed to ``cell.step``
    on_failure : "raise" (default) or "warn"

    Returns
    -------
    ImplicitGradient; ``iterations`` is the number of updates of z.
    """
    lin, threshold, _, _ = _setup(cell, theta, x, h_star, dh, rtol, atol, t, on_failure)
    maxiter = check_int("maxiter", maxiter, 0)
    z = xp_of(dh).zeros_like(dh) if z0 is None else check_array("z0", z0, shape=dh.shape)
    for i in range(maxiter + 1):
        Jt_z, dtheta, dx = lin.vjp(z)
        r = dh - z + Jt_z
        residual = _norm(r)
        if not math.isfinite(residual):
            raise NumericalError(f"rbp: the adjoint z became non-finite after {i} iterations "
                                 "(ρ(J) >= 1 at h*?)", where="z")
        if residual <= threshold:
            return ImplicitGradient(dtheta, dx, z, i, residual, True, lin.fixed_point_residual)
        if i < maxiter:
            z = Jt_z + dh                                   # Alg. 1, line 4
    report_failure(on_failure, f"rbp: linear residual {residual:.3e} > {threshold:.3e} after "
                   f"maxiter = {maxiter} iterations", residual=residual, iterations=maxiter, where="rbp")
    return ImplicitGradient(dtheta, dx, z, maxiter, residual, False, lin.fixed_point_residual)


def neumann_rbp(cell, theta, x, h_star, dh, *, K, rtol=None, t=None, on_failure="raise"):
    """Neumann-RBP(K) (Liao et al. 2018, Alg. 2).

    v_0 = g_0 = ∂L/∂h*;  v_k = Jᵀ v_{k−1},  g_k = g_{k−1} + v_k  for k = 1..K;
    z = g_K = Σ_{k=0..K} (Jᵀ)^k ∂L/∂h* — K + 1 terms, so this equals TBPTT
    through K + 1 applications of F at h* (module docstring).  K + 1 VJPs.

    The residual ‖∂L/∂h* − (I − Jᵀ) g_K‖ = ‖(Jᵀ)^{K+1} ∂L/∂h*‖ is reported.
    A truncated series claims no tolerance: with ``rtol`` None (default)
    ``converged`` is None; given ``rtol``, the residual must be
    <= rtol ‖∂L/∂h*‖₂ or the call fails as :func:`rbp` does.

    Parameters
    ----------
    As :func:`rbp`, with K : int >= 0 the truncation.

    Returns
    -------
    ImplicitGradient; ``iterations`` = K.
    """
    lin, threshold, _, _ = _setup(cell, theta, x, h_star, dh, rtol, 0.0, t, on_failure)
    K = check_int("K", K, 0)
    v = g = dh
    for _ in range(K):
        v = lin.vjp(v)[0]
        g = g + v
    result = _result("neumann_rbp", lin, dh, g, K, None)
    if rtol is None:
        return result
    if result.residual > threshold:
        report_failure(on_failure, f"neumann_rbp: linear residual {result.residual:.3e} > {threshold:.3e} "
                       f"with K = {K}", residual=result.residual, iterations=K, where="neumann_rbp")
    return replace(result, converged=result.residual <= threshold)


def _krylov(xp):
    """scipy.sparse.linalg on NumPy, cupyx.scipy.sparse.linalg on CuPy."""
    if xp is numpy:
        return scipy.sparse.linalg
    import cupyx.scipy.sparse.linalg
    return cupyx.scipy.sparse.linalg


def _operator(linalg, shape, dtype, apply):
    """A LinearOperator on flat vectors of length B·n applying ``apply`` to (B, n) arrays."""
    size = shape[0] * shape[1]
    return linalg.LinearOperator((size, size), dtype=dtype,
                                 matvec=lambda v: apply(v.reshape(shape)).reshape(-1))


def _krylov_failure(name, info, result, threshold, maxiter, on_failure):
    """Translate a Krylov solver's ``info`` into refnet's failure policy."""
    if info < 0:
        raise NumericalError(f"{name}: the Krylov solver broke down (info = {info}); linear residual "
                             f"{result.residual:.3e}", where="z")
    if info > 0:
        report_failure(on_failure, f"{name}: linear residual {result.residual:.3e} (target "
                       f"{threshold:.3e}) after {result.iterations} iterations (maxiter = {maxiter})",
                       residual=result.residual, iterations=result.iterations, where=name)


def cg_rbp(cell, theta, x, h_star, dh, *, rtol=None, atol=0.0, maxiter=None, damping=0.0, t=None,
           on_failure="raise"):
    """CG-RBP (Liao et al. 2018): conjugate gradients on the normal equations.

    Solves ((I − J)(I − Jᵀ) + damping·I) z = (I − J) ∂L/∂h* with
    ``scipy.sparse.linalg.cg`` (``cupyx.scipy.sparse.linalg.cg`` on CuPy) on a
    LinearOperator over the whole batch (module docstring); each iteration is
    one VJP and one JVP.  The normal equations make the operator symmetric
    positive definite but square its condition number.  ``damping`` is the
    η·I that Liao et al.'s code adds (1e-5 there; 0 here): it biases z by
    O(damping).

    Stopping rule (scipy's, on the normal equations):
    ‖(I − J)∂L/∂h* − (…) z‖₂ <= max(rtol ‖(I − J)∂L/∂h*‖₂, atol).  The reported
    ``residual`` is that of (I − Jᵀ) z = ∂L/∂h* itself, which can exceed
    rtol ‖∂L/∂h*‖₂ by up to the condition number of I − Jᵀ.

    Parameters
    ----------
    As :func:`rbp`;  maxiter : CG iterations (None: scipy's default, 10·B·n);
    damping : float >= 0.

    Returns
    -------
    ImplicitGradient; ``iterations`` counts CG iterations.
    """
    lin, threshold, rtol, atol = _setup(cell, theta, x, h_star, dh, rtol, atol, t, on_failure)
    if maxiter is not None:
        maxiter = check_int("maxiter", maxiter, 1)
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not damping >= 0:
        raise ValueError(f"damping must be a float >= 0, got {damping!r}")
    xp = xp_of(dh)
    linalg = _krylov(xp)

    def normal(v):
        u = v - lin.vjp(v)[0]                               # (I − Jᵀ) v
        return u - lin.jvp(u) + damping * v                 # (I − J) u + η v
    A = _operator(linalg, dh.shape, dh.dtype, normal)
    b = dh - lin.jvp(dh)                                    # (I − J) ∂L/∂h*
    count = [0]

    def callback(_):
        count[0] += 1
    z, info = linalg.cg(A, b.reshape(-1), rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
    result = _result("cg_rbp", lin, dh, z.reshape(dh.shape), count[0], info == 0)
    _krylov_failure("cg_rbp", info, result, threshold, maxiter, on_failure)
    return result


def gmres_rbp(cell, theta, x, h_star, dh, *, rtol=None, atol=0.0, restart=20, maxiter=None, t=None,
              on_failure="raise"):
    """GMRES-RBP: GMRES(restart) on (I − Jᵀ) z = ∂L/∂h* (the adjoint system of Liao et al., Eq. 2).

    ``scipy.sparse.linalg.gmres`` (``cupyx`` on CuPy) on a LinearOperator over
    the whole batch; one VJP per product.  Works on I − Jᵀ directly, so its
    conditioning is that of the system, not its square as in :func:`cg_rbp`,
    and it needs no JVP.

    Stopping rule (scipy's): ‖∂L/∂h* − (I − Jᵀ) z‖₂ <= max(rtol ‖∂L/∂h*‖₂, atol).

    Parameters
    ----------
    As :func:`rbp`;  restart : Krylov dimension between restarts;
    maxiter : restart cycles, as scipy counts them (None: scipy's default).

    Returns
    -------
    ImplicitGradient; ``iterations`` counts products with I − Jᵀ (one per
    inner GMRES iteration, plus one per restart for the true residual).
    """
    lin, threshold, rtol, atol = _setup(cell, theta, x, h_star, dh, rtol, atol, t, on_failure)
    restart = check_int("restart", restart, 1)
    if maxiter is not None:
        maxiter = check_int("maxiter", maxiter, 1)
    linalg = _krylov(xp_of(dh))
    count = [0]

    def adjoint(v):
        count[0] += 1
        return v - lin.vjp(v)[0]                            # (I − Jᵀ) v
    A = _operator(linalg, dh.shape, dh.dtype, adjoint)
    z, info = linalg.gmres(A, dh.reshape(-1), rtol=rtol, atol=atol, restart=restart, maxiter=maxiter)
    result = _result("gmres_rbp", lin, dh, z.reshape(dh.shape), count[0], info == 0)
    _krylov_failure("gmres_rbp", info, result, threshold, maxiter, on_failure)
    return result
