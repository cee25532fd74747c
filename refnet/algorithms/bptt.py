"""Back-propagation through time: BPTT, TBPTT(k1, k2) and the sequence VJP.

Conventions (min-char-rnn style): ``x`` is (T, B, I) and ``x[t-1]`` is x_t;
states are kept as ``s[0..T]`` with ``s[0] = s_0``, so step t reads
``s[t-1]`` and ``x[t-1]`` and writes ``s[t]``.  The objective is

    L = Σ_{t=1..T} Σ_b w[t-1, b] ℓ(head(output(s_t))_b, y[t-1, b])

(``refnet.heads``).  The carried adjoint ``ds_next`` is ∂L/∂s_t from the
future; the cell's ``step_vjp`` turns it into ∂L/∂s_{t−1}.
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
    s: list       # s[0..T], each (B, n_state)
    caches: list  # caches[1..T] from cell.step (caches[0] is None)


@dataclass(frozen=True)
class GradResult:
    """What a gradient algorithm returns.

    loss: the objective's value; dtheta, dbeta: gradients for the cell and the
    head; ds0: gradient for the initial state; s_T: the final state;
    vjp_steps: how many cell VJPs were spent (T for BPTT, more for TBPTT
    with overlapping windows).
    """

    loss: float
    dtheta: dict
    dbeta: dict
    ds0: Any
    s_T: Any
    vjp_steps: int


@dataclass(frozen=True)
class SequenceVJP:
    """Outputs of the forward run and the cotangent pulled back to every input."""

    outputs: Any    # (T, B, n_out)  output(s_t) for t = 1..T
    s_T: Any        # (B, n_state)
    dtheta: dict
    dx: Any         # (T, B, I)
    ds0: Any        # (B, n_state)


def forward(cell, theta, x, s0=None):
    """Run the cell over x: s_t = f(θ, s_{t−1}, x_t) for t = 1..T (Elman 1990's recurrence, any cell).

    Parameters
    ----------
    cell : a refnet cell (refnet.cells.Cell)
    theta : dict {name: array}, the cell's params (``cell.param_shapes()``)
    x : (T, B, I) inputs, T >= 1, B >= 1 (an array-like is made a NumPy array)
    s0 : (B, n_state) initial state, or None for zeros

    Returns
    -------
    Trajectory : ``s`` = [s_0, …, s_T], each (B, n_state), and the caches of every step.

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, mixed dtypes.
    ValueError
        A wrong shape, missing or extra parameter, T = 0, B = 0, a NaN/Inf input.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (found while the
        forward runs, before any backward), loss term or adjoint.
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
    cell : a refnet cell (refnet.cells.Cell)
    theta : dict {name: array}, the cell's params (``cell.param_shapes()``)
    x : (T, B, I) inputs, T >= 1, B >= 1 (an array-like is made a NumPy array)
    s0 : (B, n_state) initial state, or None for zeros
    head : refnet.heads.Head (or MLPHead) on ``cell.output``, with ``head.n_in == cell.n_out``
    beta : dict {name: array}, the head's params
    y : (T, B) int class labels, or (T, B, O) float targets
    weights : (T, B) loss weights w[t−1, b], default ``every_step`` (the mean)

    Returns
    -------
    float : L

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, mixed dtypes.
    ValueError
        A wrong shape, missing or extra parameter, T = 0, B = 0, a NaN/Inf input.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (found while the
        forward runs, before any backward), loss term or adjoint.
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

    Parameters
    ----------
    cell : a refnet cell (refnet.cells.Cell)
    theta : dict {name: array}, the cell's params (``cell.param_shapes()``)
    x : (T, B, I) inputs, T >= 1, B >= 1 (an array-like is made a NumPy array)
    s0 : (B, n_state) initial state, or None for zeros
    head : refnet.heads.Head (or MLPHead) on ``cell.output``, with ``head.n_in == cell.n_out``
    beta : dict {name: array}, the head's params
    y : (T, B) int class labels, or (T, B, O) float targets
    weights : (T, B) loss weights w[t−1, b], default ``every_step`` (the mean)
    trainable : collection of parameter names, optional (default: all); the others are frozen and
        absent from ``dtheta`` (:mod:`refnet.algorithms.trainable`)

    Returns
    -------
    GradResult with dtheta, dbeta and ds0 = ∂L/∂s_0.

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, mixed dtypes.
    ValueError
        A wrong shape, missing or extra parameter, T = 0, B = 0, a NaN/Inf input.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (found while the
        forward runs, before any backward), loss term or adjoint.
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
    """The windows of TBPTT(k1, k2): tuples (first loss step, last loss step, state held fixed).

    At t = k1, 2·k1, … (and at T if k1 does not divide T) the losses of the
    steps since the previous window are back-propagated through at most k2
    steps, to the state s_{max(t − k2, 0)}, which is held constant.  So
    k2 >= T gives BPTT.  With k1 = k2 = k and k dividing T this is the
    chunked "run k steps, backward, detach" form; when k does not divide T
    the last, shorter window still reaches back k steps from T (one
    backward at the end, as an online learner would make), not to the chunk
    boundary.
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
    """TBPTT(k1, k2) (Williams & Peng 1990), gradient summed over the sequence, θ fixed.

    Every k1 steps the losses of those k1 steps are back-propagated through
    at most k2 steps (:func:`tbptt_windows` gives the exact windows).  This is the exact gradient of
    :func:`truncated_loss` — the states at the truncation points held at their
    values on this trajectory.  k1 = k2 = k is the chunked form; k1 = 1 the
    online form; k2 >= T gives BPTT.

    Parameters
    ----------
    cell, theta, x, s0, head, beta, y, weights : as :func:`bptt`
    k1 : int >= 1, steps between two backward passes
    k2 : int >= k1, steps each backward pass reaches back
    trainable : collection of parameter names, optional (default: all); the others are frozen and
        absent from ``dtheta`` (:mod:`refnet.algorithms.trainable`)

    Returns
    -------
    GradResult; ``vjp_steps`` counts the cell VJPs spent, Σ over windows of (end − fixed).

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, mixed dtypes.
    ValueError
        A wrong shape, missing or extra parameter, T = 0, B = 0, a NaN/Inf input.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (found while the
        forward runs, before any backward), loss term or adjoint.  A diverging forward pass
        raises before any window's VJPs are spent; each window's result is checked
        as it is made."""
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
    """The objective whose exact gradient :func:`tbptt` returns.

    For each window (first, end, fixed) of :func:`tbptt_windows`, the losses of
    steps first..end are computed by running θ from ``fixed_states[fixed]``
    (s_0 itself when fixed = 0).  ``fixed_states`` is the trajectory s[0..T]
    on which TBPTT ran; perturbing θ here leaves those anchors where they are.

    Parameters
    ----------
    cell, theta, x, s0, head, beta, y, weights, k1, k2 : as :func:`tbptt`
    fixed_states : sequence of T + 1 arrays (B, n_state), s[0..T] (``forward(...).s``)

    Returns
    -------
    float : the truncated objective

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, mixed dtypes.
    ValueError
        A wrong shape, missing or extra parameter, T = 0, B = 0, a NaN/Inf input.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (found while the
        forward runs, before any backward), loss term or adjoint.
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

    Given ``dout`` (T, B, n_out), the cotangent of every step's output(s_t),
    and ``ds_T`` (B, n_state), the cotangent of the final state (None = 0),
    returns the gradients of ⟨dout, outputs⟩ + ⟨ds_T, s_T⟩ with respect to
    θ, every x_t and s_0 (PyTorch: ``torch.autograd.grad`` of nn.RNN's
    ``(output, h_n)`` with those grad_outputs; Werbos 1990's backward pass).

    Parameters
    ----------
    cell : a refnet cell (refnet.cells.Cell)
    theta : dict {name: array}, the cell's params (``cell.param_shapes()``)
    x : (T, B, I) inputs, T >= 1, B >= 1 (an array-like is made a NumPy array)
    s0 : (B, n_state) initial state, or None for zeros
    dout : (T, B, n_out) cotangents of output(s_t), t = 1..T
    ds_T : (B, n_state) cotangent of s_T, or None for zero
    trainable : collection of parameter names, optional (default: all); the others are frozen and
        absent from ``dtheta`` (:mod:`refnet.algorithms.trainable`); ``dx`` and ``ds0`` are always returned

    Returns
    -------
    SequenceVJP : outputs (T, B, n_out), s_T, dtheta, dx (T, B, I), ds0 (B, n_state)

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, mixed dtypes.
    ValueError
        A wrong shape, missing or extra parameter, T = 0, B = 0, a NaN/Inf input.
    refnet.NumericalError
        The run overflowed: names the first non-finite state s_t (found while the
        forward runs, before any backward), loss term or adjoint.
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
