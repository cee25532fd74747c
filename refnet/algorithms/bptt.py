"""Back-propagation through time: BPTT, TBPTT(k1, k2) and the sequence VJP.

Conventions (min-char-rnn style): ``x`` is (T, B, I) and ``x[t-1]`` is x_t;
states are kept as ``s[0..T]`` with ``s[0] = s_0``, so step t reads
``s[t-1]`` and ``x[t-1]`` and writes ``s[t]``.  The objective is

    L = Σ_{t=1..T} Σ_b w[t-1, b] ℓ(head(output(s_t))_b, y[t-1, b])

(``refnet.heads``).  The carried adjoint ``ds_next`` is ∂L/∂s_t from the
future; the cell's ``step_vjp`` turns it into ∂L/∂s_{t−1}.
"""
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..backend import to_numpy, xp_of
from .._validate import check_array, check_int, check_same_dtype
from ..params import axpy, zeros_like
from . import fused
from .checks import check_finite_result, check_objective, check_run

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
    """Run the cell over x: s_t = f(θ, s_{t−1}, x_t) for t = 1..T."""
    s0 = check_run(cell, theta, x, s0)
    return _forward(cell, theta, x, s0)


def _forward(cell, theta, x, s0, t_first=1, t_last=None):
    """States s[t_first−1..t_last] from s[t_first−1] = s0 (list indices are time steps)."""
    T = x.shape[0] if t_last is None else t_last
    s = [None] * (t_first - 1) + [s0]
    caches = [None] * t_first
    for t in range(t_first, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        caches.append(cache)
    return Trajectory(s, caches)


def _step_losses(cell, head, beta, s, y, weights, steps):
    """L over ``steps`` and the cotangents ∂L/∂s_t: returns (L, {t: ds_t}, dβ).

    Steps whose weights are all zero take no loss and are skipped (no entry in the dict).
    """
    total, ds_out, dbeta = 0.0, {}, zeros_like(beta)
    active = to_numpy(weights.any(axis=1))
    for t in steps:
        if not active[t - 1]:
            continue
        L_t, dh, dbeta_t = head.loss_and_grad(beta, cell.output(s[t]), y[t - 1], weights[t - 1])
        total = total + L_t
        ds_out[t] = cell.output_vjp(dh)
        axpy(1.0, dbeta_t, dbeta)
    return total, ds_out, dbeta


def _backward(cell, theta, caches, ds_out, ds_T, t_end, t_start):
    """Back-propagate from s_{t_end} to s_{t_start}.

    ``ds_out[t]`` (missing = zero) is the direct cotangent on s_t and ``ds_T``
    the cotangent arriving at s_{t_end}.  Returns (dθ, {t: dx_t}, ∂/∂s_{t_start}).
    """
    dtheta, dx = None, {}
    ds_next = ds_T
    for t in range(t_end, t_start, -1):
        ds = ds_next + ds_out[t] if t in ds_out else ds_next
        ds_next, dtheta_t, dx[t] = cell.step_vjp(theta, caches[t], ds)
        dtheta = dtheta_t if dtheta is None else axpy(1.0, dtheta_t, dtheta)
    return dtheta, dx, ds_next


def loss(cell, theta, x, s0, head, beta, y, weights=None):
    """The objective L (module docstring) alone, as a float."""
    s0 = check_run(cell, theta, x, s0)
    weights = check_objective(head, beta, x, y, weights)
    s = _forward(cell, theta, x, s0).s
    active = to_numpy(weights.any(axis=1))
    return float(sum(head.loss_value(beta, cell.output(s[t]), y[t - 1], weights[t - 1])
                     for t in range(1, x.shape[0] + 1) if active[t - 1]))


def bptt(cell, theta, x, s0, head, beta, y, weights=None):
    """BPTT (Werbos 1990): the exact gradient of L over the whole sequence.

    Parameters
    ----------
    cell : a refnet cell;  theta : its params dict
    x : (T, B, I) inputs;  s0 : (B, n_state) initial state, or None for zeros
    head : refnet.heads.Head;  beta : its params dict
    y : (T, B) labels or (T, B, O) targets;  weights : (T, B), default every_step

    Returns
    -------
    GradResult with dtheta, dbeta and ds0 = ∂L/∂s_0.
    """
    s0 = check_run(cell, theta, x, s0)
    weights = check_objective(head, beta, x, y, weights)
    T = x.shape[0]
    if fused.applies(cell):   # the cell's fused whole-sequence pair; this loop is its reference
        L, dtheta, dbeta, ds0, s_T = fused.fused_bptt(cell, theta, x, s0, head, beta, y, weights)
        return GradResult(float(L), dtheta, dbeta, ds0, s_T, T)
    s, caches = _forward(cell, theta, x, s0)
    L, ds_out, dbeta = _step_losses(cell, head, beta, s, y, weights, range(1, T + 1))
    dtheta, _, ds0 = _backward(cell, theta, caches, ds_out, xp_of(s0).zeros_like(s0), T, 0)
    check_finite_result("bptt", L, {**dtheta, **dbeta}, s)
    return GradResult(float(L), dtheta, dbeta, ds0, s[T], T)


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


def tbptt(cell, theta, x, s0, head, beta, y, weights=None, *, k1, k2):
    """TBPTT(k1, k2) (Williams & Peng 1990), gradient summed over the sequence, θ fixed.

    Every k1 steps the losses of those k1 steps are back-propagated through
    at most k2 steps (:func:`tbptt_windows` gives the exact windows).  This is the exact gradient of
    :func:`truncated_loss` — the states at the truncation points held at their
    values on this trajectory.  k1 = k2 = k is the chunked form; k1 = 1 the
    online form; k2 >= T gives BPTT.  Arguments as :func:`bptt`.
    """
    s0 = check_run(cell, theta, x, s0)
    weights = check_objective(head, beta, x, y, weights)
    T = x.shape[0]
    windows = tbptt_windows(T, k1, k2)
    if fused.applies(cell):   # the cell's fused whole-sequence pair; the loops below are its reference
        L, dtheta, dbeta, ds0, s_T, vjp_steps = fused.fused_tbptt(cell, theta, x, s0, head, beta, y, weights,
                                                                  windows)
        return GradResult(float(L), dtheta, dbeta, ds0, s_T, vjp_steps)
    s, caches = _forward(cell, theta, x, s0)
    L, ds_out, dbeta = _step_losses(cell, head, beta, s, y, weights, range(1, T + 1))
    dtheta, ds0, vjp_steps = zeros_like(theta), xp_of(s0).zeros_like(s0), 0
    for first, end, fixed in windows:
        window_out = {t: ds_out[t] for t in range(first, end + 1) if t in ds_out}
        dtheta_w, _, ds_fixed = _backward(cell, theta, caches, window_out, xp_of(s0).zeros_like(s0), end, fixed)
        axpy(1.0, dtheta_w, dtheta)
        vjp_steps += end - fixed
        if fixed == 0:
            ds0 = ds0 + ds_fixed
    check_finite_result("tbptt", L, {**dtheta, **dbeta}, s)
    return GradResult(float(L), dtheta, dbeta, ds0, s[T], vjp_steps)


def truncated_loss(cell, theta, x, s0, head, beta, y, weights=None, *, k1, k2, fixed_states):
    """The objective whose exact gradient :func:`tbptt` returns.

    For each window (first, end, fixed) of :func:`tbptt_windows`, the losses of
    steps first..end are computed by running θ from ``fixed_states[fixed]``
    (s_0 itself when fixed = 0).  ``fixed_states`` is the trajectory s[0..T]
    on which TBPTT ran; perturbing θ here leaves those anchors where they are.
    """
    s0 = check_run(cell, theta, x, s0)
    weights = check_objective(head, beta, x, y, weights)
    T = x.shape[0]
    if len(fixed_states) != T + 1:
        raise ValueError(f"fixed_states must hold s[0..T] ({T + 1} states), got {len(fixed_states)}")
    total = 0.0
    for first, end, fixed in tbptt_windows(T, k1, k2):
        anchor = s0 if fixed == 0 else fixed_states[fixed]
        s = _forward(cell, theta, x, anchor, t_first=fixed + 1, t_last=end).s
        for t in range(first, end + 1):
            total = total + head.loss_value(beta, cell.output(s[t]), y[t - 1], weights[t - 1])
    return float(total)


def sequence_vjp(cell, theta, x, s0, dout, ds_T=None):
    """Pull back cotangents through a whole run: the call an oracle user compares autograd with.

    Given ``dout`` (T, B, n_out), the cotangent of every step's output(s_t),
    and ``ds_T`` (B, n_state), the cotangent of the final state (None = 0),
    returns the gradients of ⟨dout, outputs⟩ + ⟨ds_T, s_T⟩ with respect to
    θ, every x_t and s_0 (PyTorch: ``torch.autograd.grad`` of nn.RNN's
    ``(output, h_n)`` with those grad_outputs).
    """
    s0 = check_run(cell, theta, x, s0)
    T, B = x.shape[:2]
    check_array("dout", dout, shape=(T, B, cell.n_out))
    if ds_T is None:
        ds_T = xp_of(s0).zeros_like(s0)
    check_array("ds_T", ds_T, shape=(B, cell.n_state))
    check_same_dtype({"x": x, "dout": dout, "ds_T": ds_T})
    xp = xp_of(x)
    if fused.applies(cell):   # the cell's fused whole-sequence pair; the loop below is its reference
        return SequenceVJP(*fused.fused_sequence_vjp(cell, theta, x, s0, dout, ds_T))
    s, caches = _forward(cell, theta, x, s0)
    ds_out = {t: cell.output_vjp(dout[t - 1]) for t in range(1, T + 1)}
    dtheta, dx, ds0 = _backward(cell, theta, caches, ds_out, ds_T, T, 0)
    outputs = xp.stack([cell.output(s[t]) for t in range(1, T + 1)])
    return SequenceVJP(outputs, s[T], dtheta, xp.stack([dx[t] for t in range(1, T + 1)]), ds0)
