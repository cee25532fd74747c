"""GRU (Cho et al. 2014) in PyTorch nn.GRU's form.

    [a_ir, a_iz, a_in] = W_ih x_t + b_ih,      [a_hr, a_hz, a_hn] = W_hh h_{t−1} + b_hh
    r = σ(a_ir + a_hr),  z = σ(a_iz + a_hz),  n = tanh(a_in + r ⊙ a_hn)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

The reset gate multiplies W_hn h + b_hn *after* the product (PyTorch, not the
original paper).  Gates stacked r, z, n.  The state is h.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from .. import kernels
from ..kernels import fused_device
from ..backend import to_numpy, xp_of
from .activations import sigmoid, tanh
from .base import Cell, affine_jvp, affine_vjp, forward_kernel_applies, input_projection, summed_outer
from .patterns import row_pattern

__all__ = ["GRU", "GRUCache", "GRUFused"]


class GRUCache(NamedTuple):
    x: object       # (B, I)
    h_prev: object  # (B, H)
    r: object       # (B, H) reset gate
    z: object       # (B, H) update gate
    n: object       # (B, H) candidate
    a_hn: object    # (B, H) W_hn h_{t−1} + b_hn, which r multiplies


class GRUFused(NamedTuple):
    """The trace of ``GRU.fused_sequence``, every array preallocated over the run."""

    x: object      # (T, B, I)
    hs: object     # (T + 1, B, H), hs[0] = h_0
    gates: object  # (T, B, 3H): r, z, n of every step
    a_hn: object   # (T, B, H): W_hn h_{t−1} + b_hn, which r multiplies


@dataclass(frozen=True)
class GRU(Cell):
    """GRU cell with PyTorch's names and gate order (r, z, n)."""

    input_size: int
    hidden_size: int

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H), "bias_ih": (3 * H,), "bias_hh": (3 * H,)}

    def init(self, rng):
        """PyTorch's init: every entry U(−1/√H, 1/√H)."""
        return self.pytorch_init(rng)

    def step(self, params, s_prev, x, t=None):
        """One GRU transition (module docstring equations)."""
        H = self.hidden_size
        a_i = x @ params["weight_ih"].T + params["bias_ih"]
        a_h = s_prev @ params["weight_hh"].T + params["bias_hh"]
        r = sigmoid.fn(a_i[:, :H] + a_h[:, :H])
        z = sigmoid.fn(a_i[:, H:2 * H] + a_h[:, H:2 * H])
        a_hn = a_h[:, 2 * H:]
        n = tanh.fn(a_i[:, 2 * H:] + r * a_hn)
        h = (1.0 - z) * n + z * s_prev
        return h, GRUCache(x, s_prev, r, z, n, a_hn)

    def step_vjp(self, params, cache, ds):
        """Back through the interpolation, the candidate, the gates and the affine maps."""
        xp = xp_of(ds)
        dn_pre = ds * (1.0 - cache.z) * tanh.grad(cache.n)              # ∂/∂(a_in + r a_hn)
        dr_pre = dn_pre * cache.a_hn * sigmoid.grad(cache.r)           # ∂/∂(a_ir + a_hr)
        dz_pre = ds * (cache.h_prev - cache.n) * sigmoid.grad(cache.z)  # ∂/∂(a_iz + a_hz)
        da_i = xp.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
        da_h = xp.concatenate([dr_pre, dz_pre, dn_pre * cache.r], axis=1)
        dparams, dx, dh_prev = affine_vjp(params, cache.x, cache.h_prev, da_i, da_h)
        return dh_prev + ds * cache.z, dparams, dx

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """Forward-mode twin of ``step``."""
        xp = xp_of(cache.x)
        H = self.hidden_size
        zero = xp.zeros((cache.x.shape[0], 3 * H), dtype=cache.x.dtype)
        da_i, da_h = affine_jvp(params, cache.x, cache.h_prev, dparams, dx, ds_prev)
        da_i, da_h = da_i + zero, da_h + zero
        dr = sigmoid.grad(cache.r) * (da_i[:, :H] + da_h[:, :H])
        dz = sigmoid.grad(cache.z) * (da_i[:, H:2 * H] + da_h[:, H:2 * H])
        dn = tanh.grad(cache.n) * (da_i[:, 2 * H:] + dr * cache.a_hn + cache.r * da_h[:, 2 * H:])
        dh = (1.0 - cache.z) * dn + dz * (cache.h_prev - cache.n)
        if ds_prev is not None:
            dh = dh + cache.z * ds_prev
        return dh

    def jacobian_pattern(self, params):
        """Structural nonzero patterns (NumPy bool) of J_s (H, H) and J_θ (H, P), for SnAp.

        h_i reads h_j through W_hr, W_hz or W_hn [i, j] and always reads h_i (z ⊙ h_{t−1});
        row i of each gate block (r, z, n) of every parameter acts on h_i alone.
        """
        H = self.hidden_size
        W = to_numpy(params["weight_hh"]) != 0
        S = W[:H] | W[H:2 * H] | W[2 * H:] | numpy.eye(H, dtype=bool)
        return S, row_pattern(self.param_shapes(), numpy.tile(numpy.eye(H, dtype=bool), (3, 1)))

    def fused_sequence(self, params, x, s0):
        """The whole run (Cho et al. 2014, PyTorch's form), ``Cell.fused_sequence``.

        x_t W_ihᵀ + b_ih is one GEMM over all T·B rows (b_hh stays inside,
        since r multiplies W_hn h + b_hn); per step, one product h_{t−1} W_hhᵀ
        and the gate arithmetic, the whole loop in one numba kernel on NumPy
        (:func:`refnet.kernels.fused._gru_forward`), the array loop below otherwise.

        Parameters
        ----------
        params : dict
        x : (T, B, I)
        s0 : (B, H)

        Returns
        -------
        (outputs (T, B, H), s_T (B, H), GRUFused)
        """
        xp = xp_of(x, s0)
        T, B, _ = x.shape
        H = self.hidden_size
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)
        hs[0] = s0
        gates = xp.empty((T, B, 3 * H), dtype=x.dtype)
        a_hn = xp.empty((T, B, H), dtype=x.dtype)
        W_hh, b_hh = params["weight_hh"], params["bias_hh"]
        device = fused_device.kernels_for(xp)
        if device is not None:
            XI = input_projection(x, params["weight_ih"], params["bias_ih"])
            fused_device.gru_forward(device, XI, W_hh, b_hh, hs, gates, a_hn)
            return hs[1:], hs[T].copy(), GRUFused(x, hs, gates, a_hn)
        if forward_kernel_applies(B * 3 * H, x, hs, W_hh, b_hh):
            XI = input_projection(x, params["weight_ih"], params["bias_ih"])
            kernels.load("fused")._gru_forward(XI, numpy.ascontiguousarray(W_hh), numpy.ascontiguousarray(b_hh),
                                               hs, gates, a_hn, numpy.empty((B, 3 * H), dtype=x.dtype))
            return hs[1:], hs[T].copy(), GRUFused(x, hs, gates, a_hn)
        # σ(a) = (tanh(a/2) + 1)/2 (activations.sigmoid): the r, z rows of both affine maps are
        # halved (exact in binary floating point), so one tanh takes both gates.
        half = xp.ones((3, 1), dtype=x.dtype)
        half[:2] = 0.5
        half = xp.broadcast_to(half, (3, H)).reshape(3 * H)
        XI = input_projection(x, params["weight_ih"] * half[:, None], params["bias_ih"] * half)
        W_half, b_half = W_hh * half[:, None], b_hh * half
        a_h = xp.empty((B, 3 * H), dtype=x.dtype)
        for t in range(T):
            xp.matmul(hs[t], W_half.T, out=a_h)
            a_h += b_half
            rz = gates[t, :, :2 * H]
            xp.add(XI[t, :, :2 * H], a_h[:, :2 * H], out=rz)
            xp.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
            a_hn[t] = a_h[:, 2 * H:]
            xp.multiply(r, a_hn[t], out=n)
            n += XI[t, :, 2 * H:]
            xp.tanh(n, out=n)
            xp.subtract(hs[t], n, out=hs[t + 1])          # h = (1 − z) n + z h_prev = n + z (h_prev − n)
            hs[t + 1] *= z
            hs[t + 1] += n
        return hs[1:], hs[T].copy(), GRUFused(x, hs, gates, a_hn)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """Back through steps start+1..start+n (``Cell.fused_sequence_vjp``): one product da_h W_hh per step,
        then dW_ih, dW_hh, the biases and dx each as one GEMM or sum over the window's n·B rows."""
        xp = xp_of(dout, ds_last)
        n, B, H = dout.shape
        W_ih, W_hh = params["weight_ih"], params["weight_hh"]
        dA_i = xp.empty((n, B, 3 * H), dtype=dout.dtype)
        dA_h = xp.empty((n, B, 3 * H), dtype=dout.dtype)
        dh = ds_last.copy()
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.gru_backward(device, W_hh, trace.hs, trace.gates, trace.a_hn, dout, start, dh, dA_i, dA_h)
        elif kernels.applicable(dout, dh, trace.hs, W_hh):
            kernels.load("fused")._gru_backward(numpy.ascontiguousarray(W_hh), trace.hs, trace.gates, trace.a_hn,
                                                numpy.ascontiguousarray(dout), start, dh, dA_i, dA_h,
                                                numpy.empty_like(dh))
        else:
            for j in range(n - 1, -1, -1):
                t = start + j
                r, z, n_t = (trace.gates[t, :, k * H:(k + 1) * H] for k in range(3))
                dh_t = dh + dout[j]
                dn = dh_t * (1.0 - z) * tanh.grad(n_t)
                dr = dn * trace.a_hn[t] * sigmoid.grad(r)
                dz = dh_t * (trace.hs[t] - n_t) * sigmoid.grad(z)
                dA_i[j] = xp.concatenate([dr, dz, dn], axis=1)
                dA_h[j] = xp.concatenate([dr, dz, dn * r], axis=1)
                dh = dA_h[j] @ W_hh + dh_t * z
        x = trace.x[start:start + n]
        dparams = {"weight_ih": summed_outer(dA_i, x), "weight_hh": summed_outer(dA_h, trace.hs[start:start + n]),
                   "bias_ih": dA_i.sum(axis=(0, 1)), "bias_hh": dA_h.sum(axis=(0, 1))}
        dx = (dA_i.reshape(n * B, 3 * H) @ W_ih).reshape(n, B, x.shape[2])
        return dh, dparams, dx
