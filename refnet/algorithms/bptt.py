"""Back-propagation through time: BPTT, TBPTT(k1, k2) and the sequence VJP.

Conventions (min-char-rnn style): ``x`` is (T, B, I) and ``x[t-1]`` is x_t;
states are kept as ``s[0..T]`` with ``s[0] = s_0``, so step t reads
``s[t-1]`` and ``x[t-1]`` and writes ``s[t]``.  The objective is

    L = Σ_{t=1..T} Σ_b w[t-1, b] ℓ(head(output(s_t))_b, y[t-1, b])

(``refnet.heads``).  The carried adjoint ``ds_next`` is ∂L/∂s_t from the
future; the cell's ``step_vjp`` turns it into ∂L/∂s_{t−1}.

BPTT (Werbos 1990) is the adjoint recursion run backwards from t = T,

    ∂L/∂s_T = ∂L_T/∂s_T,
    ∂L/∂s_{t−1} = (∂s_t/∂s_{t−1})ᵀ ∂L/∂s_t + ∂L_{t−1}/∂s_{t−1},
    ∂L/∂θ = Σ_{t=1..T} (∂s_t/∂θ)ᵀ ∂L/∂s_t,

each product one ``step_vjp``.  TBPTT(k1, k2) is Williams & Peng's (1990)
BPTT(h; h′) with h′ = k1 (steps between backward passes) and h = k2 (how far
each pass reaches back): at t = k1, 2k1, … and at T the losses since the
previous pass are back-propagated through at most k2 steps from t, the state
before that window being a constant (the README's Reference section states
the window semantics and why k2 < k1 is refused).
"""
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from ..backend import to_numpy, xp_of
from .._validate import as_array, check_array, check_int, check_same_dtype
from ..params import axpy, zeros_like
from . import fused
from .checks import (CHECK_EVERY, FiniteWatch, check_finite_steps, check_finite_tree, check_objective,
                     check_sequence, first_nonfinite)
from .trainable import check_trainable, restrict

__all__ = ["Trajectory", "GradResult", "SequenceVJP", "forward", "loss", "bptt",
           "tbptt", "tbptt_windows", "truncated_loss", "sequence_vjp"]


class Trajectory(NamedTuple):
    """The states and step caches of one forward run (:func:`forward`).

    Indices are time steps: ``s[t]`` is s_t and ``caches[t]`` the cache
    ``cell.step`` made at step t, so ``caches[0]`` is None.

    Attributes
    ----------
    s : list of T + 1 arrays (B, n_state)
        s_0, s_1, …, s_T.
    caches : list of T + 1 entries
        None, then the cache of every step t = 1..T (the cell's own NamedTuple).
    """
    s: list       # s[0..T], each (B, n_state)
    caches: list  # caches[1..T] from cell.step (caches[0] is None)


@dataclass(frozen=True)
class GradResult:
    """What a gradient algorithm returns (BPTT, TBPTT, RTRL, UORO, KF-RTRL, SnAp, RFLO).

    Attributes
    ----------
    loss : float
        The objective L over the sequence (the module docstring's weighted sum).
    dtheta : dict {name: array}
        ∂L/∂θ (or the algorithm's estimate of it), each shaped as in ``cell.param_shapes()``; the
        trainable parameters only (a frozen one is absent, :mod:`refnet.algorithms.trainable`).
    dbeta : dict {name: array}
        ∂L/∂β for the head's parameters, shaped as in ``head.param_shapes()``; always exact.
    ds0 : (B, n_state) array or None
        ∂L/∂s_0; None where the algorithm does not carry it (UORO, KF-RTRL, SnAp, RFLO).
    s_T : (B, n_state) array
        The final state s_T.
    vjp_steps : int
        Cell VJPs spent: T for BPTT, Σ over windows of (end − fixed) for TBPTT, T for UORO at
        B = 1, 0 for RTRL and the other forward-mode algorithms.
    """

    loss: float
    dtheta: dict
    dbeta: dict
    ds0: Any
    s_T: Any
    vjp_steps: int


@dataclass(frozen=True)
class SequenceVJP:
    """Outputs of the forward run and the cotangent pulled back to every input (:func:`sequence_vjp`).

    Attributes
    ----------
    outputs : (T, B, n_out) array
        ``cell.output(s_t)`` for t = 1..T.
    s_T : (B, n_state) array
        The final state.
    dtheta : dict {name: array}
        The pulled-back cotangent on θ, shaped as in ``cell.param_shapes()`` (trainable ones only).
    dx : (T, B, I) array
        The cotangent on every input x_t.
    ds0 : (B, n_state) array
        The cotangent on s_0.
    """

    outputs: Any    # (T, B, n_out)  output(s_t) for t = 1..T
    s_T: Any        # (B, n_state)
    dtheta: dict
    dx: Any         # (T, B, I)
    ds0: Any        # (B, n_state)


def forward(cell, theta, x, s0=None):
    """Run the cell over x: s_t = f(θ, s_{t−1}, x_t) for t = 1..T (any cell; the Elman 1990 recurrence).

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell f (any object with the cell contract).
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``, one floating dtype.
    x : (T, B, I) array-like
        Inputs, T >= 1 steps of B >= 1 sequences; ``x[t − 1]`` is x_t.  An array-like (nested
        list, CPU torch tensor) is made a NumPy array.
    s0 : (B, n_state) array-like or None
        Initial state s_0; None for zeros.

    Returns
    -------
    Trajectory
        ``s`` = [s_0, …, s_T], each (B, n_state), and the cache of every step.

    Raises
    ------
    TypeError
        ``cell`` lacks the cell contract; ``theta`` is not a dict of floating arrays; ``x`` or
        ``s0`` is not an array (or array-like); dtypes or backends are mixed.
    ValueError
        A missing or extra parameter, a wrong shape, T = 0, B = 0, a ragged nested list, or a
        NaN/Inf in ``theta``, ``x`` or ``s0``.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (checked every
        ``checks.CHECK_EVERY`` steps as the run goes).
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    return _forward(cell, theta, x, s0, function="forward")


def _forward(cell, theta, x, s0, t_first=1, t_last=None, *, function):
    """States s[t_first−1..t_last] from s[t_first−1] = s0 (list indices are time steps).

    Watched for NaN/Inf as it runs (:class:`~refnet.algorithms.checks.FiniteWatch`):
    a diverging run raises within ``CHECK_EVERY`` steps, naming ``function`` and the first bad s_t.
    """
    T = x.shape[0] if t_last is None else t_last
    s = [None] * (t_first - 1) + [s0]
    caches = [None] * t_first
    watch = FiniteWatch(function, "state", "s", hint=" (the forward pass overflowed)")
    for t in range(t_first, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        caches.append(cache)
        watch(t, s_t)
    watch.flush()
    return Trajectory(s, caches)


def _step_losses(cell, head, beta, s, y, weights, steps, function):
    """L over ``steps`` and the cotangents ∂L/∂s_t: returns (L, {t: ds_t}, dβ).

    Steps whose weights are all zero take no loss and are skipped (no entry in
    the dict).  A non-finite loss term ℓ_t raises NumericalError naming t.
    """
    total, ds_out, dbeta, terms = 0.0, {}, zeros_like(beta), {}
    active = to_numpy(weights.any(axis=1))
    for t in steps:
        if not active[t - 1]:
            continue
        L_t, dh, dbeta_t = head.loss_and_grad(beta, cell.output(s[t]), y[t - 1], weights[t - 1], check=False)
        terms[t] = L_t
        total = total + L_t
        ds_out[t] = cell.output_vjp(dh)
        axpy(1.0, dbeta_t, dbeta)
    check_finite_steps(function, "loss term", "L", list(terms.values()), steps=list(terms))
    check_finite_tree(function, "dbeta", dbeta)
    return total, ds_out, dbeta


def _backward(cell, theta, caches, ds_out, ds_T, t_end, t_start, *, function, locate=False, check=True):
    """Back-propagate from s_{t_end} to s_{t_start}.

    ``ds_out[t]`` (missing = zero) is the direct cotangent on s_t and ``ds_T``
    the cotangent arriving at s_{t_end}.  Returns (dθ, {t: dx_t}, ∂/∂s_{t_start}).
    The result is checked once (unless ``check`` is false: the caller checks
    several passes in one read-back, :func:`_check_windows`); if it holds NaN/Inf
    the pass is re-run with ``locate=True``, which checks every adjoint and
    raises at the first bad one.
    """
    dtheta, dx = None, {}
    ds_next = ds_T
    for t in range(t_end, t_start, -1):
        ds = ds_next + ds_out[t] if t in ds_out else ds_next
        if locate:
            check_finite_steps(function, "adjoint", "ds", [ds], first=t, hint=" (the backward pass overflowed)")
        ds_next, dtheta_t, dx[t] = cell.step_vjp(theta, caches[t], ds)
        dtheta = dtheta_t if dtheta is None else axpy(1.0, dtheta_t, dtheta)
    if check and not locate and first_nonfinite([ds_next, *dtheta.values()]) is not None:
        _backward(cell, theta, caches, ds_out, ds_T, t_end, t_start, function=function, locate=True)
        check_finite_steps(function, "adjoint", "ds", [ds_next], first=t_start,
                           hint=" (the backward pass overflowed)")
        check_finite_tree(function, "dtheta", dtheta, " (the backward pass overflowed)")
    return dtheta, dx, ds_next


def loss(cell, theta, x, s0, head, beta, y, weights=None):
    """The objective L = Σ_t Σ_b w[t−1, b] ℓ(head(output(s_t))_b, y[t−1, b]) (module docstring) alone.

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
        The head's parameters, shapes as in ``head.param_shapes()``.
    y : (T, B) int array or (T, B, O) float array
        Class labels in [0, O) for a label loss (cross-entropy), else targets of the head's width O.
    weights : (T, B) array or None
        Loss weights w[t − 1, b] (dimensionless); None for ``refnet.heads.every_step`` (the mean,
        1/(T·B) each).  Steps whose weights are all zero take no loss.

    Returns
    -------
    float
        L.

    Raises
    ------
    TypeError
        ``cell`` or ``head`` lacks its contract; ``theta``/``beta`` not dicts of floating arrays;
        an argument that is neither an array nor a nested list of numbers; labels that are not integers for a label loss; mixed
        dtypes or backends.
    ValueError
        A missing or extra parameter, a wrong shape, T = 0, B = 0, ``head.n_in != cell.n_out``,
        labels outside [0, O), or a NaN/Inf input.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t or loss term L_t.
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    s = _forward(cell, theta, x, s0, function="loss").s
    active = to_numpy(weights.any(axis=1))
    terms = {t: head.loss_value(beta, cell.output(s[t]), y[t - 1], weights[t - 1], check=False)
             for t in range(1, x.shape[0] + 1) if active[t - 1]}
    check_finite_steps("loss", "loss term", "L", list(terms.values()), steps=list(terms))
    return float(sum(terms.values()))


def bptt(cell, theta, x, s0, head, beta, y, weights=None, *, trainable=None):
    """BPTT (Werbos 1990): the exact gradient of L over the whole sequence.

    One forward pass storing every step's cache, the loss of every step, and one
    backward pass from s_T to s_0 through the cell's ``step_vjp``:
    ∂L/∂s_{t−1} = (∂s_t/∂s_{t−1})ᵀ (∂L/∂s_t + ∂L_t/∂s_t), dθ = Σ_t (∂s_t/∂θ)ᵀ ∂L/∂s_t
    (Werbos 1990).  On a cell with a fused
    whole-sequence pair the same sums run in :func:`refnet.algorithms.fused.fused_bptt`
    (equal to rounding; ``REFNET_FUSED=0`` selects this loop).

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
        The head's parameters, shapes as in ``head.param_shapes()``.
    y : (T, B) int array or (T, B, O) float array
        Class labels in [0, O) for a label loss, else targets of the head's width O.
    weights : (T, B) array or None
        Loss weights w[t − 1, b]; None for the mean over every step and sequence.
    trainable : collection of str or None
        Names of the parameters to differentiate (default None: all); the others are frozen and
        absent from ``dtheta`` (:mod:`refnet.algorithms.trainable`).

    Returns
    -------
    GradResult
        ``loss`` L, ``dtheta`` = ∂L/∂θ, ``dbeta`` = ∂L/∂β, ``ds0`` = ∂L/∂s_0 (B, n_state),
        ``s_T`` (B, n_state) and ``vjp_steps`` = T.

    Raises
    ------
    TypeError
        ``cell`` or ``head`` lacks its contract; ``theta``/``beta`` not dicts of floating arrays;
        an argument that is neither an array nor a nested list of numbers; integer labels expected but not given; mixed dtypes or
        backends; ``trainable`` a str or not a collection.
    ValueError
        A missing or extra parameter, a wrong shape, T = 0, B = 0, ``head.n_in != cell.n_out``,
        labels outside [0, O), a NaN/Inf input, a ``trainable`` name the cell lacks, or
        ``REFNET_FUSED`` set to anything but '0' or '1'.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (found while the forward runs,
        before any backward), loss term L_t or adjoint ds_t.
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    names = check_trainable(cell, trainable)
    T = x.shape[0]
    if fused.applies(cell):   # the cell's fused whole-sequence pair; this loop is its reference
        L, dtheta, dbeta, ds0, s_T = fused.fused_bptt(cell, theta, x, s0, head, beta, y, weights)
        return GradResult(float(L), restrict(dtheta, names), dbeta, ds0, s_T, T)
    s, caches = _forward(cell, theta, x, s0, function="bptt")
    L, ds_out, dbeta = _step_losses(cell, head, beta, s, y, weights, range(1, T + 1), "bptt")
    dtheta, _, ds0 = _backward(cell, theta, caches, ds_out, xp_of(s0).zeros_like(s0), T, 0, function="bptt")
    return GradResult(float(L), restrict(dtheta, names), dbeta, ds0, s[T], T)


def tbptt_windows(T, k1, k2):
    """The windows of TBPTT(k1, k2) (Williams & Peng 1990) as (first loss step, last loss step, state held fixed).

    At t = k1, 2·k1, … (and at T if k1 does not divide T) the losses of the
    steps since the previous window are back-propagated through at most k2
    steps, to the state s_{max(t − k2, 0)}, which is held constant.  So
    k2 >= T gives BPTT.  With k1 = k2 = k and k dividing T this is the
    chunked "run k steps, backward, detach" form; when k does not divide T
    the last, shorter window still reaches back k steps from T (one
    backward at the end, as an online learner would make), not to the chunk
    boundary.

    Parameters
    ----------
    T : int
        Sequence length in steps, >= 1.
    k1 : int
        Steps between two backward passes, >= 1.
    k2 : int
        Steps each backward pass reaches back from its last step, >= k1.

    Returns
    -------
    list of (int, int, int)
        One ``(first, end, fixed)`` per window, in time order: the losses of steps
        first..end are back-propagated to s_fixed, with 0 <= fixed < first <= end <= T.

    Raises
    ------
    TypeError
        ``T``, ``k1`` or ``k2`` is not an int (a bool is refused).
    ValueError
        ``T``, ``k1`` or ``k2`` < 1, or k2 < k1 (the earliest losses of a window would not reach
        back through their own step).
    """
    T = check_int("T", T, 1)
    k1 = check_int("k1", k1, 1)
    k2 = check_int("k2", k2, 1)
    if k2 < k1:
        raise ValueError(f"k2 must be >= k1 so that every loss reaches back through its own step "
                         f"(Williams & Peng 1990), got k1 = {k1}, k2 = {k2}")
    windows = []
    for first in range(1, T + 1, k1):
        end = min(first + k1 - 1, T)
        windows.append((first, end, max(end - k2, 0)))
    return windows


def tbptt(cell, theta, x, s0, head, beta, y, weights=None, *, k1, k2, trainable=None):
    """TBPTT(k1, k2) (Williams & Peng 1990): the gradient summed over the sequence, θ fixed.

    Every k1 steps the losses of those k1 steps are back-propagated through
    at most k2 steps (:func:`tbptt_windows` gives the exact windows).  This is the exact gradient of
    :func:`truncated_loss`: the states at the truncation points held at their
    values on this trajectory.  k1 = k2 = k is the chunked form; k1 = 1 the
    online form; k2 >= T gives BPTT.

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
        The head's parameters, shapes as in ``head.param_shapes()``.
    y : (T, B) int array or (T, B, O) float array
        Class labels in [0, O) for a label loss, else targets of the head's width O.
    weights : (T, B) array or None
        Loss weights w[t − 1, b]; None for the mean over every step and sequence.
    k1 : int
        Steps between two backward passes, >= 1.
    k2 : int
        Steps each backward pass reaches back, >= k1.
    trainable : collection of str or None
        Names of the parameters to differentiate (default None: all); the others are frozen and
        absent from ``dtheta`` (:mod:`refnet.algorithms.trainable`).

    Returns
    -------
    GradResult
        ``loss`` L (the full objective), ``dtheta`` and ``ds0`` of the truncated objective,
        ``dbeta`` = ∂L/∂β (exact: the head sees no truncation), ``s_T``, and ``vjp_steps`` = the
        cell VJPs spent, Σ over windows of (end − fixed).

    Raises
    ------
    TypeError
        As :func:`bptt`; ``k1`` or ``k2`` not an int.
    ValueError
        As :func:`bptt`; ``k1`` < 1 or k2 < k1.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t, loss term or adjoint.  A
        diverging forward pass raises before any window's VJPs are spent; the windows' results
        are checked every ``checks.CHECK_EVERY`` steps of losses.
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    names = check_trainable(cell, trainable)
    T = x.shape[0]
    windows = tbptt_windows(T, k1, k2)
    if fused.applies(cell):   # the cell's fused whole-sequence pair; the loops below are its reference
        L, dtheta, dbeta, ds0, s_T, vjp_steps = fused.fused_tbptt(cell, theta, x, s0, head, beta, y, weights,
                                                                  windows)
        return GradResult(float(L), restrict(dtheta, names), dbeta, ds0, s_T, vjp_steps)
    s, caches = _forward(cell, theta, x, s0, function="tbptt")
    L, ds_out, dbeta = _step_losses(cell, head, beta, s, y, weights, range(1, T + 1), "tbptt")
    dtheta, ds0, vjp_steps = zeros_like(theta), xp_of(s0).zeros_like(s0), 0
    pending, pending_steps = [], 0   # windows since the last check: one read-back per CHECK_EVERY steps
    for first, end, fixed in windows:
        window_out = {t: ds_out[t] for t in range(first, end + 1) if t in ds_out}
        dtheta_w, _, ds_fixed = _backward(cell, theta, caches, window_out, xp_of(s0).zeros_like(s0), end, fixed,
                                          function="tbptt", check=False)
        pending.append((window_out, end, fixed, dtheta_w, ds_fixed))
        pending_steps += end - first + 1            # time steps this window's losses cover
        if pending_steps >= CHECK_EVERY:
            _check_windows(cell, theta, caches, s0, pending)
            pending, pending_steps = [], 0
        axpy(1.0, dtheta_w, dtheta)
        vjp_steps += end - fixed
        if fixed == 0:
            ds0 = ds0 + ds_fixed
    _check_windows(cell, theta, caches, s0, pending)
    check_finite_tree("tbptt", "dtheta", dtheta, " (the sum over windows overflowed)")
    return GradResult(float(L), restrict(dtheta, names), dbeta, ds0, s[T], vjp_steps)


def _check_windows(cell, theta, caches, s0, pending):
    """Check the results of several TBPTT windows in one read-back; re-run the first bad one with
    ``locate=True`` so that the error names its first non-finite adjoint."""
    arrays, owner = [], []
    for k, (_, _, _, dtheta_w, ds_fixed) in enumerate(pending):
        arrays += [ds_fixed, *dtheta_w.values()]
        owner += [k] * (1 + len(dtheta_w))
    found = first_nonfinite(arrays)
    if found is None:
        return
    window_out, end, fixed, _, _ = pending[owner[found[0]]]
    _backward(cell, theta, caches, window_out, xp_of(s0).zeros_like(s0), end, fixed, function="tbptt")


def truncated_loss(cell, theta, x, s0, head, beta, y, weights=None, *, k1, k2, fixed_states):
    """The objective whose exact gradient :func:`tbptt` returns (Williams & Peng 1990, with θ fixed).

    For each window (first, end, fixed) of :func:`tbptt_windows`, the losses of
    steps first..end are computed by running θ from ``fixed_states[fixed]``
    (s_0 itself when fixed = 0).  ``fixed_states`` is the trajectory s[0..T]
    on which TBPTT ran; perturbing θ here leaves those anchors where they are,
    which is what makes finite differences of this function check :func:`tbptt`.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (T, B, I) array-like
        Inputs, T >= 1, B >= 1.
    s0 : (B, n_state) array-like or None
        Initial state s_0; None for zeros.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout and its loss ℓ; ``head.n_in == cell.n_out``.
    beta : dict {name: array}
        The head's parameters.
    y : (T, B) int array or (T, B, O) float array
        Class labels or targets.
    weights : (T, B) array or None
        Loss weights w[t − 1, b]; None for the mean.
    k1 : int
        Steps between two backward passes, >= 1.
    k2 : int
        Steps each backward pass reaches back, >= k1.
    fixed_states : sequence of T + 1 arrays (B, n_state)
        The anchors s[0..T] (``forward(...).s``); only the entries at the windows' fixed steps
        > 0 are read.

    Returns
    -------
    float
        The truncated objective, Σ over windows of the losses of steps first..end run from
        the window's anchor.

    Raises
    ------
    TypeError
        As :func:`bptt`; ``k1``/``k2`` not an int; ``fixed_states`` a str or without a length;
        an anchor that is not an array.
    ValueError
        As :func:`bptt`; ``k1`` < 1 or k2 < k1; ``fixed_states`` not of length T + 1; an anchor
        not (B, n_state) or not finite.
    refnet.NumericalError
        A window's run overflowed: names the first non-finite state s_t or loss term.
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    T, B = x.shape[:2]
    windows = tbptt_windows(T, k1, k2)
    if isinstance(fixed_states, (str, bytes)) or not hasattr(fixed_states, "__len__"):
        raise TypeError(f"fixed_states must be a list of the T + 1 = {T + 1} states s[0..T], "
                        f"got {type(fixed_states).__name__}")
    if len(fixed_states) != T + 1:
        raise ValueError(f"fixed_states must hold s[0..T] ({T + 1} states), got {len(fixed_states)}")
    anchors = {fixed for _, _, fixed in windows if fixed > 0}
    for fixed in sorted(anchors):
        check_array(f"fixed_states[{fixed}]", as_array(f"fixed_states[{fixed}]", fixed_states[fixed]),
                    shape=(B, cell.n_state))
    terms = {}
    for first, end, fixed in windows:
        anchor = s0 if fixed == 0 else as_array("fixed_states", fixed_states[fixed])
        s = _forward(cell, theta, x, anchor, t_first=fixed + 1, t_last=end, function="truncated_loss").s
        for t in range(first, end + 1):
            terms[t] = head.loss_value(beta, cell.output(s[t]), y[t - 1], weights[t - 1], check=False)
    check_finite_steps("truncated_loss", "loss term", "L", list(terms.values()), steps=list(terms))
    return float(sum(terms.values()))


def sequence_vjp(cell, theta, x, s0, dout, ds_T=None, *, trainable=None):
    """Pull back cotangents through a whole run: the call an oracle user compares autograd with.

    Given ``dout``, the cotangent of every step's output(s_t), and ``ds_T``, the
    cotangent of the final state, returns the gradients of
    ⟨dout, outputs⟩ + ⟨ds_T, s_T⟩ with respect to θ, every x_t and s_0: Werbos's
    (1990) backward pass with the cotangents given instead of a loss (PyTorch:
    ``torch.autograd.grad`` of nn.RNN's ``(output, h_n)`` with those grad_outputs).

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
    dout : (T, B, n_out) array-like
        Cotangents of output(s_t), t = 1..T.
    ds_T : (B, n_state) array-like or None
        Cotangent of s_T; None for zero.
    trainable : collection of str or None
        Names of the parameters in ``dtheta`` (default None: all); the others are frozen and
        absent.  ``dx`` and ``ds0`` are always returned.

    Returns
    -------
    SequenceVJP
        ``outputs`` (T, B, n_out), ``s_T`` (B, n_state), ``dtheta``, ``dx`` (T, B, I) and
        ``ds0`` (B, n_state).

    Raises
    ------
    TypeError
        ``cell`` lacks the cell contract; ``theta`` not a dict of floating arrays; an argument
        that is not an array; mixed dtypes or backends; ``trainable`` a str or not a collection.
    ValueError
        A missing or extra parameter, a wrong shape (``dout`` not (T, B, n_out), ``ds_T`` not
        (B, n_state)), T = 0, B = 0, a NaN/Inf input, a ``trainable`` name the cell lacks, or a
        bad ``REFNET_FUSED``.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t, adjoint ds_t or input
        cotangent dx_t.
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    T, B = x.shape[:2]
    dout = as_array("dout", dout)
    check_array("dout", dout, shape=(T, B, cell.n_out))
    if ds_T is None:
        ds_T = xp_of(s0).zeros_like(s0)
    ds_T = as_array("ds_T", ds_T)
    check_array("ds_T", ds_T, shape=(B, cell.n_state))
    check_same_dtype({"x": x, "dout": dout, "ds_T": ds_T})
    names = check_trainable(cell, trainable)
    res = _sequence_vjp(cell, theta, x, s0, dout, ds_T, function="sequence_vjp")
    return replace(res, dtheta=restrict(res.dtheta, names))


def _sequence_vjp(cell, theta, x, s0, dout, ds_T, *, function):
    """:func:`sequence_vjp` on validated arguments; errors name ``function``."""
    T = x.shape[0]
    xp = xp_of(x)
    if fused.applies(cell):   # the cell's fused whole-sequence pair; the loop below is its reference
        return SequenceVJP(*fused.fused_sequence_vjp(cell, theta, x, s0, dout, ds_T, name=function))
    s, caches = _forward(cell, theta, x, s0, function=function)
    ds_out = {t: cell.output_vjp(dout[t - 1]) for t in range(1, T + 1)}
    dtheta, dx, ds0 = _backward(cell, theta, caches, ds_out, ds_T, T, 0, function=function)
    check_finite_steps(function, "input cotangent", "dx", [dx[t] for t in range(1, T + 1)])
    outputs = xp.stack([cell.output(s[t]) for t in range(1, T + 1)])
    return SequenceVJP(outputs, s[T], dtheta, xp.stack([dx[t] for t in range(1, T + 1)]), ds0)
