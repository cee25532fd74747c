"""FastRNN (Kusupati et al. 2018, "FastGRNN", Eq. 1–2), in EdgeML's parametrisation.

    h̃_t = σ(W x_t + U h_{t−1} + b),      h_t = α h̃_t + β h_{t−1}
    α = sigmoid(α̂),  β = sigmoid(β̂)

σ = tanh by default (Kusupati et al. 2018, FastRNN).  Parameters, with EdgeML's
``FastRNNCell`` names (no low rank, sparsity or quantisation):

=============  =========  =====================================================
name           shape      meaning and init (EdgeML)
=============  =========  =====================================================
W              (H, I)     input weights, 0.1·N(0, 1)
U              (H, H)     recurrent weights, 0.1·N(0, 1)
bias_update    (H,)       b, ones
alpha          (1,)       α̂, the logit of α; −3
beta           (1,)       β̂, the logit of β; 3
=============  =========  =====================================================

EdgeML's FastRNNCell (and FastGRNNCell) store W as (I, H) and apply W and U
from the right (``x @ W``, ``h @ U``); refnet stores W (H, I) and U (H, H)
applied from the left (``x Wᵀ``, ``h Uᵀ``), as PyTorch and EdgeML's
FastGRNNCUDACell do.  Loading EdgeML FastRNN weights therefore takes a
transpose of both, which a square U does not reveal by its shape: use
:func:`refnet.interop_edgeml.from_edgeml` with ``layout='right'``.  Its
(1, 1) and (1, H) shapes become (1,) and (H,).  The state is h.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from .. import kernels
from ..kernels import fused_device
from ..backend import xp_of
from .activations import ACTIVATIONS, sigmoid
from .base import Cell, forward_kernel_applies, input_projection, summed_outer

__all__ = ["FastRNN", "FastRNNCache", "FastRNNFused"]

# Nonlinearity codes of refnet.kernels.fused (written here so that the kernels' numba stays unimported).
_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2}


class FastRNNCache(NamedTuple):
    x: object        # (B, I) input
    h_prev: object   # (B, H) previous state
    h_tilde: object  # (B, H) σ(a); σ' is read from it
    alpha: object    # (1,) α = sigmoid(α̂)
    beta: object     # (1,) β = sigmoid(β̂)


class FastRNNFused(NamedTuple):
    """The trace of ``FastRNN.fused_sequence``."""

    x: object        # (T, B, I)
    hs: object       # (T + 1, B, H), hs[0] = h_0
    h_tilde: object  # (T, B, H) σ(a_t)
    alpha: object    # (1,) α = sigmoid(α̂)
    beta: object     # (1,) β = sigmoid(β̂)


@dataclass(frozen=True)
class FastRNN(Cell):
    """FastRNN cell (module docstring): a residual Elman update weighted by learnable α, β."""

    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"
    alpha_init: float = -3.0
    beta_init: float = 3.0

    def __post_init__(self):
        super().__post_init__()
        if self.nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, "
                             f"got {self.nonlinearity!r}")

    @property
    def phi(self):
        return ACTIVATIONS[self.nonlinearity]

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"W": (H, I), "U": (H, H), "bias_update": (H,), "alpha": (1,), "beta": (1,)}

    def init(self, rng):
        """EdgeML's init: W, U ~ 0.1·N(0, 1), b = 1, α̂ = −3, β̂ = 3."""
        H, I = self.hidden_size, self.input_size
        return {                                    # constants too in the rng's dtype (rng.constant)
            "W": rng.normal((H, I), 0.1),
            "U": rng.normal((H, H), 0.1),
            "bias_update": rng.constant(numpy.ones(H)),
            "alpha": rng.constant([self.alpha_init]),
            "beta": rng.constant([self.beta_init]),
        }

    def step(self, params, s_prev, x, t=None):
        """h_t = sigmoid(α̂) σ(W x_t + U h_{t−1} + b) + sigmoid(β̂) h_{t−1}."""
        a = x @ params["W"].T + s_prev @ params["U"].T + params["bias_update"]
        h_tilde = self.phi.fn(a)
        alpha, beta = sigmoid.fn(params["alpha"]), sigmoid.fn(params["beta"])
        h = alpha * h_tilde + beta * s_prev
        return h, FastRNNCache(x, s_prev, h_tilde, alpha, beta)

    def step_vjp(self, params, cache, ds):
        """Back through the weighted sum, σ and the affine map."""
        xp = xp_of(ds)
        da = cache.alpha * ds * self.phi.grad(cache.h_tilde)
        dparams = {
            "W": da.T @ cache.x,
            "U": da.T @ cache.h_prev,
            "bias_update": da.sum(axis=0),
            # back through α = sigmoid(α̂) and β = sigmoid(β̂)
            "alpha": xp.reshape((ds * cache.h_tilde).sum(), (1,)) * sigmoid.grad(cache.alpha),
            "beta": xp.reshape((ds * cache.h_prev).sum(), (1,)) * sigmoid.grad(cache.beta),
        }
        return cache.beta * ds + da @ params["U"], dparams, da @ params["W"]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """dh = α σ' ⊙ da + dα h̃ + β dh_{t−1} + dβ h_{t−1}."""
        xp = xp_of(cache.x)
        da = xp.zeros_like(cache.h_tilde)
        dh = xp.zeros_like(cache.h_tilde)
        if dx is not None:
            da = da + dx @ params["W"].T
        if ds_prev is not None:
            da = da + ds_prev @ params["U"].T
            dh = dh + cache.beta * ds_prev
        if dparams is not None:
            da = da + cache.x @ dparams["W"].T + cache.h_prev @ dparams["U"].T + dparams["bias_update"]
            dh = (dh + sigmoid.grad(cache.alpha) * dparams["alpha"] * cache.h_tilde
                  + sigmoid.grad(cache.beta) * dparams["beta"] * cache.h_prev)
        return dh + cache.alpha * self.phi.grad(cache.h_tilde) * da

    def jacobians(self, params, cache):
        """Closed form.  With D = α σ'(a) (B, H):
        J_s[b] = β I + diag(D[b]) U and
        J_θ[b] = [diag(D[b]) ⊗ x[b]ᵀ, diag(D[b]) ⊗ h[b]ᵀ, diag(D[b]), α' h̃[b], β' h[b]]
        with α' = α(1 − α), β' = β(1 − β).
        """
        xp = xp_of(cache.x)
        D = cache.alpha * self.phi.grad(cache.h_tilde)
        B, H = D.shape
        eye = xp.eye(H, dtype=D.dtype)
        J_s = cache.beta * eye[None] + D[:, :, None] * params["U"][None]
        diag = D[:, :, None] * eye[None]                                # (B, H, H)
        J_theta = xp.concatenate([
            (diag[:, :, :, None] * cache.x[:, None, None, :]).reshape(B, H, -1),
            (diag[:, :, :, None] * cache.h_prev[:, None, None, :]).reshape(B, H, -1),
            diag,
            (sigmoid.grad(cache.alpha) * cache.h_tilde)[:, :, None],
            (sigmoid.grad(cache.beta) * cache.h_prev)[:, :, None],
        ], axis=2)
        return J_s, J_theta

    # KF-RTRL (refnet.algorithms.kfrtrl) factors these blocks of J_θ; α̂, β̂ are carried exactly.
    kronecker_params = ("W", "U", "bias_update")

    def kronecker_factors(self, params, cache):
        """∂h_t/∂θ_k = diag(D) ⊗ ĥ_kᵀ for θ_k = W, U, b with D = α σ'(a) (Mujika et al. 2018).

        Returns
        -------
        D : (B, H)
        h_hat : dict {name: (B, m_name)}: x_t for W, h_{t−1} for U, 1 for bias_update
        (α̂ and β̂ are not factored: see ``kronecker_params``)
        """
        xp = xp_of(cache.x)
        one = xp.ones((cache.x.shape[0], 1), dtype=cache.x.dtype)
        return cache.alpha * self.phi.grad(cache.h_tilde), {"W": cache.x, "U": cache.h_prev, "bias_update": one}

    def state_jacobian(self, params, cache):
        """J_s = β I + diag(α σ'(a)) U alone, (B, H, H)."""
        xp = xp_of(cache.x)
        D = cache.alpha * self.phi.grad(cache.h_tilde)
        return cache.beta * xp.eye(self.hidden_size, dtype=D.dtype)[None] + D[:, :, None] * params["U"][None]

    def fused_sequence(self, params, x, s0):
        """The whole run (Kusupati et al. 2018, Eqs. 1–2), ``Cell.fused_sequence``.

        x_t Wᵀ + b for all t is one GEMM over the T·B rows; per step, one
        product h_{t−1} Uᵀ and the update, the whole loop in one numba kernel
        on NumPy (:func:`refnet.kernels.fused._fastrnn_forward`), the array loop below otherwise.

        Parameters
        ----------
        params : dict
        x : (T, B, I)
        s0 : (B, H)

        Returns
        -------
        (outputs (T, B, H), s_T (B, H), FastRNNFused)
        """
        xp = xp_of(x, s0)
        T, B, _ = x.shape
        XW = input_projection(x, params["W"], params["bias_update"])
        hs = xp.empty((T + 1, B, self.hidden_size), dtype=x.dtype)
        hs[0] = s0
        h_tilde = xp.empty((T, B, self.hidden_size), dtype=x.dtype)
        alpha, beta = sigmoid.fn(params["alpha"]), sigmoid.fn(params["beta"])
        U = params["U"]
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.fastrnn_forward(device, self.nonlinearity, XW, U, alpha, beta, hs, h_tilde)
        elif forward_kernel_applies(B * self.hidden_size, XW, hs, U):
            kernels.load("fused")._fastrnn_forward(XW, numpy.ascontiguousarray(U), _CODES[self.nonlinearity],
                                                   alpha[0], beta[0], hs, h_tilde, numpy.empty_like(s0, order="C"))
        else:
            for t in range(T):
                h_tilde[t] = self.phi.fn(XW[t] + hs[t] @ U.T)
                hs[t + 1] = alpha * h_tilde[t] + beta * hs[t]
        return hs[1:], hs[T].copy(), FastRNNFused(x, hs, h_tilde, alpha, beta)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """Back through steps start+1..start+n (``Cell.fused_sequence_vjp``): one product da U per step, then
        dW, dU, db, dα̂, dβ̂ and dx each as one GEMM or sum over the window's n·B rows."""
        xp = xp_of(dout, ds_last)
        n, B, H = dout.shape
        W, U = params["W"], params["U"]
        alpha, beta = trace.alpha, trace.beta
        dS = xp.empty((n, B, H), dtype=dout.dtype)
        dA = xp.empty((n, B, H), dtype=dout.dtype)
        dh = ds_last.copy()
        device = fused_device.kernels_for(xp)
        if device is not None:
            fused_device.fastrnn_backward(device, self.nonlinearity, U, trace.h_tilde, dout, start, alpha, beta, dh,
                                          dS, dA)
        elif kernels.applicable(dout, dh, trace.hs, U):
            kernels.load("fused")._fastrnn_backward(numpy.ascontiguousarray(U), trace.h_tilde,
                                                    numpy.ascontiguousarray(dout), start, _CODES[self.nonlinearity],
                                                    alpha[0], beta[0], dh, dS, dA)
        else:
            for j in range(n - 1, -1, -1):
                dS[j] = dh + dout[j]
                dA[j] = alpha * dS[j] * self.phi.grad(trace.h_tilde[start + j])
                dh = dA[j] @ U + beta * dS[j]
        x, h_prev = trace.x[start:start + n], trace.hs[start:start + n]
        dparams = {
            "W": summed_outer(dA, x),
            "U": summed_outer(dA, h_prev),
            "bias_update": dA.sum(axis=(0, 1)),
            "alpha": xp.reshape((dS * trace.h_tilde[start:start + n]).sum(), (1,)) * sigmoid.grad(alpha),
            "beta": xp.reshape((dS * h_prev).sum(), (1,)) * sigmoid.grad(beta),
        }
        return dh, dparams, (dA.reshape(n * B, H) @ W).reshape(n, B, x.shape[2])
