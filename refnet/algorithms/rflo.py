"""RFLO (Murray 2019, eLife, "Local online learning in recurrent networks with random feedback").

For the leaky RNN h_t = (1 − α) h_{t−1} + α φ(W_hh h_{t−1} + W_ih x_t + b)
(:class:`refnet.cells.LeakyRNN`, Murray's Eq. 1 with α = Δt/τ), RTRL's
sensitivity obeys M_t = ((1 − α) I + diag(D_t) W_hh) M_{t−1} + J_θ with
D_t = α φ'(a_t) and J_θ = diag(D_t) ⊗ [x_t; h_{t−1}; 1; 1]ᵀ.  RFLO drops the
term that passes through W_hh — the non-local part — and keeps what remains,
which leaves each parameter one entry, its own unit's (the trace p of
Murray's learning rule):

    M_t ≈ (1 − α) M_{t−1} + D_t ⊗ ĥ_t,     E[b, i, c] ← (1 − α) E[b, i, c] + D[b, i] ĥ[b, c]

with ĥ = [x_t; h_{t−1}; 1; 1] (:mod:`refnet.algorithms.traces`; P entries,
O(P) time and memory per step).  The gradient of ℓ_t is read off the
trace: dθ_k[i, j] = Σ_b δ_t[b, i] E[b, i, first_k + j], where δ_t is

- the readout's transpose, δ_t = ∂ℓ_t/∂h_t = W_outᵀ e_t (``feedback=None``), or
- a fixed random feedback matrix B (n_out, O) in its place, δ_t = B e_t
  (Murray's random-feedback rule; B is drawn once and never learned),

with e_t = ∂ℓ_t/∂z_t the output error at the head's logits (ŷ − y for
squared error, softmax − one-hot for cross-entropy).  The head's own
gradient is exact either way.

What is exact: at W_hh = 0 the dropped term is zero, J_s = (1 − α) I, and
RFLO's trace *is* RTRL's sensitivity — for every parameter, W_hh's own
columns included (their immediate part, D ⊗ h_{t−1}, is kept) — so with
``feedback=None`` the gradient equals RTRL's (= BPTT's).  Elsewhere it is a
biased approximation; the bench reports its cosine similarity to the exact
gradient.  RFLO needs a cell with ``kronecker_factors`` and a ``leak``
(1 − α): LeakyRNN (the Elman cell is LeakyRNN with α = 1).

Frozen parameters (``trainable=``): E holds the ĥ_k columns of the trainable
parameters only, so a frozen one costs no trace memory; every entry's trace
is its own, so the restricted RFLO is the full one's trainable part exactly.
"""
from typing import NamedTuple

from ..backend import xp_of
from .._validate import check_array, check_same_dtype
from ..params import axpy, zeros_like
from .bptt import GradResult
from .checks import StepWatch, check_finite_tree, check_objective, check_sequence
from .structure import kronecker_layout
from .traces import split_blocks, trace_gradient, trace_update
from .trainable import check_trainable

__all__ = ["RFLOState", "rflo_init", "rflo_update", "rflo_gradient", "rflo_sensitivity", "rflo_delta",
           "check_feedback", "rflo"]


class RFLOState(NamedTuple):
    E: object       # (B, n, m) the trace: E[:, i, first_k + j] for θ_k[i, j]
    blocks: dict    # {name: (first, last)} of ĥ_k in ĥ, in param_shapes order
    leak: float     # 1 − α


def _check_cell(cell):
    """The cell's Kronecker layout, and its leak; TypeError naming the cell where RFLO does not apply."""
    layout = kronecker_layout(cell, "RFLO")
    leak = getattr(cell, "leak", None)
    if layout.rest or leak is None:
        raise TypeError(f"RFLO needs a leaky cell whose every parameter has a Kronecker-factored J_theta "
                        f"and a leak 1 − alpha (refnet.LeakyRNN; the Elman RNN is LeakyRNN with alpha = 1); "
                        f"got {type(cell).__name__}"
                        + (f", whose {list(layout.rest)} are not factored" if layout.rest else ", which has no leak"))
    return layout, float(leak)


def rflo_init(cell, batch, like, trainable=None):
    """E = 0 (M_0 = 0) for ``batch`` examples on the backend and dtype of ``like``.

    ``trainable`` (collection of parameter names, default all): E has the
    columns of those parameters only (module docstring).

    Raises
    ------
    TypeError
        A cell without ``kronecker_factors`` and ``leak`` (module docstring); ``trainable``
        not a collection of names.
    ValueError
        ``trainable`` names a parameter the cell does not have, or none.
    """
    layout, leak = _check_cell(cell)
    names = check_trainable(cell, trainable)
    if not names:
        raise ValueError(f"trainable is empty: RFLO has no trace to carry; expected at least one of "
                         f"{list(cell.param_shapes())}")
    blocks, m = {}, 0                     # the trainable blocks, renumbered side by side in E
    for k, (first, last) in layout.blocks.items():
        if k in names:
            blocks[k] = (m, m + last - first)
            m += last - first
    E = xp_of(like).zeros((batch, cell.n_state, m), dtype=like.dtype)
    return RFLOState(E, blocks, leak)


def rflo_update(cell, theta, cache, state, out=None):
    """E_t = (1 − α) E_{t−1} + D_t ⊗ ĥ_t (module docstring) after the transition that made ``cache``.

    Parameters
    ----------
    cell, theta : the leaky cell and its params
    cache : from ``cell.step`` at this step
    state : RFLOState at t − 1
    out : (B, n, m) array for E_t (may be state.E itself), or None

    Returns
    -------
    RFLOState at t.
    """
    D, h_hat = cell.kronecker_factors(theta, cache)
    xp = xp_of(D)
    h_hat = xp.concatenate([h_hat[k] for k in state.blocks], axis=1)
    a = xp.full(D.shape, state.leak, dtype=D.dtype)
    return RFLOState(trace_update(a, D, h_hat, state.E, out), state.blocks, state.leak)


def rflo_gradient(state, delta, shapes):
    """RFLO's gradient for the learning signal δ (B, n_state): {θ_k: Σ_b δ[b, i] E[b, i, first_k + j]},
    for the parameters the trace carries (the trainable ones)."""
    return split_blocks(trace_gradient(state.E, delta), state.blocks, shapes)


def rflo_sensitivity(state, shapes):
    """The dense M̃ (B, n, P) the trace stands for (zero off each parameter's own unit), flatten order;
    P counts the parameters the trace carries (the trainable ones)."""
    xp = xp_of(state.E)
    B, n, _ = state.E.shape
    eye = xp.eye(n, dtype=state.E.dtype)
    return xp.concatenate([(eye[None, :, :, None] * state.E[:, :, None, first:last]).reshape(B, n, -1)
                           for first, last in (state.blocks[k] for k in shapes if k in state.blocks)], axis=2)


def check_feedback(feedback, cell, head, like):
    """Validate a random feedback matrix B (cell.n_out, head.n_out); None passes (readout transpose)."""
    if feedback is None:
        return None
    check_array("feedback", feedback, shape=(cell.n_out, head.n_out))
    check_same_dtype({"feedback": feedback, "x": like})
    return feedback


def rflo_delta(cell, head, beta, h_out, y, w, dh, feedback):
    """The learning signal δ_t (B, n_state): ∂ℓ_t/∂s_t (``feedback`` None), or B e_t mapped onto the state.

    Parameters
    ----------
    cell, head, beta : the cell, its head and the head's params
    h_out : (B, n_out), ``cell.output(s_t)``;  y : targets of step t;  w : (B,) loss weights
    dh : (B, n_out), ∂ℓ_t/∂h_out from ``head.loss_and_grad`` (used when ``feedback`` is None)
    feedback : (n_out, O) or None
    """
    if feedback is None:
        return cell.output_vjp(dh)
    _, error = head.loss.value_and_grad(head.forward(beta, h_out), y)      # e_t = ∂ℓ/∂z per example
    return cell.output_vjp((error * w[:, None]) @ feedback.T)


def rflo(cell, theta, x, s0, head, beta, y, weights=None, *, feedback=None, trainable=None):
    """RFLO's approximation of L's gradient over a sequence, θ fixed (Murray 2019; module docstring).

    Arguments as :func:`refnet.algorithms.bptt.bptt`, plus

    feedback : (cell.n_out, head.n_out) array or None
        A fixed random feedback matrix B in place of the readout's transpose
        (Murray's random-feedback rule), or None for the readout's transpose.
    trainable : collection of parameter names, optional (default all); the others are frozen,
        carry no trace and are absent from ``dtheta``

    Returns a GradResult whose ``dtheta`` is RFLO's (RTRL's exactly when
    W_hh = 0 and ``feedback`` is None); ``dbeta`` and ``loss`` are exact;
    ``ds0`` is None; ``vjp_steps`` is 0.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, named; a cell RFLO does not apply to (not leaky, not factored); a bad ``trainable``.
    refnet.NumericalError
        A non-finite loss or gradient, naming the first non-finite state.
    """
    _check_cell(cell)
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    feedback = check_feedback(feedback, cell, head, x)
    T, B = x.shape[:2]
    shapes = cell.param_shapes()
    state = rflo_init(cell, B, x, trainable)
    dtheta = {k: xp_of(x).zeros(shape, dtype=x.dtype) for k, shape in shapes.items() if k in state.blocks}
    dbeta = zeros_like(beta)
    L, s = 0.0, [s0]
    watch = StepWatch("rflo")
    for t in range(1, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        state = rflo_update(cell, theta, cache, state)
        h_out = cell.output(s_t)
        L_t, dh, dbeta_t = head.loss_and_grad(beta, h_out, y[t - 1], weights[t - 1], check=False)
        delta = rflo_delta(cell, head, beta, h_out, y[t - 1], weights[t - 1], dh, feedback)
        axpy(1.0, rflo_gradient(state, delta, shapes), dtheta)
        axpy(1.0, dbeta_t, dbeta)
        L = L + L_t
        watch(t, s_t, L_t, state.E)     # the gradient term is made from the trace E_t
    watch.flush()
    check_finite_tree("rflo", "gradient", dtheta)
    return GradResult(float(L), dtheta, dbeta, None, s[T], 0)
