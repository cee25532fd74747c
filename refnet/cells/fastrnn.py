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

EdgeML's FastRNNCell stores W as (I, H) and U multiplied from the right
(``x @ W``, ``h @ U``); refnet stores W (H, I) and U (H, H) as PyTorch and
EdgeML's FastGRNNCell do (``x Wᵀ``, ``h Uᵀ``), so loading EdgeML FastRNN
weights takes a transpose of both; its (1, 1) and (1, H) shapes become
(1,) and (H,).  The state is h.
"""
import numpy
from dataclasses import dataclass
from typing import NamedTuple

from ..backend import xp_of
from .activations import ACTIVATIONS, sigmoid
from .base import Cell

__all__ = ["FastRNN", "FastRNNCache"]


class FastRNNCache(NamedTuple):
    x: object        # (B, I) input
    h_prev: object   # (B, H) previous state
    h_tilde: object  # (B, H) σ(a); σ' is read from it
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
