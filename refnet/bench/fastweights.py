"""Case ``fastweights``: one training step of fast weights, explicit A against the attention form, and PyTorch.

A training step is the gradient of the associative-retrieval objective:
the fast-weights cell (S = 1, λ = 0.95, η = 0.5) over T steps of one-hot
inputs (I = 37) from h_0 = 0 and A(0) = 0, the readout of Ba et al. (last
state → 100 ReLU units → 10 logits, :class:`~refnet.heads_mlp.MLPHead`) and
the mean cross-entropy at the last step:

- refnet: ``refnet.bptt`` with :class:`~refnet.cells.fast_weights.FastWeights`
  (state [h, vec(A)]) or :class:`~refnet.cells.fast_weights.FastWeightsAttention`
  (state [h, h(1..T)]);
- PyTorch: the same cell written with torch ops (:func:`torch_hidden_states`,
  each form as refnet writes it) and the same readout, differentiated by
  autograd.

Before anything is timed, both give the loss and every gradient of θ and β
for the same data and weights, and they must agree to :data:`GRAD_RTOL`
(else :class:`~refnet.bench.report.BenchmarkError`).

Memory, per training step:

- ``peak``: refnet's peak of traced allocations during one ``bptt`` call
  (``tracemalloc``, which sees NumPy's buffers; PyTorch's CPU allocator is
  invisible to it, so there is no PyTorch figure);
- ``kept``: the bytes held for the backward pass, the figure both libraries
  have: for refnet the distinct buffers of what its BPTT keeps — the fused
  trace for the attention form (:meth:`FastWeightsAttention.fused_sequence`,
  O(T·n)), the forward trajectory (states s_0..s_T and the caches,
  :func:`refnet.forward`) for the explicit form
  (:func:`refnet.bench.bptt.refnet_kept_bytes`); for PyTorch the distinct
  storages autograd saves (``torch.autograd.graph.saved_tensors_hooks``).

Sizes grow along n at T = 11 (the task's K = 4 length) and along T at n = 50;
float64, B = 128.  The attention form's capacity is T.  Both libraries run
on one thread (NumPy's BLAS limited with threadpoolctl, PyTorch with
``torch.set_num_threads(1)``): at these sizes a product is too small to
split well, and on a small shared machine PyTorch's OpenMP workers waiting
at each op's barrier slowed a 2-thread PyTorch step 50× in a trial here.
Without threadpoolctl NumPy keeps its default and the report says so.
"""
import os

import numpy

from .._validate import check_int
from ..algorithms import bptt
from ..cells.fast_weights import FastWeights, FastWeightsAttention
from ..heads import last_step
from ..heads_mlp import MLPHead
from .bptt import max_rel_error, refnet_kept_bytes
from .report import BenchmarkError, Report, format_table
from .timing import import_torch, numpy_blas, one_thread, peak_bytes, time_each

__all__ = ["SIZES", "GRAD_RTOL", "FORMS", "Problem", "make_problem", "torch_hidden_states", "kept_bytes",
           "run"]

BATCH, INPUT, READOUT_HIDDEN, CLASSES = 128, 37, 100, 10
SIZES = {"full": ((20, 11), (50, 11), (100, 11), (50, 25), (50, 50)),   # (n, T)
         "quick": ((8, 5),)}
QUICK_BATCH = 8
DEFAULT_REPEATS = {"full": 7, "quick": 1}
# Wall-clock budget in seconds of each timed block (time_call's max_seconds).
BUDGET_S = 6.0
# Normwise relative error allowed between refnet's and PyTorch's gradients (float64):
# the same terms summed in different orders, through T ≤ 50 steps of layer norms.
GRAD_RTOL = 1e-10
FORMS = ("explicit", "attention")


class Problem:
    """Data, weights and the refnet objects of one (form, n, T) training step; NumPy float64.

    The cell is Ba et al. (2016, Eqs. 1–3, §3.1) with S = 1 inner step and
    the cell's own λ, η; the readout their §4.1 MLP (100 ReLU units, 10
    classes).  W is drawn N(0, 1/n) rather than the init's 0.05·I so that the
    recurrence is exercised.  Attributes: ``cell``, ``head``, ``theta``,
    ``beta``, ``x`` (T, batch, 37) one-hot inputs, ``y`` (T, batch) labels
    (only the last step's count), ``weights`` (T, batch) on the last step,
    ``s0`` (batch, n_state) zeros (h_0 = 0, A(0) = 0).  Use
    :func:`make_problem`, which validates the sizes.

    Parameters
    ----------
    form : {'explicit', 'attention'}
        :class:`~refnet.cells.fast_weights.FastWeights` (state [h, vec(A)])
        for 'explicit', else :class:`~refnet.cells.fast_weights.FastWeightsAttention`
        with capacity T.
    n : int
        Hidden units.
    T : int
        Time steps.
    batch : int
        Examples per step.
    seed : int, optional
        Seed of ``numpy.random.default_rng``, >= 0.

    Raises
    ------
    ValueError
        If ``n`` is not a positive int (the cell's constructor refuses it), or
        ``T``, ``batch`` or ``seed`` is negative.
    TypeError
        If ``T``, ``batch`` or ``seed`` is not an int.
    IndexError
        If ``T`` = 0 (there is no last step to label).
    ZeroDivisionError
        If ``batch`` = 0 (the last-step weights average over no example).
    """

    def __init__(self, form, n, T, batch, seed=0):
        generator = numpy.random.default_rng(seed)
        self.form, self.n, self.T, self.batch = form, n, T, batch
        if form == "explicit":
            self.cell = FastWeights(INPUT, n)
        else:
            self.cell = FastWeightsAttention(INPUT, n, capacity=T)
        self.head = MLPHead(n, CLASSES, n_hidden=READOUT_HIDDEN)
        bound = INPUT ** -0.5
        # W drawn rather than 0.05·I, so that the recurrence is exercised.
        self.theta = {"weight_ih": generator.uniform(-bound, bound, (n, INPUT)),
                      "weight_hh": generator.normal(0.0, n ** -0.5, (n, n)),
                      "ln_weight": generator.uniform(0.5, 1.5, n),
                      "ln_bias": generator.normal(0.0, 0.1, n)}
        self.beta = {k: generator.uniform(-0.1, 0.1, shape) for k, shape in self.head.param_shapes().items()}
        self.x = numpy.eye(INPUT)[generator.integers(0, INPUT, (T, batch))]
        self.y = numpy.zeros((T, batch), dtype=numpy.int64)
        self.y[-1] = generator.integers(0, CLASSES, batch)
        self.weights = last_step(T, batch, like=self.x)
        self.s0 = numpy.zeros((batch, self.cell.n_state))

    def refnet_step(self):
        """One refnet training step: loss and gradients by BPTT (Werbos 1990).

        Returns
        -------
        GradResult
            ``loss`` (the mean cross-entropy at the last step), ``dtheta``,
            ``dbeta`` and ``ds0``.

        Raises
        ------
        refnet.NumericalError
            If the forward or backward pass overflows (names the first non-finite step).
        ValueError
            As :func:`refnet.bptt`, for attributes changed to a wrong shape or
            to hold NaN/Inf.
        """
        return bptt(self.cell, self.theta, self.x, self.s0, self.head, self.beta, self.y, self.weights)


def make_problem(form, n, T, batch=BATCH, seed=0):
    """The :class:`Problem` of one size.

    Parameters
    ----------
    form : {'explicit', 'attention'}
        The memory form (:data:`FORMS`).
    n : int
        Hidden units, >= 1.
    T : int
        Time steps, >= 1 (also the attention form's capacity).
    batch : int, optional
        Examples per step, >= 1.
    seed : int, optional
        Seed of the data and weights, >= 0.

    Returns
    -------
    Problem
        Data, weights and the refnet cell and head, float64.

    Raises
    ------
    ValueError
        If ``form`` is not in :data:`FORMS`, a size is < 1, or ``seed`` is negative.
    TypeError
        If a size is not an int, or ``seed`` is not an int.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    return Problem(form, check_int("n", n, 1), check_int("T", T, 1), check_int("batch", batch, 1), seed)


def torch_hidden_states(torch, cell, theta, x, h0):
    """h(1..T) (T, B, n) of ``cell`` (a refnet fast-weights cell) in torch ops, from h(0) = ``h0``, A(0) = 0.

    The explicit form keeps A(t) = λ A(t−1) + η h(t) h(t)ᵀ; the attention form
    reads η Σ_{τ ≤ t} λ^{t−τ} h(τ) ⟨h(τ), h⟩ from the stacked history
    (Ba et al. 2016, Eqs. 1–3, with layer norm as in §3.1:
    h_{s+1}(t+1) = ReLU(LN[W h(t) + C x(t) + A(t) h_s(t+1)])).
    Autograd differentiates the result.

    Parameters
    ----------
    torch : module
        The ``torch`` module.
    cell : FastWeights or FastWeightsAttention
        The refnet cell whose λ, η, S, ``ln_eps`` and ``hidden_size`` n are used.
    theta : dict {name: tensor}
        ``weight_hh`` W (n, n), ``weight_ih`` C (n, I), ``ln_weight`` (n,), ``ln_bias`` (n,).
    x : (T, B, I) tensor
        Inputs.
    h0 : (B, n) tensor
        h(0).

    Returns
    -------
    (T, B, n) tensor
        h(1), ..., h(T).

    Raises
    ------
    KeyError
        If ``theta`` lacks one of the four parameters.
    RuntimeError
        If the tensors' shapes or dtypes do not fit together (torch's own error).
    """
    W, C = theta["weight_hh"], theta["weight_ih"]
    gain, bias = theta["ln_weight"], theta["ln_bias"]
    n = cell.hidden_size

    def ln_relu(a):
        return torch.relu(torch.nn.functional.layer_norm(a, (n,), gain, bias, cell.ln_eps))

    h, A, history, out = h0, None, [], []
    for t in range(x.shape[0]):
        z = h @ W.T + x[t] @ C.T
        h_s = ln_relu(z)
        for _ in range(cell.S):
            if isinstance(cell, FastWeightsAttention):
                if history:
                    H = torch.stack(history, dim=1)                                   # (B, t, n)
                    w = cell.eta * cell.lam ** torch.arange(t - 1, -1, -1, dtype=h.dtype)
                    read = ((w * (H @ h_s[:, :, None])[:, :, 0])[:, None, :] @ H)[:, 0, :]
                else:
                    read = torch.zeros_like(h_s)
            else:
                read = torch.zeros_like(h_s) if A is None else (A @ h_s[:, :, None])[:, :, 0]
            h_s = ln_relu(z + read)
        h = h_s
        if isinstance(cell, FastWeightsAttention):
            history.append(h)
        else:
            outer = cell.eta * h[:, :, None] * h[:, None, :]
            A = outer if A is None else cell.lam * A + outer
        out.append(h)
    return torch.stack(out)


def _torch_step(torch, problem):
    """The PyTorch training step (returns the loss) and the leaves whose ``.grad`` it fills."""
    p = problem
    theta = {k: torch.tensor(v, requires_grad=True) for k, v in p.theta.items()}
    beta = {k: torch.tensor(v, requires_grad=True) for k, v in p.beta.items()}
    x, target = torch.from_numpy(p.x), torch.from_numpy(p.y[-1])
    h0 = torch.zeros((p.batch, p.n), dtype=torch.float64)

    def step():
        for leaf in (*theta.values(), *beta.values()):
            leaf.grad = None
        h_T = torch_hidden_states(torch, p.cell, theta, x, h0)[-1]
        u = torch.relu(h_T @ beta["hidden_weight"].T + beta["hidden_bias"])
        loss = torch.nn.functional.cross_entropy(u @ beta["weight"].T + beta["bias"], target)
        loss.backward()
        return loss

    return step, {**{f"theta/{k}": v for k, v in theta.items()}, **{f"beta/{k}": v for k, v in beta.items()}}


def _check_agreement(torch, problem):
    """Compare refnet's and PyTorch's loss and gradients once; returns ``(error, worst)`` or raises."""
    ours = problem.refnet_step()
    step, leaves = _torch_step(torch, problem)
    loss = step()
    mine = {"loss": numpy.array(ours.loss), **{f"theta/{k}": v for k, v in ours.dtheta.items()},
            **{f"beta/{k}": v for k, v in ours.dbeta.items()}}
    theirs = {"loss": numpy.array(loss.item()), **{k: v.grad.numpy() for k, v in leaves.items()}}
    error, name = max_rel_error(mine, theirs)
    if error > GRAD_RTOL:
        raise BenchmarkError(
            f"refnet and torch disagree on {name} ({problem.form}, n = {problem.n}, T = {problem.T}): "
            f"normwise relative error {error:.2e} > {GRAD_RTOL:.0e}; a benchmark of a wrong computation "
            "is worthless")
    return error, name


def _arrays(obj):
    """Every NumPy array inside nested tuples/lists (NamedTuples included)."""
    if isinstance(obj, numpy.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _arrays(item)


def kept_bytes(trajectory):
    """Bytes of the distinct buffers of a :class:`refnet.algorithms.bptt.Trajectory` (views count once).

    Parameters
    ----------
    trajectory : Trajectory
        What :func:`refnet.forward` returns: states ``s`` (s_0..s_T) and ``caches``.

    Returns
    -------
    int
        Bytes of the distinct NumPy buffers in ``s`` and ``caches`` (a view
        counts as its base, once).

    Raises
    ------
    AttributeError
        If ``trajectory`` has no ``s`` or ``caches``.
    """
    roots = {}
    for a in _arrays((trajectory.s, trajectory.caches)):
        while isinstance(a.base, numpy.ndarray):
            a = a.base
        roots[id(a)] = a.nbytes
    return sum(roots.values())


def _torch_kept_bytes(torch, problem):
    """Bytes of the distinct storages autograd saves for the backward of one PyTorch step's forward."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    step, _ = _torch_step(torch, problem)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(storages.values())


def _environment(torch):
    """The fields every row carries (read inside :func:`one_thread`)."""
    blas, blas_threads = numpy_blas()
    return {"case": "fastweights", "numpy_version": numpy.__version__,
            "torch_version": None if torch is None else torch.__version__,
            "numpy_blas": blas, "numpy_blas_threads": blas_threads,
            "torch_threads": None if torch is None else torch.get_num_threads(),
            "cpu_count": os.cpu_count()}


def _measure(torch, env, form, n, T, batch, repeats):
    """Rows (timing per implementation, then the ratio) of one (form, n, T)."""
    problem = make_problem(form, n, T, batch)
    sizes = {"form": form, "B": batch, "I": INPUT, "n": n, "T": T, "S": problem.cell.S,
             "n_state": problem.cell.n_state}
    runs = {"refnet": problem.refnet_step}
    agreement = (None, None)
    kept = {"refnet": refnet_kept_bytes(problem.cell, problem.theta, problem.x, problem.s0)}
    if torch is not None:
        agreement = _check_agreement(torch, problem)
        runs["torch"] = _torch_step(torch, problem)[0]
        kept["torch"] = _torch_kept_bytes(torch, problem)
    peak = peak_bytes(problem.refnet_step)
    timings = time_each(runs, repeats=repeats, max_seconds=BUDGET_S)
    rows = [{**env, "row": "timing", "impl": impl, **sizes, "median_s": tm.median, "min_s": tm.min,
             "max_s": tm.max, "repeats": tm.repeats, "kept_bytes": kept[impl],
             "peak_bytes": peak if impl == "refnet" else None}
            for impl, tm in timings.items()]
    has_torch = "torch" in timings
    time_ratio = timings["refnet"].median / timings["torch"].median if has_torch else None
    rows.append({**env, "row": "ratio", **sizes, "refnet_over_torch_time": time_ratio,
                 "refnet_over_torch_kept": kept["refnet"] / kept["torch"] if has_torch else None,
                 "grad_max_rel_err": agreement[0], "grad_worst": agreement[1], "grad_rtol": GRAD_RTOL})
    return rows


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _mib(value):
    return _fmt(None if value is None else value / 2 ** 20, ".1f")


def _table(rows, torch_missing):
    env = rows[0]
    peer = (f"torch {env['torch_version']} ({env['torch_threads']} threads)" if env["torch_version"]
            else f"torch not importable ({torch_missing}): peer skipped, ratios null")
    blas = (f"{env['numpy_blas']}, {env['numpy_blas_threads']} threads" if env["numpy_blas"]
            else "BLAS threads unknown (threadpoolctl not importable), default kept")
    header = "\n".join([
        "fastweights: one training step (BPTT through the cell, MLP readout, CE at the last step), float64",
        f"B={env['B']} I={env['I']} S={env['S']}; explicit state n + n², attention state n (1 + T)",
        "times: median [min, max] over n repeats; kept = bytes held for the backward, "
        "peak = refnet's traced peak",
        f"numpy {env['numpy_version']} ({blas}); {peer}; {env['cpu_count']} CPUs",
    ])
    timing = {(r["form"], r["n"], r["T"], r["impl"]): r for r in rows if r["row"] == "timing"}
    lines = []
    for r in (r for r in rows if r["row"] == "ratio"):
        ours = timing[(r["form"], r["n"], r["T"], "refnet")]
        theirs = timing.get((r["form"], r["n"], r["T"], "torch"))
        lines.append((r["form"], str(r["n"]), str(r["T"]), str(ours["repeats"]),
                      f"{1e3 * ours['median_s']:.1f} [{1e3 * ours['min_s']:.1f}, {1e3 * ours['max_s']:.1f}]",
                      "-" if theirs is None else
                      f"{1e3 * theirs['median_s']:.1f} [{1e3 * theirs['min_s']:.1f}, {1e3 * theirs['max_s']:.1f}]",
                      _fmt(r["refnet_over_torch_time"], ".2f"), _mib(ours["peak_bytes"]), _mib(ours["kept_bytes"]),
                      _mib(None if theirs is None else theirs["kept_bytes"]),
                      _fmt(r["refnet_over_torch_kept"], ".2f"), _fmt(r["grad_max_rel_err"], ".1e")))
    table = format_table(("form", "n", "T", "reps", "refnet ms", "torch ms", "time ratio", "peak MiB",
                          "kept MiB", "torch kept MiB", "kept ratio", "grad err"), lines, text_columns=1)
    return f"{header}\n\n{table}\n\nratios are refnet / torch (> 1: refnet slower or larger); " \
           f"grad err: max normwise relative error of loss and gradients, tolerance {GRAD_RTOL:.0e}"


def run(*, repeats=None, quick=False):
    """Run the ``fastweights`` case: both forms at every size of :data:`SIZES`.

    Parameters
    ----------
    repeats : int >= 1 or None
        Timed repeats per measurement; None for the default (7, or 1 with ``quick``).
        A measurement stops earlier once :data:`BUDGET_S` is spent; each row's
        ``repeats`` says how many were made.
    quick : bool
        One tiny size (n = 8, T = 5, B = 8), for tests.

    Returns
    -------
    Report
        Rows ``row`` = "timing" (per implementation, form and size: times,
        ``kept_bytes``, ``peak_bytes``) and "ratio" (``refnet_over_torch_time``,
        ``refnet_over_torch_kept``, the gradient agreement; null without torch).

    Raises
    ------
    TypeError
        If ``repeats`` is not an int (or None).
    ValueError
        If ``repeats`` < 1.
    BenchmarkError
        If refnet and PyTorch disagree beyond :data:`GRAD_RTOL`.
    """
    size = "quick" if quick else "full"
    repeats = DEFAULT_REPEATS[size] if repeats is None else check_int("repeats", repeats, 1)
    batch = QUICK_BATCH if quick else BATCH
    torch, torch_missing = import_torch()
    with one_thread(torch):
        env = _environment(torch)
        rows = [row for n, T in SIZES[size] for form in FORMS
                for row in _measure(torch, env, form, n, T, batch, repeats)]
    return Report(tuple(rows), _table(rows, torch_missing))
