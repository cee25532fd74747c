"""The time loops of the fused whole-sequence path as numba kernels: twins of the cells' array loops.

Each cell's ``fused_sequence`` hoists the input projection into one GEMM
over all T·B rows before its loop and ``fused_sequence_vjp`` takes the
weight gradients as one GEMM each after its loop; what is left per step is
one recurrent product (BLAS through ``np.dot``, which numba binds to
SciPy's ``cython_blas``) and the gate arithmetic.  Those loops run here as
one kernel call per sequence, so the per-step cost is the product and one
pass over the gates, with no Python dispatch in between.  The plain twin of
each kernel is the array loop in the cell's module (run with
``REFNET_NUMBA=0``, on CuPy, or for any array a kernel cannot take), held
equal to it by ``tests/test_fused.py`` and the matrix row "fused numba
kernel = plain twin".

Arrays are C-contiguous; the caller allocates every output.  Nonlinearities
are passed as codes (:data:`CODES`); derivatives are read from the outputs
(sigmoid' = y (1 − y), tanh' = 1 − y², ReLU' = [y > 0]).
"""
import numba
import numpy as np

__all__ = ["CODES"]

CODES = {"sigmoid": 0, "tanh": 1, "relu": 2}


@numba.njit(cache=True, inline="always")
def _act(a, code):
    """φ(a) for φ = sigmoid (0), tanh (1), ReLU (2); sigmoid through tanh, as the array code."""
    if code == 0:
        return 0.5 * (np.tanh(0.5 * a) + 1.0)
    if code == 1:
        return np.tanh(a)
    return a if a > 0.0 else 0.0 * a


@numba.njit(cache=True, inline="always")
def _dact(y, code):
    """φ'(a) from y = φ(a)."""
    if code == 0:
        return y * (1.0 - y)
    if code == 1:
        return 1.0 - y * y
    return 1.0 if y > 0.0 else 0.0


# ---------------------------------------------------------------- Elman, iRNN (Elman 1990)

@numba.njit(cache=True)
def _elman_forward(XW, W_hh, code, hs, a):
    """hs[t+1] = φ(XW[t] + hs[t] W_hhᵀ) for t = 0..T−1.

    XW (T, B, H) holds x W_ihᵀ + b_ih + b_hh; a (B, H) is scratch.
    """
    for t in range(XW.shape[0]):
        np.dot(hs[t], W_hh.T, a)
        h = hs[t + 1]
        for b in range(a.shape[0]):
            for i in range(a.shape[1]):
                h[b, i] = _act(XW[t, b, i] + a[b, i], code)


@numba.njit(cache=True)
def _elman_backward(W_hh, hs, dout, start, code, dh, dA):
    """Steps start+n..start+1 back: dA[j] = (dh + dout[j]) ⊙ φ'(hs[start+j+1]); dh ← dA[j] W_hh.

    dh (B, H) enters as the cotangent on h_{start+n} and leaves as the one on h_start.
    """
    for j in range(dA.shape[0] - 1, -1, -1):
        h = hs[start + j + 1]
        for b in range(dh.shape[0]):
            for i in range(dh.shape[1]):
                dA[j, b, i] = (dh[b, i] + dout[j, b, i]) * _dact(h[b, i], code)
        np.dot(dA[j], W_hh, dh)


# ---------------------------------------------------------------- LSTM (Hochreiter & Schmidhuber 1997)

@numba.njit(cache=True)
def _lstm_forward(XW, W_hh, hs, cs, gates, tanh_c, a):
    """The LSTM loop: gates (T, B, 4H) take i, f, g, o; hs, cs (T+1, B, H) and tanh_c (T, B, H) are written.

    XW (T, B, 4H) holds x W_ihᵀ + b_ih + b_hh; a (B, 4H) is scratch for h W_hhᵀ.
    """
    H = hs.shape[2]
    for t in range(XW.shape[0]):
        np.dot(hs[t], W_hh.T, a)
        for b in range(a.shape[0]):
            for k in range(H):
                i = _act(XW[t, b, k] + a[b, k], 0)
                f = _act(XW[t, b, H + k] + a[b, H + k], 0)
                g = np.tanh(XW[t, b, 2 * H + k] + a[b, 2 * H + k])
                o = _act(XW[t, b, 3 * H + k] + a[b, 3 * H + k], 0)
                c = f * cs[t, b, k] + i * g
                tc = np.tanh(c)
                gates[t, b, k] = i
                gates[t, b, H + k] = f
                gates[t, b, 2 * H + k] = g
                gates[t, b, 3 * H + k] = o
                cs[t + 1, b, k] = c
                tanh_c[t, b, k] = tc
                hs[t + 1, b, k] = o * tc


@numba.njit(cache=True)
def _lstm_backward(W_hh, cs, gates, tanh_c, dout, start, dh, dc, dA):
    """Back through steps start+n..start+1: dA (n, B, 4H) is written; dh, dc (B, H) carry ∂/∂h, ∂/∂c."""
    H = dh.shape[1]
    for j in range(dA.shape[0] - 1, -1, -1):
        t = start + j
        for b in range(dh.shape[0]):
            for k in range(H):
                i, f = gates[t, b, k], gates[t, b, H + k]
                g, o = gates[t, b, 2 * H + k], gates[t, b, 3 * H + k]
                tc = tanh_c[t, b, k]
                dhk = dh[b, k] + dout[j, b, k]
                dck = dc[b, k] + dhk * o * (1.0 - tc * tc)
                dA[j, b, k] = dck * g * (i * (1.0 - i))
                dA[j, b, H + k] = dck * cs[t, b, k] * (f * (1.0 - f))
                dA[j, b, 2 * H + k] = dck * i * (1.0 - g * g)
                dA[j, b, 3 * H + k] = dhk * tc * (o * (1.0 - o))
                dc[b, k] = dck * f
        np.dot(dA[j], W_hh, dh)


# ---------------------------------------------------------------- GRU (Cho et al. 2014), PyTorch's form

@numba.njit(cache=True)
def _gru_forward(XI, W_hh, b_hh, hs, gates, a_hn, a):
    """The GRU loop: gates (T, B, 3H) take r, z, n; a_hn (T, B, H) = W_hn h + b_hn; hs (T+1, B, H) written.

    XI (T, B, 3H) holds x W_ihᵀ + b_ih; a (B, 3H) is scratch for h W_hhᵀ.
    """
    H = hs.shape[2]
    for t in range(XI.shape[0]):
        np.dot(hs[t], W_hh.T, a)
        for b in range(a.shape[0]):
            for k in range(H):
                r = _act(XI[t, b, k] + (a[b, k] + b_hh[k]), 0)
                z = _act(XI[t, b, H + k] + (a[b, H + k] + b_hh[H + k]), 0)
                hn = a[b, 2 * H + k] + b_hh[2 * H + k]
                n = np.tanh(XI[t, b, 2 * H + k] + r * hn)
                gates[t, b, k] = r
                gates[t, b, H + k] = z
                gates[t, b, 2 * H + k] = n
                a_hn[t, b, k] = hn
                hs[t + 1, b, k] = (1.0 - z) * n + z * hs[t, b, k]


@numba.njit(cache=True)
def _gru_backward(W_hh, hs, gates, a_hn, dout, start, dh, dA_i, dA_h, carry):
    """Back through steps start+n..start+1: dA_i, dA_h (n, B, 3H) written; dh (B, H) carries ∂/∂h.

    carry (B, H) is scratch for the direct path z ⊙ ∂/∂h_t to h_{t−1}.
    """
    H = dh.shape[1]
    for j in range(dA_i.shape[0] - 1, -1, -1):
        t = start + j
        for b in range(dh.shape[0]):
            for k in range(H):
                r, z, n = gates[t, b, k], gates[t, b, H + k], gates[t, b, 2 * H + k]
                dhk = dh[b, k] + dout[j, b, k]
                dn = dhk * (1.0 - z) * (1.0 - n * n)
                dr = dn * a_hn[t, b, k] * (r * (1.0 - r))
                dz = dhk * (hs[t, b, k] - n) * (z * (1.0 - z))
                dA_i[j, b, k] = dr
                dA_i[j, b, H + k] = dz
                dA_i[j, b, 2 * H + k] = dn
                dA_h[j, b, k] = dr
                dA_h[j, b, H + k] = dz
                dA_h[j, b, 2 * H + k] = dn * r
                carry[b, k] = dhk * z
        np.dot(dA_h[j], W_hh, dh)
        for b in range(dh.shape[0]):
            for k in range(H):
                dh[b, k] += carry[b, k]


# ---------------------------------------------------------------- FastRNN (Kusupati et al. 2018, Eqs. 1–2)

@numba.njit(cache=True)
def _fastrnn_forward(XW, U, code, alpha, beta, hs, h_tilde, a):
    """h̃ = σ(XW[t] + hs[t] Uᵀ), hs[t+1] = α h̃ + β hs[t]; XW (T, B, H) holds x Wᵀ + b; a (B, H) scratch."""
    for t in range(XW.shape[0]):
        np.dot(hs[t], U.T, a)
        for b in range(a.shape[0]):
            for i in range(a.shape[1]):
                y = _act(XW[t, b, i] + a[b, i], code)
                h_tilde[t, b, i] = y
                hs[t + 1, b, i] = alpha * y + beta * hs[t, b, i]


@numba.njit(cache=True)
def _fastrnn_backward(U, h_tilde, dout, start, code, alpha, beta, dh, dS, dA):
    """Back through steps start+n..start+1: dS[j] = ∂/∂h_t, dA[j] = α dS[j] ⊙ σ'; dh ← β dS[j] + dA[j] U."""
    for j in range(dA.shape[0] - 1, -1, -1):
        t = start + j
        for b in range(dh.shape[0]):
            for i in range(dh.shape[1]):
                ds = dh[b, i] + dout[j, b, i]
                dS[j, b, i] = ds
                dA[j, b, i] = alpha * ds * _dact(h_tilde[t, b, i], code)
        np.dot(dA[j], U, dh)
        for b in range(dh.shape[0]):
            for i in range(dh.shape[1]):
                dh[b, i] += beta * dS[j, b, i]


# ---------------------------------------------------------------- FastGRNN (Kusupati et al. 2018, Eqs. 3–4)

@numba.njit(cache=True)
def _fastgrnn_forward(XW, U, b_z, b_h, gate, update, zeta, nu, hs, zs, h_tilde, a):
    """a = XW[t] + hs[t] Uᵀ; z = σ_g(a + b_z), h̃ = σ_u(a + b_h), hs[t+1] = (ζ(1 − z) + ν) h̃ + z hs[t]."""
    for t in range(XW.shape[0]):
        np.dot(hs[t], U.T, a)
        for b in range(a.shape[0]):
            for i in range(a.shape[1]):
                pre = XW[t, b, i] + a[b, i]
                z = _act(pre + b_z[i], gate)
                y = _act(pre + b_h[i], update)
                zs[t, b, i] = z
                h_tilde[t, b, i] = y
                hs[t + 1, b, i] = (zeta * (1.0 - z) + nu) * y + z * hs[t, b, i]


@numba.njit(cache=True)
def _fastgrnn_backward(U, hs, zs, h_tilde, dout, start, gate, update, zeta, nu, dh, dS, dA_z, dA_h, dA):
    """Back through steps start+n..start+1: dS = ∂/∂h_t; dA_z, dA_h the two pre-activations'; dA their sum."""
    for j in range(dA.shape[0] - 1, -1, -1):
        t = start + j
        for b in range(dh.shape[0]):
            for i in range(dh.shape[1]):
                ds = dh[b, i] + dout[j, b, i]
                z, y = zs[t, b, i], h_tilde[t, b, i]
                dz = ds * (hs[t, b, i] - zeta * y) * _dact(z, gate)
                du = ds * (zeta * (1.0 - z) + nu) * _dact(y, update)
                dS[j, b, i] = ds
                dA_z[j, b, i] = dz
                dA_h[j, b, i] = du
                dA[j, b, i] = dz + du
        np.dot(dA[j], U, dh)
        for b in range(dh.shape[0]):
            for i in range(dh.shape[1]):
                dh[b, i] += dS[j, b, i] * zs[t, b, i]
