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

from ..backend import to_numpy, xp_of
from .activations import sigmoid, tanh
from .base import Cell, affine_jvp, affine_vjp
from .patterns import row_pattern

__all__ = ["GRU", "GRUCache"]


class GRUCache(NamedTuple):
    x: object       # (B, I)
    h_prev: object  # (B, H)
    r: object       # (B, H) reset gate
    z: object       # (B, H) update gate
    n: object       # (B, H) candidate
    a_hn: object    # (B, H) W_hn h_{t−1} + b_hn, which r multiplies


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
