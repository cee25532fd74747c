"""LSTM (Hochreiter & Schmidhuber 1997) in PyTorch nn.LSTM's form.

    [a_i, a_f, a_g, a_o] = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
    i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
    c_t = f ⊙ c_{t−1} + i ⊙ g,      h_t = o ⊙ tanh(c_t)

Gates stacked i, f, g, o in weight_ih (4H, I) and weight_hh (4H, H).
The state is s = [h, c] (B, 2H); the output is h.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from ..backend import to_numpy, xp_of
from .activations import sigmoid, tanh
from .base import Cell, affine_jvp, affine_vjp
from .patterns import row_pattern

__all__ = ["LSTM", "LSTMCache"]


class LSTMCache(NamedTuple):
    x: object       # (B, I)
    h_prev: object  # (B, H)
    c_prev: object  # (B, H)
    i: object       # (B, H) input gate
    f: object       # (B, H) forget gate
    g: object       # (B, H) cell candidate
    o: object       # (B, H) output gate
    tanh_c: object  # (B, H) tanh(c_t)


@dataclass(frozen=True)
class LSTM(Cell):
    """LSTM cell with PyTorch's names and gate order (i, f, g, o)."""

    input_size: int
    hidden_size: int

    @property
    def n_state(self):
        return 2 * self.hidden_size

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (4 * H, I), "weight_hh": (4 * H, H), "bias_ih": (4 * H,), "bias_hh": (4 * H,)}

    def init(self, rng):
        """PyTorch's init: every entry U(−1/√H, 1/√H)."""
        return self.pytorch_init(rng)

    def split_state(self, s):
        """(h, c) views of s = [h, c]."""
        H = self.hidden_size
        return s[:, :H], s[:, H:]

    def output(self, s):
        return s[:, :self.hidden_size]

    def output_vjp(self, dy):
        xp = xp_of(dy)
        return xp.concatenate([dy, xp.zeros_like(dy)], axis=1)

    def step(self, params, s_prev, x, t=None):
        """One LSTM transition (module docstring equations)."""
        xp = xp_of(s_prev, x)
        H = self.hidden_size
        h_prev, c_prev = self.split_state(s_prev)
        a = x @ params["weight_ih"].T + params["bias_ih"] + h_prev @ params["weight_hh"].T + params["bias_hh"]
        i = sigmoid.fn(a[:, :H])
        f = sigmoid.fn(a[:, H:2 * H])
        g = tanh.fn(a[:, 2 * H:3 * H])
        o = sigmoid.fn(a[:, 3 * H:])
        c = f * c_prev + i * g
        tanh_c = tanh.fn(c)
        h = o * tanh_c
        return xp.concatenate([h, c], axis=1), LSTMCache(x, h_prev, c_prev, i, f, g, o, tanh_c)

    def step_vjp(self, params, cache, ds):
        """Back through h = o ⊙ tanh(c), c = f ⊙ c_prev + i ⊙ g, the gates and the affine maps."""
        xp = xp_of(ds)
        dh, dc = self.split_state(ds)
        dc = dc + dh * cache.o * tanh.grad(cache.tanh_c)            # h_t depends on c_t too
        da = xp.concatenate([
            dc * cache.g * sigmoid.grad(cache.i),                    # ∂/∂a_i
            dc * cache.c_prev * sigmoid.grad(cache.f),               # ∂/∂a_f
            dc * cache.i * tanh.grad(cache.g),                       # ∂/∂a_g
            dh * cache.tanh_c * sigmoid.grad(cache.o),               # ∂/∂a_o
        ], axis=1)
        dparams, dx, dh_prev = affine_vjp(params, cache.x, cache.h_prev, da, da)
        return xp.concatenate([dh_prev, dc * cache.f], axis=1), dparams, dx

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """Forward-mode twin of ``step``: tangents of the gates, then of c and h."""
        xp = xp_of(cache.x)
        H = self.hidden_size
        dh_prev, dc_prev = (None, 0.0) if ds_prev is None else self.split_state(ds_prev)
        da_i, da_h = affine_jvp(params, cache.x, cache.h_prev, dparams, dx, dh_prev)
        da = da_i + da_h + xp.zeros((cache.x.shape[0], 4 * H), dtype=cache.x.dtype)
        di = sigmoid.grad(cache.i) * da[:, :H]
        df = sigmoid.grad(cache.f) * da[:, H:2 * H]
        dg = tanh.grad(cache.g) * da[:, 2 * H:3 * H]
        do = sigmoid.grad(cache.o) * da[:, 3 * H:]
        dc = df * cache.c_prev + cache.f * dc_prev + di * cache.g + cache.i * dg
        dh = do * cache.tanh_c + cache.o * tanh.grad(cache.tanh_c) * dc
        return xp.concatenate([dh, dc], axis=1)

    def jacobian_pattern(self, params):
        """Structural nonzero patterns (NumPy bool) of J_s (2H, 2H) and J_θ (2H, P) on s = [h, c], for SnAp.

        c_i reads c_i (f ⊙ c_{t−1}) and h_j through the i, f, g rows W_hh[·, j] of unit i; h_i =
        o_i tanh(c_i) reads c_i and h_j through all four gate rows.  Row i of gate blocks i, f, g of
        every parameter acts on c_i and h_i; row i of the o block on h_i alone.
        """
        H = self.hidden_size
        W = to_numpy(params["weight_hh"]) != 0
        eye = numpy.eye(H, dtype=bool)
        into_c = W[:H] | W[H:2 * H] | W[2 * H:3 * H]
        S = numpy.block([[into_c | W[3 * H:], eye], [into_c, eye]])
        no = numpy.zeros((H, H), dtype=bool)
        owner = numpy.block([[eye, eye], [eye, eye], [eye, eye], [eye, no]])   # gate rows i, f, g, o -> [h, c]
        return S, row_pattern(self.param_shapes(), owner)
