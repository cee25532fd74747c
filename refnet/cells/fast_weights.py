"""Fast weights (Ba, Hinton, Mnih, Leibo & Ionescu 2016, Eqs. 1–3 with the layer norm of §3.1).

One transition, from h(t) and x(t) to h(t+1) (Ba et al. 2016, §3):

    A(t) = λ A(t−1) + η h(t) h(t)ᵀ,        A(0) = 0                        (Eq. 1)
    z = W h(t) + C x(t)
    h_0(t+1) = f(LN[z])
    h_{s+1}(t+1) = f(LN[z + A(t) h_s(t+1)]),   s = 0..S−1                  (Eq. 2)
    h(t+1) = h_S(t+1)

f = ReLU; LN is layer norm over the hidden units with a learnable gain and
bias (:mod:`refnet.cells.layer_norm`), shared by the S + 1 applications.
Mind the index: A(t) already holds h(t), the state being left, and the inner
loop of step t + 1 reads A(t).  In refnet's loop, ``step(params, s_prev, x_t,
t)`` is called with the 0-based index t of ``x[t]``, which is Ba et al.'s t.

Parameters (no PyTorch module exists; the names follow nn.RNN and nn.LayerNorm
so that the algorithms' checks and PyTorch ports find them): ``weight_hh`` = W
(n, n), ``weight_ih`` = C (n, I), ``ln_weight`` = gain (n,), ``ln_bias`` =
bias (n,).  Init: W = 0.05·I (Ba et al. 2016's experiments), C ~ U(−1/√I, 1/√I) (nn.Linear's
rule), gain 1, bias 0.

Two memory forms, equal to rounding on any trajectory from a zero memory:

- :class:`FastWeights` keeps A: state ``s = [h, vec(A)]`` (B, n + n²), A in C
  order (``A[i, j] = s[n + i·n + j]``); reading A h costs O(n²).
- :class:`FastWeightsAttention` never builds A (Eq. 3):

      A(t) h = η Σ_{τ=1..t} λ^{t−τ} h(τ) ⟨h(τ), h⟩,

  state ``s = [h(t), h(1), h(2), …, h(T_max)]`` (B, n·(1 + T_max)), a
  time-indexed history: slot τ holds h(τ) once step τ − 1 has written it and
  is zero before; step t reads slots 1..t and writes h(t+1) into slot t + 1.
  The memory of one sequence is O(T_max n) instead of O(n²), a read costs
  O(t n).  T_max = ``capacity``: steps t ≥ capacity are refused, and ``t`` must
  be passed (the algorithms pass it).  The slots of s_0 are never read
  (A(0) = 0), so their gradient is zero.

Under BPTT every state s_0..s_T is kept, so a whole sequence holds
T·(n + n²) numbers in the explicit form and T·n·(1 + T_max) in the attention
form: the attention form is the smaller one while T_max < n.
"""
import numpy
import math
import numbers
from dataclasses import dataclass, field
from typing import NamedTuple

from ..backend import xp_of
from .activations import relu
from .base import Cell, input_projection, summed_outer
from .layer_norm import EPS, LNCache, ln, ln_jvp, ln_vjp

__all__ = ["FastWeights", "FastWeightsAttention", "FastWeightsCache", "AttentionFused", "W_INIT_SCALE"]

W_INIT_SCALE = 0.05


class FastWeightsCache(NamedTuple):
    """What ``step`` of :class:`FastWeights` or :class:`FastWeightsAttention` keeps for its VJP and JVP.

    Attributes
    ----------
    x : (B, I) array
        x(t).
    h_prev : (B, n) array
        h(t), the state being left.
    memory : (B, n, n) or (B, t, n) array
        What A(t) h is read from: A(t) itself (explicit form), or the history
        h(1..t) (attention form).
    hs : tuple of S + 1 (B, n) arrays
        h_0(t+1), …, h_S(t+1); f' is read from them.
    lns : tuple of S + 1 LNCache
        The layer norms' caches (:mod:`refnet.cells.layer_norm`).
    t : int or None
        Ba et al.'s t (refnet's 0-based step index); the explicit form accepts None.
    """

    x: object
    h_prev: object
    memory: object
    hs: tuple
    lns: tuple
    t: int


def _check_real(name, value, low=-math.inf, high=math.inf):
    """TypeError unless ``value`` is a real number, ValueError unless it is finite and in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite real number in [{low}, {high}], got "
                        f"{type(value).__name__} {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a finite real number in [{low}, {high}], got {value!r}")


class AttentionFused(NamedTuple):
    """The trace of :meth:`FastWeightsAttention.fused_sequence`: O(T (S + 1) n) per sequence, no history per state.

    Attributes
    ----------
    x : (T, B, I) array
        The inputs x(0..T−1).
    h0 : (B, n) array
        h(0).
    hist : (B, T, n) array
        h(1..T): the history every read of the run reads from.
    inner : (T, S + 1, B, n) array
        inner[t, s] = h_s(t+1), s = 0..S; f' is read from them.
    a_hat : (T, S + 1, B, n) array
        The layer norms' normalised inputs.
    r : (T, S + 1, B, 1) array
        The layer norms' 1/√(σ² + ε).
    """

    x: object
    h0: object
    hist: object
    inner: object
    a_hat: object
    r: object


@dataclass(frozen=True)
class _FastWeightsCell(Cell):
    """The inner loop, its VJP and JVP, written once; the memory form supplies read and write."""

    input_size: int
    hidden_size: int
    lam: float = 0.95      # λ, decay rate of A
    eta: float = 0.5       # η, fast learning rate
    S: int = 1             # inner-loop steps
    ln_eps: float = EPS    # ε of the layer norm

    def __post_init__(self):
        super().__post_init__()
        _check_real("lam", self.lam, 0.0, 1.0)
        _check_real("eta", self.eta)
        _check_real("ln_eps", self.ln_eps, math.ulp(0.0))
        if isinstance(self.S, bool) or not isinstance(self.S, int) or self.S < 1:
            raise ValueError(f"S must be an int >= 1 (inner-loop steps), got {self.S!r}")

    def param_shapes(self):
        """The parameters' names and shapes (nn.RNN's and nn.LayerNorm's names).

        Returns
        -------
        dict
            {'weight_ih': (n, I) = C, 'weight_hh': (n, n) = W, 'ln_weight': (n,), 'ln_bias': (n,)}.

        Raises
        ------
        TypeError
            Only if called with arguments (it takes none); the sizes it reads
            were validated when the cell was made.
        """
        n, I = self.hidden_size, self.input_size
        return {"weight_ih": (n, I), "weight_hh": (n, n), "ln_weight": (n,), "ln_bias": (n,)}

    def init(self, rng):
        """W = 0.05·I (Ba et al. 2016's experiments), C ~ U(−1/√I, 1/√I) (nn.Linear's rule), LN gain 1 and bias 0.

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
            If ``rng`` is not a :class:`refnet.backend.Rng` (it lacks ``uniform`` or ``constant``).
        """
        n = self.hidden_size
        bound = self.input_size ** -0.5
        return {                                    # constants too in the rng's dtype (rng.constant)
            "weight_ih": rng.uniform((n, self.input_size), -bound, bound),
            "weight_hh": rng.constant(W_INIT_SCALE * numpy.eye(n)),
            "ln_weight": rng.constant(numpy.ones(n)),
            "ln_bias": rng.constant(numpy.zeros(n)),
        }

    def output(self, s):
        """h, the part of the state a head reads.

        Parameters
        ----------
        s : (B, n_state) array
            The state [h, memory].

        Returns
        -------
        (B, n) array
            s[:, :n] (a view).

        Raises
        ------
        IndexError
            If ``s`` is not 2-D.
        """
        return s[:, :self.hidden_size]

    def output_vjp(self, dy):
        """ds for a cotangent dy on :meth:`output`: dy on the h block, zeros on the memory.

        Parameters
        ----------
        dy : (B, n) array
            Cotangent of h.

        Returns
        -------
        (B, n_state) array
            [dy, 0].

        Raises
        ------
        ValueError
            If ``dy`` is not (B, n) (from the assignment).
        """
        ds = xp_of(dy).zeros((dy.shape[0], self.n_state), dtype=dy.dtype)
        ds[:, :self.hidden_size] = dy
        return ds

    def _ln_relu(self, params, a):
        """h = f(LN[a]), and the layer norm's cache."""
        y, cache = ln(a, params["ln_weight"], params["ln_bias"], self.ln_eps)
        return relu.fn(y), cache

    def step(self, params, s_prev, x, t=None):
        """One transition: h(t+1) from h(t), x(t) and A(t) by the S-step inner loop; then the memory takes h(t+1).

        z = W h(t) + C x(t), h_0(t+1) = f(LN[z]), h_{s+1}(t+1) = f(LN[z + A(t) h_s(t+1)])
        (Ba et al. 2016, Eq. 2), h(t+1) = h_S(t+1); the memory then becomes
        A(t+1) = λ A(t) + η h(t+1) h(t+1)ᵀ (Eq. 1), kept as A or as the history.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        s_prev : (B, n_state) array
            [h(t), memory holding A(t)].
        x : (B, I) array
            x(t).
        t : int or None
            Ba et al.'s t, refnet's 0-based step index; the attention form needs
            it (0 <= t < capacity), the explicit form ignores it.

        Returns
        -------
        s : (B, n_state) array
            [h(t+1), memory holding A(t+1)].
        cache : FastWeightsCache
            What :meth:`step_vjp` and :meth:`step_jvp` read.

        Raises
        ------
        TypeError
            Attention form: if ``t`` is not an int >= 0.  Either form: if NumPy
            arrays are mixed with device (CuPy) arrays.
        ValueError
            Attention form: if t >= capacity.  Either form: if the shapes of
            ``params``, ``s_prev`` and ``x`` disagree.
        KeyError
            If ``params`` lacks one of weight_ih, weight_hh, ln_weight, ln_bias.
        """
        h_prev, memory = self.read_memory(s_prev, t)
        z = h_prev @ params["weight_hh"].T + x @ params["weight_ih"].T
        h_s, ln_cache = self._ln_relu(params, z)
        hs, lns = [h_s], [ln_cache]
        for _ in range(self.S):
            h_s, ln_cache = self._ln_relu(params, z + self.read(memory, h_s, t))
            hs.append(h_s)
            lns.append(ln_cache)
        return self.write(s_prev, h_s, t), FastWeightsCache(x, h_prev, memory, tuple(hs), tuple(lns), t)

    def step_vjp(self, params, cache, ds):
        """VJP of :meth:`step`: back through the memory write, the S inner steps (to A(t) too) and h_0's layer norm.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        cache : FastWeightsCache
            What :meth:`step` returned for this step.
        ds : (B, n_state) array
            Cotangent of the new state [h(t+1), memory].

        Returns
        -------
        ds_prev : (B, n_state) array
            ∂/∂[h(t), memory holding A(t)].
        dparams : dict
            ∂/∂θ for every parameter, summed over the batch.
        dx : (B, I) array
            ∂/∂x(t).

        Raises
        ------
        KeyError
            If ``params`` lacks one of weight_ih, weight_hh, ln_weight.
        ValueError
            If the shape of ``ds`` disagrees with the cache's.
        """
        gain = params["ln_weight"]
        dh, ds_prev = self.write_vjp(cache, ds)
        # ds_prev's memory block holds the write's share; the reads add theirs in place.
        dmemory = self.memory_view(self.split_state(ds_prev)[1], cache.t)
        dz = dgain = dbias = 0.0
        for s in range(self.S, -1, -1):
            da, dgain_s, dbias_s = ln_vjp(cache.lns[s], gain, dh * relu.grad(cache.hs[s]))
            dz, dgain, dbias = dz + da, dgain + dgain_s, dbias + dbias_s
            if s > 0:                                      # a_s = z + A(t) h_{s−1}
                dh, dmemory_s = self.read_vjp(cache.memory, cache.hs[s - 1], da, cache.t)
                dmemory += dmemory_s
        dparams = {
            "weight_ih": dz.T @ cache.x,
            "weight_hh": dz.T @ cache.h_prev,
            "ln_weight": dgain,
            "ln_bias": dbias,
        }
        ds_prev[:, :self.hidden_size] = dz @ params["weight_hh"]
        return ds_prev, dparams, dz @ params["weight_ih"]

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        """JVP of :meth:`step`: tangents of z, of each h_s(t+1) and of the new memory.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of :meth:`param_shapes`.
        cache : FastWeightsCache
            What :meth:`step` returned for this step.
        ds_prev : (B, n_state) array or None
            Tangent of [h(t), memory]; None for zero.
        dparams : dict or None
            Tangent of every parameter, shared by the batch; None for zero.
        dx : (B, I) array or None
            Tangent of x(t); None for zero.

        Returns
        -------
        (B, n_state) array
            Tangent of the new state.

        Raises
        ------
        KeyError
            If ``params`` or ``dparams`` lacks a parameter the tangents need.
        ValueError
            If a tangent's shape disagrees with the cache's.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(cache.x)
        gain = params["ln_weight"]
        dh_prev, dM_prev = (None, None) if ds_prev is None else self.split_state(ds_prev)
        dgain = dbias = dmemory = None
        dz = xp.zeros_like(cache.hs[0])
        if dh_prev is not None:
            dz = dz + dh_prev @ params["weight_hh"].T
        if dx is not None:
            dz = dz + dx @ params["weight_ih"].T
        if dparams is not None:
            dz = dz + cache.h_prev @ dparams["weight_hh"].T + cache.x @ dparams["weight_ih"].T
            dgain, dbias = dparams["ln_weight"], dparams["ln_bias"]
        if dM_prev is not None:
            dmemory = self.memory_view(dM_prev, cache.t)
        dh = relu.grad(cache.hs[0]) * ln_jvp(cache.lns[0], gain, dz, dgain, dbias)
        for s in range(1, self.S + 1):
            da = dz + self.read_jvp(cache.memory, cache.hs[s - 1], dh, dmemory, cache.t)
            dh = relu.grad(cache.hs[s]) * ln_jvp(cache.lns[s], gain, da, dgain, dbias)
        return self.write_jvp(cache, dM_prev, dh)


@dataclass(frozen=True)
class FastWeights(_FastWeightsCell):
    """Fast weights (Ba et al. 2016, Eqs. 1–2) with the explicit n×n matrix A: state ``[h, vec(A)]`` (B, n + n²).

    A(t) = λ A(t−1) + η h(t) h(t)ᵀ is kept in the state, in C order
    (``A[i, j] = s[n + i·n + j]``); a read A h costs O(n²).  ``step``'s ``t``
    is not needed (it may be None).  Parameters and init: module docstring.

    Parameters
    ----------
    input_size : int
        I, the width of x(t), >= 1.
    hidden_size : int
        n, the width of h, >= 1.
    lam : float
        λ, the decay rate of A per step (dimensionless), in [0, 1]; 0.95 (Ba et al. 2016).
    eta : float
        η, the fast learning rate (dimensionless), finite; 0.5 (Ba et al. 2016).
    S : int
        Inner-loop steps of Eq. 2, >= 1; 1 (Ba et al. 2016).
    ln_eps : float
        ε of the layer norm, added to the variance (the input's units squared), > 0.

    Raises
    ------
    ValueError
        If ``input_size``, ``hidden_size`` or ``S`` is not a positive int,
        ``lam`` is not a finite real in [0, 1], ``eta`` is not a finite real, or
        ``ln_eps`` is not a finite real > 0.
    TypeError
        If ``lam``, ``eta`` or ``ln_eps`` is not a real number (a bool is refused).
    """

    @property
    def n_state(self):
        """Width of the state s = [h, vec(A)]: n + n²."""
        return self.hidden_size + self.hidden_size ** 2

    def split_state(self, s):
        """h and A as views of s (writing into them writes into s).

        Parameters
        ----------
        s : (B, n + n²) array
            A state [h, vec(A)] (or its cotangent or tangent).

        Returns
        -------
        h : (B, n) array
            s[:, :n].
        A : (B, n, n) array
            The fast-weight matrix, in C order.

        Raises
        ------
        ValueError
            If the width of ``s`` is not n + n² (from the reshape).
        """
        n = self.hidden_size
        return s[:, :n], s[:, n:].reshape(s.shape[0], n, n)

    def join_state(self, h, A):
        """The state s = [h, vec(A)], the inverse of :meth:`split_state` (a new array).

        Parameters
        ----------
        h : (B, n) array
            h.
        A : (B, n, n) array
            The fast-weight matrix.

        Returns
        -------
        (B, n + n²) array
            s.

        Raises
        ------
        ValueError
            If the batch sizes of ``h`` and ``A`` differ (from the concatenation).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(h, A)
        return xp.concatenate([h, A.reshape(A.shape[0], -1)], axis=1)

    def fast_weight_matrix(self, s, t=None):
        """A(t) held by the state s (a view).

        Parameters
        ----------
        s : (B, n + n²) array
            The state after step t − 1 (refnet's s_t).
        t : int or None
            Unused: the explicit form holds A in the state (kept for the
            signature :class:`FastWeightsAttention` needs).

        Returns
        -------
        (B, n, n) array
            A(t).

        Raises
        ------
        ValueError
            If the width of ``s`` is not n + n².
        """
        return self.split_state(s)[1]

    def read_memory(self, s_prev, t):
        """(h(t), A(t)) from s_prev: what the inner loop of step t reads.

        Parameters
        ----------
        s_prev : (B, n + n²) array
            The state being left.
        t : int or None
            Unused in the explicit form.

        Returns
        -------
        h : (B, n) array
            h(t).
        A : (B, n, n) array
            A(t) (a view).

        Raises
        ------
        ValueError
            If the width of ``s_prev`` is not n + n².
        """
        return self.split_state(s_prev)

    def memory_view(self, M, t):
        """The part of a memory cotangent (or tangent) that reads reach: all of A.

        Parameters
        ----------
        M : (B, n, n) array
            The A block of a state cotangent or tangent.
        t : int or None
            Unused in the explicit form.

        Returns
        -------
        (B, n, n) array
            ``M`` itself.

        Raises
        ------
        TypeError
            Only if called with the wrong number of arguments; nothing is computed.
        """
        return M

    def read(self, A, h, t):
        """A(t) h, the read of Eq. 2.

        Parameters
        ----------
        A : (B, n, n) array
            A(t).
        h : (B, n) array
            The inner iterate h_s(t+1).
        t : int or None
            Unused in the explicit form.

        Returns
        -------
        (B, n) array
            A(t) h per example.

        Raises
        ------
        ValueError
            If the shapes of ``A`` and ``h`` disagree (from the array product).
        """
        return (A @ h[:, :, None])[:, :, 0]

    def read_vjp(self, A, h, dr, t):
        """Adjoints of r = A h: ∂/∂h = Aᵀ dr and ∂/∂A = dr hᵀ, per example.

        Parameters
        ----------
        A : (B, n, n) array
            A(t).
        h : (B, n) array
            The iterate that was read with.
        dr : (B, n) array
            Cotangent of r.
        t : int or None
            Unused in the explicit form.

        Returns
        -------
        dh : (B, n) array
            Aᵀ dr.
        dA : (B, n, n) array
            dr hᵀ.

        Raises
        ------
        ValueError
            If the shapes disagree (from the array product).
        """
        return (dr[:, None, :] @ A)[:, 0, :], dr[:, :, None] * h[:, None, :]

    def read_jvp(self, A, h, dh, dA, t):
        """Tangent of r = A h: dr = A dh + dA h.

        Parameters
        ----------
        A : (B, n, n) array
            A(t).
        h : (B, n) array
            The iterate that was read with.
        dh : (B, n) array
            Tangent of h.
        dA : (B, n, n) array or None
            Tangent of A(t); None for zero.
        t : int or None
            Unused in the explicit form.

        Returns
        -------
        (B, n) array
            dr.

        Raises
        ------
        ValueError
            If the shapes disagree (from the array product).
        """
        dr = self.read(A, dh, t)
        return dr if dA is None else dr + self.read(dA, h, t)

    def write(self, s_prev, h, t):
        """The new state s = [h(t+1), vec(λ A(t) + η h(t+1) h(t+1)ᵀ)] (Ba et al. 2016, Eq. 1, one step on).

        Built in one new array (``s_prev`` is not modified).

        Parameters
        ----------
        s_prev : (B, n + n²) array
            The state being left, holding A(t).
        h : (B, n) array
            h(t+1), the inner loop's result.
        t : int or None
            Unused in the explicit form.

        Returns
        -------
        (B, n + n²) array
            s.

        Raises
        ------
        ValueError
            If the shapes of ``s_prev`` and ``h`` disagree.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        s = xp_of(s_prev, h).empty_like(s_prev)
        h_new, A = self.split_state(s)
        h_new[...] = h
        xp_of(h).multiply(self.split_state(s_prev)[1], self.lam, out=A)
        A += (self.eta * h)[:, :, None] * h[:, None, :]
        return s

    def write_vjp(self, cache, ds):
        """VJP of :meth:`write`: from ds = [dh, vec(dA)], ∂/∂h(t+1) = dh + η (dA + dAᵀ) h(t+1) and the A block of ds_prev, λ dA.

        Parameters
        ----------
        cache : FastWeightsCache
            What ``step`` returned; h(t+1) = ``cache.hs[-1]``.
        ds : (B, n + n²) array
            Cotangent of the new state.

        Returns
        -------
        dh : (B, n) array
            ∂/∂h(t+1) through both blocks of the write.
        ds_prev : (B, n + n²) array
            A new array whose A block is λ dA; its h block is uninitialised,
            left for the caller to write.

        Raises
        ------
        ValueError
            If the width of ``ds`` is not n + n², or its batch disagrees with the cache's.
        """
        xp = xp_of(ds)
        dh, dA = self.split_state(ds)
        h = cache.hs[-1]
        ds_prev = xp.empty_like(ds)
        xp.multiply(dA, self.lam, out=self.split_state(ds_prev)[1])
        dA_h = self.read(dA, h, cache.t) + (h[:, None, :] @ dA)[:, 0, :]     # (dA + dAᵀ) h
        return dh + self.eta * dA_h, ds_prev

    def write_jvp(self, cache, dA_prev, dh):
        """JVP of :meth:`write`: ds = [dh, vec(λ dA(t) + η (dh hᵀ + h dhᵀ))], h = h(t+1).

        Parameters
        ----------
        cache : FastWeightsCache
            What ``step`` returned; h(t+1) = ``cache.hs[-1]``.
        dA_prev : (B, n, n) array or None
            Tangent of A(t); None for zero.
        dh : (B, n) array
            Tangent of h(t+1).

        Returns
        -------
        (B, n + n²) array
            Tangent of the new state.

        Raises
        ------
        ValueError
            If the shapes of ``dh`` and ``dA_prev`` disagree with the cache's.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        h = cache.hs[-1]
        dA = self.eta * (dh[:, :, None] * h[:, None, :] + h[:, :, None] * dh[:, None, :])
        if dA_prev is not None:
            dA = dA + self.lam * dA_prev
        return self.join_state(dh, dA)


@dataclass(frozen=True)
class FastWeightsAttention(_FastWeightsCell):
    """Fast weights in the attention form (Ba et al. 2016, Eq. 3): state ``[h(t), h(1..capacity)]`` (B, n (1 + capacity)).

    A(t) h = η Σ_{τ=1..t} λ^{t−τ} h(τ) ⟨h(τ), h⟩ is read from a time-indexed
    history and A is never built: O(T_max n) memory per sequence instead of
    O(n²).  ``step`` needs ``t`` and refuses t >= capacity.  Parameters and
    init: module docstring.

    Parameters
    ----------
    input_size : int
        I, the width of x(t), >= 1.
    hidden_size : int
        n, the width of h, >= 1.
    lam : float
        λ, the decay rate of A per step (dimensionless), in [0, 1]; 0.95 (Ba et al. 2016).
    eta : float
        η, the fast learning rate (dimensionless), finite; 0.5 (Ba et al. 2016).
    S : int
        Inner-loop steps of Eq. 2, >= 1; 1 (Ba et al. 2016).
    ln_eps : float
        ε of the layer norm, added to the variance (the input's units squared), > 0.
    capacity : int
        T_max (steps), the longest sequence this cell can run, >= 1; keyword-only.

    Raises
    ------
    ValueError
        If ``input_size``, ``hidden_size``, ``S`` or ``capacity`` is not a
        positive int, ``lam`` is not a finite real in [0, 1], ``eta`` is not a
        finite real, or ``ln_eps`` is not a finite real > 0.
    TypeError
        If ``capacity`` is not given (it has no default).
    """

    capacity: int = field(kw_only=True)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 1:
            raise ValueError(f"capacity must be an int >= 1 (the longest sequence), got {self.capacity!r}")

    @property
    def n_state(self):
        """Width of the state s = [h(t), h(1..capacity)]: n (1 + capacity)."""
        return self.hidden_size * (1 + self.capacity)

    def split_state(self, s):
        """h and the history as views of s; history[:, τ−1] is h(τ).

        Parameters
        ----------
        s : (B, n (1 + capacity)) array
            A state (or its cotangent or tangent).

        Returns
        -------
        h : (B, n) array
            s[:, :n].
        history : (B, capacity, n) array
            The slots h(1..capacity).

        Raises
        ------
        ValueError
            If the width of ``s`` is not n (1 + capacity) (from the reshape).
        """
        n = self.hidden_size
        return s[:, :n], s[:, n:].reshape(s.shape[0], self.capacity, n)

    def join_state(self, h, history):
        """The state s = [h, h(1), …, h(capacity)], the inverse of :meth:`split_state` (a new array).

        Parameters
        ----------
        h : (B, n) array
            h(t).
        history : (B, capacity, n) array
            The slots h(1..capacity).

        Returns
        -------
        (B, n (1 + capacity)) array
            s.

        Raises
        ------
        ValueError
            If the batch sizes of ``h`` and ``history`` differ (from the concatenation).
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(h, history)
        return xp.concatenate([h, history.reshape(history.shape[0], -1)], axis=1)

    def decay_weights(self, t, like):
        """The read's weights w_τ = η λ^{t−τ} for τ = 1..t (Ba et al. 2016, Eq. 3).

        Parameters
        ----------
        t : int
            The step index (Ba et al.'s t), >= 0; t = 0 gives no weights.
        like : array
            Gives the dtype and backend (NumPy or CuPy).

        Returns
        -------
        (t,) array
            w, oldest slot first.

        Raises
        ------
        AttributeError
            If ``like`` has no ``dtype`` (not an array).
        TypeError
            If ``t`` is not a number.
        """
        xp = xp_of(like)
        return self.eta * self.lam ** xp.arange(t - 1, -1, -1, dtype=like.dtype)

    def fast_weight_matrix(self, s, t):
        """A(t) = η Σ_{τ=1..t} λ^{t−τ} h(τ) h(τ)ᵀ, built from the history of s (Ba et al. 2016, Eqs. 1 and 3).

        For tests and inspection only: O(B n² t), the cost this form avoids.

        Parameters
        ----------
        s : (B, n (1 + capacity)) array
            The state after step t − 1 (refnet's s_t).
        t : int
            The step index, 0 <= t <= capacity: slots 1..t are read.

        Returns
        -------
        (B, n, n) array
            A(t) (zeros for t = 0).

        Raises
        ------
        ValueError
            If the width of ``s`` is not n (1 + capacity).
        TypeError
            If ``t`` is not an int (from the slice or the weights).
        """
        H = self.split_state(s)[1][:, :t]
        return (H.transpose(0, 2, 1) * self.decay_weights(t, s)) @ H

    def read_memory(self, s_prev, t):
        """(h(t), history h(1..t)) from s_prev: what the inner loop of step t reads.

        Parameters
        ----------
        s_prev : (B, n (1 + capacity)) array
            The state being left.
        t : int
            The step index, 0 <= t < capacity.

        Returns
        -------
        h : (B, n) array
            h(t).
        history : (B, t, n) array
            h(1..t) (a view).

        Raises
        ------
        TypeError
            If ``t`` is not an int >= 0 (None included: the attention form needs it).
        ValueError
            If t >= capacity, or the width of ``s_prev`` is not n (1 + capacity).
        """
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise TypeError(f"t must be the step's 0-based index (an int >= 0) for the attention "
                            f"form, got {t!r}")
        if t >= self.capacity:
            raise ValueError(f"t must be < capacity = {self.capacity} (the history holds h(1..capacity)), "
                             f"got t = {t}; make the cell with capacity >= the sequence length")
        h, history = self.split_state(s_prev)
        return h, history[:, :t]

    def memory_view(self, M, t):
        """The slots 1..t of a history cotangent or tangent: those the reads of step t reach.

        Parameters
        ----------
        M : (B, capacity, n) array
            The history block of a state cotangent or tangent.
        t : int
            The step index.

        Returns
        -------
        (B, t, n) array
            M[:, :t] (a view).

        Raises
        ------
        TypeError
            If ``t`` is not an int (from the slice).
        """
        return M[:, :t]

    def read(self, H, h, t):
        """A(t) h = η Σ_τ λ^{t−τ} h(τ) ⟨h(τ), h⟩ (Ba et al. 2016, Eq. 3), from the history, without A.

        Parameters
        ----------
        H : (B, t, n) array
            The history h(1..t).
        h : (B, n) array
            The inner iterate h_s(t+1).
        t : int
            The step index (the length of ``H``).

        Returns
        -------
        (B, n) array
            A(t) h per example.

        Raises
        ------
        ValueError
            If the shapes of ``H`` and ``h`` disagree, or ``H`` does not hold t slots.
        """
        scores = self.decay_weights(t, h) * (H @ h[:, :, None])[:, :, 0]      # (B, t)
        return (scores[:, None, :] @ H)[:, 0, :]

    def read_vjp(self, H, h, dr, t):
        """Adjoints of r = Hᵀ diag(w) H h, w = η λ^{t−τ} (Eq. 3).

        ∂/∂h = Hᵀ diag(w) H dr (the map is symmetric);
        ∂/∂h(τ) = w_τ (⟨h(τ), h⟩ dr + ⟨h(τ), dr⟩ h).

        Parameters
        ----------
        H : (B, t, n) array
            The history h(1..t).
        h : (B, n) array
            The iterate that was read with.
        dr : (B, n) array
            Cotangent of r.
        t : int
            The step index.

        Returns
        -------
        dh : (B, n) array
            ∂/∂h.
        dH : (B, t, n) array
            ∂/∂h(τ), τ = 1..t.

        Raises
        ------
        ValueError
            If the shapes disagree, or ``H`` does not hold t slots.
        """
        w = self.decay_weights(t, h)
        scores = w * (H @ h[:, :, None])[:, :, 0]
        dscores = w * (H @ dr[:, :, None])[:, :, 0]
        dH = scores[:, :, None] * dr[:, None, :] + dscores[:, :, None] * h[:, None, :]
        return (dscores[:, None, :] @ H)[:, 0, :], dH

    def read_jvp(self, H, h, dh, dH, t):
        """Tangent of the read: dr = A(t) dh + Σ_τ w_τ (dh(τ) ⟨h(τ), h⟩ + h(τ) ⟨dh(τ), h⟩).

        Parameters
        ----------
        H : (B, t, n) array
            The history h(1..t).
        h : (B, n) array
            The iterate that was read with.
        dh : (B, n) array
            Tangent of h.
        dH : (B, t, n) array or None
            Tangent of the history; None for zero.
        t : int
            The step index.

        Returns
        -------
        (B, n) array
            dr.

        Raises
        ------
        ValueError
            If the shapes disagree, or ``H`` does not hold t slots.
        """
        dr = self.read(H, dh, t)
        if dH is None:
            return dr
        w = self.decay_weights(t, h)
        scores = w * (H @ h[:, :, None])[:, :, 0]
        dscores = w * (dH @ h[:, :, None])[:, :, 0]
        return dr + (scores[:, None, :] @ dH)[:, 0, :] + (dscores[:, None, :] @ H)[:, 0, :]

    def write(self, s_prev, h, t):
        """The new state s = [h(t+1), history with slot t + 1 set to h(t+1)] (a new array).

        Parameters
        ----------
        s_prev : (B, n (1 + capacity)) array
            The state being left (not modified).
        h : (B, n) array
            h(t+1), the inner loop's result.
        t : int
            The step index, 0 <= t < capacity.

        Returns
        -------
        (B, n (1 + capacity)) array
            s.

        Raises
        ------
        IndexError
            If t >= capacity.
        ValueError
            If the shapes of ``s_prev`` and ``h`` disagree.
        """
        history = self.split_state(s_prev)[1].copy()
        history[:, t] = h
        return self.join_state(h, history)

    def write_vjp(self, cache, ds):
        """VJP of :meth:`write`: from ds = [dh, dhistory], ∂/∂h(t+1) = dh + dslot_{t+1} and ds_prev.

        Parameters
        ----------
        cache : FastWeightsCache
            What ``step`` returned; ``cache.t`` names the written slot.
        ds : (B, n (1 + capacity)) array
            Cotangent of the new state.

        Returns
        -------
        dh : (B, n) array
            ∂/∂h(t+1) through both blocks of the write.
        ds_prev : (B, n (1 + capacity)) array
            A copy of ``ds`` whose slot t + 1 is zeroed, as the write overwrites
            it; its h block still holds ``ds``'s, left for the caller to overwrite.

        Raises
        ------
        ValueError
            If the width of ``ds`` is not n (1 + capacity).
        """
        dh, dhistory = self.split_state(ds)
        ds_prev = ds.copy()
        dhistory_prev = self.split_state(ds_prev)[1]
        dhistory_prev[:, cache.t] = 0.0
        return dh + dhistory[:, cache.t], ds_prev

    def write_jvp(self, cache, dhistory_prev, dh):
        """JVP of :meth:`write`: ds = [dh, dhistory with slot t + 1 set to dh].

        Parameters
        ----------
        cache : FastWeightsCache
            What ``step`` returned; ``cache.t`` names the written slot.
        dhistory_prev : (B, capacity, n) array or None
            Tangent of the history being left; None for zero.
        dh : (B, n) array
            Tangent of h(t+1).

        Returns
        -------
        (B, n (1 + capacity)) array
            Tangent of the new state.

        Raises
        ------
        ValueError
            If the shapes of ``dh`` and ``dhistory_prev`` disagree.
        """
        xp = xp_of(dh)
        B, n = dh.shape
        if dhistory_prev is None:
            dhistory = xp.zeros((B, self.capacity, n), dtype=dh.dtype)
        else:
            dhistory = dhistory_prev.copy()
        dhistory[:, cache.t] = dh
        return self.join_state(dh, dhistory)

    def fused_sequence(self, params, x, s0):
        """The whole run in the attention form (Ba et al. 2016, Eqs. 2–3), ``Cell.fused_sequence``.

        Unlike the per-step path, whose every state carries the history
        (T·n·(1 + T_max) numbers kept under BPTT), the run keeps h(1..T) once
        (B, T, n) and the inner loop's layer-norm caches: O(T (S + 1) n) per
        sequence.  x(t) Cᵀ for all t is one GEMM over the T·B rows; the reads
        are the cell's own :meth:`read` on the shared history.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of ``param_shapes``.
        x : (T, B, I) array
            Inputs; x[t] is Ba et al.'s x(t).
        s0 : (B, n (1 + capacity)) array
            The initial state; only its h block and its slots beyond T are used
            (slots 1..T are written before any read).

        Returns
        -------
        outputs : (T, B, n) array
            h(1..T).
        s_T : (B, n (1 + capacity)) array
            The final state, its slots 1..T holding h(1..T).
        trace : AttentionFused
            What :meth:`fused_sequence_vjp` reads.

        Raises
        ------
        ValueError
            If T > capacity (the state cannot hold the history), ``x`` is not
            3-D, or the shapes of ``x``, ``s0`` and ``params`` disagree.
        KeyError
            If ``params`` lacks one of weight_ih, weight_hh, ln_weight, ln_bias.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(x, s0)
        T, B, _ = x.shape
        n, S = self.hidden_size, self.S
        if T > self.capacity:
            raise ValueError(f"x must have at most capacity = {self.capacity} steps (the history holds "
                             f"h(1..capacity)), got T = {T}; make the cell with capacity >= the sequence length")
        W = params["weight_hh"]
        XC = input_projection(x, params["weight_ih"], None)
        h0 = s0[:, :n].copy()
        hist = xp.empty((B, T, n), dtype=x.dtype)
        inner = xp.empty((T, S + 1, B, n), dtype=x.dtype)
        a_hat = xp.empty((T, S + 1, B, n), dtype=x.dtype)
        r = xp.empty((T, S + 1, B, 1), dtype=x.dtype)
        h_prev = h0
        for t in range(T):
            z = h_prev @ W.T + XC[t]
            a = z
            for s in range(S + 1):
                if s > 0:
                    a = z + self.read(hist[:, :t], inner[t, s - 1], t)
                h_s, cache = self._ln_relu(params, a)
                inner[t, s], a_hat[t, s], r[t, s] = h_s, cache.a_hat, cache.r
            hist[:, t] = inner[t, S]
            h_prev = hist[:, t]
        s_T = s0.copy()
        s_T[:, :n] = hist[:, T - 1]
        self.split_state(s_T)[1][:, :T] = hist
        return hist.transpose(1, 0, 2), s_T, AttentionFused(x, h0, hist, inner, a_hat, r)

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """Back through steps start+1..start+n (``Cell.fused_sequence_vjp``).

        The cotangent of h(τ) gathers its three uses: the h block of the next
        state (through W), the output, and every later read of the history
        (Eq. 3), accumulated in one (B, start + n, n) array instead of a
        history cotangent per state.  dW, dC and dx are one GEMM each over the
        window's n·B rows.  ``ds_start``'s history block holds the slots the
        window's reads and ``ds_last`` reach (1..start), zero for the slots
        the window writes, and ``ds_last``'s own beyond them.

        Parameters
        ----------
        params : dict
            {name: array} with the shapes of ``param_shapes``.
        trace : AttentionFused
            What :meth:`fused_sequence` returned.
        dout : (n_steps, B, n) array
            Cotangents of the outputs h(t) for t = start+1..start+n_steps.
        ds_last : (B, n (1 + capacity)) array
            Cotangent of the state s_{start+n_steps} from beyond the window.
        start : int
            The window starts from s_start (steps, 0: s_0); start + n_steps <= T.

        Returns
        -------
        ds_start : (B, n (1 + capacity)) array
            ∂/∂s_start.
        dparams : dict
            ∂/∂θ for every parameter, summed over the window's steps and the batch.
        dx : (n_steps, B, I) array
            ∂/∂x for the window's steps.

        Raises
        ------
        ValueError
            If ``dout`` is not 3-D, or its shape or that of ``ds_last``
            disagrees with the trace's.
        IndexError
            If start + n_steps > T (the window leaves the trace).
        KeyError
            If ``params`` lacks one of weight_ih, weight_hh, ln_weight.
        TypeError
            If NumPy arrays are mixed with device (CuPy) arrays.
        """
        xp = xp_of(dout, ds_last)
        n_steps, B, n = dout.shape
        stop = start + n_steps
        W, gain = params["weight_hh"], params["ln_weight"]
        dh_last, dhist_last = self.split_state(ds_last)
        acc = dhist_last[:, :stop].copy()          # ∂/∂h(τ), τ = 1..stop, through the history slots
        dZ = xp.empty((n_steps, B, n), dtype=dout.dtype)
        dgain = xp.zeros_like(gain)
        dbias = xp.zeros_like(gain)
        dh_next = dh_last
        for j in range(n_steps - 1, -1, -1):
            t = start + j
            dh = dh_next + dout[j] + acc[:, t]
            dz = 0.0
            for s in range(self.S, -1, -1):
                da, dgain_s, dbias_s = ln_vjp(LNCache(trace.a_hat[t, s], trace.r[t, s]), gain,
                                              dh * relu.grad(trace.inner[t, s]))
                dz, dgain, dbias = dz + da, dgain + dgain_s, dbias + dbias_s
                if s > 0:
                    dh, dH = self.read_vjp(trace.hist[:, :t], trace.inner[t, s - 1], da, t)
                    acc[:, :t] += dH
            dZ[j] = dz
            dh_next = dz @ W
        h_prev = xp.concatenate([trace.h0[None], trace.hist[:, :stop - 1].transpose(1, 0, 2)])[start:]
        x = trace.x[start:stop]
        dparams = {"weight_ih": summed_outer(dZ, x), "weight_hh": summed_outer(dZ, h_prev),
                   "ln_weight": dgain, "ln_bias": dbias}
        ds_start = xp.empty_like(ds_last)
        ds_start[:, :n] = dh_next
        dhist = self.split_state(ds_start)[1]
        dhist[:, :start] = acc[:, :start]
        dhist[:, start:stop] = 0.0
        dhist[:, stop:] = dhist_last[:, stop:]
        dx = (dZ.reshape(n_steps * B, n) @ params["weight_ih"]).reshape(n_steps, B, x.shape[2])
        return ds_start, dparams, dx
