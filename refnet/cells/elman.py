"""Elman RNN (PyTorch nn.RNN) and iRNN (Le, Jaitly & Hinton 2015).

    a_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh,     h_t = φ(a_t)

φ = tanh or ReLU (Elman 1990; PyTorch's nn.RNN).  The state is h.

At batch 1 on NumPy, ``step``, ``step_vjp``, ``jacobians``, ``steps`` and
``steps_vjp`` run numba kernels (:mod:`refnet.kernels.elman`,
``REFNET_NUMBA=0`` turns them off); the array code below each dispatch (for
``steps``, the contract's loop over ``step``) is their twin, and what every
other case runs.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from .. import kernels
from ..kernels import fused_device
from ..backend import to_numpy, xp_of
from .activations import ACTIVATIONS
from .base import Cell, affine_jvp, affine_vjp, forward_kernel_applies, input_projection, summed_outer
from .patterns import row_pattern

__all__ = ["ElmanRNN", "IRNN", "ElmanCache", "ElmanSteps", "ElmanFused"]


class ElmanCache(NamedTuple):
    x: object       # (B, I) input
    h_prev: object  # (B, H) previous state
    h: object       # (B, H) new state, φ(a); φ' is read from it


class ElmanSteps(NamedTuple):
    """The trace of ``ElmanRNN.steps`` on its kernel path: every input and state of the run."""

    xs: object  # (k, B, I)
    hs: object  # (k + 1, B, H), hs[0] = h_0


class ElmanFused(NamedTuple):
    """The trace of ``ElmanRNN.fused_sequence``: the inputs and every state of the run."""

    x: object   # (T, B, I)
    hs: object  # (T + 1, B, H), hs[0] = h_0


@dataclass(frozen=True)
class ElmanRNN(Cell):
    """Elman RNN cell with PyTorch's names: weight_ih (H, I), weight_hh (H, H), bias_ih, bias_hh (H,)."""

    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")

    @property
    def phi(self):
        return ACTIVATIONS[self.nonlinearity]

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,), "bias_hh": (H,)}

    def init(self, rng):
        """PyTorch's init: every entry U(−1/√H, 1/√H)."""
        return self.pytorch_init(rng)

    def step(self, params, s_prev, x, t=None):
        """h_t = φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)."""
        if s_prev.shape[0] == 1 and kernels.applicable(s_prev, x, params["weight_hh"]):
            return self._step_kernel(params, s_prev, x)
        a = x @ params["weight_ih"].T + params["bias_ih"] + s_prev @ params["weight_hh"].T + params["bias_hh"]
        h = self.phi.fn(a)
        return h, ElmanCache(x, s_prev, h)

    def step_vjp(self, params, cache, ds):
        """Back through φ, then through the two affine maps."""
        if ds.shape[0] == 1 and kernels.applicable(ds, cache.x, cache.h_prev, params["weight_hh"]):
            return self._step_vjp_kernel(params, cache, ds)
        da = ds * self.phi.grad(cache.h)
        dparams, dx, dh_prev = affine_vjp(params, cache.x, cache.h_prev, da, da)
        return dh_prev, dparams, dx

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """dh = φ'(a) ⊙ (dW_ih x + W_ih dx + db_ih + dW_hh h + W_hh dh + db_hh)."""
        da_i, da_h = affine_jvp(params, cache.x, cache.h_prev, dparams, dx, ds_prev)
        return self.phi.grad(cache.h) * (da_i + da_h)

    def jacobians(self, params, cache):
        """Closed form.  With D = φ'(a) (B, H):
        J_s[b] = diag(D[b]) W_hh and J_θ[b] = diag(D[b]) [I ⊗ x[b]ᵀ, I ⊗ h[b]ᵀ, I, I]
        (the Kronecker structure KF-RTRL exploits).
        """
        if cache.x.shape[0] == 1 and kernels.applicable(cache.x, cache.h_prev, params["weight_hh"]):
            return self._jacobians_kernel(params, cache)
        xp = xp_of(cache.x)
        D = self.phi.grad(cache.h)
        B, H = D.shape
        eye = xp.eye(H, dtype=D.dtype)
        J_s = D[:, :, None] * params["weight_hh"][None]
        diag = D[:, :, None] * eye[None]                                # (B, H, H)
        J_theta = xp.concatenate([
            (diag[:, :, :, None] * cache.x[:, None, None, :]).reshape(B, H, -1),
            (diag[:, :, :, None] * cache.h_prev[:, None, None, :]).reshape(B, H, -1),
            diag,
            diag,
        ], axis=2)
        return J_s, J_theta

    def kronecker_factors(self, params, cache):
        """The factors of J_θ that KF-RTRL (Mujika, Meier & Steger 2018) keeps apart.

        For every parameter k, ∂h_t/∂θ_k = diag(D) ⊗ ĥ_kᵀ (θ_k flattened in C
        order, so column i·m + j is entry [i, j]) with D = φ'(a_t) and
        ĥ = x_t for weight_ih, h_{t−1} for weight_hh and 1 for each bias.

        Returns
        -------
        D : (B, H)
        h_hat : dict {name: (B, m_name)}, in ``param_shapes`` order
        """
        xp = xp_of(cache.x)
        one = xp.ones((cache.x.shape[0], 1), dtype=cache.x.dtype)
        return self.phi.grad(cache.h), {"weight_ih": cache.x, "weight_hh": cache.h_prev,
                                        "bias_ih": one, "bias_hh": one}

    def state_jacobian(self, params, cache):
        """J_s = diag(φ'(a)) W_hh alone, (B, H, H), without J_θ's O(H·P) (SnAp uses it)."""
        return self.phi.grad(cache.h)[:, :, None] * params["weight_hh"][None]

    def jacobian_pattern(self, params):
        """Structural nonzero patterns (NumPy bool) of J_s, W_hh ≠ 0 (H, H), and of J_θ (H, P):
        row i of every parameter acts on unit i only (see :mod:`refnet.cells.patterns`)."""
        return (to_numpy(params["weight_hh"]) != 0,
                row_pattern(self.param_shapes(), numpy.eye(self.hidden_size, dtype=bool)))

    def steps(self, params, s0, xs, t=None):
        """k transitions from h_0 = s0 (see ``Cell.steps``); one kernel call at batch 1."""
        if s0.shape[0] == 1 and kernels.applicable(s0, xs[0], params["weight_hh"]):
            xs = numpy.stack(xs)
            hs = numpy.empty((xs.shape[0] + 1,) + s0.shape, dtype=s0.dtype)
            hs[0] = s0
            kernels.load("elman")._elman_steps(params["weight_ih"], params["weight_hh"], params["bias_ih"],
                                               params["bias_hh"], xs, self.nonlinearity == "relu", hs)
            return hs, ElmanSteps(xs, hs)
        return super().steps(params, s0, xs, t)

    def steps_vjp(self, params, trace, ds):
        """Back through ``steps`` from ds on h_k (see ``Cell.steps_vjp``); one kernel call at batch 1."""
        if not isinstance(trace, ElmanSteps):
            return super().steps_vjp(params, trace, ds)
        W_ih, W_hh = params["weight_ih"], params["weight_hh"]
        dh0, da = numpy.empty_like(ds), numpy.empty_like(ds)
        dW_ih, dW_hh, db = numpy.empty_like(W_ih), numpy.empty_like(W_hh), numpy.empty_like(params["bias_ih"])
        kernels.load("elman")._elman_steps_vjp(W_ih, W_hh, trace.xs, trace.hs, ds, self.nonlinearity == "relu",
                                               dh0, dW_ih, dW_hh, db, da)
        return dh0, {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}

    def fused_sequence(self, params, x, s0):
        """The whole run (Elman 1990) with W_ih x_t + b_ih + b_hh for all t as one GEMM (``Cell.fused_sequence``).

        Per step: one product h_{t−1} W_hhᵀ and φ, in one numba kernel for the
        whole loop on NumPy (:func:`refnet.kernels.fused._elman_forward`), the
        array loop below otherwise.

        Parameters
        ----------
        params : dict
        x : (T, B, I)
        s0 : (B, H)

        Returns
        -------
        (outputs (T, B, H), s_T (B, H), ElmanFused)
        """
        xp = xp_of(x, s0)
        T, B, _ = x.shape
        XW = input_projection(x, params["weight_ih"], params["bias_ih"] + params["bias_hh"])
        hs = xp.empty((T + 1, B, self.hidden_size), dtype=x.dtype)
        hs[0] = s0
        W_hh = params["weight_hh"]
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.elman_forward(device, self.nonlinearity, XW, W_hh, hs)
        elif forward_kernel_applies(B * self.hidden_size, XW, hs, W_hh):
            kernels.load("fused")._elman_forward(XW, numpy.ascontiguousarray(W_hh), self._code, hs,
                                                 numpy.empty_like(s0, order="C"))
        else:
            for t in range(T):
                hs[t + 1] = self.phi.fn(XW[t] + hs[t] @ W_hh.T)
        return hs[1:], hs[T].copy(), ElmanFused(x, hs)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """Back through steps start+1..start+n (``Cell.fused_sequence_vjp``): one product da W_hh per step,
        then dW_ih, dW_hh, the biases and dx each as one GEMM or sum over the window's n·B rows."""
        xp = xp_of(dout, ds_last)
        n, B, H = dout.shape
        W_ih, W_hh = params["weight_ih"], params["weight_hh"]
        dA = xp.empty((n, B, H), dtype=dout.dtype)
        dh = ds_last.copy()
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.elman_backward(device, self.nonlinearity, W_hh, trace.hs, dout, start, dh, dA)
        elif kernels.applicable(dout, dh, trace.hs, W_hh):
            kernels.load("fused")._elman_backward(numpy.ascontiguousarray(W_hh), trace.hs,
                                                  numpy.ascontiguousarray(dout), start, self._code, dh, dA)
        else:
            for j in range(n - 1, -1, -1):
                dA[j] = (dh + dout[j]) * self.phi.grad(trace.hs[start + j + 1])
                dh = dA[j] @ W_hh
        x = trace.x[start:start + n]
        db = dA.sum(axis=(0, 1))
        dparams = {"weight_ih": summed_outer(dA, x), "weight_hh": summed_outer(dA, trace.hs[start:start + n]),
                   "bias_ih": db, "bias_hh": db.copy()}
        return dh, dparams, (dA.reshape(n * B, H) @ W_ih).reshape(n, B, x.shape[2])

    @property
    def _code(self):
        """φ's code for :mod:`refnet.kernels.fused`."""
        return 2 if self.nonlinearity == "relu" else 1

    def _step_kernel(self, params, s_prev, x):
        """``step`` by :func:`refnet.kernels.elman._elman_step`."""
        h = numpy.empty_like(s_prev)
        kernels.load("elman")._elman_step(params["weight_ih"], params["weight_hh"], params["bias_ih"],
                                          params["bias_hh"], x, s_prev, self.nonlinearity == "relu", h)
        return h, ElmanCache(x, s_prev, h)

    def _step_vjp_kernel(self, params, cache, ds):
        """``step_vjp`` by :func:`refnet.kernels.elman._elman_step_vjp`."""
        W_ih, W_hh = params["weight_ih"], params["weight_hh"]
        dh_prev, dx = numpy.empty_like(cache.h_prev), numpy.empty_like(cache.x)
        dW_ih, dW_hh, db = numpy.empty_like(W_ih), numpy.empty_like(W_hh), numpy.empty_like(params["bias_ih"])
        kernels.load("elman")._elman_step_vjp(W_ih, W_hh, cache.x, cache.h_prev, cache.h, ds,
                                              self.nonlinearity == "relu", dh_prev, dW_ih, dW_hh, db, dx)
        return dh_prev, {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}, dx

    def _jacobians_kernel(self, params, cache):
        """``jacobians`` by :func:`refnet.kernels.elman._elman_jacobians`."""
        B, H, I = cache.x.shape[0], self.hidden_size, self.input_size
        J_s = numpy.empty((B, H, H), dtype=cache.x.dtype)
        J_theta = numpy.empty((B, H, H * I + H * H + 2 * H), dtype=cache.x.dtype)
        kernels.load("elman")._elman_jacobians(params["weight_hh"], cache.x, cache.h_prev, cache.h,
                                               self.nonlinearity == "relu", J_s, J_theta)
        return J_s, J_theta


@dataclass(frozen=True)
class IRNN(ElmanRNN):
    """ReLU Elman RNN with W_hh = scale·I, zero biases and W_ih ~ N(0, input_std²) at init."""

    nonlinearity: str = "relu"
    scale: float = 1.0
    input_std: float = 1e-3

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity != "relu":
            raise ValueError(f"nonlinearity of an IRNN must be 'relu', got {self.nonlinearity!r}")

    def init(self, rng):
        """Le et al. (2015): identity recurrence, zero biases, small Gaussian input weights."""
        H, I = self.hidden_size, self.input_size
        weight_ih = rng.normal((H, I), self.input_std)
        xp, dtype = xp_of(weight_ih), weight_ih.dtype
        return {
            "weight_ih": weight_ih,
            "weight_hh": self.scale * xp.eye(H, dtype=dtype),
            "bias_ih": xp.zeros(H, dtype=dtype),
            "bias_hh": xp.zeros(H, dtype=dtype),
        }
