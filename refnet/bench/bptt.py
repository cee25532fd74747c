"""Case ``bptt``: BPTT of an LSTM, a GRU and an Elman RNN, refnet against PyTorch and JAX.

One run is the forward pass over the whole sequence and the backward pass
with given cotangents on every output and on the final state:

- refnet: ``refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)`` (the cells'
  fused whole-sequence path, :mod:`refnet.algorithms.fused`);
- PyTorch: ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` forward, then
  ``torch.autograd.backward`` of ``(out, h_n[, c_n])`` with the same
  cotangents; x and the initial state require grad, so both compute the same
  gradients (θ, every x_t and s_0);
- JAX (when importable): the same cell written with ``jax.lax.scan`` and
  differentiated by ``jax.grad`` of ⟨dout, outputs⟩ + ⟨ds_T, s_T⟩, the whole
  forward + backward under one ``jax.jit`` (compiled before timing), float64
  through ``jax_enable_x64``.

Every implementation sees the same data and weights (refnet's names are
PyTorch's without the ``_l0``), and before anything is timed its gradients
are compared with refnet's (:func:`max_rel_error`); a disagreement beyond
:data:`GRAD_RTOL` raises :class:`~refnet.bench.report.BenchmarkError`.

Memory kept for the backward is reported beside each time (``kept_bytes``):
refnet's distinct trace buffers (the fused trace, or the per-step
trajectory); PyTorch's distinct storages saved by autograd
(``torch.autograd.graph.saved_tensors_hooks``); JAX's residuals, the leaves
of ``jax.vjp``'s function (un-jitted: XLA may keep fewer under ``jit``).

PyTorch runs on as many threads as NumPy's BLAS (read with threadpoolctl;
without it both keep their defaults, and the report says what they are);
JAX's XLA is held to one thread (``XLA_FLAGS``) when NumPy's BLAS has one and
the variable is unset before JAX is first imported.  Without a peer its rows
are skipped and its ratios are null.

Throughput is reported against NumPy's measured matmul rate in the same
dtype, on the cell's own product shapes and on one large square product,
with the FLOP count of :func:`rnn_bptt_flops`.
"""
import os
from dataclasses import dataclass

import numpy

from ..algorithms import forward, sequence_vjp
from ..algorithms.fused import applies as fused_applies
from ..cells import GRU, LSTM, ElmanRNN
from .._validate import check_int
from .report import BenchmarkError, Report, format_table
from .timing import gemm_throughput, import_torch, numpy_blas, time_each

__all__ = ["Problem", "GRAD_RTOL", "CELLS", "lstm_bptt_flops", "rnn_bptt_flops", "make_problem", "max_rel_error",
           "lstm_gemms", "cell_gemms", "refnet_kept_bytes", "jax_sequence_grad", "import_jax", "run"]

BATCH, INPUT, HIDDEN = 32, 16, 128
STEPS = {"full": 256, "quick": 16}
SQUARE = {"full": 1024, "quick": 256}
DEFAULT_REPEATS = {"full": 15, "quick": 3}
DTYPES = ("float32", "float64")
# The cells compared: name -> (refnet cell factory (I, H), PyTorch module name, gate blocks G/H).
CELLS = {"lstm": (LSTM, "LSTM", 4), "gru": (GRU, "GRU", 3), "elman": (ElmanRNN, "RNN", 1)}
# Wall-clock budgets in seconds of each measurement (time_call's max_seconds), so
# that the whole case stays within a few minutes even when the 2-core machine is loaded.
BUDGET_S = {"bptt": 6.0, "gemm": 2.0}

# A measurement whose max exceeds NOISY_SPREAD × its min is flagged in the table.
NOISY_SPREAD = 2.0

# Normwise relative error allowed between refnet's and a peer's gradients.  Both
# sum the same terms in different orders; over T = 256 steps of sums of
# B·(I + H) products that stays near 1e-6 in float32 (ε = 1.2e-7) and 1e-14 in
# float64 (ε = 2.2e-16); the tolerances leave two orders of margin.
GRAD_RTOL = {"float32": 1e-4, "float64": 1e-11}


@dataclass(frozen=True)
class Problem:
    """One BPTT problem, all NumPy arrays of one dtype.

    Attributes
    ----------
    theta : dict {name: ndarray}
        The cell's params, e.g. LSTM {weight_ih (4H, I), weight_hh (4H, H),
        bias_ih (4H,), bias_hh (4H,)}.
    x : (T, B, I) ndarray
        Inputs, T steps of B examples.
    s0 : (B, n_state) ndarray
        Initial state (LSTM: [h0, c0], n_state = 2H).
    dout : (T, B, H) ndarray
        Cotangent ∂L/∂output_t of every step's output.
    ds_T : (B, n_state) ndarray
        Cotangent ∂L/∂s_T of the final state.
    """

    theta: dict
    x: numpy.ndarray
    s0: numpy.ndarray
    dout: numpy.ndarray
    ds_T: numpy.ndarray


def rnn_bptt_flops(B, I, H, T, gates):
    """Matmul FLOPs of forward + backward over T steps of a cell with ``gates`` blocks of H: 6·T·B·(I+H)·G·H.

    Forward, per step, the pre-activations [x, h] Wᵀ, W = [W_ih, W_hh] (G·H, I+H),
    are one (B×(I+H))@((I+H)×G·H) product: 2·B·(I+H)·G·H FLOPs.  Backward, per
    step, twice that: dW = daᵀ [x, h] and d[x, h] = da W.  G = 4 (LSTM), 3 (GRU),
    1 (Elman).  The elementwise gate work and the bias sums (O(T·B·H)) are not counted.

    Parameters
    ----------
    B : int
        Batch size, >= 1.
    I : int
        Input width, >= 1.
    H : int
        Hidden units, >= 1.
    T : int
        Time steps, >= 1.
    gates : int
        Gate blocks G of H rows in W_ih and W_hh, >= 1.

    Returns
    -------
    int
        6·T·B·(I+H)·G·H floating-point operations.

    Raises
    ------
    TypeError
        If a size is not an int.
    ValueError
        If a size is < 1.
    """
    B, I, H, T, gates = (check_int(name, v, 1) for name, v in
                         (("B", B), ("I", I), ("H", H), ("T", T), ("gates", gates)))
    return 6 * T * B * (I + H) * gates * H


def lstm_bptt_flops(B, I, H, T):
    """Matmul FLOPs of LSTM forward + backward over T steps: 24·T·B·(I+H)·H (:func:`rnn_bptt_flops`, G = 4).

    Parameters
    ----------
    B : int
        Batch size, >= 1.
    I : int
        Input width, >= 1.
    H : int
        Hidden units, >= 1.
    T : int
        Time steps, >= 1.

    Returns
    -------
    int
        24·T·B·(I+H)·H floating-point operations.

    Raises
    ------
    TypeError
        If a size is not an int.
    ValueError
        If a size is < 1.
    """
    return rnn_bptt_flops(B, I, H, T, 4)


def make_problem(cell, batch, steps, dtype, seed=0):
    """Random :class:`Problem` for ``cell``: drawn in float64, then cast to ``dtype``.

    Weights follow PyTorch's init U(−1/√H, 1/√H); x, dout and ds_T are N(0, 1);
    s0 is N(0, 0.5²) so that the gradient for s_0 is exercised from a nonzero state.

    Parameters
    ----------
    cell : refnet cell
        Any cell with ``hidden_size``, ``input_size``, ``n_state``, ``n_out``
        and ``param_shapes()`` (LSTM, GRU, ElmanRNN here).
    batch : int
        B, examples per sequence.
    steps : int
        T, time steps.
    dtype : dtype-like
        The dtype every array is cast to (``'float32'`` or ``'float64'``).
    seed : int, optional
        Seed of ``numpy.random.default_rng``, >= 0.

    Returns
    -------
    Problem
        θ, x (T, B, I), s0 (B, n_state), dout (T, B, n_out), ds_T (B, n_state).

    Raises
    ------
    ValueError
        If ``batch`` or ``steps`` is negative, or ``seed`` is negative.
    TypeError
        If ``dtype`` is not a dtype, or a size or ``seed`` is not an int.
    AttributeError
        If ``cell`` lacks one of the attributes above.
    """
    generator = numpy.random.default_rng(seed)
    bound = cell.hidden_size ** -0.5
    theta = {k: generator.uniform(-bound, bound, shape).astype(dtype)
             for k, shape in cell.param_shapes().items()}
    x = generator.standard_normal((steps, batch, cell.input_size)).astype(dtype)
    s0 = (0.5 * generator.standard_normal((batch, cell.n_state))).astype(dtype)
    dout = generator.standard_normal((steps, batch, cell.n_out)).astype(dtype)
    ds_T = generator.standard_normal((batch, cell.n_state)).astype(dtype)
    return Problem(theta, x, s0, dout, ds_T)


def max_rel_error(ours, theirs):
    """Largest normwise relative error max|a − b| / max|b| over named arrays.

    Normwise (∞-norm of the difference over the ∞-norm of the reference), so
    entries near zero do not blow the figure up.

    Parameters
    ----------
    ours : dict {name: array}
        refnet's arrays; must hold every name of ``theirs``.
    theirs : dict {name: array}
        The peer's arrays (the reference of each ratio), same shapes.

    Returns
    -------
    error : float
        The worst normwise relative error, dimensionless (0.0 when ``theirs`` is empty).
    name : str or None
        The name it was found under (None when ``theirs`` is empty).

    Raises
    ------
    KeyError
        If ``ours`` lacks a name of ``theirs``.
    ValueError
        If two arrays' shapes do not broadcast, or an array is empty.
    """
    worst = (0.0, None)
    for name, b in theirs.items():
        a = numpy.asarray(ours[name], dtype=numpy.float64)
        b = numpy.asarray(b, dtype=numpy.float64)
        scale = max(float(numpy.abs(b).max()), numpy.finfo(numpy.float64).tiny)
        error = float(numpy.abs(a - b).max()) / scale
        worst = max(worst, (error, name), key=lambda pair: pair[0])
    return worst


def _refnet_run(cell, problem):
    """The refnet call timed: forward + backward of the whole sequence."""
    p = problem
    return lambda: sequence_vjp(cell, p.theta, p.x, p.s0, p.dout, p.ds_T)


def _refnet_results(cell, problem):
    """refnet's outputs and gradients, named as in :func:`_torch_results`."""
    result = _refnet_run(cell, problem)()
    return {"outputs": result.outputs, "dx": result.dx, "ds0": result.ds0,
            **{f"d{k}": v for k, v in result.dtheta.items()}}


def _arrays(obj):
    """Every NumPy array inside nested tuples/lists (NamedTuples included)."""
    if isinstance(obj, numpy.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _arrays(item)


def _distinct_bytes(obj):
    """Bytes of the distinct buffers of the arrays in ``obj`` (views count once, as their base)."""
    roots = {}
    for a in _arrays(obj):
        while isinstance(a.base, numpy.ndarray):
            a = a.base
        roots[id(a)] = a.nbytes
    return sum(roots.values())


def refnet_kept_bytes(cell, theta, x, s0):
    """Bytes refnet keeps for the backward of one run: the fused trace, or the per-step trajectory.

    Parameters
    ----------
    cell : refnet cell
        The cell; its fused path is measured when it has one and ``REFNET_FUSED`` allows it.
    theta : dict {name: array}
        Its params (``cell.param_shapes()``).
    x : (T, B, I) array
        Inputs.
    s0 : (B, n_state) array
        Initial state.

    Returns
    -------
    int
        Bytes of the distinct buffers (views counted once), the inputs x
        included, as PyTorch's count includes them.

    Raises
    ------
    ValueError
        If ``REFNET_FUSED`` is neither '0' nor '1'; on the per-step path, as
        :func:`refnet.forward` for a wrong shape or a NaN/Inf input (the fused
        path validates nothing here: a wrong shape fails in NumPy's matmul,
        also a ValueError).
    TypeError
        On the per-step path, as :func:`refnet.forward` for ``theta`` that is
        not a dict of floating arrays, or mixed dtypes.
    refnet.NumericalError
        On the per-step path, if the forward pass overflows.
    """
    if fused_applies(cell):
        return _distinct_bytes(tuple(cell.fused_sequence(theta, x, s0)[2]))
    trajectory = forward(cell, theta, x, s0)
    return _distinct_bytes((trajectory.s, trajectory.caches))


def _split_state(name, s, H):
    """The torch initial-state tuple of a refnet state (B, n_state): (h,) or (h, c), each (1, B, H)."""
    return (s[None, :, :H], s[None, :, H:]) if name == "lstm" else (s[None],)


def _torch_run(torch, name, cell, problem):
    """The PyTorch module with refnet's weights, and the forward + backward call to time.

    Returns ``(run, leaves)``: ``run()`` does one forward and backward;
    ``leaves`` holds the module and the input tensors whose ``.grad`` it fills.
    """
    p, H = problem, cell.hidden_size
    module = getattr(torch.nn, CELLS[name][1])(cell.input_size, H, dtype=getattr(torch, str(p.x.dtype)))
    with torch.no_grad():
        for key, value in p.theta.items():
            getattr(module, f"{key}_l0").copy_(torch.from_numpy(value))
    x = torch.tensor(p.x, requires_grad=True)
    state = tuple(torch.tensor(a, requires_grad=True) for a in _split_state(name, p.s0, H))
    cotangents = (torch.from_numpy(p.dout), *(torch.tensor(a) for a in _split_state(name, p.ds_T, H)))

    def run():
        module.zero_grad(set_to_none=True)
        x.grad = None
        for leaf in state:
            leaf.grad = None
        out, final = module(x, state if name == "lstm" else state[0])
        final = final if name == "lstm" else (final,)
        torch.autograd.backward((out, *final), cotangents)
        return out

    return run, {"module": module, "x": x, "state": state}


def _torch_results(cell, run, leaves):
    """PyTorch's outputs and gradients after one ``run()``, as NumPy arrays."""
    out = run().detach().numpy()
    grads = {f"d{k}": getattr(leaves["module"], f"{k}_l0").grad.numpy() for k in cell.param_shapes()}
    ds0 = numpy.concatenate([leaf.grad[0].numpy() for leaf in leaves["state"]], axis=1)
    return {"outputs": out, "dx": leaves["x"].grad.numpy(), "ds0": ds0, **grads}


def _torch_kept_bytes(torch, run):
    """Bytes of the distinct storages autograd saves for the backward of one PyTorch run."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def import_jax(single_thread):
    """JAX with float64 enabled, or ``(None, reason)`` if it cannot be imported (its rows are skipped).

    With ``single_thread`` and ``XLA_FLAGS`` unset before JAX's first import,
    XLA's CPU backend is held to one thread, as NumPy's BLAS and PyTorch are.
    Enabling ``jax_enable_x64`` is global: it stays on for the rest of the process.

    Parameters
    ----------
    single_thread : bool
        Set ``XLA_FLAGS`` for one thread (only if JAX is not yet imported and
        the variable is unset).

    Returns
    -------
    jax : module or None
        The ``jax`` module, or None.
    reason : str or None
        None on success, else ``'<ExceptionType>: <message>'`` for the report.

    Raises
    ------
    None
        Any Exception raised by importing or configuring JAX is caught and
        returned as the reason.
    """
    import sys
    if single_thread and "jax" not in sys.modules and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
    except Exception as exc:  # ImportError, or a broken install failing at import
        return None, f"{type(exc).__name__}: {exc}"
    return jax, None


def _jax_cell(jnp, name, H):
    """One transition of ``name`` in jax.numpy, PyTorch's equations: (theta, s, x) -> (s, output)."""
    def sigmoid(a):
        return 0.5 * (jnp.tanh(0.5 * a) + 1.0)

    def lstm(th, s, x):
        a = x @ th["weight_ih"].T + th["bias_ih"] + s[:, :H] @ th["weight_hh"].T + th["bias_hh"]
        i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), jnp.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c = f * s[:, H:] + i * g
        h = o * jnp.tanh(c)
        return jnp.concatenate([h, c], axis=1), h

    def gru(th, h, x):
        a_i = x @ th["weight_ih"].T + th["bias_ih"]
        a_h = h @ th["weight_hh"].T + th["bias_hh"]
        r = sigmoid(a_i[:, :H] + a_h[:, :H])
        z = sigmoid(a_i[:, H:2 * H] + a_h[:, H:2 * H])
        n = jnp.tanh(a_i[:, 2 * H:] + r * a_h[:, 2 * H:])
        h = (1.0 - z) * n + z * h
        return h, h

    def elman(th, h, x):
        h = jnp.tanh(x @ th["weight_ih"].T + th["bias_ih"] + h @ th["weight_hh"].T + th["bias_hh"])
        return h, h

    return {"lstm": lstm, "gru": gru, "elman": elman}[name]


def jax_sequence_grad(jax, name, H):
    """A jitted JAX function (theta, x, s0, dout, ds_T) -> (outputs, (dθ, dx, ds0)) by ``lax.scan`` and ``jax.grad``.

    The objective is ⟨dout, outputs⟩ + ⟨ds_T, s_T⟩, so its gradient is the
    sequence VJP refnet computes (Werbos 1990).  The cells are PyTorch's
    equations: the LSTM (Hochreiter & Schmidhuber 1997, gates i|f|g|o), the
    GRU (Cho et al. 2014, r|z|n with r applied to W_hn h + b_hn) and the tanh
    Elman RNN (Elman 1990).

    Parameters
    ----------
    jax : module
        The ``jax`` module (from :func:`import_jax`).
    name : {'lstm', 'gru', 'elman'}
        The cell.
    H : int
        Hidden units (splits the gate blocks and, for the LSTM, s = [h, c]).

    Returns
    -------
    call : callable
        ``call(theta, x, s0, dout, ds_T) -> (outputs (T, B, H), (dθ, dx, ds0))``, jitted
        (compiled at its first call).
    run_forward : callable
        The un-jitted forward ``(theta, x, s0) -> (outputs, s_T)``, whose
        ``jax.vjp`` residuals :func:`run` reports as JAX's kept bytes.

    Raises
    ------
    KeyError
        If ``name`` is not one of the three cells.
    """
    jnp = jax.numpy
    step = _jax_cell(jnp, name, H)

    def run_forward(theta, x, s0):
        s_T, outputs = jax.lax.scan(lambda s, x_t: step(theta, s, x_t), s0, x)
        return outputs, s_T

    def objective(theta, x, s0, dout, ds_T):
        outputs, s_T = run_forward(theta, x, s0)
        return jnp.vdot(dout, outputs) + jnp.vdot(ds_T, s_T), outputs

    grad = jax.jit(jax.grad(objective, argnums=(0, 1, 2), has_aux=True))

    def call(theta, x, s0, dout, ds_T):
        grads, outputs = grad(theta, x, s0, dout, ds_T)
        return outputs, grads
    return call, run_forward


def _jax_run(jax, name, cell, problem):
    """The jitted JAX call (compiled here) and its results named as refnet's; and its residual bytes."""
    p = problem
    call, run_forward = jax_sequence_grad(jax, name, cell.hidden_size)
    args = [jax.device_put(a) for a in (p.x, p.s0, p.dout, p.ds_T)]
    theta = {k: jax.device_put(v) for k, v in p.theta.items()}

    def run():
        outputs, grads = call(theta, *args)
        return jax.block_until_ready((outputs, grads))
    outputs, (dtheta, dx, ds0) = run()
    results = {"outputs": numpy.asarray(outputs), "dx": numpy.asarray(dx), "ds0": numpy.asarray(ds0),
               **{f"d{k}": numpy.asarray(v) for k, v in dtheta.items()}}
    _, vjp = jax.vjp(run_forward, theta, args[0], args[1])
    kept = sum(int(leaf.nbytes) for leaf in jax.tree_util.tree_leaves(vjp))
    return run, results, kept


def _check(ours, theirs, peer, name, dtype):
    """Compare refnet with a peer once; returns ``(error, worst name)`` or raises."""
    error, worst = max_rel_error(ours, theirs)
    if error > GRAD_RTOL[dtype]:
        raise BenchmarkError(
            f"refnet and {peer} disagree on {worst} ({name}, {dtype}): normwise relative error "
            f"{error:.2e} > {GRAD_RTOL[dtype]:.0e}; a benchmark of a wrong computation is worthless")
    return error, worst


def cell_gemms(B, I, H, T, gates, dtype, *, repeats, max_seconds=None):
    """NumPy's matmul rate on a cell's three per-step products, each issued T times.

    (B×(I+H))@((I+H)×G·H), (G·H×B)@(B×(I+H)) and (B×G·H)@(G·H×(I+H)), G = ``gates``:
    the forward pre-activations, dW and d[x, h] of :func:`rnn_bptt_flops`.

    Parameters
    ----------
    B : int
        Batch size.
    I : int
        Input width.
    H : int
        Hidden units.
    T : int
        Time steps: each product is issued T times per timed call.
    gates : int
        Gate blocks G.
    dtype : dtype-like
        The operands' dtype.
    repeats : int
        Timed calls, >= 1.
    max_seconds : float or None, optional
        Wall-clock budget of the timed calls, in seconds.

    Returns
    -------
    GemmThroughput
        The rate on those products (``flops_per_s``).

    Raises
    ------
    TypeError
        If ``T`` or ``repeats`` is not an int, or ``dtype`` is not a dtype.
    ValueError
        If ``T`` < 1, ``repeats`` < 1, or a size is negative.
    """
    K, G = I + H, gates * H
    return gemm_throughput(f"{B}x{K}x{G} x3 xT", [(B, K, G), (G, B, K), (B, G, K)],
                           dtype, calls=T, repeats=repeats, max_seconds=max_seconds)


def lstm_gemms(B, I, H, T, dtype, *, square, repeats, max_seconds=None):
    """NumPy's matmul rate on the LSTM's products (:func:`cell_gemms`, G = 4) and on one square product.

    Parameters
    ----------
    B : int
        Batch size.
    I : int
        Input width.
    H : int
        Hidden units.
    T : int
        Time steps.
    dtype : dtype-like
        The operands' dtype.
    square : int
        Side n of the square (n×n)@(n×n) product: the machine's large-GEMM rate.
    repeats : int
        Timed calls per measurement, >= 1.
    max_seconds : float or None, optional
        Wall-clock budget of each measurement's timed calls, in seconds.

    Returns
    -------
    dict
        ``{"lstm": GemmThroughput, "square": GemmThroughput}``.

    Raises
    ------
    TypeError
        As :func:`cell_gemms`.
    ValueError
        As :func:`cell_gemms`, and for a negative ``square``.
    """
    return {
        "lstm": cell_gemms(B, I, H, T, 4, dtype, repeats=repeats, max_seconds=max_seconds),
        "square": gemm_throughput(f"square {square}", [(square, square, square)],
                                  dtype, repeats=repeats, max_seconds=max_seconds),
    }


def _load_1min():
    """The 1-minute load average, or None where the OS does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _threads(torch, jax):
    """Match PyTorch's threads to NumPy's BLAS; returns the environment dict for every row."""
    blas, blas_threads = numpy_blas()
    if torch is not None and blas_threads is not None:
        torch.set_num_threads(blas_threads)
    return {
        "case": "bptt",
        "numpy_version": numpy.__version__,
        "torch_version": None if torch is None else torch.__version__,
        "jax_version": None if jax is None else jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "numpy_blas": blas,
        "numpy_blas_threads": blas_threads,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_1min_start": _load_1min(),
    }


def _measure(torch, jax, name, dtype, steps, square, repeats):
    """Agreement checks, timings and kept bytes of each implementation, and GEMM rates, for one cell and dtype."""
    factory, _, gates = CELLS[name]
    cell = factory(INPUT, HIDDEN)
    problem = make_problem(cell, BATCH, steps, dtype)
    ours = _refnet_results(cell, problem)
    runs = {"refnet": _refnet_run(cell, problem)}
    kept = {"refnet": refnet_kept_bytes(cell, problem.theta, problem.x, problem.s0)}
    agreement = {}
    if torch is not None:
        runs["torch"], leaves = _torch_run(torch, name, cell, problem)
        agreement["torch"] = _check(ours, _torch_results(cell, runs["torch"], leaves), "torch", name, dtype)
        kept["torch"] = _torch_kept_bytes(torch, runs["torch"])
    if jax is not None:
        runs["jax"], results, kept["jax"] = _jax_run(jax, name, cell, problem)
        agreement["jax"] = _check(ours, results, "jax", name, dtype)
    timings = time_each(runs, repeats=repeats, max_seconds=BUDGET_S["bptt"])
    gemms = {"cell": cell_gemms(BATCH, INPUT, HIDDEN, steps, gates, dtype, repeats=repeats,
                                max_seconds=BUDGET_S["gemm"])}
    if name == "lstm":
        gemms["square"] = gemm_throughput(f"square {square}", [(square, square, square)], dtype,
                                          repeats=repeats, max_seconds=BUDGET_S["gemm"])
    return timings, kept, gemms, agreement


def _timing_fields(timing):
    return {"median_s": timing.median, "min_s": timing.min, "max_s": timing.max,
            "repeats": timing.repeats}


def _rows_for(env, name, dtype, steps, timings, kept, gemms, agreement, square_rate):
    """JSON rows of one cell and dtype: a timing row per implementation, GEMM rows, the ratio row."""
    gates = CELLS[name][2]
    flops = rnn_bptt_flops(BATCH, INPUT, HIDDEN, steps, gates)
    sizes = {"cell": name, "B": BATCH, "I": INPUT, "H": HIDDEN, "T": steps}
    rows = []
    for impl, timing in timings.items():
        rate = flops / timing.median
        rows.append({**env, "row": "timing", "impl": impl, "dtype": dtype, **sizes,
                     **_timing_fields(timing), "kept_bytes": kept[impl], "flops": flops,
                     "gflop_per_s": rate / 1e9, "fraction_of_gemm_cell": rate / gemms["cell"].flops_per_s,
                     "fraction_of_gemm_square": rate / square_rate})
    for key, gemm in gemms.items():
        rows.append({**env, "row": "gemm", "impl": "numpy.matmul", "gemm": key, "cell": name,
                     "shapes": gemm.label, "dtype": dtype, **_timing_fields(gemm.timing), "flops": gemm.flops,
                     "gflop_per_s": gemm.flops_per_s / 1e9})
    ratio = {"row": "ratio", "dtype": dtype, **sizes, "grad_rtol": GRAD_RTOL[dtype]}
    for peer in ("torch", "jax"):
        has = peer in timings
        ratio[f"refnet_over_{peer}"] = timings["refnet"].median / timings[peer].median if has else None
        ratio[f"refnet_over_{peer}_kept"] = kept["refnet"] / kept[peer] if has else None
        ratio[f"grad_max_rel_err_{peer}"], ratio[f"grad_worst_{peer}"] = agreement.get(peer, (None, None))
    ratio["grad_max_rel_err"] = ratio["grad_max_rel_err_torch"]      # the torch figure, under its old name
    ratio["grad_worst"] = ratio["grad_worst_torch"]
    rows.append({**env, **ratio})
    return rows


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _mib(value):
    return "-" if value is None else f"{value / 2 ** 20:.1f}"


def _header(rows, missing):
    """Lines saying what was run, where, and with which libraries."""
    env = first = rows[0]
    blas = (f"{env['numpy_blas']}, {env['numpy_blas_threads']} threads" if env["numpy_blas"]
            else "BLAS threads unknown: threadpoolctl not importable, defaults kept")
    torch = (f"torch {env['torch_version']} ({env['torch_threads']} threads)" if env["torch_version"]
             else f"torch not importable ({missing['torch']}): rows skipped")
    jax = (f"jax {env['jax_version']} (XLA_FLAGS={env['xla_flags']!r})" if env["jax_version"]
           else f"jax not importable ({missing['jax']}): rows skipped")
    return "\n".join([
        "bptt: forward + backward over a sequence, refnet.sequence_vjp vs torch nn.LSTM/GRU/RNN + "
        "autograd.backward vs jax lax.scan + jax.grad under jit",
        f"B={first['B']} I={first['I']} H={first['H']} T={first['T']}; matmul FLOPs per run 6·T·B·(I+H)·G·H "
        "(G = 4 LSTM, 3 GRU, 1 Elman); kept = bytes held for the backward",
        "times: median [min, max] over n repeats, after a warm-up",
        f"numpy {env['numpy_version']} ({blas}); {torch}; {jax}; {env['cpu_count']} CPUs",
    ])


def _times_ms(row, digits):
    return [f"{1e3 * row[k]:.{digits}f}" for k in ("median_s", "min_s", "max_s")]


def _timing_table(rows):
    return format_table(
        ("cell", "dtype", "impl", "n", "median ms", "min ms", "max ms", "kept MiB", "GFLOP/s", "of GEMM cell",
         "of GEMM square"),
        [(r["cell"], r["dtype"], r["impl"], str(r["repeats"]), *_times_ms(r, 1), _mib(r["kept_bytes"]),
          f"{r['gflop_per_s']:.2f}", f"{r['fraction_of_gemm_cell']:.0%}", f"{r['fraction_of_gemm_square']:.0%}")
         for r in rows if r["row"] == "timing"],
        text_columns=3)


def _gemm_table(rows):
    return format_table(
        ("cell", "dtype", "numpy.matmul", "n", "median ms", "min ms", "max ms", "GFLOP/s"),
        [(r["cell"], r["dtype"], r["shapes"], str(r["repeats"]), *_times_ms(r, 2), f"{r['gflop_per_s']:.2f}")
         for r in rows if r["row"] == "gemm"],
        text_columns=3)


def _ratio_table(rows):
    return format_table(
        ("cell", "dtype", "time / torch", "time / jax", "kept / torch", "kept / jax", "grad err torch",
         "grad err jax", "tolerance"),
        [(r["cell"], r["dtype"], _fmt(r["refnet_over_torch"], ".2f"), _fmt(r["refnet_over_jax"], ".2f"),
          _fmt(r["refnet_over_torch_kept"], ".2f"), _fmt(r["refnet_over_jax_kept"], ".2f"),
          _fmt(r["grad_max_rel_err_torch"], ".1e"), _fmt(r["grad_max_rel_err_jax"], ".1e"), f"{r['grad_rtol']:.0e}")
         for r in rows if r["row"] == "ratio"],
        text_columns=2)


def _noise_note(rows):
    """A warning line if some measurement's max/min exceeds :data:`NOISY_SPREAD`, else ''."""
    noisy = [r for r in rows if r["row"] in ("timing", "gemm") and r["max_s"] > NOISY_SPREAD * r["min_s"]]
    if not noisy:
        return ""
    env = rows[0]
    return (f"note: max/min > {NOISY_SPREAD:g} in {len(noisy)} of the timing and GEMM rows; 1-min load "
            f"average {_fmt(env['load_1min_start'], '.2f')} at start, {_fmt(env['load_1min_end'], '.2f')} "
            f"at end on {env['cpu_count']} CPUs: other work shared the machine; rerun when it is idle")


def _table(rows, missing):
    """The human-readable report of ``rows``."""
    parts = [_header(rows, missing), _timing_table(rows), _gemm_table(rows),
             "ratios: refnet / peer (> 1: refnet slower or larger)\n" + _ratio_table(rows), _noise_note(rows)]
    return "\n\n".join(part for part in parts if part)


def run(*, repeats=None, quick=False):
    """Run the ``bptt`` case: LSTM, GRU and Elman in float32 and float64.

    Parameters
    ----------
    repeats : int >= 1 or None
        Timed repeats per measurement; None for the default (15, or 3 with
        ``quick``).  A measurement stops earlier once its budget
        (:data:`BUDGET_S`) is spent; each row's ``repeats`` is the count done.
    quick : bool
        T = 16 and a 256² square GEMM instead of T = 256 and 1024², for tests.

    Returns
    -------
    Report
        Rows ``row`` = "timing" (per cell, implementation and dtype, with
        ``kept_bytes``), "gemm" and "ratio" (``refnet_over_torch``,
        ``refnet_over_jax`` = refnet time / peer time, so > 1 means refnet is
        slower, and the kept-bytes ratios; null without the peer), each with the environment.
        (The command's ``bptt`` case adds the GPU rows: :func:`refnet.bench.gpu.bptt_with_gpu`.)

    Raises
    ------
    TypeError
        If ``repeats`` is not an int (or None).
    ValueError
        If ``repeats`` < 1.
    BenchmarkError
        If refnet's and a peer's gradients disagree beyond :data:`GRAD_RTOL`.
    """
    size = "quick" if quick else "full"
    repeats = DEFAULT_REPEATS[size] if repeats is None else check_int("repeats", repeats, 1)
    torch, torch_missing = import_torch()
    jax, jax_missing = import_jax(numpy_blas()[1] == 1)
    previous_threads = None if torch is None else torch.get_num_threads()
    try:
        env = _threads(torch, jax)
        measured = {(name, dtype): _measure(torch, jax, name, dtype, STEPS[size], SQUARE[size], repeats)
                    for dtype in DTYPES for name in CELLS}
    finally:
        if torch is not None:
            torch.set_num_threads(previous_threads)
    env["load_1min_end"] = _load_1min()
    rows = []
    for (name, dtype), (timings, kept, gemms, agreement) in measured.items():
        square_rate = measured[("lstm", dtype)][2]["square"].flops_per_s
        rows += _rows_for(env, name, dtype, STEPS[size], timings, kept, gemms, agreement, square_rate)
    return Report(tuple(rows), _table(rows, {"torch": torch_missing, "jax": jax_missing}))
