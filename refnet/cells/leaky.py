"""Leaky (rate) RNN: a discretised continuous-time network with a fixed leak (Murray 2019, Eq. 1).

    a_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
    h_t = (1 − α) h_{t−1} + α φ(a_t)

α = Δt/τ is a fixed hyper-parameter (0 < α ≤ 1), not a parameter; φ = tanh
or ReLU.  Murray (2019, eLife, "Local online learning in recurrent networks
with random feedback", Eq. 1) writes the same network as
h^t = h^{t−1} + (Δt/τ)(−h^{t−1} + φ(W^rec h^{t−1} + W^in x^t)); with α = 1 it
is the Elman RNN (PyTorch nn.RNN), whose parameter names it keeps:
weight_ih (H, I), weight_hh (H, H), bias_ih, bias_hh (H,).  The state is h.

Jacobians (closed form), with D = α φ'(a_t) (B, H):

    J_s = (1 − α) I + diag(D) W_hh
    J_θ = diag(D) [I ⊗ x_tᵀ, I ⊗ h_{t−1}ᵀ, I, I]         (flatten order)

J_θ is Kronecker-factored per parameter (``kronecker_factors``: KF-RTRL,
RFLO and SnAp's structured path use it), and the structural nonzero
patterns of J_s and J_θ are ``jacobian_pattern`` (SnAp).
"""
import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from ..backend import to_numpy, xp_of
from .activations import ACTIVATIONS
from .base import Cell, affine_jvp, affine_vjp
from .patterns import row_pattern

__all__ = ["LeakyRNN", "LeakyCache"]


class LeakyCache(NamedTuple):
    """What ``LeakyRNN.step`` keeps for its VJP, JVP and Jacobians (φ' is read from y).

    Attributes
    ----------
    x : (B, I) array
        The step's input x_t.
    h_prev : (B, H) array
        The previous state h_{t−1}.
    y : (B, H) array
        φ(a_t), the non-leaky part of the update (not h_t).
    """

    x: object       # (B, I) input
    h_prev: object  # (B, H) previous state
    y: object       # (B, H) φ(a_t); φ' is read from it


@dataclass(frozen=True)
class LeakyRNN(Cell):
    """Leaky RNN cell (module docstring), PyTorch's Elman names; α fixed in (0, 1].

    Parameters
    ----------
    input_size : int
        I >= 1, the width of x_t.
    hidden_size : int
        H >= 1, the width of h_t.
    alpha : float
        The leak rate α = Δt/τ in (0, 1] (dimensionless: a step Δt over the
        time constant τ; Murray 2019, Eq. 1); 1 gives the Elman RNN.
    nonlinearity : {'tanh', 'relu'}
        φ (ReLU'(0) = 0, as PyTorch).

    Raises
    ------
    ValueError
        If a size is not a positive int, α is outside (0, 1] or not finite, or
        ``nonlinearity`` is not 'tanh' or 'relu'.
    TypeError
        If α is not a real number (a bool is refused).
    """

    input_size: int
    hidden_size: int
    alpha: float = 0.1
    nonlinearity: str = "tanh"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real):
            raise TypeError(f"alpha must be a real number in (0, 1], got {type(self.alpha).__name__} "
                            f"{self.alpha!r}")
        if not (math.isfinite(self.alpha) and 0.0 < self.alpha <= 1.0):
            raise ValueError(f"alpha must be in (0, 1] (the leak rate Δt/τ), got {self.alpha!r}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {self.nonlinearity!r}")

    @property
    def phi(self):
        """φ as an :class:`~refnet.cells.activations.Activation` (fn, grad from the output)."""
        return ACTIVATIONS[self.nonlinearity]

    @property
    def leak(self):
        """1 − α: the part of J_s that does not pass through W_hh (RFLO keeps only this part)."""
        return 1.0 - float(self.alpha)

    def param_shapes(self):
        """The parameters' names and shapes (the Elman RNN's), in flatten (J_θ column) order.

        Returns
        -------
        dict {name: tuple of int}
            weight_ih (H, I), weight_hh (H, H), bias_ih (H,), bias_hh (H,).

        Raises
        ------
        None
            Nothing of its own: the sizes were checked when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,), "bias_hh": (H,)}

    def init(self, rng):
        """PyTorch's init for nn.RNN: every entry U(−1/√H, 1/√H), in the rng's dtype.

        Parameters
        ----------
        rng : refnet.backend.Rng
            The random source (``refnet.rng(seed)``).

        Returns
        -------
        dict {name: array}
            The four parameters, shapes as :meth:`param_shapes`.

        Raises
        ------
        AttributeError
            If ``rng`` has no ``uniform`` method.
        ValueError
            If ``rng.uniform`` does not take ``(shape, low, high)`` (a
            ``numpy.random.Generator`` does not).
        """
        return self.pytorch_init(rng)

    def step(self, params, s_prev, x, t=None):
        """One transition h_t = (1 − α) h_{t−1} + α φ(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh) (Murray 2019, Eq. 1).

        Parameters
        ----------
        params : dict {name: array}
            weight_ih (H, I), weight_hh (H, H), bias_ih (H,), bias_hh (H,).
        s_prev : (B, H) array
            h_{t−1}.
        x : (B, I) array
            x_t.
        t : int or None
            Time index; unused (the cell is time-invariant).

        Returns
        -------
        h : (B, H) array
            h_t, the new state.
        cache : LeakyCache
            (x_t, h_{t−1}, φ(a_t)) for the backward.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul or broadcast error).
        """
        a = x @ params["weight_ih"].T + params["bias_ih"] + s_prev @ params["weight_hh"].T + params["bias_hh"]
        y = self.phi.fn(a)
        # written as a sum, so that α = 1 gives 0·h + 1·y = y: the Elman cell's value, bit for bit
        h = (1.0 - self.alpha) * s_prev + self.alpha * y
        return h, LeakyCache(x, s_prev, y)

    def step_vjp(self, params, cache, ds):
        """VJP of one step: da = α ds ⊙ φ'(a_t); back through the affine maps; ds_{t−1} = (1 − α) ds + da W_hh.

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : LeakyCache
            What ``step`` returned.
        ds : (B, H) array
            Cotangent of h_t.

        Returns
        -------
        ds_prev : (B, H) array
            Cotangent of h_{t−1}.
        dparams : dict {name: array}
            Cotangents of the four parameters, summed over the batch.
        dx : (B, I) array
            Cotangent of x_t.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul or broadcast error).
        """
        da = self.alpha * ds * self.phi.grad(cache.y)
        dparams, dx, dh_prev = affine_vjp(params, cache.x, cache.h_prev, da, da)
        return (1.0 - self.alpha) * ds + dh_prev, dparams, dx

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of one step: dh_t = (1 − α) dh_{t−1} + α φ'(a_t) ⊙ (dW_ih x + W_ih dx + db_ih + dW_hh h + W_hh dh_{t−1} + db_hh).

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : LeakyCache
            What ``step`` returned.
        ds_prev : (B, H) array or None
            Tangent of h_{t−1}; None for zero.
        dparams : dict {name: array} or None
            Tangents of the four parameters (shared by the batch); None for zero.
        dx : (B, I) array or None
            Tangent of x_t; None for zero.

        Returns
        -------
        (B, H) array
            The tangent dh_t.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.  Cells do not
            validate on the hot path; the algorithms check their input once.
        ValueError
            If the shapes do not fit (the array module's matmul or broadcast error).
        """
        da_i, da_h = affine_jvp(params, cache.x, cache.h_prev, dparams, dx, ds_prev)
        dh = self.alpha * self.phi.grad(cache.y) * (da_i + da_h)
        if ds_prev is not None:
            dh = dh + (1.0 - self.alpha) * ds_prev
        return dh

    def state_jacobian(self, params, cache):
        """J_s = (1 − α) I + diag(α φ'(a_t)) W_hh alone, without J_θ's O(H·P) cost (the solvers and SnAp use it).

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : LeakyCache
            What ``step`` returned.

        Returns
        -------
        (B, H, H) array
            ∂h_t/∂h_{t−1} for every example.

        Raises
        ------
        KeyError
            If ``params`` lacks ``weight_hh``.
        ValueError
            If ``weight_hh`` does not broadcast against (B, H, H) (the array module's error).
        """
        xp = xp_of(cache.y)
        D = self.alpha * self.phi.grad(cache.y)
        return (1.0 - self.alpha) * xp.eye(self.hidden_size, dtype=D.dtype)[None] + D[:, :, None] * params["weight_hh"][None]

    def jacobians(self, params, cache):
        """Immediate Jacobians of one step in closed form, what RTRL (Williams & Zipser 1989) propagates.

        With D = α φ'(a_t) (B, H): J_s = (1 − α) I + diag(D) W_hh and
        J_θ = diag(D) [I ⊗ x_tᵀ, I ⊗ h_{t−1}ᵀ, I, I] (flatten order).

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with.
        cache : LeakyCache
            What ``step`` returned.

        Returns
        -------
        J_s : (B, H, H) array
            ∂h_t/∂h_{t−1}.
        J_theta : (B, H, P) array
            ∂h_t/∂θ, P = H·I + H·H + 2H, columns in flatten order.

        Raises
        ------
        KeyError
            If ``params`` lacks ``weight_hh``.
        ValueError
            If ``weight_hh`` does not broadcast against (B, H, H) (the array module's error).
        """
        xp = xp_of(cache.y)
        D = self.alpha * self.phi.grad(cache.y)
        B, H = D.shape
        diag = D[:, :, None] * xp.eye(H, dtype=D.dtype)[None]               # (B, H, H)
        J_theta = xp.concatenate([
            (diag[:, :, :, None] * cache.x[:, None, None, :]).reshape(B, H, -1),
            (diag[:, :, :, None] * cache.h_prev[:, None, None, :]).reshape(B, H, -1),
            diag,
            diag,
        ], axis=2)
        return self.state_jacobian(params, cache), J_theta

    def kronecker_factors(self, params, cache):
        """The factors of J_θ, ∂h_t/∂θ_k = diag(D) ⊗ ĥ_kᵀ with D = α φ'(a_t) (Mujika, Meier & Steger 2018).

        KF-RTRL, RFLO (Murray 2019) and SnAp's structured path keep them
        apart; θ_k is flattened in C order, so column i·m + j is entry [i, j].

        Parameters
        ----------
        params : dict {name: array}
            The parameters ``step`` ran with (unused: the factors do not involve θ).
        cache : LeakyCache
            What ``step`` returned.

        Returns
        -------
        D : (B, H) array
            α φ'(a_t).
        h_hat : dict {name: (B, m_name) array}
            ĥ per parameter, in ``param_shapes`` order: x_t (B, I), h_{t−1} (B, H),
            and ones (B, 1) for each bias (the same array twice).

        Raises
        ------
        AttributeError
            If ``cache`` lacks ``x``, ``h_prev`` or ``y`` (it is not a :class:`LeakyCache`).
        """
        xp = xp_of(cache.x)
        one = xp.ones((cache.x.shape[0], 1), dtype=cache.x.dtype)
        return self.alpha * self.phi.grad(cache.y), {"weight_ih": cache.x, "weight_hh": cache.h_prev,
                                                     "bias_ih": one, "bias_hh": one}

    def jacobian_pattern(self, params):
        """Structural nonzero patterns of J_s (H, H) and J_θ (H, P), NumPy bool (for SnAp).

        J_s[i, j] can be nonzero iff W_hh[i, j] ≠ 0, or i = j while α < 1 (the leak);
        J_θ[i, p] iff parameter p sits in row i of its matrix (or is entry i of a bias).

        Parameters
        ----------
        params : dict {name: array}
            The parameters (only weight_hh's zeros are read, on the host).

        Returns
        -------
        S : (H, H) numpy bool array
            Where ∂h_t/∂h_{t−1} can be nonzero.
        Theta : (H, P) numpy bool array
            Where ∂h_t/∂θ can be nonzero, columns in flatten order.

        Raises
        ------
        KeyError
            If ``params`` lacks ``weight_hh``.
        ValueError
            If α < 1 and ``weight_hh`` does not broadcast against (H, H).
        """
        W = to_numpy(params["weight_hh"]) != 0
        if self.alpha < 1.0:
            W = W | numpy.eye(self.hidden_size, dtype=bool)
        return W, row_pattern(self.param_shapes(), numpy.eye(self.hidden_size, dtype=bool))

