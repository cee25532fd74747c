"""FastGRNN (Kusupati et al. 2018, "FastGRNN", Eq. 3–4), in EdgeML's parametrisation.

    a = W x_t + U h_{t−1}
    z_t = σ_g(a + b_z),      h̃_t = σ_u(a + b_h)
    h_t = (ζ (1 − z_t) + ν) ⊙ h̃_t + z_t ⊙ h_{t−1}
    ζ = sigmoid(ζ̂),  ν = sigmoid(ν̂)

σ_g = sigmoid and σ_u = tanh by default (Kusupati et al. 2018, FastGRNN); the gate
and the candidate share W and U.  This is FastGRNN-LSQ's model: no low rank,
sparsity or quantisation.  Parameters, with EdgeML's ``FastGRNNCell`` names:

=============  =========  =====================================================
name           shape      meaning and init (EdgeML)
=============  =========  =====================================================
W              (H, I)     shared input weights, 0.1·N(0, 1)
U              (H, H)     shared recurrent weights, 0.1·N(0, 1)
bias_gate      (H,)       b_z, ones
bias_update    (H,)       b_h, ones
zeta           (1,)       ζ̂, the logit of ζ; 1
nu             (1,)       ν̂, the logit of ν; −4
=============  =========  =====================================================

EdgeML's shapes (1, H) and (1, 1) become (H,) and (1,).  refnet applies W
and U from the left (``x Wᵀ``, ``h Uᵀ``, W (H, I)), as EdgeML's
FastGRNNCUDACell does; EdgeML's FastGRNNCell stores W (I, H) and applies
both from the right (``x @ W``, ``h @ U``), so its weights load transposed:
use :func:`refnet.interop_edgeml.from_edgeml` with the ``layout`` of your
EdgeML release (a square U loads untransposed without any error otherwise).
The state is h.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from .. import kernels
from ..kernels import fused_device
from ..backend import xp_of
from .activations import ACTIVATIONS, sigmoid
from .base import Cell, forward_kernel_applies, input_projection, summed_outer
from .fastrnn import _CODES

__all__ = ["FastGRNN", "FastGRNNCache", "FastGRNNFused"]


class FastGRNNCache(NamedTuple):
    x: object        # (B, I) input
    h_prev: object   # (B, H) previous state
    z: object        # (B, H) gate σ_g(a + b_z)
    h_tilde: object  # (B, H) candidate σ_u(a + b_h)
    zeta: object     # (1,) ζ = sigmoid(ζ̂)
    nu: object       # (1,) ν = sigmoid(ν̂)


class FastGRNNFused(NamedTuple):
    """The trace of ``FastGRNN.fused_sequence``."""

    x: object        # (T, B, I)
    hs: object       # (T + 1, B, H), hs[0] = h_0
    z: object        # (T, B, H) gates
    h_tilde: object  # (T, B, H) candidates
    zeta: object     # (1,) ζ = sigmoid(ζ̂)
    nu: object       # (1,) ν = sigmoid(ν̂)


@dataclass(frozen=True)
class FastGRNN(Cell):
    """FastGRNN cell (module docstring): a gated residual update with learnable ζ, ν."""

    input_size: int
    hidden_size: int
    gate_nonlinearity: str = "sigmoid"
    update_nonlinearity: str = "tanh"
    zeta_init: float = 1.0
    nu_init: float = -4.0

    def __post_init__(self):
        super().__post_init__()
        for name in ("gate_nonlinearity", "update_nonlinearity"):
            value = getattr(self, name)
            if value not in ACTIVATIONS:
                raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}, got {value!r}")

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"W": (H, I), "U": (H, H), "bias_gate": (H,), "bias_update": (H,),
                "zeta": (1,), "nu": (1,)}

    def init(self, rng):
        """EdgeML's init: W, U ~ 0.1·N(0, 1), b_z = b_h = 1, ζ̂ = 1, ν̂ = −4."""
        H, I = self.hidden_size, self.input_size
        return {                                    # constants too in the rng's dtype (rng.constant)
            "W": rng.normal((H, I), 0.1),
            "U": rng.normal((H, H), 0.1),
            "bias_gate": rng.constant(numpy.ones(H)),
            "bias_update": rng.constant(numpy.ones(H)),
            "zeta": rng.constant([self.zeta_init]),
            "nu": rng.constant([self.nu_init]),
        }

    def step(self, params, s_prev, x, t=None):
        """One FastGRNN transition (module docstring equations)."""
        a = x @ params["W"].T + s_prev @ params["U"].T
        z = ACTIVATIONS[self.gate_nonlinearity].fn(a + params["bias_gate"])
        h_tilde = ACTIVATIONS[self.update_nonlinearity].fn(a + params["bias_update"])
        zeta, nu = sigmoid.fn(params["zeta"]), sigmoid.fn(params["nu"])
        h = (zeta * (1.0 - z) + nu) * h_tilde + z * s_prev
        return h, FastGRNNCache(x, s_prev, z, h_tilde, zeta, nu)

    def step_vjp(self, params, cache, ds):
        """Back through the gated sum, the two nonlinearities and the shared affine map."""
        xp = xp_of(ds)
        c = cache
        da_z = ds * (c.h_prev - c.zeta * c.h_tilde) * ACTIVATIONS[self.gate_nonlinearity].grad(c.z)
        da_h = ds * (c.zeta * (1.0 - c.z) + c.nu) * ACTIVATIONS[self.update_nonlinearity].grad(c.h_tilde)
        da = da_z + da_h                                                 # W, U are shared
        dparams = {
            "W": da.T @ c.x,
            "U": da.T @ c.h_prev,
            "bias_gate": da_z.sum(axis=0),
            "bias_update": da_h.sum(axis=0),
            # back through ζ = sigmoid(ζ̂) and ν = sigmoid(ν̂)
            "zeta": xp.reshape((ds * (1.0 - c.z) * c.h_tilde).sum(), (1,)) * sigmoid.grad(c.zeta),
            "nu": xp.reshape((ds * c.h_tilde).sum(), (1,)) * sigmoid.grad(c.nu),
        }
        return ds * c.z + da @ params["U"], dparams, da @ params["W"]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """Forward-mode twin of ``step``: tangents of a, z, h̃, ζ, ν, then of h."""
        xp = xp_of(cache.x)
        c = cache
        da = xp.zeros_like(c.z)
        dh = xp.zeros_like(c.z)
        da_z = da_h = 0.0
        if dx is not None:
            da = da + dx @ params["W"].T
        if ds_prev is not None:
            da = da + ds_prev @ params["U"].T
            dh = dh + c.z * ds_prev
        if dparams is not None:
            da = da + c.x @ dparams["W"].T + c.h_prev @ dparams["U"].T
            da_z, da_h = dparams["bias_gate"], dparams["bias_update"]
            dh = (dh + sigmoid.grad(c.zeta) * dparams["zeta"] * (1.0 - c.z) * c.h_tilde
                  + sigmoid.grad(c.nu) * dparams["nu"] * c.h_tilde)
        dz = ACTIVATIONS[self.gate_nonlinearity].grad(c.z) * (da + da_z)
        dh_tilde = ACTIVATIONS[self.update_nonlinearity].grad(c.h_tilde) * (da + da_h)
        return dh + dz * (c.h_prev - c.zeta * c.h_tilde) + (c.zeta * (1.0 - c.z) + c.nu) * dh_tilde

    def fused_sequence(self, params, x, s0):
        """The whole run (Kusupati et al. 2018, Eqs. 3–4), ``Cell.fused_sequence``.

        x_t Wᵀ for all t is one GEMM over the T·B rows; per step, one product
        h_{t−1} Uᵀ and the gate arithmetic, the whole loop in one numba kernel
        on NumPy (:func:`refnet.kernels.fused._fastgrnn_forward`), the array loop below otherwise.

        Parameters
        ----------
        params : dict
        x : (T, B, I)
        s0 : (B, H)

        Returns
        -------
        (outputs (T, B, H), s_T (B, H), FastGRNNFused)
        """
        xp = xp_of(x, s0)
        T, B, _ = x.shape
        H = self.hidden_size
        XW = input_projection(x, params["W"], None)
        hs = xp.empty((T + 1, B, H), dtype=x.dtype)
        hs[0] = s0
        zs = xp.empty((T, B, H), dtype=x.dtype)
        h_tilde = xp.empty((T, B, H), dtype=x.dtype)
        zeta, nu = sigmoid.fn(params["zeta"]), sigmoid.fn(params["nu"])
        U, b_z, b_h = params["U"], params["bias_gate"], params["bias_update"]
        gate, update = ACTIVATIONS[self.gate_nonlinearity], ACTIVATIONS[self.update_nonlinearity]
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.fastgrnn_forward(device, self.gate_nonlinearity, self.update_nonlinearity, XW, U, b_z, b_h,
                                          zeta, nu, hs, zs, h_tilde)
        elif forward_kernel_applies(B * H, XW, hs, U, b_z, b_h):
            kernels.load("fused")._fastgrnn_forward(
                XW, numpy.ascontiguousarray(U), numpy.ascontiguousarray(b_z), numpy.ascontiguousarray(b_h),
                _CODES[self.gate_nonlinearity], _CODES[self.update_nonlinearity], zeta[0], nu[0], hs, zs, h_tilde,
                numpy.empty_like(s0, order="C"))
        else:
            for t in range(T):
                a = XW[t] + hs[t] @ U.T
                zs[t] = gate.fn(a + b_z)
                h_tilde[t] = update.fn(a + b_h)
                hs[t + 1] = (zeta * (1.0 - zs[t]) + nu) * h_tilde[t] + zs[t] * hs[t]
        return hs[1:], hs[T].copy(), FastGRNNFused(x, hs, zs, h_tilde, zeta, nu)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """Back through steps start+1..start+n (``Cell.fused_sequence_vjp``): one product da U per step, then
        dW, dU, the biases, dζ̂, dν̂ and dx each as one GEMM or sum over the window's n·B rows."""
        xp = xp_of(dout, ds_last)
        n, B, H = dout.shape
        W, U = params["W"], params["U"]
        zeta, nu = trace.zeta, trace.nu
        dS, dA_z, dA_h, dA = (xp.empty((n, B, H), dtype=dout.dtype) for _ in range(4))
        dh = ds_last.copy()
        gate, update = ACTIVATIONS[self.gate_nonlinearity], ACTIVATIONS[self.update_nonlinearity]
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.fastgrnn_backward(device, self.gate_nonlinearity, self.update_nonlinearity, U, trace.hs,
                                           trace.z, trace.h_tilde, dout, start, zeta, nu, dh, dS, dA_z, dA_h, dA)
        elif kernels.applicable(dout, dh, trace.hs, U):
            kernels.load("fused")._fastgrnn_backward(
                numpy.ascontiguousarray(U), trace.hs, trace.z, trace.h_tilde, numpy.ascontiguousarray(dout), start,
                _CODES[self.gate_nonlinearity], _CODES[self.update_nonlinearity], zeta[0], nu[0], dh, dS, dA_z,
                dA_h, dA)
        else:
            for j in range(n - 1, -1, -1):
                t = start + j
                z, y = trace.z[t], trace.h_tilde[t]
                dS[j] = dh + dout[j]
                dA_z[j] = dS[j] * (trace.hs[t] - zeta * y) * gate.grad(z)
                dA_h[j] = dS[j] * (zeta * (1.0 - z) + nu) * update.grad(y)
                dA[j] = dA_z[j] + dA_h[j]
                dh = dA[j] @ U + dS[j] * z
        window = slice(start, start + n)
        x, z, y = trace.x[window], trace.z[window], trace.h_tilde[window]
        dparams = {
            "W": summed_outer(dA, x),
            "U": summed_outer(dA, trace.hs[window]),
            "bias_gate": dA_z.sum(axis=(0, 1)),
            "bias_update": dA_h.sum(axis=(0, 1)),
            "zeta": xp.reshape((dS * (1.0 - z) * y).sum(), (1,)) * sigmoid.grad(zeta),
            "nu": xp.reshape((dS * y).sum(), (1,)) * sigmoid.grad(nu),
        }
        return dh, dparams, (dA.reshape(n * B, H) @ W).reshape(n, B, x.shape[2])
