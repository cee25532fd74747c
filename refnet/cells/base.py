"""The cell contract and the affine pieces all PyTorch cells share.

A cell is an immutable description (sizes, nonlinearity); parameters, states
and caches are passed in and out explicitly, so nothing depends on call order.

State ``s`` is one array (B, n_state).  One transition is
``s_t = f(θ, s_{t-1}, x_t)``:

- ``step(params, s_prev, x, t=None) -> (s, cache)``
- ``step_vjp(params, cache, ds) -> (ds_prev, dparams, dx)``      (uᵀ J)
- ``step_jvp(params, cache, ds_prev, dparams, dx) -> ds``         (J v)
- ``jacobians(params, cache) -> (J_s (B, n, n), J_theta (B, n, P))``
- ``output(s)`` the part a head reads, and ``output_vjp(dy) -> ds``.
- ``steps(params, s0, xs, t) -> (states, trace)`` and ``steps_vjp(params, trace, ds)
  -> (ds0, dparams)``: k transitions and the VJP back through them (defaults
  loop over ``step`` and ``step_vjp``; online TBPTT(1, k) calls them every step).
- Optional, the fused whole-sequence pair (:data:`FUSED_SEQUENCE`):
  ``fused_sequence(params, x, s0) -> (outputs, s_T, trace)`` and
  ``fused_sequence_vjp(params, trace, dout, ds_last, start=0) -> (ds_start, dparams, dx)``.
  The default refuses ("not supported"); :func:`supports_fused_sequence` says
  whether a cell has its own, and the sequence algorithms
  (:mod:`refnet.algorithms.fused`) use it then.

Optional capabilities (:data:`OPTIONAL_CAPABILITIES`; an algorithm that needs one refuses,
naming the cell, where it is absent): ``steps``/``steps_vjp`` (defaults here loop over the
step); ``kronecker_factors(params, cache) -> (D, {name: ĥ})`` with ``kronecker_params``
naming the factored parameters (default: all) for KF-RTRL, RFLO and SnAp's factored path;
``state_jacobian(params, cache) -> J_s`` alone (the solvers; ``jacobians``' J_s otherwise);
``jacobian_pattern(params) -> (S, Θ)``, the structural nonzero patterns of J_s and J_θ
(SnAp); ``leak``, the part 1 − α of J_s that bypasses the recurrent weights (RFLO).

``dparams`` from ``step_vjp`` is summed over the batch (the gradient of a
batch loss); a parameter tangent in ``step_jvp`` is shared by the batch.
In ``step_jvp`` any tangent may be None, meaning zero.

No cell may reuse a contract name (:data:`CONTRACT_NAMES`) for a field or plain
attribute: ERNN's dataclass field ``steps`` once hid the ``steps`` method and broke
online TBPTT on it.  :meth:`Cell.__init_subclass__` refuses such a class when it is
defined, and :func:`contract_clashes` finds one on an instance.
"""
from .. import kernels
from ..backend import get_dtype, get_xp, xp_of
from .._validate import check_params
from ..params import flatten

__all__ = ["Cell", "affine_jvp", "affine_vjp", "REQUIRED_METHODS", "OPTIONAL_CAPABILITIES", "CONTRACT_NAMES",
           "contract_clashes", "FUSED_SEQUENCE", "FORWARD_KERNEL_MAX_BLOCK", "supports_fused_sequence",
           "forward_kernel_applies", "input_projection", "summed_outer"]

# What every cell has (the contract above), and the helpers this base gives them all.
REQUIRED_METHODS = ("param_shapes", "init", "step", "step_vjp", "step_jvp", "jacobians", "output",
                    "output_vjp", "n_state", "n_out", "init_state", "check_params", "flat_params",
                    "pytorch_init")
# Optional capabilities: an algorithm that needs one looks it up by this name.
# The optional fused whole-sequence capability: a forward over all T steps and its VJP.
FUSED_SEQUENCE = ("fused_sequence", "fused_sequence_vjp")
OPTIONAL_CAPABILITIES = ("steps", "steps_vjp", "kronecker_factors", "state_jacobian", "jacobian_pattern",
                         "leak") + FUSED_SEQUENCE
CONTRACT_NAMES = REQUIRED_METHODS + OPTIONAL_CAPABILITIES


def _clash_message(owner, name, what):
    return (f"{owner} must not have a {what} named {name!r}: that is a name of the cell contract "
            f"(refnet.cells.base.CONTRACT_NAMES), which algorithms call as a method; rename it")


def contract_clashes(cell):
    """The contract names that ``cell`` (an instance) has as data instead of methods/properties.

    The contract's rule: an algorithm calls every name of :data:`CONTRACT_NAMES`
    as a method, so an instance attribute or a class attribute under one of
    those names that is not callable (ERNN's former field ``steps``) breaks it.

    Parameters
    ----------
    cell : object
        A cell instance (anything: an object without ``__dict__`` is read
        through its class alone).

    Returns
    -------
    list of str
        The clashing names, sorted and without repeats; empty when there is none.

    Raises
    ------
    None
        Nothing of its own: it only reads ``vars(cell)`` and the class
        dictionaries of ``type(cell).__mro__``.
    """
    clashes = [name for name in vars(cell) if name in CONTRACT_NAMES] if hasattr(cell, "__dict__") else []
    for name in CONTRACT_NAMES:
        for klass in type(cell).__mro__:
            if name in klass.__dict__:
                value = klass.__dict__[name]
                if not (callable(value) or isinstance(value, (property, staticmethod, classmethod))):
                    clashes.append(name)
                break
    return sorted(set(clashes))


# A fused forward runs its numba kernel (refnet.kernels.fused) while one step's gate block
# B x G holds at most this many numbers.  The kernel saves the per-step Python and NumPy
# dispatch (a few microseconds per array call), but calls libm's scalar tanh (about 16 ns
# a number here) where NumPy's SIMD tanh takes 0.4-2 ns: at B x G = 32 x 512 (LSTM, H = 128)
# the array loop's forward measured 2-3x faster than the kernel's, at small blocks the kernel wins.
FORWARD_KERNEL_MAX_BLOCK = 2048


def _owner(klass, name):
    """The class in ``klass``'s MRO that defines ``name``."""
    return next(k for k in klass.__mro__ if name in k.__dict__)


def supports_fused_sequence(cell):
    """Whether ``cell`` has its own fused whole-sequence pair for the transition it runs.

    True when both :data:`FUSED_SEQUENCE` methods are overridden below
    :class:`Cell`, in a class at or below the one that defines ``step`` and
    ``step_vjp``: a subclass that changes the transition without writing its
    own fused pair (it would inherit one for another transition) is refused,
    and the algorithms then run the per-step path.

    Parameters
    ----------
    cell : Cell
        A cell instance (its class is what is inspected).

    Returns
    -------
    bool
        Whether the algorithms may call ``cell.fused_sequence`` and
        ``cell.fused_sequence_vjp``.

    Raises
    ------
    StopIteration
        If ``type(cell)`` does not define (or inherit) ``fused_sequence``,
        ``fused_sequence_vjp``, ``step`` and ``step_vjp``, i.e. it is not a
        :class:`Cell` subclass nor shaped like one.
    """
    klass = type(cell)
    owners = [_owner(klass, name) for name in FUSED_SEQUENCE]
    if any(owner is Cell for owner in owners):
        return False
    return all(issubclass(owner, _owner(klass, name)) for owner in owners for name in ("step", "step_vjp"))


def forward_kernel_applies(block, *arrays):
    """Whether a fused forward takes its numba kernel rather than its array loop.

    The kernel saves per-step dispatch but calls a scalar tanh, so it wins
    only on small gate blocks (measurements at :data:`FORWARD_KERNEL_MAX_BLOCK`).

    Parameters
    ----------
    block : int
        Numbers in one step's gate block, B × G (G = H for Elman, 3H GRU, 4H LSTM).
    *arrays : ndarray
        The arrays the kernel would take (at least one); all must be NumPy
        arrays of one float dtype (:func:`refnet.kernels.applicable`).

    Returns
    -------
    bool
        ``block <= FORWARD_KERNEL_MAX_BLOCK`` and the kernels apply to ``arrays``.

    Raises
    ------
    ValueError
        If ``REFNET_NUMBA`` is set to anything but '0' or '1' (read only when
        ``block`` is small enough for the kernel to be considered).
    IndexError
        If ``block`` is small enough and no ``arrays`` are given.
    """
    return block <= FORWARD_KERNEL_MAX_BLOCK and kernels.applicable(*arrays)


def input_projection(x, weight, bias):
    """The input projection of every step as one GEMM over the T·B rows: x_t Wᵀ + b for t = 1..T.

    Hoisting it out of the time loop is the first half of the fused
    whole-sequence path (:data:`FUSED_SEQUENCE`): one (T·B, I) × (I, G) product
    instead of T small ones.

    Parameters
    ----------
    x : (T, B, I) array
        Inputs of the whole run.
    weight : (G, I) array
        The input weights of all G gate rows (e.g. ``weight_ih``).
    bias : (G,) array or None
        Added to every row; None for no bias.

    Returns
    -------
    (T, B, G) array
        The pre-activations' input part, a new array.

    Raises
    ------
    ValueError
        If ``x`` is not 3-D (unpacking its shape), or ``weight``'s second
        axis is not I, or ``bias`` does not broadcast to (G,) (from the
        array module's matmul and add).
    """
    T, B, I = x.shape
    out = x.reshape(T * B, I) @ weight.T
    if bias is not None:
        out += bias
    return out.reshape(T, B, weight.shape[0])


def summed_outer(dA, X):
    """Σ_t Σ_b dA[t, b] ⊗ X[t, b] as one GEMM over the T·B rows: a weight gradient (G, K).

    The second half of the fused path: dW = Σ_t daᵀ_t x_t summed over the
    batch, as one (G, T·B) × (T·B, K) product.

    Parameters
    ----------
    dA : (T, B, G) array
        Cotangents of the pre-activations a_t.
    X : (T, B, K) array
        What the weight multiplied at each step (inputs x_t, or previous states h_{t−1}).

    Returns
    -------
    (G, K) array
        The weight gradient, summed over the T steps and the B examples.

    Raises
    ------
    ValueError
        If ``dA`` and ``X`` do not share their first two axes (T, B), or
        either is not 3-D (from reshape and matmul).
    """
    G, K = dA.shape[2], X.shape[2]
    return dA.reshape(-1, G).T @ X.reshape(-1, K)


class Cell:
    """Base of every cell: shared defaults of the cell contract (this module's docstring).

    Subclasses are frozen dataclasses with the fields ``input_size`` and
    ``hidden_size`` and define ``param_shapes``, ``init``, ``step``,
    ``step_vjp`` and ``step_jvp``; this base gives them the rest of the
    contract (``jacobians`` by JVPs, ``steps``/``steps_vjp`` by loops,
    ``output`` = the whole state) and refuses the optional fused pair.

    Raises
    ------
    TypeError
        When a subclass is *defined* whose fields or non-callable class
        attributes reuse a name of :data:`CONTRACT_NAMES`.
    ValueError
        When a dataclass subclass is *instantiated* with ``input_size`` or
        ``hidden_size`` not a positive int (a bool is refused); the message
        names the field.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("__annotations__", {}):
            if name in CONTRACT_NAMES:
                raise TypeError(_clash_message(cls.__name__, name, "field"))
        for name, value in cls.__dict__.items():
            if name in CONTRACT_NAMES and not (callable(value) or isinstance(value, (property, staticmethod,
                                                                                     classmethod))):
                raise TypeError(_clash_message(cls.__name__, name, "class attribute"))

    def __post_init__(self):
        for name in ("input_size", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def pytorch_init(self, rng):
        """PyTorch's init: every entry of every parameter drawn from U(−1/√H, 1/√H).

        Parameters
        ----------
        rng : refnet.backend.Rng
            The random source (``refnet.rng(seed)``); the draws land on the
            active backend in the rng's dtype (default ``REFNET_DTYPE``).

        Returns
        -------
        dict {name: array}
            One array per entry of ``param_shapes()``, with that shape.

        Raises
        ------
        AttributeError
            If ``rng`` has no ``uniform`` method.
        ValueError
            If ``rng.uniform`` does not take ``(shape, low, high)``: a
            ``numpy.random.Generator`` (whose order is ``(low, high, size)``)
            refuses the shape as ``low`` ("high - low < 0").
        """
        bound = self.hidden_size ** -0.5
        return {k: rng.uniform(shape, -bound, bound) for k, shape in self.param_shapes().items()}

    @property
    def n_state(self):
        """Width of the state vector s."""
        return self.hidden_size

    @property
    def n_out(self):
        """Width of ``output(s)``."""
        return self.hidden_size

    def init_state(self, batch):
        """A zero state s_0, (batch, n_state), on the active backend in the active dtype.

        Parameters
        ----------
        batch : int
            B, the number of examples (>= 0).

        Returns
        -------
        (batch, n_state) array
            Zeros (``REFNET_BACKEND``, ``REFNET_DTYPE``).

        Raises
        ------
        ValueError
            If ``batch`` < 0 (from the array module), or ``REFNET_BACKEND`` or
            ``REFNET_DTYPE`` has an invalid value.
        TypeError
            If ``batch`` is not an integer.
        RuntimeError
            If ``REFNET_BACKEND=cupy`` and CuPy cannot be used.
        """
        return get_xp().zeros((batch, self.n_state), dtype=get_dtype())

    def output(self, s):
        """The part of the state a head reads: here the whole state, ``output(s) = s``.

        Parameters
        ----------
        s : (B, n_state) array
            A state.

        Returns
        -------
        (B, n_out) array
            ``s`` itself (n_out = n_state here), not a copy.

        Raises
        ------
        None
            Nothing of its own: the identity map reads and checks nothing.
        """
        return s

    def output_vjp(self, dy):
        """The cotangent ds on the state for a cotangent dy on ``output(s)``: here ds = dy.

        Parameters
        ----------
        dy : (B, n_out) array
            Cotangent of ``output(s)``.

        Returns
        -------
        (B, n_state) array
            ``dy`` itself, not a copy.

        Raises
        ------
        None
            Nothing of its own: the identity map reads and checks nothing.
        """
        return dy

    def check_params(self, params, name="params"):
        """Raise unless ``params`` has exactly this cell's names and shapes, one float dtype, all finite.

        Parameters
        ----------
        params : dict {name: array}
            Candidate parameters; must match ``param_shapes()`` exactly.
        name : str
            How the messages call the dict (the caller's argument name).

        Returns
        -------
        dict {name: array}
            ``params`` itself, unchanged.

        Raises
        ------
        TypeError
            If ``params`` is not a dict, an entry is not a NumPy/CuPy array
            (a torch tensor, a list), not floating, or the entries mix dtypes.
        ValueError
            If a name is missing or extra, an entry's shape differs from
            ``param_shapes()``, or an entry holds NaN or Inf (the message
            names the entry and the first bad index).
        """
        return check_params(name, params, self.param_shapes())

    def jacobians(self, params, cache):
        """Immediate Jacobians J_s = ∂s_t/∂s_{t−1} (B, n, n) and J_θ = ∂s_t/∂θ (B, n, P) of one step.

        What RTRL (Williams & Zipser 1989) propagates, M_t = J_s M_{t−1} + J_θ.
        Generic form: column j of each is ``step_jvp`` along the j-th unit
        vector, so it costs n + P JVPs.  Columns of J_θ follow
        ``refnet.params.flatten`` order.  Cells with structure override this.

        Parameters
        ----------
        params : dict {name: array}
            The cell's parameters (``param_shapes()``).
        cache : NamedTuple
            What ``step`` returned for this transition; must have ``x`` (B, I).

        Returns
        -------
        J_s : (B, n_state, n_state) array
            ∂s_t/∂s_{t−1} for every example.
        J_theta : (B, n_state, P) array
            ∂s_t/∂θ for every example, P = Σ sizes of ``param_shapes()``.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()`` (cells do not
            validate on the hot path; the algorithms check ``params`` at entry).
        AttributeError
            If ``cache`` has no field ``x``.
        """
        xp = xp_of(cache.x)
        B, n = cache.x.shape[0], self.n_state
        J_s = xp.zeros((B, n, n), dtype=cache.x.dtype)
        for j in range(n):
            e = xp.zeros((B, n), dtype=cache.x.dtype)
            e[:, j] = 1.0
            J_s[:, :, j] = self.step_jvp(params, cache, e, None, None)
        shapes = self.param_shapes()
        P = sum(int(params[k].size) for k in shapes)
        J_theta = xp.zeros((B, n, P), dtype=cache.x.dtype)
        zero = {k: xp.zeros_like(params[k]) for k in shapes}
        column = 0
        for k in shapes:
            for flat in range(params[k].size):
                tangent = dict(zero)
                tangent[k] = xp.zeros_like(params[k])
                tangent[k].reshape(-1)[flat] = 1.0
                J_theta[:, :, column] = self.step_jvp(params, cache, None, tangent, None)
                column += 1
        return J_s, J_theta

    def flat_params(self, params):
        """θ as one vector in the column order of J_θ (``refnet.params.flatten`` of ``param_shapes()``'s names).

        Parameters
        ----------
        params : dict {name: array}
            The cell's parameters; names beyond ``param_shapes()`` are ignored.

        Returns
        -------
        (P,) array
            Every parameter flattened in C order, concatenated in ``param_shapes()`` order.

        Raises
        ------
        KeyError
            If ``params`` lacks a name of ``param_shapes()``.
        """
        return flatten({k: params[k] for k in self.param_shapes()})

    def steps(self, params, s0, xs, t=None):
        """k transitions s_j = f(θ, s_{j−1}, x_j), j = 1..k, from s0 through the inputs ``xs``.

        What online TBPTT(1, k) (Williams & Peng 1990) re-runs every step.
        This default loops over ``step``; a cell may fuse the loop (the Elman
        RNN does at batch 1).

        Parameters
        ----------
        params : dict {name: array}
            The cell's parameters.
        s0 : (B, n_state) array
            The state the k transitions start from.
        xs : sequence of k (B, I) arrays, or a (k, B, I) array
            The inputs x_1..x_k.
        t : int or None
            Time index of the first transition (step j gets t + j − 1);
            None gives every step None.

        Returns
        -------
        states : list of k + 1 (B, n_state) arrays
            states[j] = s_j for j = 0..k (states[0] is ``s0``).
        trace : list of k caches
            What :meth:`steps_vjp` needs (here the caches of ``step``).

        Raises
        ------
        Exception
            Whatever the cell's ``step`` raises on these inputs (it does not
            validate: a shape mismatch is the array module's ValueError, a
            missing parameter a KeyError).
        """
        states, caches = [s0], []
        for j, x in enumerate(xs):
            s, cache = self.step(params, states[-1], x, None if t is None else t + j)
            states.append(s)
            caches.append(cache)
        return states, caches

    def steps_vjp(self, params, trace, ds):
        """Back through the k transitions of :meth:`steps` from a cotangent ds on s_k alone.

        This default loops over ``step_vjp`` (the inputs' cotangents are dropped).

        Parameters
        ----------
        params : dict {name: array}
            The parameters :meth:`steps` ran with.
        trace : list of caches
            The ``trace`` :meth:`steps` returned (k >= 1 transitions).
        ds : (B, n_state) array
            Cotangent of s_k.

        Returns
        -------
        ds0 : (B, n_state) array
            ∂/∂s_0 of ⟨ds, s_k⟩.
        dparams : dict {name: array}
            ∂/∂θ summed over the k steps and the batch; None if ``trace`` is empty.

        Raises
        ------
        Exception
            Whatever the cell's ``step_vjp`` raises on these inputs (a shape
            mismatch is the array module's ValueError).
        """
        dparams = None
        for cache in reversed(trace):
            ds, dparams_j, _ = self.step_vjp(params, cache, ds)
            dparams = dparams_j if dparams is None else {k: dparams[k] + v for k, v in dparams_j.items()}
        return ds, dparams

    def fused_sequence(self, params, x, s0):
        """Optional: the whole run s_t = f(θ, s_{t−1}, x_t), t = 1..T, keeping what its VJP needs.

        A cell that has it hoists the input projection into one GEMM over
        T·B and keeps its trace in preallocated (T, B, ·) arrays
        (:func:`supports_fused_sequence`).  Every step gets its time index
        t − 1, as the algorithms' per-step loop passes it.

        Parameters
        ----------
        params : dict {name: array}
            The cell's parameters.
        x : (T, B, I)
            Inputs; x[t − 1] is x_t.
        s0 : (B, n_state)
            Initial state.

        Returns
        -------
        outputs : (T, B, n_out)
            output(s_t) for t = 1..T.
        s_T : (B, n_state)
            The final state.
        trace : NamedTuple
            What :meth:`fused_sequence_vjp` reads.

        Raises
        ------
        NotImplementedError
            Always, here: this cell does not support the fused path.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support the fused whole-sequence path "
                                  "(fused_sequence); the algorithms run its per-step path")

    def fused_sequence_vjp(self, params, trace, dout, ds_last, start=0):
        """Optional: the VJP of :meth:`fused_sequence` over the window of steps start+1..start+n.

        Parameters
        ----------
        params : dict {name: array}
            The parameters :meth:`fused_sequence` ran with.
        trace : NamedTuple
            The ``trace`` :meth:`fused_sequence` returned.
        dout : (n, B, n_out)
            Cotangents of output(s_t) for t = start+1..start+n.
        ds_last : (B, n_state)
            Cotangent of s_{start+n}.
        start : int
            The state s_start the window starts from (0: s_0).

        Returns
        -------
        ds_start : (B, n_state)
            ∂/∂s_start.
        dparams : dict
            ∂/∂θ summed over the window's steps and the batch.
        dx : (n, B, I)
            ∂/∂x_t for t = start+1..start+n.

        Raises
        ------
        NotImplementedError
            Always, here: this cell does not support the fused path.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support the fused whole-sequence path "
                                  "(fused_sequence_vjp); the algorithms run its per-step path")


def affine_jvp(params, x, h_prev, dparams, dx, dh_prev):
    """Tangents of the two affine maps of a PyTorch cell (the JVP of its pre-activations).

    Forward: ``a_i = x W_ihᵀ + b_ih`` and ``a_h = h W_hhᵀ + b_hh``, so
    ``da_i = dx W_ihᵀ + x dW_ihᵀ + db_ih`` and ``da_h = dh W_hhᵀ + h dW_hhᵀ + db_hh``.

    Parameters
    ----------
    params : dict {name: array}
        Holds ``weight_ih`` (G, I) and ``weight_hh`` (G, H).
    x : (B, I) array
        The step's input.
    h_prev : (B, H) array
        The previous hidden state h_{t−1}.
    dparams : dict {name: array} or None
        Tangents of ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh``
        (shared by the batch); None for zero.
    dx : (B, I) array or None
        Tangent of ``x``; None for zero.
    dh_prev : (B, H) array or None
        Tangent of ``h_prev``; None for zero.

    Returns
    -------
    da_i : (B, G) array or float
        Tangent of a_i; the float 0.0 when ``dx`` and ``dparams`` are None.
    da_h : (B, G) array or float
        Tangent of a_h; the float 0.0 when ``dh_prev`` and ``dparams`` are None.

    Raises
    ------
    KeyError
        If ``params`` or ``dparams`` lacks one of the names it needs.
    ValueError
        If the shapes do not fit (the array module's matmul or broadcast error).
    """
    da_i = da_h = 0.0
    if dx is not None:
        da_i = da_i + dx @ params["weight_ih"].T
    if dh_prev is not None:
        da_h = da_h + dh_prev @ params["weight_hh"].T
    if dparams is not None:
        da_i = da_i + x @ dparams["weight_ih"].T + dparams["bias_ih"]
        da_h = da_h + h_prev @ dparams["weight_hh"].T + dparams["bias_hh"]
    return da_i, da_h


def affine_vjp(params, x, h_prev, da_i, da_h):
    """Adjoints (VJP) of the two affine maps a_i = x W_ihᵀ + b_ih, a_h = h W_hhᵀ + b_hh.

    Parameters
    ----------
    params : dict {name: array}
        Holds ``weight_ih`` (G, I) and ``weight_hh`` (G, H).
    x : (B, I) array
        The step's input.
    h_prev : (B, H) array
        The previous hidden state h_{t−1}.
    da_i : (B, G) array
        Cotangent of a_i.
    da_h : (B, G) array
        Cotangent of a_h (the same array as ``da_i`` when the cell adds the maps).

    Returns
    -------
    dparams : dict {name: array}
        ``weight_ih`` = da_iᵀ x (G, I), ``weight_hh`` = da_hᵀ h (G, H),
        ``bias_ih`` = Σ_b da_i, ``bias_hh`` = Σ_b da_h (G,): summed over the batch.
    dx : (B, I) array
        da_i W_ih.
    dh_prev : (B, H) array
        da_h W_hh.

    Raises
    ------
    KeyError
        If ``params`` lacks ``weight_ih`` or ``weight_hh``.
    ValueError
        If the shapes do not fit (the array module's matmul error).
    """
    dparams = {
        "weight_ih": da_i.T @ x,
        "weight_hh": da_h.T @ h_prev,
        "bias_ih": da_i.sum(axis=0),
        "bias_hh": da_h.sum(axis=0),
    }
    return dparams, da_i @ params["weight_ih"], da_h @ params["weight_hh"]
