"""UORO (Tallec & Ollivier 2018): an unbiased rank-one estimate of the RTRL sensitivity.

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
    """UORO's rank-one sensitivity, E[s̃ θ̃ᵀ] = M_t (Tallec & Ollivier 2018, Alg. 1).

    Attributes
    ----------
    s_tilde : (B, n_state) array
        s̃, the state-side factor of every example.
    theta_tilde : (B, P_trainable) array
        θ̃, the parameter-side factor, columns in ``refnet.params.flatten`` order of
        ``cell.param_shapes()`` (the trainable ones only).
    columns : (P_trainable,) int array or None
        The trainable columns of J_θ (flatten order); None when every parameter is trained.
    """
    s_tilde: object      # (B, n)
    theta_tilde: object  # (B, P_trainable), columns in flatten order of cell.param_shapes()
    columns: object = None   # the trainable columns of J_θ (flatten order), None for all


def check_rng(rng):
    """Check that ``rng`` is a :class:`refnet.backend.Rng` (``refnet.rng(seed)``); returns it.

    Parameters
    ----------
    rng : object
        The candidate random source.

    Returns
    -------
    refnet.backend.Rng
        ``rng`` itself.

    Raises
    ------
    TypeError
        ``rng`` is not a :class:`refnet.backend.Rng` (a ``numpy.random.Generator`` or a seed is
        refused by name).
    """
    if not isinstance(rng, Rng):
        raise TypeError(f"rng must be a refnet.backend.Rng (refnet.rng(seed)), got {type(rng).__name__}")
    return rng


def uoro_init(cell, batch, like, trainable=None):
    """s̃ = 0, θ̃ = 0 (M_0 = 0) for ``batch`` examples, on the backend and dtype of ``like``.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell whose sensitivity is carried.
    batch : int
        B, the number of examples, >= 1.
    like : array
        Any floating array on the wanted backend and dtype (finiteness not checked).
    trainable : collection of str or None
        Names of the parameters θ̃ carries (default None: all).

    Returns
    -------
    UOROState
        s̃ (B, n_state) and θ̃ (B, P_trainable) of zeros, and the trainable columns.

    Raises
    ------
    TypeError
        ``cell`` lacks the cell contract; ``batch`` not an int; ``like`` not a floating array;
        ``trainable`` a str or not a collection.
    ValueError
        ``batch`` < 1, or a ``trainable`` name the cell lacks.
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
    """One UORO step (Tallec & Ollivier 2018, Alg. 1) after the transition that made ``cache``.

    a = J_s s̃ (one JVP), b = νᵀ J_θ (one VJP at B = 1, the per-example J_θ
    otherwise), ρ0 = sqrt(‖θ̃‖/(‖a‖ + ε)) + ε, ρ1 = sqrt(‖b‖/(‖ν‖ + ε)) + ε,
    then s̃ ← ρ0 a + ρ1 ν and θ̃ ← θ̃/ρ0 + b/ρ1, every norm per example.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell (not validated here: the caller did).
    theta : dict {name: array}
        The cell's parameters.
    cache : NamedTuple
        What ``cell.step`` returned at this step.
    state : UOROState
        s̃ and θ̃ at t − 1.
    nu : (B, n_state) array
        Independent random signs ±1, drawn fresh at every step.
    eps : float
        ε > 0 (default ``EPS`` = 1e-7): keeps ρ0, ρ1 finite and positive where a factor is zero.

    Returns
    -------
    UOROState
        s̃ and θ̃ at t (same columns).

    Raises
    ------
    TypeError
        ``state`` not a UOROState; ``nu`` not a floating array; ``eps`` not a real number.
    ValueError
        ``nu`` not shaped as ``state.s_tilde``; ``eps`` <= 0 or not finite.
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
    """The estimate of Σ_b (∂L_t/∂s_t)[b] M_t[b]: Σ_b (ds[b] · s̃[b]) θ̃[b].

    Parameters
    ----------
    state : UOROState
        s̃ and θ̃ at t.
    ds : (B, n_state) array
        The cotangent ∂L_t/∂s_t.

    Returns
    -------
    (P_trainable,) array
        The flat gradient estimate, ``refnet.params.flatten`` order of the carried parameters.

    Raises
    ------
    TypeError
        ``state`` not a UOROState; ``ds`` not a floating array.
    ValueError
        ``ds`` not shaped as ``state.s_tilde``.
    """
    if not isinstance(state, UOROState):
        raise TypeError(f"state must be a UOROState (from uoro_init), got {type(state).__name__}")
    check_array("ds", ds, shape=tuple(state.s_tilde.shape), finite=False)
    return (ds * state.s_tilde).sum(axis=1) @ state.theta_tilde


def uoro(cell, theta, x, s0, head, beta, y, weights=None, *, rng, eps=EPS, trainable=None):
    """One UORO estimate of L's gradient over a sequence with θ fixed (Tallec & Ollivier 2018, Alg. 1).

    Runs the cell, applies :func:`uoro_update` after every step and sums
    :func:`uoro_gradient` of each step's ∂L_t/∂s_t.  The estimate is unbiased:
    its mean over the signs ν is RTRL's (= BPTT's) gradient (a gradcheck matrix
    relation, by its mean over many draws).

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (T, B, I) array-like
        Inputs, T >= 1, B >= 1; ``x[t − 1]`` is x_t.
    s0 : (B, n_state) array-like or None
        Initial state s_0; None for zeros.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout and its loss ℓ, on ``cell.output``; ``head.n_in == cell.n_out``.
    beta : dict {name: array}
        The head's parameters.
    y : (T, B) int array or (T, B, O) float array
        Class labels in [0, O) for a label loss, else targets of the head's width O.
    weights : (T, B) array or None
        Loss weights w[t − 1, b]; None for the mean over every step and sequence.
    rng : refnet.backend.Rng
        The source of the signs ν, (T, B, n_state) drawn at once on x's backend and dtype.
    eps : float
        ε > 0 of ρ0, ρ1 (default ``EPS`` = 1e-7).
    trainable : collection of str or None
        Names of the parameters θ̃ and ``dtheta`` carry (default None: all); frozen ones are
        absent from ``dtheta``.

    Returns
    -------
    GradResult
        ``dtheta`` a random, unbiased estimate of ∂L/∂θ; ``loss`` and ``dbeta`` exact; ``ds0``
        None (not estimated); ``s_T``; ``vjp_steps`` = T at B = 1 (one VJP per step), else 0
        (J_θ is read instead).

    Raises
    ------
    TypeError
        As :func:`refnet.algorithms.bptt.bptt`; ``rng`` not a :class:`refnet.backend.Rng`;
        ``eps`` not a real number.
    ValueError
        As :func:`refnet.algorithms.bptt.bptt`; ``eps`` <= 0 or not finite.
    refnet.NumericalError
        Names the first non-finite state s_t, loss term L_t or gradient term (from s̃, θ̃),
        checked every ``checks.CHECK_EVERY`` steps.
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
