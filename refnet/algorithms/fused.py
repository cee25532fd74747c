"""BPTT, TBPTT and the sequence VJP on a cell's fused whole-sequence pair (DESIGN.md §3).

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
    """Whether ``REFNET_FUSED`` allows the fused path (default '1').

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
    """Whether the sequence algorithms take ``cell``'s fused path: it has one and it is switched on."""
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

    Parameters
    ----------
    cell : a refnet cell with the fused pair;  theta : its params dict
    x : (T, B, I);  s0 : (B, n_state)
    head, beta : the head and its params;  y : (T, B) or (T, B, O);  weights : (T, B)

    Returns
    -------
    (L, dtheta, dbeta, ds0 (B, n_state), s_T (B, n_state))

    Raises
    ------
    NumericalError
        If a state, the loss or a gradient is not finite.
    """
    outputs, s_T, trace = _forward("bptt", cell, theta, x, s0)
    L, dout, dbeta = _losses(head, beta, outputs, y, weights)
    ds0, dtheta, _ = cell.fused_sequence_vjp(theta, trace, dout, xp_of(s0).zeros_like(s0))
    check_finite_result("bptt", L, {**dtheta, **dbeta}, [s0])   # states: checked by _forward
    return L, dtheta, dbeta, ds0, s_T


def fused_tbptt(cell, theta, x, s0, head, beta, y, weights, windows):
    """TBPTT(k1, k2) (Williams & Peng 1990) on the fused pair: one forward, one windowed VJP per window.

    Parameters
    ----------
    cell, theta, x, s0, head, beta, y, weights : as :func:`fused_bptt`
    windows : list of (first, end, fixed) from :func:`refnet.algorithms.bptt.tbptt_windows`

    Returns
    -------
    (L, dtheta, dbeta, ds0, s_T, vjp_steps)

    Raises
    ------
    NumericalError
        If a state, the loss or a gradient is not finite.
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
    cell, theta, x, s0 : as :func:`fused_bptt`
    dout : (T, B, n_out) cotangents of output(s_t);  ds_T : (B, n_state) cotangent of s_T
    name : str, the public function that errors name (``stacked_sequence_vjp (layer l)`` for a layer)

    Returns
    -------
    (outputs (T, B, n_out), s_T, dtheta, dx (T, B, I), ds0)

    Raises
    ------
    NumericalError
        If a state is not finite.
    """
    outputs, s_T, trace = _forward(name, cell, theta, x, s0)
    ds0, dtheta, dx = cell.fused_sequence_vjp(theta, trace, dout, ds_T)
    check_finite_tree(name, "gradient", {**dtheta, "dx": dx, "ds0": ds0})
    return outputs, s_T, dtheta, dx, ds0


def fused_outputs(cell, theta, x, s0, *, name="stacked_forward"):
    """output(s_t) for t = 1..T (T, B, n_out) by the fused forward: what a stacked layer feeds the next.

    Raises
    ------
    NumericalError
        If a state is not finite.
    """
    return _forward(name, cell, theta, x, s0)[0]
