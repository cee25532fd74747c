"""Whole online learner steps at batch 1 as single numba kernels (Elman RNN, a linear head, SGD/Adagrad/Adam).

One call makes everything an online learner does per observation:

- ``_tbptt_step``: TBPTT(1, k) (Williams & Peng 1990) — the window's forward
  from the anchor state, the head, the loss and its gradient, the backward
  through the window, the optimiser's update of the flat weights;
- ``_rtrl_step``: RTRL (Williams & Zipser 1989) — the step, the sensitivity
  update M_t = J_s M_{t−1} + J_θ with J_s = diag(φ') W_hh and J_θ's Kronecker
  structure, the head, the gradient ∂ℓ_t/∂s_t M_t, the optimiser.

Their plain twin is the learner's own path (``cell.steps``/``steps_vjp`` or
``step``/``jacobians``/``rtrl_update``, ``head.loss_and_grad``,
``optimiser.update``), taken with ``REFNET_NUMBA=0`` and on CuPy, held equal
by ``tests/test_online_kernels.py``.  The flat weight vector is the learner's
``w`` = [W_ih, W_hh, b_ih, b_hh (C order); head weight, head bias].  Products
with W_hh and with M (n² and n²P multiply-adds) go to BLAS through ``np.dot``
at n >= :data:`BLAS_MIN_N`, where a call's overhead is repaid.

Codes (``ints``): loss 0 softmax cross-entropy (label target), 1 MSE, 2 sigmoid
BCE; optimiser 0 SGD, 1 SGD with momentum, 2 Adagrad, 3 Adam.  ``floats`` =
(lr, eps, momentum, Adam's lr/(1 − β1ᵗ), Adam's √(1 − β2ᵗ), β1, β2).
A kernel returns the loss; when the loss, a gradient, the new state or
sensitivity, or the optimiser's new state or weights would not be finite it
returns before the optimiser touches ``w`` or its state (the caller raises;
``ints[I_STATUS]`` says which), as :mod:`refnet.optim` commits an update only
when it is finite.
"""
import numba
import numpy as np

__all__ = ["BLAS_MIN_N", "LOSS_CODES", "OPT_CODES"]

BLAS_MIN_N = 16
LOSS_CODES = {"softmax_cross_entropy": 0, "mse": 1, "sigmoid_bce": 2}
OPT_CODES = {"sgd": 0, "sgd_momentum": 1, "adagrad": 2, "adam": 3}

# ints layout; I_STATUS is set to 1 when x_t or y_t is not finite (then nothing was touched),
# to 2 when a gradient is not finite, 3 when the optimiser's new state or weights would not be,
# 4 when the new state s_t (TBPTT: or the next anchor) or RTRL's M_t is not (then w and the optimiser
# state were not touched).
I_IN, I_N, I_OUT, I_K, I_COUNT, I_RELU, I_LOSS, I_OPT, I_LABEL, I_STATUS = range(10)


@numba.njit(cache=True)
def _finite_inputs(x, yv, loss_code, ints):
    """Whether x_t and (for array targets) y_t are finite; sets ints[I_STATUS] otherwise."""
    for m in range(x.shape[0]):
        if not np.isfinite(x[m]):
            ints[I_STATUS] = 1
            return False
    if loss_code != 0:
        for o in range(yv.shape[0]):
            if not np.isfinite(yv[o]):
                ints[I_STATUS] = 1
                return False
    ints[I_STATUS] = 0
    return True


@numba.njit(cache=True)
def _matvec(A, v, out, blas):
    """out = A v."""
    if blas:
        np.dot(A, v, out)
        return
    for i in range(A.shape[0]):
        total = 0.0
        for j in range(A.shape[1]):
            total += A[i, j] * v[j]
        out[i] = total


@numba.njit(cache=True)
def _vecmat(v, A, out, blas):
    """out = vᵀ A."""
    if blas:
        np.dot(v, A, out)
        return
    out[:] = 0.0
    for i in range(A.shape[0]):
        vi = v[i]
        for j in range(A.shape[1]):
            out[j] += vi * A[i, j]


@numba.njit(cache=True)
def _head(w, off, n, O, h, yv, label, loss_code, pred, dz):
    """Logits z = W h + b into pred; returns ℓ(z, y) and writes dz = ∂ℓ/∂z (refnet.heads' formulas)."""
    for o in range(O):
        total = w[off + O * n + o]
        for i in range(n):
            total += w[off + o * n + i] * h[i]
        pred[o] = total
    loss = 0.0
    if loss_code == 0:
        m = pred[0]
        for o in range(1, O):
            m = max(m, pred[o])
        s = 0.0
        for o in range(O):
            dz[o] = np.exp(pred[o] - m)
            s += dz[o]
        loss = m + np.log(s) - pred[label]
        for o in range(O):
            dz[o] = dz[o] / s
        dz[label] -= 1.0
    elif loss_code == 1:
        for o in range(O):
            r = pred[o] - yv[o]
            loss += r * r
            dz[o] = r
        loss *= 0.5
    else:
        for o in range(O):
            z = pred[o]
            loss += max(z, 0.0) + np.log1p(np.exp(-abs(z))) - yv[o] * z
            dz[o] = 0.5 * (np.tanh(0.5 * z) + 1.0) - yv[o]
    return loss


@numba.njit(cache=True)
def _head_grad(w, off, n, O, h, dz, grad, dh):
    """∂ℓ/∂(head weight, bias) into grad[off:]; dh = dzᵀ W."""
    dh[:] = 0.0
    for o in range(O):
        d = dz[o]
        grad[off + O * n + o] = d
        for i in range(n):
            grad[off + o * n + i] = d * h[i]
            dh[i] += d * w[off + o * n + i]


@numba.njit(cache=True)
def _updated(w, grad, o1, o2, p, opt, floats):
    """Entry p's new (weight, o1, o2) under the optimiser (refnet.optim's formulas), nothing written."""
    lr, eps, mu, step_size, root, b1, b2 = (floats[0], floats[1], floats[2], floats[3], floats[4], floats[5],
                                            floats[6])
    g = grad[p]
    if opt == 0:
        return w[p] - lr * g, 0.0, 0.0
    if opt == 1:
        b = o1[p] * mu + g
        return w[p] - lr * b, b, 0.0
    if opt == 2:
        G = o1[p] + g * g
        return w[p] - lr * g / (np.sqrt(G) + eps), G, 0.0
    m = o1[p] * b1 + (1.0 - b1) * g
    v = o2[p] * b2 + (1.0 - b2) * g * g
    return w[p] - step_size * m / (np.sqrt(v) / root + eps), m, v


@numba.njit(cache=True)
def _update(w, grad, o1, o2, opt, floats):
    """The optimiser's step on the flat weights, all or nothing: 0 when made, 2 (nothing written) if a
    gradient is not finite, 3 (nothing written) if a new weight or optimiser state would not be."""
    for p in range(w.shape[0]):
        if not np.isfinite(grad[p]):
            return 2
    for p in range(w.shape[0]):                # a first pass checks, a second (the same arithmetic) writes
        new, a, b = _updated(w, grad, o1, o2, p, opt, floats)
        if not (np.isfinite(new) and np.isfinite(a) and np.isfinite(b)):
            return 3
    for p in range(w.shape[0]):
        new, a, b = _updated(w, grad, o1, o2, p, opt, floats)
        w[p] = new
        if opt != 0:
            o1[p] = a
        if opt == 3:
            o2[p] = b
    return 0


@numba.njit(cache=True)
def _dphi(h, relu):
    if relu:
        return 1.0 if h > 0.0 else 0.0
    return 1.0 - h * h


@numba.njit(cache=True)
def _tbptt_step(w, grad, o1, o2, xs, x, yv, anchor, second, s, pred, hs, scratch, ints, floats):
    """One TBPTT(1, k) learner step; returns ℓ_t (module docstring).

    Every array is 1-D (numba's dispatch of a 2-D argument costs about 0.5 µs, of a
    1-D one 0.05 µs); the kernel views them 2-D.  xs (k·I) holds the kept inputs
    oldest first, ints[I_COUNT] of them; x (I,)
    is x_t.  ``anchor`` (n,) is s_{t−k} when the window is full, else s_0;
    the kernel shifts x_t in, runs hs ((k + 1)·n) from hs[0] = anchor to
    hs[count], writes the state after the window's first input to ``second``
    and s_t to ``s``, the logits to ``pred``.  ``scratch`` (4·max(n, O)) holds
    dz, dh, da and a product.
    """
    if not _finite_inputs(x, yv, ints[I_LOSS], ints):
        return np.nan
    I, n, O, k = ints[I_IN], ints[I_N], ints[I_OUT], ints[I_K]
    relu = ints[I_RELU] == 1
    xs, hs, scratch = xs.reshape((k, I)), hs.reshape((k + 1, n)), scratch.reshape((4, scratch.size // 4))
    blas = n >= BLAS_MIN_N
    count = ints[I_COUNT]
    if count == k:
        for j in range(k - 1):
            xs[j] = xs[j + 1]
    else:
        count += 1
        ints[I_COUNT] = count
    xs[count - 1] = x
    W_ih = w[:n * I].reshape((n, I))
    W_hh = w[n * I:n * I + n * n].reshape((n, n))
    off_b = n * I + n * n
    off_head = off_b + 2 * n
    Wh = scratch[3, :n]
    hs[0] = anchor
    for j in range(count):
        _matvec(W_hh, hs[j], Wh, blas)
        for i in range(n):
            a = w[off_b + i] + w[off_b + n + i] + Wh[i]
            for m in range(I):
                a += W_ih[i, m] * xs[j, m]
            hs[j + 1, i] = max(a, 0.0) if relu else np.tanh(a)
    second[:] = hs[1]
    s[:] = hs[count]
    for i in range(n):
        if not (np.isfinite(s[i]) and np.isfinite(second[i])):
            ints[I_STATUS] = 4
            return np.nan
    dz, dh, da = scratch[0, :O], scratch[1, :n], scratch[2, :n]
    loss = _head(w, off_head, n, O, s, yv, ints[I_LABEL], ints[I_LOSS], pred, dz)
    if not np.isfinite(loss):
        return loss
    _head_grad(w, off_head, n, O, s, dz, grad, dh)
    grad[:off_head] = 0.0
    for j in range(count, 0, -1):
        for i in range(n):
            d = dh[i] * _dphi(hs[j, i], relu)
            da[i] = d
            grad[off_b + i] += d
            for m in range(I):
                grad[i * I + m] += d * xs[j - 1, m]
            for m in range(n):
                grad[n * I + i * n + m] += d * hs[j - 1, m]
        _vecmat(da, W_hh, dh, blas)
    grad[off_b + n:off_b + 2 * n] = grad[off_b:off_b + n]
    ints[I_STATUS] = _update(w, grad, o1, o2, ints[I_OPT], floats)
    return loss


@numba.njit(cache=True)
def _rtrl_step(w, grad, o1, o2, M, M_next, h_prev, x, yv, s, pred, scratch, ints, floats):
    """One RTRL learner step; returns ℓ_t (module docstring).

    M (n·P) is M_{t−1} flattened (P = n I + n² + 2n); M_next receives M_t;
    h_prev (n,) is s_{t−1}, x (I,) is x_t; s_t goes to ``s``, the logits to ``pred``.
    ``scratch`` (4·max(n, O)) holds dz, dh, D and a product.
    """
    if not _finite_inputs(x, yv, ints[I_LOSS], ints):
        return np.nan
    I, n, O = ints[I_IN], ints[I_N], ints[I_OUT]
    relu = ints[I_RELU] == 1
    scratch = scratch.reshape((4, scratch.size // 4))
    P = n * I + n * n + 2 * n
    M, M_next = M.reshape((n, P)), M_next.reshape((n, P))
    blas = n >= BLAS_MIN_N
    W_ih = w[:n * I].reshape((n, I))
    W_hh = w[n * I:n * I + n * n].reshape((n, n))
    off_b = n * I + n * n
    D, Wh = scratch[2, :n], scratch[3, :n]
    _matvec(W_hh, h_prev, Wh, blas)
    for i in range(n):
        a = w[off_b + i] + w[off_b + n + i] + Wh[i]
        for m in range(I):
            a += W_ih[i, m] * x[m]
        s[i] = max(a, 0.0) if relu else np.tanh(a)
        D[i] = _dphi(s[i], relu)
    # M_t = diag(D) (W_hh M_{t−1} + [I ⊗ xᵀ, I ⊗ h_{t−1}ᵀ, I, I])
    finite = 0.0
    if blas:
        np.dot(W_hh, M, M_next)
    else:
        for i in range(n):
            for p in range(P):
                total = 0.0
                for m in range(n):
                    total += W_hh[i, m] * M[m, p]
                M_next[i, p] = total
    for i in range(n):
        for m in range(I):
            M_next[i, i * I + m] += x[m]
        for m in range(n):
            M_next[i, n * I + i * n + m] += h_prev[m]
        M_next[i, off_b + i] += 1.0
        M_next[i, off_b + n + i] += 1.0
        d = D[i]
        for p in range(P):
            M_next[i, p] *= d
            finite += M_next[i, p] * 0.0        # NaN iff some entry is NaN or ±Inf
    if not (np.isfinite(finite) and np.isfinite(s).all()):
        ints[I_STATUS] = 4
        return np.nan
    dz, dh = scratch[0, :O], scratch[1, :n]
    loss = _head(w, P, n, O, s, yv, ints[I_LABEL], ints[I_LOSS], pred, dz)
    if not np.isfinite(loss):
        return loss
    _head_grad(w, P, n, O, s, dz, grad, dh)
    _vecmat(dh, M_next, grad[:P], blas)
    ints[I_STATUS] = _update(w, grad, o1, o2, ints[I_OPT], floats)
    return loss
