"""KF-RTRL (Mujika, Meier & Steger 2018): a Kronecker-factored, unbiased estimate of RTRL.

For cells whose immediate Jacobian is Kronecker-factored per parameter,
∂s_t/∂θ_k = diag(D_t) ⊗ ĥ_kᵀ (``cell.kronecker_factors``; the Elman RNN:
D = φ'(a_t), ĥ = x_t, h_{t−1} or 1), the sensitivity is kept as one
Kronecker product per example, M_t ≈ A_t ⊗ u_t, with A (n, n) and u the
concatenation of the rows u_k shaped like the ĥ_k, so that M_t restricted to
θ_k is A_t ⊗ u_kᵀ.  The exact recursion gives a sum of two Kronecker products,

    J_s M_{t−1} + J_θ = (J_s A_{t−1}) ⊗ u_{t−1} + diag(D_t) ⊗ ĥ_t,

which is replaced by one, with independent random signs c1, c2 and positive
p1, p2 (paper, Eq. 5 and Lemma 1):

    u_t = c1 p1 u_{t−1} + c2 p2 ĥ_t,       A_t = (c1/p1) J_s A_{t−1} + (c2/p2) diag(D_t).

E[c1 c2] = 0 kills the cross terms, so E[A_t ⊗ u_t] = J_s E[M_{t−1}] + J_θ:
unbiased by induction from M_0 = 0.  p1 = sqrt(‖J_s A‖/‖u‖) and
p2 = sqrt(‖D‖/‖ĥ‖) minimise the added variance (ε-guarded, for the first
step, where A = u = 0).  The gradient estimate for θ_k is
Σ_b (∂L_t/∂s_t A_t)[b] ⊗ u_k[b], shaped as θ_k.  Cost per step: J_s A and
O(n(n + m)) more, against RTRL's O(n²P); J_s comes from ``cell.jacobians``,
whose J_θ goes unused (for the Elman cell it is O(n²m) = O(nP) to build).

Which cells: every cell whose J_θ has this structure, named by
:func:`refnet.algorithms.structure.kronecker_layout` — ElmanRNN and IRNN
(D = φ'(a)), LeakyRNN (D = α φ'(a)) and FastRNN's W, U and bias blocks
(D = sigmoid(α̂) σ'(a)).  Parameters outside the factored blocks (FastRNN's
scalars α̂, β̂, whose columns α' h̃ and β' h_{t−1} are no diagonal times a
row) are carried exactly, by RTRL's own recursion on their few columns,
M^r_t = J_s M^r_{t−1} + J_θ^r (the columns by one JVP each), so the estimate
stays unbiased.  Gated cells (GRU, LSTM) are refused with a TypeError naming
the cell: their J_θ is a sum of Kronecker products with one diagonal per gate,
which one A ⊗ u cannot carry (Mujika et al. 2018 restrict KF-RTRL to that class).

Frozen parameters (``trainable=``): u holds the ĥ_k of the trainable factored
parameters only and M_rest the columns of the trainable others, so a frozen
parameter costs no sensitivity memory (A stays (n, n): it is shared by every
factored block).  The restricted estimate is unbiased for the trainable
columns by the same induction; it is not the full run's estimate restricted
(p2 sees ‖ĥ‖ over fewer blocks), except at the first step, where A ⊗ u =
diag(D) ⊗ ĥ whatever p2.
"""
import math
from typing import NamedTuple

from .._validate import check_array, check_int, check_number
from ..backend import xp_of
from ..params import axpy, zeros_like
from .bptt import GradResult
from .checks import StepWatch, check_cell, check_objective, check_sequence
from .structure import kronecker_layout, state_jacobian
from .trainable import check_trainable, restrict
from .uoro import check_rng

__all__ = ["KFRTRLState", "kfrtrl_init", "kfrtrl_update", "kfrtrl_gradient", "kfrtrl_sensitivity",
           "kfrtrl", "EPS"]

EPS = 1e-7   # keeps p1, p2 finite and positive where a factor is zero (at t = 1)


class KFRTRLState(NamedTuple):
    """KF-RTRL's factored sensitivity, M_t ≈ A_t ⊗ u_t per example (Mujika, Meier & Steger 2018, Eq. 5).

    Attributes
    ----------
    A : (B, n_state, n_state) array
        The state-side factor A_t, shared by every factored block.
    u : (B, m) array
        The parameter-side factor: the u_k of the trainable factored parameters side by side,
        in ``param_shapes`` order (m = Σ_k width of ĥ_k).
    blocks : dict {name: (int, int)}
        Columns [first, last) of each u_k in ``u``.
    M_rest : (B, n_state, P_rest) array or None
        The exact sensitivity of the trainable parameters that are not factored (FastRNN's α̂,
        β̂), carried by RTRL's recursion; None when there are none.
    rest : dict {name: (int, int)}
        Columns [first, last) of each of those parameters in ``M_rest`` (empty when none).
    """
    A: object       # (B, n, n)
    u: object       # (B, m), the u_k side by side in param_shapes order
    blocks: dict    # {name: (first column, last column + 1)} of u_k in u, the factored parameters
    M_rest: object = None   # (B, n, P_rest): the exact sensitivity of the other parameters, or None
    rest: dict = {}         # {name: (first column, last column + 1)} of those in M_rest


def _check_kronecker(cell):
    """Refuse, naming it, a cell that is not a cell or whose J_θ is not Kronecker-factored."""
    check_cell(cell)
    kronecker_layout(cell)


def kfrtrl_init(cell, batch, like, trainable=None):
    """A = 0, u = 0 (M_0 = 0) for ``batch`` examples, on the backend and dtype of ``like``.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``kronecker_factors`` (ElmanRNN, IRNN, LeakyRNN, FastRNN).
    batch : int
        B, the number of examples, >= 1.
    like : array
        Any floating array on the wanted backend and dtype (finiteness not checked).
    trainable : collection of str or None
        Names of the parameters u and M_rest carry (default None: all).

    Returns
    -------
    KFRTRLState
        A (B, n, n) and u (B, m) of zeros, the blocks, and M_rest (B, n, P_rest) of zeros or
        None.

    Raises
    ------
    TypeError
        ``cell`` lacks the cell contract or ``kronecker_factors`` (a gated cell: GRU, LSTM);
        ``batch`` not an int; ``like`` not a floating array; ``trainable`` a str or not a
        collection.
    ValueError
        ``batch`` < 1; a factored parameter without n_state rows or with more than 2 dimensions,
        or a ``kronecker_params`` name the cell lacks; a ``trainable`` name the cell lacks.
    """
    check_cell(cell)
    layout = kronecker_layout(cell)
    batch = check_int("batch", batch, 1)
    check_array("like", like, finite=False)
    names = check_trainable(cell, trainable)
    xp = xp_of(like)
    n = cell.n_state
    blocks, m = {}, 0                     # the trainable factored blocks, renumbered side by side in u
    for k, (first, last) in layout.blocks.items():
        if k in names:
            blocks[k] = (m, m + last - first)
            m += last - first
    rest, width = {}, 0
    for k in layout.rest:
        if k not in names:
            continue
        size = math.prod(cell.param_shapes()[k])
        rest[k] = (width, width + size)
        width += size
    M_rest = xp.zeros((batch, n, width), dtype=like.dtype) if rest else None
    return KFRTRLState(xp.zeros((batch, n, n), dtype=like.dtype), xp.zeros((batch, m), dtype=like.dtype),
                       blocks, M_rest, rest)


def _rest_columns(cell, theta, cache, rest, like):
    """J_θ's columns (B, n, P_rest) for the parameters in ``rest``, one JVP per column."""
    xp = xp_of(like)
    zero = {k: xp.zeros_like(v) for k, v in theta.items()}
    columns = []
    for k in rest:
        for flat in range(theta[k].size):
            tangent = dict(zero)
            tangent[k] = xp.zeros_like(theta[k])
            tangent[k].reshape(-1)[flat] = 1.0
            columns.append(cell.step_jvp(theta, cache, None, tangent, None))
    return xp.stack(columns, axis=2)


def _norms(xp, v):
    """Per-example Frobenius norms of v (B, ...), as (B,)."""
    return xp.sqrt((v * v).reshape(v.shape[0], -1).sum(axis=1))


def kfrtrl_update(cell, theta, cache, state, c1, c2, *, eps=EPS):
    """One KF-RTRL step (Mujika et al. 2018, Eq. 5 and Lemma 1) after the transition that made ``cache``.

    u_t = c1 p1 u_{t−1} + c2 p2 ĥ_t and A_t = (c1/p1) J_s A_{t−1} + (c2/p2) diag(D_t),
    with p1 = sqrt((‖J_s A‖ + ε)/(‖u‖ + ε)) and p2 = sqrt((‖D‖ + ε)/(‖ĥ‖ + ε)) per
    example (module docstring); the unfactored parameters' columns by
    M^r_t = J_s M^r_{t−1} + J_θ^r, exactly.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell, with ``kronecker_factors`` (not validated here: :func:`kfrtrl_init` did).
    theta : dict {name: array}
        The cell's parameters.
    cache : NamedTuple
        What ``cell.step`` returned at this step.
    state : KFRTRLState
        The factors at t − 1.
    c1 : (B,) array
        Independent random signs ±1 for the carried term, drawn fresh at every step.
    c2 : (B,) array
        Independent random signs ±1 for the new term, drawn fresh at every step.
    eps : float
        ε > 0 (default ``EPS`` = 1e-7): keeps p1, p2 finite and positive where a factor is zero.

    Returns
    -------
    KFRTRLState
        The factors at t (same blocks).

    Raises
    ------
    AttributeError
        ``cell`` has no ``kronecker_factors``.
    TypeError
        ``state`` not a KFRTRLState; ``c1`` or ``c2`` not a floating array; ``eps`` not a real
        number.
    ValueError
        ``c1`` or ``c2`` not shaped (B,) for the B of ``state`` (a length-1 or, at B = 1, a
        longer array would otherwise broadcast silently); ``eps`` <= 0 or not finite.
    """
    if not isinstance(state, KFRTRLState):
        raise TypeError(f"state must be a KFRTRLState (from kfrtrl_init), got {type(state).__name__}")
    batch = state.A.shape[0]
    check_array("c1", c1, shape=(batch,), finite=False)
    check_array("c2", c2, shape=(batch,), finite=False)
    check_number("eps", eps, low=0.0, low_open=True)
    xp = xp_of(c1)
    A, u, blocks, M_rest, rest = state
    D, h_hat = cell.kronecker_factors(theta, cache)
    h_hat = (xp.concatenate([h_hat[k] for k in blocks], axis=1) if blocks      # trainable blocks only
             else xp.zeros((D.shape[0], 0), dtype=D.dtype))
    J_s = state_jacobian(cell, theta, cache)
    JA = J_s @ A
    p1 = xp.sqrt((_norms(xp, JA) + eps) / (_norms(xp, u) + eps))
    p2 = xp.sqrt((_norms(xp, D) + eps) / (_norms(xp, h_hat) + eps))
    u_new = (c1 * p1)[:, None] * u + (c2 * p2)[:, None] * h_hat
    A_new = (c1 / p1)[:, None, None] * JA
    diagonal = xp.arange(A.shape[1])
    A_new[:, diagonal, diagonal] += (c2 / p2)[:, None] * D                 # + (c2/p2) diag(D)
    if rest:                                  # the unfactored parameters: RTRL's recursion, exactly
        M_rest = J_s @ M_rest + _rest_columns(cell, theta, cache, rest, D)
    return KFRTRLState(A_new, u_new, blocks, M_rest, rest)


def kfrtrl_gradient(state, ds, shapes):
    """The estimate of Σ_b (∂L_t/∂s_t)[b] M_t[b] as a params dict.

    θ_k ← Σ_b (ds A)[b] ⊗ u_k[b] for the factored parameters and
    Σ_b ds[b] M_rest[b] for the others, each shaped as ``shapes[k]``.

    Parameters
    ----------
    state : KFRTRLState
        The factors at t.
    ds : (B, n_state) array
        The cotangent ∂L_t/∂s_t.
    shapes : dict {name: tuple}
        The cell's ``param_shapes()``; fixes the order of the result.

    Returns
    -------
    dict {name: array}
        The gradient estimate of every parameter the state carries (the trainable ones), in
        ``shapes`` order.

    Raises
    ------
    TypeError
        ``state`` is not a KFRTRLState; ``ds`` not a floating array.
    ValueError
        ``ds`` not shaped (B, n_state) as the state's A, or a block that does not fit its shape.
    KeyError
        A carried parameter missing from ``shapes``.
    """
    if not isinstance(state, KFRTRLState):
        raise TypeError(f"state must be a KFRTRLState (from kfrtrl_init), got {type(state).__name__}")
    check_array("ds", ds, shape=tuple(state.A.shape[:2]), finite=False)
    v = (ds[:, None, :] @ state.A)[:, 0, :]                         # (B, n)
    G = v.T @ state.u                                               # (n, m), every θ_k side by side
    out = {k: G[:, first:last].reshape(shapes[k]) for k, (first, last) in state.blocks.items()}
    if state.rest:
        g = (ds[:, None, :] @ state.M_rest)[:, 0, :].sum(axis=0)
        out.update({k: g[first:last].reshape(shapes[k]) for k, (first, last) in state.rest.items()})
    return {k: out[k] for k in shapes if k in out}


def kfrtrl_sensitivity(state, shapes=None):
    """The dense estimate M̃ = A ⊗ u (B, n_state, P) the state stands for (for tests and checks).

    Parameters
    ----------
    state : KFRTRLState
        The factors at t.
    shapes : dict {name: tuple} or None
        The cell's ``param_shapes()``, which orders the columns (``refnet.params.flatten``
        order); None keeps the state's order (factored blocks, then the rest), which is flatten
        order when every parameter is factored.

    Returns
    -------
    (B, n_state, P_carried) array
        A ⊗ u_k for the factored parameters, M_rest's columns for the others; only the
        parameters the state carries (the trainable ones) have columns.

    Raises
    ------
    AttributeError
        ``state`` is not a KFRTRLState.
    ValueError
        The state carries no parameter (nothing to concatenate).
    """
    xp = xp_of(state.A)
    B, n, _ = state.A.shape
    parts = {k: (state.A[:, :, :, None] * state.u[:, None, None, first:last]).reshape(B, n, -1)
             for k, (first, last) in state.blocks.items()}
    parts.update({k: state.M_rest[:, :, first:last] for k, (first, last) in state.rest.items()})
    order = list(parts) if shapes is None else [k for k in shapes if k in parts]
    return xp.concatenate([parts[k] for k in order], axis=2)


def kfrtrl(cell, theta, x, s0, head, beta, y, weights=None, *, rng, eps=EPS, trainable=None):
    """One KF-RTRL estimate of L's gradient over a sequence with θ fixed (Mujika, Meier & Steger 2018).

    Runs the cell, applies :func:`kfrtrl_update` after every step with fresh signs
    c1, c2, and sums :func:`kfrtrl_gradient` of each step's ∂L_t/∂s_t.  The
    estimate is unbiased: its mean over the signs is RTRL's (= BPTT's) gradient (a
    gradcheck matrix relation, by its mean over many draws).

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``kronecker_factors``: ElmanRNN, IRNN, LeakyRNN, FastRNN.
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
        The source of the signs c1, c2, (T, 2, B) drawn at once on x's backend and dtype.
    eps : float
        ε > 0 of p1, p2 (default ``EPS`` = 1e-7).
    trainable : collection of str or None
        Names of the parameters u, M_rest and ``dtheta`` carry (default None: all); frozen ones
        are absent from ``dtheta``.

    Returns
    -------
    GradResult
        ``dtheta`` a random, unbiased estimate of ∂L/∂θ; ``loss`` and ``dbeta`` exact; ``ds0``
        None (not estimated); ``s_T``; ``vjp_steps`` = 0.

    Raises
    ------
    TypeError
        As :func:`refnet.algorithms.bptt.bptt`; ``rng`` not a :class:`refnet.backend.Rng`;
        ``eps`` not a real number; a cell without ``kronecker_factors`` (GRU, LSTM), named.
    ValueError
        As :func:`refnet.algorithms.bptt.bptt`; ``eps`` <= 0 or not finite; a cell whose
        factored parameters do not have n_state rows.
    refnet.NumericalError
        Names the first non-finite state s_t, loss term L_t or factor A_t (A overflows first:
        it carries J_s A_{t−1}), checked every ``checks.CHECK_EVERY`` steps.
    """
    check_rng(rng)
    check_number("eps", eps, low=0.0, low_open=True)
    _check_kronecker(cell)
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    names = check_trainable(cell, trainable)
    T, B = x.shape[:2]
    shapes = cell.param_shapes()
    state = kfrtrl_init(cell, B, x, names)
    c = rng.signs((T, 2, B), like=x)                 # on x's backend, in its dtype
    dtheta = restrict({k: xp_of(x).zeros(shape, dtype=x.dtype) for k, shape in shapes.items()}, names)
    dbeta = zeros_like(beta)
    L, s = 0.0, [s0]
    watch = StepWatch("kfrtrl")
    for t in range(1, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        state = kfrtrl_update(cell, theta, cache, state, c[t - 1, 0], c[t - 1, 1], eps=eps)
        L_t, dh, dbeta_t = head.loss_and_grad(beta, cell.output(s_t), y[t - 1], weights[t - 1], check=False)
        g_t = kfrtrl_gradient(state, cell.output_vjp(dh), shapes)
        axpy(1.0, g_t, dtheta)
        axpy(1.0, dbeta_t, dbeta)
        L = L + L_t
        watch(t, s_t, L_t, state.A)   # g_t is made from A_t and u_t: A_t overflows first (J_s A_{t−1})
    watch.flush()
    return GradResult(float(L), dtheta, dbeta, None, s[T], 0)
