"""Elman RNN (PyTorch nn.RNN) and iRNN (Le, Jaitly & Hinton 2015).

    a_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh,     h_t = φ(a_t)

φ = tanh or ReLU (REFERENCE.md, "Elman RNN").  The state is h.
"""
from dataclasses import dataclass
from typing import NamedTuple

from ..backend import xp_of
from .activations import ACTIVATIONS
from .base import Cell, affine_jvp, affine_vjp

__all__ = ["ElmanRNN", "IRNN", "ElmanCache"]


class ElmanCache(NamedTuple):
    x: object       # (B, I) input
    h_prev: object  # (B, H) previous state
    h: object       # (B, H) new state, φ(a); φ' is read from it


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
        a = x @ params["weight_ih"].T + params["bias_ih"] + s_prev @ params["weight_hh"].T + params["bias_hh"]
        h = self.phi.fn(a)
        return h, ElmanCache(x, s_prev, h)

    def step_vjp(self, params, cache, ds):
        """Back through φ, then through the two affine maps."""
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
