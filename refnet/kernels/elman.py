"""Elman RNN step, VJP and Jacobians as numba loops: the twins of :mod:`refnet.cells.elman`.

Used by ``ElmanRNN.step``, ``step_vjp`` and ``jacobians`` at batch 1, where
NumPy's per-call overhead (about a microsecond for each of the half-dozen
array operations of a step) dwarfs the arithmetic of a few hidden units.
The equations are the cell's: ``a = W_ih x + b_ih + W_hh h_prev + b_hh``,
``h = φ(a)``; φ' is read from h (tanh: 1 − h², ReLU: [h > 0]).
"""
import numba
import numpy as np

__all__ = []


@numba.njit(cache=True)
def _dphi(h, relu):
    """φ'(a) from the output h = φ(a)."""
    if relu:
        return 1.0 if h > 0.0 else 0.0
    return 1.0 - h * h


@numba.njit(cache=True)
def _elman_step(W_ih, W_hh, b_ih, b_hh, x, h_prev, relu, h):
    """h = φ(W_ih x + b_ih + W_hh h_prev + b_hh) for each row of the batch; writes h (B, H)."""
    B, H = h.shape
    for b in range(B):
        for i in range(H):
            a = b_ih[i] + b_hh[i]
            for j in range(x.shape[1]):
                a += W_ih[i, j] * x[b, j]
            for j in range(H):
                a += W_hh[i, j] * h_prev[b, j]
            h[b, i] = max(a, 0.0) if relu else np.tanh(a)


@numba.njit(cache=True)
def _elman_step_vjp(W_ih, W_hh, x, h_prev, h, dh, relu, dh_prev, dW_ih, dW_hh, db, dx):
    """da = dh ⊙ φ'; writes dh_prev = da W_hh, dx = da W_ih, dW_ih = daᵀ x, dW_hh = daᵀ h_prev, db = Σ_b da."""
    B, H = h.shape
    dh_prev[:] = 0.0
    dx[:] = 0.0
    dW_ih[:] = 0.0
    dW_hh[:] = 0.0
    db[:] = 0.0
    for b in range(B):
        for i in range(H):
            da = dh[b, i] * _dphi(h[b, i], relu)
            db[i] += da
            for j in range(x.shape[1]):
                dW_ih[i, j] += da * x[b, j]
                dx[b, j] += da * W_ih[i, j]
            for j in range(H):
                dW_hh[i, j] += da * h_prev[b, j]
                dh_prev[b, j] += da * W_hh[i, j]


@numba.njit(cache=True)
def _elman_jacobians(W_hh, x, h_prev, h, relu, J_s, J_theta):
    """J_s = diag(φ') W_hh and J_θ = diag(φ') [I ⊗ xᵀ, I ⊗ h_prevᵀ, I, I] (flatten order); writes both."""
    B, H = h.shape
    I = x.shape[1]
    J_theta[:] = 0.0
    for b in range(B):
        for i in range(H):
            d = _dphi(h[b, i], relu)
            for j in range(H):
                J_s[b, i, j] = d * W_hh[i, j]
            for j in range(I):
                J_theta[b, i, i * I + j] = d * x[b, j]
            for j in range(H):
                J_theta[b, i, H * I + i * H + j] = d * h_prev[b, j]
            J_theta[b, i, H * I + H * H + i] = d
            J_theta[b, i, H * I + H * H + H + i] = d


@numba.njit(cache=True)
def _elman_steps(W_ih, W_hh, b_ih, b_hh, xs, relu, hs):
    """hs[j] = φ(W_ih xs[j−1] + b_ih + W_hh hs[j−1] + b_hh) for j = 1..k; hs[0] given; writes hs (k+1, B, H)."""
    for j in range(xs.shape[0]):
        _elman_step(W_ih, W_hh, b_ih, b_hh, xs[j], hs[j], relu, hs[j + 1])


@numba.njit(cache=True)
def _elman_steps_vjp(W_ih, W_hh, xs, hs, dh, relu, dh0, dW_ih, dW_hh, db, da):
    """Back through k steps from dh on h_k: writes dh0 = ∂/∂h_0 and dW_ih, dW_hh, db summed over the steps.

    ``da`` (B, H) is scratch for one step's dh ⊙ φ'.
    """
    B, H = dh.shape
    dh0[:] = dh
    dW_ih[:] = 0.0
    dW_hh[:] = 0.0
    db[:] = 0.0
    for j in range(xs.shape[0], 0, -1):
        for b in range(B):
            for i in range(H):
                da[b, i] = dh0[b, i] * _dphi(hs[j, b, i], relu)
                db[i] += da[b, i]
                for m in range(xs.shape[2]):
                    dW_ih[i, m] += da[b, i] * xs[j - 1, b, m]
                for m in range(H):
                    dW_hh[i, m] += da[b, i] * hs[j - 1, b, m]
            for m in range(H):
                total = 0.0
                for i in range(H):
                    total += da[b, i] * W_hh[i, m]
                dh0[b, m] = total
