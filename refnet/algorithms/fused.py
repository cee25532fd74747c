"""BPTT, TBPTT and the sequence VJP on a cell's fused whole-sequence pair (:mod:`refnet.cells.base`).

The per-step path of :mod:`refnet.algorithms.bptt` (``step``/``step_vjp`` in a
Python loop, a cache per step) is the reference.  When a cell has its own
``fused_sequence``/``fused_sequence_vjp``
(:func:`refnet.cells.base.supports_fused_sequence`), the algorithms call the
functions here instead: one forward over the whole sequence (input projection
hoisted into one GEMM), the head's loss and gradient for all T·B rows at once,
and one windowed VJP (weight gradients as one GEMM over the window), which is
Werbos's (1990) BPTT with the sums over t reordered.  The results equal the
per-step path's to rounding; the matrix holds them to 1e-12 in float64.

``REFNET_FUSED=1`` (default) or ``0`` switches the fused path on or off; like
``REFNET_NUMBA`` it is read at every use and a bad value fails there.
Arguments reach these functions validated by the public entry points.
"""
import os

from ..backend import xp_of
from ..cells.base import supports_fused_sequence
from ..params import axpy, zeros_like
from .checks import check_finite_result, check_finite_steps, check_finite_tree

__all__ = ["CHOICES", "enabled", "applies", "fused_bptt", "fused_tbptt", "fused_sequence_vjp",
           "fused_outputs"]

CHOICES = ("1", "0")


def enabled():
    """Whether ``REFNET_FUSED`` allows the fused path (default '1'); read at every call.

    Returns
    -------
    bool
        True for '1' (or unset), False for '0'.

    Raises
    ------
    ValueError
        If ``REFNET_FUSED`` is set to anything but '1' or '0'.
    """
    value = os.environ.get("REFNET_FUSED", "1")
    if value not in CHOICES:
        raise ValueError(f"REFNET_FUSED={value!r} is not a valid choice; expected one of "
                         f"{', '.join(repr(c) for c in CHOICES)}")
    return value == "1"


def applies(cell):
    """Whether the sequence algorithms take ``cell``'s fused path: it has one and it is switched on.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell; its class must override both ``fused_sequence`` and ``fused_sequence_vjp``
        (:func:`refnet.cells.base.supports_fused_sequence`).

    Returns
    -------
    bool
        True when the cell has its own fused pair and :func:`enabled` is true.

    Raises
    ------
    ValueError
        The cell has a fused pair and ``REFNET_FUSED`` is neither '1' nor '0' (:func:`enabled`
        is read only then).
    """
    return supports_fused_sequence(cell) and enabled()


def _forward(name, cell, theta, x, s0):
    """The fused forward, refusing a non-finite output before any backward work."""
    outputs, s_T, trace = cell.fused_sequence(theta, x, s0)
    if not bool(xp_of(outputs).isfinite(outputs).all()):      # one reduction; locate only on failure
        check_finite_steps(name, "state", "s", list(outputs), hint=" (the forward pass overflowed)")
    return outputs, s_T, trace


def _losses(head, beta, outputs, y, weights):
    """L over all steps and ∂L/∂output(s_t) (T, B, n_out), with the head applied once to all T·B rows.

    L = Σ_t Σ_b w[t, b] ℓ(head(output(s_t))_b, y[t, b]) is one weighted sum,
    so the rows of every step go through the head together; rows of weight
    zero get a zero cotangent, as skipped steps do on the per-step path.
    """
    T, B, n_out = outputs.shape
    L, dh, dbeta = head.loss_and_grad(beta, outputs.reshape(T * B, n_out), y.reshape((T * B,) + y.shape[2:]),
                                      weights.reshape(T * B))
    return L, dh.reshape(T, B, n_out), dbeta


def fused_bptt(cell, theta, x, s0, head, beta, y, weights):
    """BPTT (Werbos 1990) on the fused pair: the body of :func:`refnet.algorithms.bptt.bptt`.

    One ``fused_sequence`` forward, the head's loss and gradient on all T·B rows at
    once, and one ``fused_sequence_vjp`` from s_T to s_0: the per-step path's sums
    reordered, equal to it to rounding.  The arguments come validated from
    :func:`~refnet.algorithms.bptt.bptt`.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with its own fused pair (:func:`applies`).
    theta : dict {name: array}
        The cell's parameters.
    x : (T, B, I) array
        Inputs.
    s0 : (B, n_state) array
        Initial state.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout and its loss.
    beta : dict {name: array}
        The head's parameters.
    y : (T, B) int array or (T, B, O) float array
        Class labels or targets.
    weights : (T, B) array
        Loss weights w[t − 1, b].

    Returns
    -------
    L : float or 0-d array
        The objective.
    dtheta : dict {name: array}
        ∂L/∂θ, every parameter of the cell.
    dbeta : dict {name: array}
        ∂L/∂β.
    ds0 : (B, n_state) array
        ∂L/∂s_0.
    s_T : (B, n_state) array
        The final state.

    Raises
    ------
    refnet.NumericalError
        A non-finite output(s_t) (named by step, before the backward pass), loss or gradient.
    TypeError
        From the head's own checks of the stacked (T·B) rows, e.g. labels that are not integers
        (the entry point has already refused those).
    """
    outputs, s_T, trace = _forward("bptt", cell, theta, x, s0)
    L, dout, dbeta = _losses(head, beta, outputs, y, weights)
    ds0, dtheta, _ = cell.fused_sequence_vjp(theta, trace, dout, xp_of(s0).zeros_like(s0))
    check_finite_result("bptt", L, {**dtheta, **dbeta}, [s0])   # states: checked by _forward
    return L, dtheta, dbeta, ds0, s_T


def fused_tbptt(cell, theta, x, s0, head, beta, y, weights, windows):
    """TBPTT(k1, k2) (Williams & Peng 1990) on the fused pair: one forward, one windowed VJP per window.

    The body of :func:`refnet.algorithms.bptt.tbptt`: window (first, end, fixed)
    back-propagates the losses of steps first..end to s_fixed, held constant.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with its own fused pair (:func:`applies`).
    theta : dict {name: array}
        The cell's parameters.
    x : (T, B, I) array
        Inputs.
    s0 : (B, n_state) array
        Initial state.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout and its loss.
    beta : dict {name: array}
        The head's parameters.
    y : (T, B) int array or (T, B, O) float array
        Class labels or targets.
    weights : (T, B) array
        Loss weights w[t − 1, b].
    windows : list of (int, int, int)
        ``(first, end, fixed)`` from :func:`refnet.algorithms.bptt.tbptt_windows`.

    Returns
    -------
    L : float or 0-d array
        The full objective.
    dtheta : dict {name: array}
        The truncated gradient, every parameter of the cell.
    dbeta : dict {name: array}
        ∂L/∂β (exact).
    ds0 : (B, n_state) array
        The truncated ∂L/∂s_0 (zero unless a window reaches s_0).
    s_T : (B, n_state) array
        The final state.
    vjp_steps : int
        Cell steps back-propagated through, Σ over windows of (end − fixed).

    Raises
    ------
    refnet.NumericalError
        A non-finite output(s_t) (named by step, before any window), loss or gradient.
    TypeError
        From the head's own checks of the stacked rows (the entry point has already refused
        bad targets).
    """
    xp = xp_of(s0)
    outputs, s_T, trace = _forward("tbptt", cell, theta, x, s0)
    L, dout, dbeta = _losses(head, beta, outputs, y, weights)
    dtheta, ds0, vjp_steps = zeros_like(theta), xp.zeros_like(s0), 0
    zero = xp.zeros_like(s0)
    for first, end, fixed in windows:
        window = xp.zeros((end - fixed,) + dout.shape[1:], dtype=dout.dtype)
        window[first - 1 - fixed:] = dout[first - 1:end]          # losses of steps first..end only
        ds_fixed, dtheta_w, _ = cell.fused_sequence_vjp(theta, trace, window, zero, start=fixed)
        axpy(1.0, dtheta_w, dtheta)
        vjp_steps += end - fixed
        if fixed == 0:
            ds0 = ds0 + ds_fixed
    check_finite_result("tbptt", L, {**dtheta, **dbeta}, [s0])
    return L, dtheta, dbeta, ds0, s_T, vjp_steps


def fused_sequence_vjp(cell, theta, x, s0, dout, ds_T, *, name="sequence_vjp"):
    """The sequence VJP on the fused pair: the body of :func:`refnet.algorithms.bptt.sequence_vjp`.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with its own fused pair (:func:`applies`).
    theta : dict {name: array}
        The cell's parameters.
    x : (T, B, I) array
        Inputs.
    s0 : (B, n_state) array
        Initial state.
    dout : (T, B, n_out) array
        Cotangents of output(s_t), t = 1..T.
    ds_T : (B, n_state) array
        Cotangent of s_T.
    name : str
        The public function the errors name (``"stacked_sequence_vjp (layer l)"`` for a layer).

    Returns
    -------
    outputs : (T, B, n_out) array
        output(s_t) for t = 1..T.
    s_T : (B, n_state) array
        The final state.
    dtheta : dict {name: array}
        The cotangent on θ, every parameter of the cell.
    dx : (T, B, I) array
        The cotangent on every x_t.
    ds0 : (B, n_state) array
        The cotangent on s_0.

    Raises
    ------
    refnet.NumericalError
        A non-finite output(s_t) (named by step), or a non-finite entry of dθ, dx or ds0.
    """
    outputs, s_T, trace = _forward(name, cell, theta, x, s0)
    ds0, dtheta, dx = cell.fused_sequence_vjp(theta, trace, dout, ds_T)
    check_finite_tree(name, "gradient", {**dtheta, "dx": dx, "ds0": ds0})
    return outputs, s_T, dtheta, dx, ds0


def fused_outputs(cell, theta, x, s0, *, name="stacked_forward"):
    """output(s_t) for t = 1..T by the fused forward: what a stacked layer feeds the layer above.

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with its own fused pair (:func:`applies`).
    theta : dict {name: array}
        The cell's parameters.
    x : (T, B, I) array
        Inputs.
    s0 : (B, n_state) array
        Initial state.
    name : str
        The public function the error names (default ``"stacked_forward"``).

    Returns
    -------
    (T, B, n_out) array
        output(s_t) for t = 1..T.

    Raises
    ------
    refnet.NumericalError
        A non-finite output(s_t), named by its step.
    """
    return _forward(name, cell, theta, x, s0)[0]
