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
from .._validate import check_array, check_int, check_same_dtype
from ..params import axpy, zeros_like
from .bptt import GradResult
from .checks import StepWatch, check_finite_tree, check_objective, check_sequence
from .structure import kronecker_layout
from .traces import split_blocks, trace_gradient, trace_update
from .trainable import check_trainable

__all__ = ["RFLOState", "rflo_init", "rflo_update", "rflo_gradient", "rflo_sensitivity", "rflo_delta",
           "check_feedback", "rflo"]


class RFLOState(NamedTuple):
    """RFLO's eligibility trace, one entry per parameter (Murray 2019, the trace p of the RFLO rule).

    Attributes
    ----------
    E : (B, n_state, m) array
        The trace: E[:, i, first_k + j] is that of θ_k[i, j]; m = Σ_k width of ĥ_k over the
        trainable parameters.
    blocks : dict {name: (int, int)}
        Columns [first, last) of each trainable parameter's ĥ_k in E, in ``param_shapes`` order.
    leak : float
        1 − α, the decay of the trace per step (dimensionless).
    """
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
    """E = 0 (M_0 = 0) for ``batch`` examples, on the backend and dtype of ``like``.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A leaky cell with ``kronecker_factors`` and ``leak`` (refnet.LeakyRNN; the Elman RNN as
        LeakyRNN with α = 1).
    batch : int
        B, the number of examples, >= 1.
    like : array
        Any floating array on the wanted backend and dtype (finiteness not checked).
    trainable : collection of str or None
        Names of the parameters E carries (default None: all).

    Returns
    -------
    RFLOState
        E (B, n_state, m) of zeros, the blocks and the leak 1 − α.

    Raises
    ------
    TypeError
        A cell RFLO does not apply to: no ``kronecker_factors`` (GRU, LSTM), an unfactored
        parameter (FastRNN's α̂, β̂) or no ``leak`` (ElmanRNN itself); ``trainable`` a str or not a
        collection; ``batch`` not an int; ``like`` not a floating array.
    ValueError
        ``trainable`` names a parameter the cell lacks, or none at all; ``batch`` < 1.
    """
    layout, leak = _check_cell(cell)
    batch = check_int("batch", batch, 1)
    check_array("like", like, finite=False)
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

    D_t = α φ'(a_t) and ĥ_t = [x_t; h_{t−1}; 1; 1] come from the cell's
    ``kronecker_factors``; the update is :func:`refnet.algorithms.traces.trace_update`
    with a = 1 − α.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The leaky cell (not validated here: :func:`rflo_init` did).
    theta : dict {name: array}
        The cell's parameters.
    cache : NamedTuple
        What ``cell.step`` returned at this step.
    state : RFLOState
        The trace at t − 1.
    out : (B, n_state, m) array or None
        Where to write E_t (may be ``state.E`` itself); None allocates.

    Returns
    -------
    RFLOState
        The trace at t (same blocks and leak).

    Raises
    ------
    AttributeError
        ``cell`` has no ``kronecker_factors`` or ``state`` is not an RFLOState.
    KeyError
        A block of ``state`` the cell's factors lack (a state made for another cell).
    ValueError
        Shapes that do not agree (a state made for another batch), or a bad ``REFNET_NUMBA``.
    """
    D, h_hat = cell.kronecker_factors(theta, cache)
    xp = xp_of(D)
    h_hat = xp.concatenate([h_hat[k] for k in state.blocks], axis=1)
    a = xp.full(D.shape, state.leak, dtype=D.dtype)
    return RFLOState(trace_update(a, D, h_hat, state.E, out), state.blocks, state.leak)


def rflo_gradient(state, delta, shapes):
    """RFLO's gradient for the learning signal δ: θ_k[i, j] ← Σ_b δ[b, i] E[b, i, first_k + j].

    Parameters
    ----------
    state : RFLOState
        The trace at t.
    delta : (B, n_state) array
        The learning signal δ_t (:func:`rflo_delta`).
    shapes : dict {name: tuple}
        The cell's ``param_shapes()``.

    Returns
    -------
    dict {name: array}
        The gradient of every parameter the trace carries (the trainable ones), shaped as in
        ``shapes``.

    Raises
    ------
    ValueError
        ``delta`` not (B, n_state) (from broadcasting against E).
    AttributeError
        ``state`` is not an RFLOState.
    """
    return split_blocks(trace_gradient(state.E, delta), state.blocks, shapes)


def rflo_sensitivity(state, shapes):
    """The dense M̃ (B, n_state, P) the trace stands for, zero off each parameter's own unit (for tests and checks).

    Parameters
    ----------
    state : RFLOState
        The trace at t.
    shapes : dict {name: tuple}
        The cell's ``param_shapes()``; orders the columns (``refnet.params.flatten`` order).

    Returns
    -------
    (B, n_state, P_carried) array
        M̃[b, i, (k, i', j)] = E[b, i, first_k + j] where i' = i, else 0; only the parameters the
        trace carries (the trainable ones) have columns.

    Raises
    ------
    ValueError
        ``shapes`` names none of the carried parameters (nothing to concatenate).
    AttributeError
        ``state`` is not an RFLOState.
    """
    xp = xp_of(state.E)
    B, n, _ = state.E.shape
    eye = xp.eye(n, dtype=state.E.dtype)
    return xp.concatenate([(eye[None, :, :, None] * state.E[:, :, None, first:last]).reshape(B, n, -1)
                           for first, last in (state.blocks[k] for k in shapes if k in state.blocks)], axis=2)


def check_feedback(feedback, cell, head, like):
    """Validate a random feedback matrix B (cell.n_out, head.n_out); None passes (the readout's transpose).

    Parameters
    ----------
    feedback : (n_out, O) array or None
        Murray's (2019) fixed random feedback B, n_out = ``cell.n_out``, O = ``head.n_out``.
    cell : refnet.cells.Cell
        The cell, for n_out.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The head, for O.
    like : array
        The run's inputs x, whose dtype and backend B must share.

    Returns
    -------
    (n_out, O) array or None
        ``feedback`` unchanged.

    Raises
    ------
    TypeError
        ``feedback`` not a NumPy/CuPy floating array (a list or a torch tensor is refused, not
        converted); a dtype or backend other than ``like``'s.
    ValueError
        ``feedback`` not (n_out, O), or not finite.
    """
    if feedback is None:
        return None
    check_array("feedback", feedback, shape=(cell.n_out, head.n_out))
    check_same_dtype({"feedback": feedback, "x": like})
    return feedback


def rflo_delta(cell, head, beta, h_out, y, w, dh, feedback):
    """The learning signal δ_t (B, n_state): ∂ℓ_t/∂s_t with ``feedback`` None, else B e_t mapped onto the state.

    With a feedback matrix, e_t = ∂ℓ_t/∂z_t is the output error at the head's
    logits (ŷ − y for squared error, softmax − one-hot for cross-entropy), weighted
    by w, and δ_t = output_vjp(e_t Bᵀ) (Murray 2019's random-feedback rule).

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell (for ``output_vjp``).
    head : refnet.heads.Head or refnet.heads.MLPHead
        The head; with a feedback matrix its loss's error is read at the logits
        ``head.forward(beta, h_out)``.
    beta : dict {name: array}
        The head's parameters.
    h_out : (B, n_out) array
        ``cell.output(s_t)``.
    y : (B,) int array or (B, O) float array
        The targets of step t.
    w : (B,) array
        The loss weights of step t.
    dh : (B, n_out) array
        ∂ℓ_t/∂h_out from ``head.loss_and_grad`` (used when ``feedback`` is None).
    feedback : (n_out, O) array or None
        The random feedback B, or None for the readout's transpose.

    Returns
    -------
    (B, n_state) array
        δ_t.

    Raises
    ------
    ValueError
        ``feedback`` whose shape does not fit (B, O) @ (O, n_out), or ``w`` not (B,) (from
        broadcasting and the matmul; nothing is validated here: :func:`rflo` did).
    """
    if feedback is None:
        return cell.output_vjp(dh)
    _, error = head.loss.value_and_grad(head.forward(beta, h_out), y)      # e_t = ∂ℓ/∂z per example
    return cell.output_vjp((error * w[:, None]) @ feedback.T)


def rflo(cell, theta, x, s0, head, beta, y, weights=None, *, feedback=None, trainable=None):
    """RFLO's approximation of L's gradient over a sequence, θ fixed (Murray 2019; module docstring).

    Runs the leaky cell, updates the trace E_t = (1 − α) E_{t−1} + D_t ⊗ ĥ_t after
    every step (:func:`rflo_update`) and adds θ_k[i, j] ← Σ_b δ_t[b, i] E_t[b, i, first_k + j]
    (:func:`rflo_gradient`).  With W_hh = 0 and ``feedback`` None this is RTRL's
    gradient exactly (a gradcheck matrix relation); elsewhere a biased approximation.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A leaky cell with ``kronecker_factors`` and ``leak`` (refnet.LeakyRNN, Murray 2019 Eq. 1).
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
    feedback : (n_out, O) array or None
        A fixed random feedback matrix B in place of the readout's transpose (Murray's
        random-feedback rule), n_out = ``cell.n_out``, O = ``head.n_out``; None for the
        readout's transpose.
    trainable : collection of str or None
        Names of the parameters the trace and ``dtheta`` carry (default None: all); frozen ones
        carry no trace and are absent from ``dtheta``.

    Returns
    -------
    GradResult
        ``dtheta`` RFLO's gradient; ``loss`` and ``dbeta`` exact; ``ds0`` None; ``s_T``;
        ``vjp_steps`` = 0.

    Raises
    ------
    TypeError
        As :func:`refnet.algorithms.bptt.bptt`; a cell RFLO does not apply to (no
        ``kronecker_factors``, an unfactored parameter, no ``leak``), named; ``feedback`` not a
        floating array of x's dtype.
    ValueError
        As :func:`refnet.algorithms.bptt.bptt`; ``feedback`` not (n_out, O) or not finite; an
        empty ``trainable``.
    refnet.NumericalError
        Names the first non-finite state s_t, loss term L_t or trace E_t (checked every
        ``checks.CHECK_EVERY`` steps), or a non-finite gradient at the end.
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
