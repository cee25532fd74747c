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
from .._validate import check_number
from .activations import sigmoid
from .base import Cell

__all__ = ["Hopfield", "HopfieldCache"]


class HopfieldCache(NamedTuple):
    """What :meth:`Hopfield.step` keeps for its VJP, JVP and Jacobians.

    Attributes
    ----------
    x : (B, n_in) array
        The clamped input units.
    s_prev : (B, n_state) array
        The free units before the step, s_{t−1}.
    sig : (B, N) array
        σ(b u_{t−1}), u_{t−1} = [x, s_{t−1}]; σ' is read from it.
    """

    x: object
    s_prev: object
    sig: object


@dataclass(frozen=True)
class Hopfield(Cell):
    """Continuous Hopfield network (Hopfield 1984; Liao et al. 2018): ``input_size`` clamped, ``hidden_size`` + ``output_size`` free units.

    One Euler step of dh/dt = −h/a + W σ(b h) + l on the free units,
    s_t = (1 − a) s_{t−1} + W_s σ(b [x, s_{t−1}]).  Parameter ``U`` (N, N),
    N = input_size + hidden_size + output_size; the weights are
    W = (U + Uᵀ) ⊙ (1 − I) (module docstring).  The state s is
    (B, hidden_size + output_size); ``output(s)`` is its last ``output_size`` columns.

    Parameters
    ----------
    input_size : int
        n_in, the clamped input units, >= 1.
    hidden_size : int
        The free hidden units, >= 1.
    output_size : int
        The free output units a head reads, >= 1.
    a : float
        The Euler step's a (dimensionless): s keeps 1 − a of itself per step;
        1 (Liao et al. 2018) by default; finite and > 0.
    b : float
        The gain of σ(b u) (dimensionless); 0.5 (Liao et al. 2018) by default; finite.
    init_std : float
        Standard deviation of U at init; 1e-3 (Liao et al. 2018's code); finite and >= 0.

    Raises
    ------
    ValueError
        If ``input_size``, ``hidden_size`` or ``output_size`` is not a positive int, ``a`` is
        not a finite number > 0, ``b`` is not finite, or ``init_std`` is negative or not finite.
    TypeError
        If ``a``, ``b`` or ``init_std`` is not a real number (a bool is refused).
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
        check_number("a", self.a, low=0.0, low_open=True)    # a = 0: s never moves
        check_number("b", self.b)
        check_number("init_std", self.init_std, low=0.0)      # a standard deviation

    @property
    def n_units(self):
        """N, all units: clamped input, hidden, output."""
        return self.input_size + self.hidden_size + self.output_size

    @property
    def n_state(self):
        """Width of the state s: the free units, hidden + output."""
        return self.hidden_size + self.output_size

    @property
    def n_out(self):
        """Width of ``output(s)``: the output units."""
        return self.output_size

    def param_shapes(self):
        """The parameter's name and shape.

        Returns
        -------
        dict
            {'U': (N, N)}, N = :attr:`n_units`.

        Raises
        ------
        TypeError
            Only if called with arguments (it takes none); the sizes it reads
            were validated when the cell was made.
        """
        return {"U": (self.n_units, self.n_units)}

    def init(self, rng):
        """U ~ N(0, init_std²), init_std = 1e-3 by default as Liao et al. 2018's code.

        Parameters
        ----------
        rng : refnet.backend.Rng
            Source of the random draws; its dtype and backend are the parameter's.

        Returns
        -------
        dict
            {'U': (N, N) array}.

        Raises
        ------
        AttributeError
            If ``rng`` is not a :class:`refnet.backend.Rng` (it lacks ``normal``).
        """
        return {"U": rng.normal((self.n_units, self.n_units), self.init_std)}

    def weights(self, params):
        """The weights W = (U + Uᵀ) ⊙ (1 − I): symmetric, zero diagonal (a new array).

        Parameters
        ----------
        params : dict
            {'U': (N, N) array}.

        Returns
        -------
        (N, N) array
            W.

        Raises
        ------
        KeyError
            If ``params`` lacks U.
        ValueError
            If U is not square (from U + Uᵀ).
        IndexError
            If U is smaller than N × N.
        """
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
        """The output units, the part of the state a head reads.

        Parameters
        ----------
        s : (B, n_state) array
            The state [hidden, output].

        Returns
        -------
        (B, output_size) array
            s[:, hidden_size:] (a view).

        Raises
        ------
        IndexError
            If ``s`` is not 2-D.
        """
        return s[:, self.hidden_size:]

    def output_vjp(self, dy):
        """ds for a cotangent dy on :meth:`output`: zeros on the hidden units, dy on the output units.

        Parameters
        ----------
        dy : (B, output_size) array
            Cotangent of ``output(s)``.

        Returns
        -------
        (B, n_state) array
            [0, dy].

        Raises
        ------
        ValueError
            If ``dy`` is not 2-D (from the concatenation).
        """
        xp = xp_of(dy)
        return xp.concatenate([xp.zeros((dy.shape[0], self.hidden_size), dtype=dy.dtype), dy], axis=1)

    def step(self, params, s_prev, x, t=None):
        """One Euler step s_t = (1 − a) s_{t−1} + W_s σ(b [x, s_{t−1}]) (Liao et al. 2018, continuous Hopfield network).

        W_s = W[n_in:] are the free units' rows; the product is taken from U
        directly, without forming W.

        Parameters
        ----------
        params : dict
            {'U': (N, N) array}.
        s_prev : (B, n_state) array
            s_{t−1}, the free units.
        x : (B, n_in) array
            The clamped input units.
        t : int or None
            0-based index of x (steps); unused, the network is time-invariant.

        Returns
        -------
        s : (B, n_state) array
            s_t.
        cache : HopfieldCache
            What :meth:`step_vjp`, :meth:`step_jvp` and :meth:`jacobians` read.

        Raises
        ------
        KeyError
            If ``params`` lacks U.
        ValueError
            If the shapes of U, ``s_prev`` and ``x`` disagree (from the array
            product or the concatenation).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(s_prev, x)
        sig = sigmoid.fn(self.b * xp.concatenate([x, s_prev], axis=1))
        s = (1.0 - self.a) * s_prev + self._times_W_s_T(params["U"], sig)
        return s, HopfieldCache(x, s_prev, sig)

    def step_vjp(self, params, cache, ds):
        """VJP of :meth:`step`: back through the leak, the product with W_s and σ(b u); then fold dW into dU.

        du = (ds W_s) ⊙ b σ'(b u), ds_prev = (1 − a) ds + du[:, n_in:],
        dx = du[:, :n_in], dW_s = dsᵀ σ(b u) and dU = (dW + dWᵀ) ⊙ (1 − I), dW = [0; dW_s].

        Parameters
        ----------
        params : dict
            {'U': (N, N) array}.
        cache : HopfieldCache
            What :meth:`step` returned for this step.
        ds : (B, n_state) array
            Cotangent of s_t.

        Returns
        -------
        ds_prev : (B, n_state) array
            ∂/∂s_{t−1}.
        dparams : dict
            {'U': (N, N) array}, summed over the batch.
        dx : (B, n_in) array
            ∂/∂x.

        Raises
        ------
        KeyError
            If ``params`` lacks U.
        ValueError
            If the shape of ``ds`` disagrees with the cache's (from the array product).
        """
        du = self._times_W_s(params["U"], ds) * self.b * sigmoid.grad(cache.sig)   # ∂/∂u, (B, N)
        ds_prev = (1.0 - self.a) * ds + du[:, self.input_size:]
        return ds_prev, {"U": self._fold(ds.T @ cache.sig)}, du[:, :self.input_size]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of :meth:`step`: ds = (1 − a) ds_prev + dW_s σ + W_s (b σ' ⊙ du), du = [dx, ds_prev].

        dW_s is the free rows of dW = (dU + dUᵀ) ⊙ (1 − I) (W is linear in U).

        Parameters
        ----------
        params : dict
            {'U': (N, N) array}.
        cache : HopfieldCache
            What :meth:`step` returned for this step.
        ds_prev : (B, n_state) array or None
            Tangent of s_{t−1}; None for zero.
        dparams : dict or None
            {'U': (N, N) array}, the tangent of U shared by the batch; None for zero.
        dx : (B, n_in) array or None
            Tangent of x; None for zero.

        Returns
        -------
        (B, n_state) array
            Tangent of s_t.

        Raises
        ------
        KeyError
            If ``params`` or ``dparams`` lacks U.
        ValueError
            If a tangent's shape disagrees with the cache's (from the assignment
            or the array product).
        """
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
        """Immediate Jacobians J_s = ∂s_t/∂s_{t−1} and J_θ = ∂s_t/∂U in closed form.

        With D = b σ'(b s) (B, n_state):
        J_s[b] = (1 − a) I + W_ss diag(D[b]),  W_ss = W[n_in:, n_in:];
        J_θ[b, i, (k, l)] = (1 − δ_kl) (δ_{k, n_in+i} σ_l + δ_{l, n_in+i} σ_k), σ = σ(b u[b]).
        The (B, n, N, N) intermediate makes this O(B n N²) in memory.

        Parameters
        ----------
        params : dict
            {'U': (N, N) array}.
        cache : HopfieldCache
            What :meth:`step` returned for this step.

        Returns
        -------
        J_s : (B, n_state, n_state) array
            ∂s_t/∂s_{t−1}.
        J_theta : (B, n_state, N²) array
            ∂s_t/∂U, columns in U's C order (``flat_params``).

        Raises
        ------
        KeyError
            If ``params`` lacks U.
        ValueError
            If U is not (N, N) (from U + Uᵀ or broadcasting).
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
