"""Continuous Hopfield network (Hopfield 1984) as Liao et al. (2018) train it with RBP.

Units u = [x, s] (N = n_in + n_state): the input units are clamped to the
input x, the free units s = [hidden, output] evolve by the Euler step of
dh/dt = −h/a + W σ(b h) + l (Liao et al. 2018, "Continuous Hopfield Networks"):

    s_t = (1 − a) s_{t−1} + W_s σ(b u_{t−1}),     u_{t−1} = [x, s_{t−1}]

where W_s = W[n_in:, :] are the rows of the free units and σ the logistic
sigmoid; l is zero on the free units (Liao et al.'s code), and the clamping
replaces the update of the input units, so they are not part of the state.
a = 1 and b = 0.5 by default, as in Liao et al.

**Symmetry by construction.**  W must be symmetric with a zero diagonal (the
Hopfield energy exists only then).  The parameter is an unconstrained
U (N, N) and

    W = (U + Uᵀ) ⊙ (1 − I),

so every U gives an admissible W, exactly, and gradient steps on U never
leave the set (Liao et al.'s code does the same).  The gradient for U is that
for W folded back: dU = (dW + dWᵀ) ⊙ (1 − I).

The state is s (B, hidden + output); ``output(s)`` is the output units.
"""
from dataclasses import dataclass
from typing import NamedTuple

from ..backend import xp_of
from .activations import sigmoid
from .base import Cell

__all__ = ["Hopfield", "HopfieldCache"]


class HopfieldCache(NamedTuple):
    x: object       # (B, n_in) clamped input units
    s_prev: object  # (B, n_state) free units before the step
    sig: object     # (B, N) σ(b u), u = [x, s_prev]; σ' is read from it


@dataclass(frozen=True)
class Hopfield(Cell):
    """Continuous Hopfield network: ``input_size`` clamped, ``hidden_size`` + ``output_size`` free units.

    Parameter ``U`` (N, N), N = input_size + hidden_size + output_size; the
    weights are W = (U + Uᵀ) ⊙ (1 − I) (module docstring).
    """

    input_size: int
    hidden_size: int
    output_size: int
    a: float = 1.0
    b: float = 0.5
    init_std: float = 1e-3

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.output_size, bool) or not isinstance(self.output_size, int) or self.output_size < 1:
            raise ValueError(f"output_size must be a positive int, got {self.output_size!r}")

    @property
    def n_units(self):
        """N, all units: clamped input, hidden, output."""
        return self.input_size + self.hidden_size + self.output_size

    @property
    def n_state(self):
        return self.hidden_size + self.output_size

    @property
    def n_out(self):
        return self.output_size

    def param_shapes(self):
        return {"U": (self.n_units, self.n_units)}

    def init(self, rng):
        """U ~ N(0, init_std²), 1e-3 as Liao et al."""
        return {"U": rng.normal((self.n_units, self.n_units), self.init_std)}

    def weights(self, params):
        """W = (U + Uᵀ) ⊙ (1 − I): symmetric, zero diagonal."""
        U = params["U"]
        W = U + U.T
        xp = xp_of(U)
        W[xp.arange(self.n_units), xp.arange(self.n_units)] = 0.0
        return W

    # Products with the free rows W_s = W[n_in:] straight from U, without forming W
    # (an N×N transpose per step):  W_s = U[n_in:] + U[:, n_in:]ᵀ − 2 diag(U)[n_in:] on its diagonal.

    def _times_W_s_T(self, U, v):
        """v W_sᵀ for v (B, N): (B, n_state)."""
        n_in = self.input_size
        diag = U.diagonal()[n_in:]
        return v @ U[n_in:].T + v @ U[:, n_in:] - 2.0 * diag * v[:, n_in:]

    def _times_W_s(self, U, w):
        """w W_s for w (B, n_state): (B, N)."""
        n_in = self.input_size
        out = w @ U[n_in:] + w @ U[:, n_in:].T
        out[:, n_in:] -= 2.0 * U.diagonal()[n_in:] * w
        return out

    def _fold(self, dW_s):
        """dU from the gradient for the free rows W_s: dU = (dW + dWᵀ) ⊙ (1 − I), dW = [0; dW_s]."""
        xp = xp_of(dW_s)
        n_in, N = self.input_size, self.n_units
        dU = xp.zeros((N, N), dtype=dW_s.dtype)
        dU[n_in:] = dW_s
        dU[:, n_in:] += dW_s.T
        dU[xp.arange(N), xp.arange(N)] = 0.0
        return dU

    def output(self, s):
        return s[:, self.hidden_size:]

    def output_vjp(self, dy):
        xp = xp_of(dy)
        return xp.concatenate([xp.zeros((dy.shape[0], self.hidden_size), dtype=dy.dtype), dy], axis=1)

    def step(self, params, s_prev, x, t=None):
        """s_t = (1 − a) s_{t−1} + W_s σ(b [x, s_{t−1}])."""
        xp = xp_of(s_prev, x)
        sig = sigmoid.fn(self.b * xp.concatenate([x, s_prev], axis=1))
        s = (1.0 - self.a) * s_prev + self._times_W_s_T(params["U"], sig)
        return s, HopfieldCache(x, s_prev, sig)

    def step_vjp(self, params, cache, ds):
        """Back through the leak, the product with W_s and σ(b u); then fold dW into dU."""
        du = self._times_W_s(params["U"], ds) * self.b * sigmoid.grad(cache.sig)   # ∂/∂u, (B, N)
        ds_prev = (1.0 - self.a) * ds + du[:, self.input_size:]
        return ds_prev, {"U": self._fold(ds.T @ cache.sig)}, du[:, :self.input_size]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """ds = (1 − a) ds_prev + dW_s σ + W_s (b σ' ⊙ du), du = [dx, ds_prev], dW from dU."""
        xp = xp_of(cache.sig)
        B = cache.sig.shape[0]
        n_in = self.input_size
        du = xp.zeros((B, self.n_units), dtype=cache.sig.dtype)
        if dx is not None:
            du[:, :n_in] = dx
        if ds_prev is not None:
            du[:, n_in:] = ds_prev
        ds = self._times_W_s_T(params["U"], du * self.b * sigmoid.grad(cache.sig))
        if ds_prev is not None:
            ds = ds + (1.0 - self.a) * ds_prev
        if dparams is not None:
            ds = ds + self._times_W_s_T(dparams["U"], cache.sig)     # W is linear in U
        return ds

    def jacobians(self, params, cache):
        """Closed form.  With D = b σ'(b s) (B, n_state):
        J_s[b] = (1 − a) I + W_ss diag(D[b]),  W_ss = W[n_in:, n_in:];
        J_θ[b, i, (k, l)] = (1 − δ_kl) (δ_{k, n_in+i} σ_l + δ_{l, n_in+i} σ_k), σ = σ(b u[b]).
        """
        xp = xp_of(cache.sig)
        n_in, n, N = self.input_size, self.n_state, self.n_units
        B = cache.sig.shape[0]
        W_ss = self.weights(params)[n_in:, n_in:]
        D = self.b * sigmoid.grad(cache.sig[:, n_in:])
        J_s = (1.0 - self.a) * xp.eye(n, dtype=D.dtype)[None] + W_ss[None] * D[:, None, :]
        rows = xp.zeros((B, n, N, N), dtype=D.dtype)                 # δ_{k, n_in+i} σ_l
        rows[:, xp.arange(n), n_in + xp.arange(n), :] = cache.sig[:, None, :]
        J_theta = rows + rows.transpose(0, 1, 3, 2)
        J_theta[:, :, xp.arange(N), xp.arange(N)] = 0.0
        return J_s, J_theta.reshape(B, n, N * N)
