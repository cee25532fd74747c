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
from .._validate import check_number
from .activations import ACTIVATIONS
from .base import Cell

__all__ = ["ERNN", "ERNNCache"]


class ERNNCache(NamedTuple):
    """What :meth:`ERNN.step` keeps for its VJP and JVP: the K inner iterates of one time step.

    Attributes
    ----------
    x : (B, I) array
        The input x_t.
    h_prev : (B, H) array
        h_{t−1} = h^(0).
    h_in : tuple of K (B, H) arrays
        h^(k−1), the input of inner iteration k = 1..K.
    a : tuple of K (B, H) arrays
        a^(k) = V h^(k−1) + W x_t + b, which (I + U) multiplies (Zhang et al. 2019, Eq. 12).
    phi : tuple of K (B, H) arrays
        φ^(k) = σ((I + U) a^(k)); σ' is read from it.
    eta : (K,) array
        η_t, the row of η this step used.
    t : int or None
        The row's index in a (T, K) η; None for a (K,) η.
    """

    x: object
    h_prev: object
    h_in: tuple
    a: tuple
    phi: tuple
    eta: object
    t: Optional[int]


@dataclass(frozen=True)
class ERNN(Cell):
    """ERNN cell (Zhang et al. 2019, Eqs. 9, 11, 12): K inexact-Newton iterations towards h = φ(h, h_{t−1}, x_t).

    The state is h (B, H); the equations and parameters are in the module
    docstring.

    Parameters
    ----------
    input_size : int
        I, the width of x_t, >= 1.
    hidden_size : int
        H, the width of h, >= 1.
    K : int
        Inner iterations per time step, >= 1.
    nonlinearity : {'relu', 'tanh'}
        σ; 'relu' (default) as the paper's experiments.
    sequence_length : int or None
        T (steps), >= 1, for a per-step η of shape (T, K) (η_t^(k) of Eq. 9);
        None (default) for one η of shape (K,) shared by every step.
        (Not ``steps``: that name is the cell contract's k-step method,
        :data:`refnet.cells.base.CONTRACT_NAMES`.)
    eta_init : float
        Initial value of every η (dimensionless step size), 1e-2 as the paper's §4.

    Raises
    ------
    ValueError
        If ``input_size`` or ``hidden_size`` is not a positive int, ``K`` is
        not a positive int, ``sequence_length`` is neither None nor a positive
        int, ``nonlinearity`` is not 'relu' or 'tanh', or ``eta_init`` is not
        finite.
    TypeError
        If ``eta_init`` is not a real number (a bool is refused).
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
        check_number("eta_init", self.eta_init)

    @property
    def sigma(self):
        """σ, the activation (``fn`` and ``grad`` read from the output) named by ``nonlinearity``."""
        return ACTIVATIONS[self.nonlinearity]

    def param_shapes(self):
        """The parameters' names and shapes.

        Returns
        -------
        dict
            {'W': (H, I), 'V': (H, H), 'U': (H, H), 'b': (H,), 'eta': (K,) or (T, K)}.

        Raises
        ------
        TypeError
            Only if called with arguments (it takes none); the sizes it reads
            were validated when the cell was made.
        """
        H, I = self.hidden_size, self.input_size
        eta = (self.K,) if self.sequence_length is None else (self.sequence_length, self.K)
        return {"W": (H, I), "V": (H, H), "U": (H, H), "b": (H,), "eta": eta}

    def init(self, rng):
        """Initial parameters: W, V ~ 0.1·N(0, 1); U = 0; b = 1; η = ``eta_init`` (module docstring).

        U = 0 makes the cell start as a FastRNN when K = 1 (Zhang et al. 2019, end of §3.4).

        Parameters
        ----------
        rng : refnet.backend.Rng
            Source of the random draws; its dtype and backend are the parameters'.

        Returns
        -------
        dict
            {name: array} with the shapes of :meth:`param_shapes`.

        Raises
        ------
        AttributeError
            If ``rng`` is not a :class:`refnet.backend.Rng` (it lacks ``normal`` or ``constant``).
        """
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
        """One time step: K inner iterations h^(k) = h^(k−1) + η_t^(k) [σ((I + U)(V h^(k−1) + W x_t + b)) − h^(k−1)].

        Zhang et al. 2019, Eq. 9 (the inexact Newton step of Eq. 7) with φ of
        Eq. 12 and (I − U)^{-1} ≈ I + U (Eq. 11); h^(0) = h_{t−1}, h_t = h^(K).

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        s_prev : (B, H) array
            h_{t−1}.
        x : (B, I) array
            x_t.
        t : int or None
            0-based index of x_t (steps); picks the row of a (T, K) η, ignored
            for a (K,) η.

        Returns
        -------
        h : (B, H) array
            h_t = h^(K).
        cache : ERNNCache
            The inner iterates :meth:`step_vjp` and :meth:`step_jvp` read.

        Raises
        ------
        ValueError
            If η is (T, K) and ``t`` is None or outside [0, T); or if the
            shapes of ``params``, ``s_prev`` and ``x`` disagree (from the array product).
        IndexError
            If η is (T, K) and ``t`` is a non-integer number inside [0, T).
        KeyError
            If ``params`` lacks one of W, V, U, b, eta.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
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
        """VJP of :meth:`step`: back through the K inner iterations, last first (Eq. 9, then Eq. 12's φ).

        Per iteration, with dg = η^(k) dh ⊙ σ'(g^(k)) and da = dg (I + U):
        dU += dgᵀ a^(k), dV += daᵀ h^(k−1), dη^(k) = Σ dh ⊙ (φ^(k) − h^(k−1)),
        dh ← (1 − η^(k)) dh + da V; W and b collect Σ_k da (their product is shared).

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        cache : ERNNCache
            What :meth:`step` returned for this step.
        ds : (B, H) array
            Cotangent of h_t.

        Returns
        -------
        ds_prev : (B, H) array
            ∂/∂h_{t−1}.
        dparams : dict
            ∂/∂θ for every parameter, summed over the batch; a (T, K) η gets
            zeros except row t.
        dx : (B, I) array
            ∂/∂x_t.

        Raises
        ------
        KeyError
            If ``params`` lacks W, V or U (or eta, for a (T, K) η).
        ValueError
            If the shape of ``ds`` disagrees with the cache's (from the array product).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
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
        """JVP of :meth:`step`: the tangent of every inner iterate h^(k) in turn.

        dh^(k) = dh^(k−1) + η^(k) (σ'(g^(k)) ⊙ dg^(k) − dh^(k−1)) + dη^(k) (φ^(k) − h^(k−1)),
        dg^(k) = (I + U) da^(k) + dU a^(k), da^(k) = V dh^(k−1) + dV h^(k−1) + W dx + dW x + db.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        cache : ERNNCache
            What :meth:`step` returned for this step.
        ds_prev : (B, H) array or None
            Tangent of h_{t−1}; None for zero.
        dparams : dict or None
            Tangent of every parameter (shapes of :meth:`param_shapes`), shared by
            the batch; None for zero.
        dx : (B, I) array or None
            Tangent of x_t; None for zero.

        Returns
        -------
        (B, H) array
            Tangent of h_t.

        Raises
        ------
        KeyError
            If ``params`` or ``dparams`` lacks one of W, V, U, b, eta.
        ValueError
            If a tangent's shape disagrees with the cache's (from the array product).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
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
