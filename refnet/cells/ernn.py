"""Equilibrated RNN (Zhang, Kag, Sullivan & Saligrama, "Equilibrated Recurrent Neural Network").

At every time step, K inner iterations of the paper's inexact Newton method
(Eq. 7 applied to f(h) = φ(h, h_{t−1}, x_t) − h, i.e. Eq. 9):

    h^(0) = h_{t−1}
    h^(k) = h^(k−1) + η_t^(k) [φ(h^(k−1), h_{t−1}, x_t) − h^(k−1)],   k = 1..K
    h_t = h^(K)

with the embedded nonlinear φ of Eq. 12, the self-feedback (I − U)^{-1}
replaced by its first-order series I + U (Eq. 11):

    a^(k) = V h^(k−1) + W x_t + b,     g^(k) = (I + U) a^(k),     φ^(k) = σ(g^(k))

σ = ReLU (the paper's experiments, the default) or tanh.  This is the
form stated in the README's Reference section; the paper's Fig. 7(b), which
draws φ, is missing from the text, so two choices are ours and explicit:

- V multiplies the *inner* iterate h^(k−1), as in Eq. 12's
  ``g^(k) = U g^(k) + V h^(k−1) + W x + b``; h_{t−1} enters φ only through
  h^(0) = h_{t−1}.  (The other reading, V h_{t−1} fixed across the inner
  loop, differs from ours only for K ≥ 2.)
- η is learnable and not constrained positive (the paper's Fig. 9 shows
  negative values), either one row shared by every step, shape (K,), or one
  row per step, shape (T, K) (η_t^(k) of Eq. 9); initialised to 1e-2.

With U = 0 and K = 1 this is FastRNN (:mod:`refnet.cells.fastrnn`) with
α = η and β = 1 − η, V in the place of FastRNN's U (paper, end of §3.4).

Parameters (the paper's names):

=====  ==============  ====================================================
name   shape           meaning and init
=====  ==============  ====================================================
W      (H, I)          input weights, 0.1·N(0, 1) (as EdgeML's FastRNN)
V      (H, H)          recurrent weights, 0.1·N(0, 1) (FastRNN's U)
U      (H, H)          self-feedback, zeros (ERNN starts as a FastRNN)
b      (H,)            bias, ones (FastRNN's bias_update)
eta    (K,) or (T, K)  step sizes η, 1e-2 (paper, §4)
=====  ==============  ====================================================

The state is h.  ``step``'s ``t`` (0-based index of x_t) picks the row of a
(T, K) η and is ignored for a (K,) one.
"""
import numpy
from dataclasses import dataclass
from typing import NamedTuple, Optional

from ..backend import xp_of
from .activations import ACTIVATIONS
from .base import Cell

__all__ = ["ERNN", "ERNNCache"]


class ERNNCache(NamedTuple):
    x: object        # (B, I) input
    h_prev: object   # (B, H) h_{t−1} = h^(0)
    h_in: tuple      # K arrays (B, H): h^(k−1), the input of inner iteration k
    a: tuple         # K arrays (B, H): a^(k) = V h^(k−1) + W x + b, which (I + U) multiplies
    phi: tuple       # K arrays (B, H): φ^(k) = σ((I + U) a^(k)); σ' is read from it
    eta: object      # (K,) η_t, the row of η used at this step
    t: Optional[int]  # the row's index in a (T, K) η; None for a (K,) η


@dataclass(frozen=True)
class ERNN(Cell):
    """ERNN cell (module docstring): K inexact-Newton iterations towards h = φ(h, h_{t−1}, x_t).

    Parameters
    ----------
    input_size, hidden_size : int
    K : int >= 1
        Inner iterations per time step.
    nonlinearity : 'relu' (default) or 'tanh'
        σ.
    sequence_length : int or None
        T for a per-step η of shape (T, K); None (default) for one η of shape (K,).
        (Not ``steps``: that name is the cell contract's k-step method, DESIGN.md §3.)
    eta_init : float
        Initial value of every η (1e-2, paper §4).
    """

    input_size: int
    hidden_size: int
    K: int = 1
    nonlinearity: str = "relu"
    sequence_length: Optional[int] = None
    eta_init: float = 1e-2

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.K, bool) or not isinstance(self.K, int) or self.K < 1:
            raise ValueError(f"K must be a positive int, got {self.K!r}")
        T = self.sequence_length
        if T is not None and (isinstance(T, bool) or not isinstance(T, int) or T < 1):
            raise ValueError(f"sequence_length must be None or a positive int (T), got {T!r}")
        if self.nonlinearity not in ("relu", "tanh"):
            raise ValueError(f"nonlinearity must be 'relu' or 'tanh', got {self.nonlinearity!r}")

    @property
    def sigma(self):
        return ACTIVATIONS[self.nonlinearity]

    def param_shapes(self):
        H, I = self.hidden_size, self.input_size
        eta = (self.K,) if self.sequence_length is None else (self.sequence_length, self.K)
        return {"W": (H, I), "V": (H, H), "U": (H, H), "b": (H,), "eta": eta}

    def init(self, rng):
        """W, V ~ 0.1·N(0, 1); U = 0; b = 1; η = 1e-2 (module docstring)."""
        H, I = self.hidden_size, self.input_size
        return {                                    # constants too in the rng's dtype (rng.constant)
            "W": rng.normal((H, I), 0.1),
            "V": rng.normal((H, H), 0.1),
            "U": rng.constant(numpy.zeros((H, H))),
            "b": rng.constant(numpy.ones(H)),
            "eta": rng.constant(numpy.full(self.param_shapes()["eta"], self.eta_init)),
        }

    def _eta_row(self, eta, t):
        """η_t (K,): the shared row, or row t of a (T, K) η."""
        if self.sequence_length is None:
            return eta, None
        if t is None or not 0 <= t < self.sequence_length:
            raise ValueError(f"t must be a time index in [0, {self.sequence_length}) for an ERNN with a "
                             f"per-step η of shape ({self.sequence_length}, {self.K}), got t = {t!r}")
        return eta[t], t

    def step(self, params, s_prev, x, t=None):
        """K inner iterations h^(k) = h^(k−1) + η_t^(k) [σ((I + U)(V h^(k−1) + W x_t + b)) − h^(k−1)]."""
        eta, t = self._eta_row(params["eta"], t)
        U = params["U"]
        input_part = x @ params["W"].T + params["b"]          # W x_t + b, shared by the K iterations
        h = s_prev
        h_in, a_list, phi_list = [], [], []
        for k in range(self.K):
            a = h @ params["V"].T + input_part
            phi = self.sigma.fn(a + a @ U.T)                    # σ((I + U) a)
            h_in.append(h)
            a_list.append(a)
            phi_list.append(phi)
            h = h + eta[k] * (phi - h)
        return h, ERNNCache(x, s_prev, tuple(h_in), tuple(a_list), tuple(phi_list), eta, t)

    def step_vjp(self, params, cache, ds):
        """Back through the K inner iterations, last first (Eq. 9, then Eq. 12's φ)."""
        xp = xp_of(ds)
        U, V, W = params["U"], params["V"], params["W"]
        dU, dV = xp.zeros_like(U), xp.zeros_like(V)
        da_total = xp.zeros_like(ds)                            # Σ_k ∂/∂a^(k): W x + b is shared
        deta = xp.zeros_like(cache.eta)
        dh = ds
        for k in range(self.K - 1, -1, -1):
            h_in, a, phi, eta_k = cache.h_in[k], cache.a[k], cache.phi[k], cache.eta[k]
            deta[k] = (dh * (phi - h_in)).sum()
            dg = eta_k * dh * self.sigma.grad(phi)              # back through σ
            dU += dg.T @ a
            da = dg + dg @ U                                    # back through (I + U)
            dV += da.T @ h_in
            da_total += da
            dh = (1.0 - eta_k) * dh + da @ V
        dparams = {"W": da_total.T @ cache.x, "V": dV, "U": dU, "b": da_total.sum(axis=0)}
        if cache.t is None:
            dparams["eta"] = deta
        else:
            dparams["eta"] = xp.zeros_like(params["eta"])
            dparams["eta"][cache.t] = deta
        return dh, dparams, da_total @ W

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """Forward-mode twin of ``step``: the tangent of every inner iterate in turn."""
        xp = xp_of(cache.x)
        U, V, W = params["U"], params["V"], params["W"]
        dh = xp.zeros_like(cache.h_prev) if ds_prev is None else ds_prev
        d_input = xp.zeros_like(cache.h_prev)                   # tangent of W x + b
        if dx is not None:
            d_input = d_input + dx @ W.T
        deta = None
        if dparams is not None:
            d_input = d_input + cache.x @ dparams["W"].T + dparams["b"]
            deta = dparams["eta"] if cache.t is None else dparams["eta"][cache.t]
        for k in range(self.K):
            h_in, a, phi, eta_k = cache.h_in[k], cache.a[k], cache.phi[k], cache.eta[k]
            da = dh @ V.T + d_input
            if dparams is not None:
                da = da + h_in @ dparams["V"].T
            dg = da + da @ U.T
            if dparams is not None:
                dg = dg + a @ dparams["U"].T
            dphi = self.sigma.grad(phi) * dg
            dh = dh + eta_k * (dphi - dh)
            if deta is not None:
                dh = dh + deta[k] * (phi - h_in)
        return dh
