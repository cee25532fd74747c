"""UORO (Tallec & Ollivier 2017): an unbiased rank-one estimate of the RTRL sensitivity.

Keep s̃ (n) and θ̃ (P) per example with E[s̃ θ̃ᵀ] = M_t = ds_t/dθ.  At each
step, with ν a vector of independent random signs (paper, Alg. 1):

    a  = J_s s̃                       (a JVP along the state)
    b  = νᵀ J_θ                       (a VJP of ν)
    ρ0 = sqrt(‖θ̃‖ / (‖a‖ + ε)) + ε,   ρ1 = sqrt(‖b‖ / (‖ν‖ + ε)) + ε
    s̃ ← ρ0 a + ρ1 ν,                  θ̃ ← θ̃ / ρ0 + b / ρ1

s̃' θ̃'ᵀ = a θ̃ᵀ + ν νᵀ J_θ + (ρ0/ρ1) a νᵀ J_θ + (ρ1/ρ0) ν θ̃ᵀ; the cross terms
have mean zero (ν is symmetric and ρ1 even in ν) and E[ν νᵀ] = I, so
E[s̃' θ̃'ᵀ] = J_s M_{t−1} + J_θ: the estimate stays unbiased.  ρ0, ρ1 balance
the two factors' norms, which minimises the variance the update adds.
The gradient estimate is Σ_t Σ_b (∂L_t/∂s_t · s̃_t) θ̃_t (the cell has no
direct term).

Online learning (B = 1) spends one JVP and one VJP per step.  ``step_vjp``
sums over the batch while b must be per example, so at B > 1 b is read off
the cell's per-example J_θ (``jacobians``) instead.
"""
import math
from typing import NamedTuple

from .._validate import check_array, check_int, check_number
from ..backend import Rng, xp_of
from ..params import axpy, flatten, unflatten, zeros_like
from .bptt import GradResult
from .checks import StepWatch, check_cell, check_objective, check_sequence
from .trainable import check_trainable, trainable_columns

__all__ = ["UOROState", "check_rng", "uoro_init", "uoro_update", "uoro_gradient", "uoro", "EPS"]

EPS = 1e-7   # the paper's ε: keeps ρ0, ρ1 finite and positive when a factor is zero (at t = 1)


class UOROState(NamedTuple):
    s_tilde: object      # (B, n)
    theta_tilde: object  # (B, P_trainable), columns in flatten order of cell.param_shapes()
    columns: object = None   # the trainable columns of J_θ (flatten order), None for all


def check_rng(rng):
    """TypeError unless ``rng`` is a :class:`refnet.backend.Rng`."""
    if not isinstance(rng, Rng):
        raise TypeError(f"rng must be a refnet.backend.Rng (refnet.rng(seed)), got {type(rng).__name__}")
    return rng


def uoro_init(cell, batch, like, trainable=None):
    """s̃ = 0, θ̃ = 0 (M_0 = 0) for ``batch`` examples, on the backend and dtype of ``like``.

    ``trainable`` (collection of parameter names, default all): θ̃ gets the
    entries of those parameters only (module docstring).

    Raises TypeError for a non-cell, a ``like`` that is not a floating array or a ``trainable``
    that is not a collection of names; ValueError for ``batch`` < 1 or a name the cell lacks.
    """
    check_cell(cell)
    batch = check_int("batch", batch, 1)
    check_array("like", like, finite=False)
    names = check_trainable(cell, trainable)
    xp = xp_of(like)
    P = sum(math.prod(shape) for shape in cell.param_shapes().values())
    columns = None
    if len(names) < len(cell.param_shapes()):
        columns = xp.asarray(trainable_columns(cell, names))
        P = int(columns.size)
    return UOROState(xp.zeros((batch, cell.n_state), dtype=like.dtype), xp.zeros((batch, P), dtype=like.dtype),
                     columns)


def _nu_J_theta(cell, theta, cache, nu, columns):
    """b = νᵀ J_θ for each example, (B, P), on the trainable ``columns`` only (None: all).

    At B = 1 one VJP; at B > 1 a VJP would sum over the batch, so b is read
    off the per-example J_θ of ``cell.jacobians`` instead.
    """
    if nu.shape[0] == 1:
        dparams = cell.step_vjp(theta, cache, nu)[1]
        b = flatten({k: dparams[k] for k in cell.param_shapes()})
        return (b if columns is None else b[columns])[None, :]
    J_theta = cell.jacobians(theta, cache)[1]
    if columns is not None:
        J_theta = J_theta[:, :, columns]
    return (nu[:, None, :] @ J_theta)[:, 0, :]


def uoro_update(cell, theta, cache, state, nu, *, eps=EPS):
    """One UORO step (Tallec & Ollivier 2017, Alg. 1) after the transition that made ``cache``.

    Parameters
    ----------
    cell, theta : the cell and its params;  cache : from ``cell.step`` at this step
    state : UOROState at t − 1;  nu : (B, n) random signs, drawn fresh at every step
    eps : the ε of the module docstring

    Returns
    -------
    UOROState at t.

    Raises
    ------
    TypeError, ValueError
        ``state`` not a UOROState, ``nu`` not (B, n), ``eps`` not a finite number > 0.
    """
    if not isinstance(state, UOROState):
        raise TypeError(f"state must be a UOROState (from uoro_init), got {type(state).__name__}")
    check_array("nu", nu, shape=tuple(state.s_tilde.shape), finite=False)
    check_number("eps", eps, low=0.0, low_open=True)
    xp = xp_of(nu)
    s_tilde, theta_tilde, columns = state
    a = cell.step_jvp(theta, cache, s_tilde, None, None)
    b = _nu_J_theta(cell, theta, cache, nu, columns)
    norm_theta, norm_a, norm_b, norm_nu = (xp.sqrt((v * v).sum(axis=1, keepdims=True))   # per example
                                           for v in (theta_tilde, a, b, nu))
    rho0 = xp.sqrt(norm_theta / (norm_a + eps)) + eps
    rho1 = xp.sqrt(norm_b / (norm_nu + eps)) + eps
    return UOROState(rho0 * a + rho1 * nu, theta_tilde / rho0 + b / rho1, columns)


def uoro_gradient(state, ds):
    """The estimate of Σ_b (∂L_t/∂s_t)[b] M_t[b]: Σ_b (ds[b] · s̃[b]) θ̃[b], (P,).

    Raises TypeError/ValueError for a ``state`` that is not a UOROState or ``ds`` not (B, n).
    """
    if not isinstance(state, UOROState):
        raise TypeError(f"state must be a UOROState (from uoro_init), got {type(state).__name__}")
    check_array("ds", ds, shape=tuple(state.s_tilde.shape), finite=False)
    return (ds * state.s_tilde).sum(axis=1) @ state.theta_tilde


def uoro(cell, theta, x, s0, head, beta, y, weights=None, *, rng, eps=EPS, trainable=None):
    """One UORO estimate of L's gradient over a sequence with θ fixed (Tallec & Ollivier 2017).

    Arguments as :func:`refnet.algorithms.bptt.bptt`, plus ``rng`` (a
    :class:`refnet.backend.Rng`) for the signs ν.  Returns a GradResult whose
    ``dtheta`` is a random, unbiased estimate of RTRL's (= BPTT's); ``dbeta``
    and ``loss`` are exact; ``ds0`` is None (not estimated); ``vjp_steps``
    counts the VJPs spent (T at B = 1, else 0: J_θ is used instead).
    ``trainable`` (collection of names, default all): θ̃ and ``dtheta`` hold those
    parameters only, frozen ones are absent (module docstring).

    Raises
    ------
    TypeError, ValueError
        Bad arguments, as :func:`refnet.algorithms.bptt.bptt`; ``rng`` not a Rng; ``eps`` <= 0;
        a bad ``trainable``.
    refnet.NumericalError
        Names the first non-finite state s_t, loss term or gradient term (from s̃, θ̃).
    """
    check_rng(rng)
    check_number("eps", eps, low=0.0, low_open=True)
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    names = check_trainable(cell, trainable)
    T, B = x.shape[:2]
    state = uoro_init(cell, B, x, names)
    nu = rng.signs((T, B, cell.n_state), like=x)      # on x's backend, in its dtype
    dtheta_flat = xp_of(x).zeros(state.theta_tilde.shape[1], dtype=x.dtype)
    dbeta = zeros_like(beta)
    L, s = 0.0, [s0]
    watch = StepWatch("uoro")
    for t in range(1, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        state = uoro_update(cell, theta, cache, state, nu[t - 1], eps=eps)
        L_t, dh, dbeta_t = head.loss_and_grad(beta, cell.output(s_t), y[t - 1], weights[t - 1], check=False)
        g_t = uoro_gradient(state, cell.output_vjp(dh))
        dtheta_flat += g_t
        axpy(1.0, dbeta_t, dbeta)
        L = L + L_t
        watch(t, s_t, L_t, g_t)
    watch.flush()
    dtheta = unflatten(dtheta_flat, {k: theta[k] for k in cell.param_shapes() if k in names})
    return GradResult(float(L), dtheta, dbeta, None, s[T], T if B == 1 else 0)
