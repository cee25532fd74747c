"""Case ``rbp``: BPTT through a whole trajectory against Neumann-RBP(K) and CG-RBP at the equilibrium.

A tanh Elman RNN (n = 256 hidden units, input 32, B = 64, PyTorch's init,
so ρ(J) ≈ 0.6 and the dynamics contract) is run for T steps on a static
input x, h_0 = 0, to a loss at the last state only: softmax cross-entropy of a
linear readout of h_T (10 classes).  Each implementation computes dθ:

- ``bptt``: ``refnet.bptt`` over the T steps (every state and cache kept);
- ``neumann_rbp``: T plain steps h ← F(h) keeping only the last, then
  ``refnet.neumann_rbp`` (:mod:`refnet.algorithms.rbp`) with K = :data:`K` at h_T;
- ``cg_rbp``: the same forward, then ``cg_rbp`` (rtol 1e-10) at h_T.

So the forward work is the same and only what is kept and the backward
differ: BPTT's memory grows with T, the RBP variants' must not.  At h_T the
trajectory has converged (``fixed_point_residual`` = ‖F(h_T) − h_T‖_∞ is
reported), and before anything is timed the three gradients must agree to
:data:`GRAD_RTOL` (the RBP variants drop only the transient's ρ^(T−t) terms
and Neumann's ρ^(K+1) tail), else :class:`~refnet.bench.report.BenchmarkError`.

**Peak memory** is measured with :mod:`tracemalloc`, which NumPy reports its
array buffers to: the peak traced allocation above the start of one call, in
a separate untimed call (tracing slows Python down).  ``state_bytes`` = T·B·n
·itemsize is the trajectory alone, the floor of any BPTT.

The peer is PyTorch's ``nn.RNN`` with the same weights, BPTT by autograd
(time only: its CPU allocator is invisible to tracemalloc); the ratio
``bptt_over_torch`` is in the same run.  Both libraries run on one thread
(NumPy's BLAS limited with threadpoolctl when importable; PyTorch with
``torch.set_num_threads(1)``): the products are 64×256 by 256×256, too small
to split usefully, and on a shared 2-core machine a second BLAS thread was
measured to slow a step 4× by contention.
"""
import os
from dataclasses import dataclass

import numpy

from .._validate import check_int
from ..algorithms.bptt import bptt
from ..algorithms.rbp import cg_rbp, neumann_rbp
from ..cells.elman import ElmanRNN
from ..heads import Head, last_step
from .report import BenchmarkError, Report, format_table
from .timing import import_torch, numpy_blas, one_thread, peak_bytes, time_each

__all__ = ["Problem", "K", "GRAD_RTOL", "make_problem", "run"]

SIZES = {"full": {"n": 256, "I": 32, "B": 64, "T": (100, 1000)},
         "quick": {"n": 16, "I": 4, "B": 4, "T": (80, 240)}}
CLASSES = 10
K = 50
CG_RTOL = 1e-10
DEFAULT_REPEATS = {"full": 5, "quick": 1}
BUDGET_S = 20.0      # wall-clock budget of each implementation's timed block (time_call's max_seconds)
# Normwise relative error allowed between BPTT's and the RBP variants' dθ: they differ by the
# transient (ρ^(T − t) for the ~60 steps before h_T converged) and, for Neumann-RBP, ρ^(K+1) ≈ 1e-11.
GRAD_RTOL = 1e-6
IMPLS = ("bptt", "neumann_rbp", "cg_rbp")


@dataclass(frozen=True)
class Problem:
    """One problem: cell and θ, the readout, x (B, I) static, labels y (B,).

    Attributes
    ----------
    cell : ElmanRNN
        The tanh Elman cell, h ← tanh(W_ih x + b_ih + W_hh h + b_hh) (Elman 1990),
        iterated to its equilibrium h* = F(h*) (Almeida 1987; Pineda 1987).
    theta : dict {name: ndarray}
        Its params: weight_ih (n, I), weight_hh (n, n), bias_ih (n,), bias_hh (n,).
    head : Head
        The linear readout of h_T to 10 classes, softmax cross-entropy.
    beta : dict {name: ndarray}
        The readout's params: weight (10, n), bias (10,).
    x : (B, I) ndarray
        The static input, the same at every step.
    y : (B,) ndarray
        Integer labels in [0, 10).
    """

    cell: ElmanRNN
    theta: dict
    head: Head
    beta: dict
    x: numpy.ndarray
    y: numpy.ndarray


def make_problem(n, I, B, seed=0):
    """PyTorch's init U(−1/√n, 1/√n) for the cell and the readout; x ~ N(0, 1); random labels.

    At this init ρ(J) ≈ 0.6 for n = 256, so the dynamics contract to an
    equilibrium the RBP variants (Liao et al. 2018) can start from.

    Parameters
    ----------
    n : int
        Hidden units, >= 1.
    I : int
        Input width, >= 1.
    B : int
        Batch size, >= 0.
    seed : int, optional
        Seed of ``numpy.random.default_rng``, >= 0.

    Returns
    -------
    Problem
        The cell, θ, the readout, β, x (B, I) and y (B,), float64.

    Raises
    ------
    ValueError
        If ``n`` or ``I`` is not a positive int (the cell's constructor refuses
        it), or ``B`` or ``seed`` is negative.
    TypeError
        If ``B`` or ``seed`` is not an int.
    """
    generator = numpy.random.default_rng(seed)
    cell, head = ElmanRNN(I, n, "tanh"), Head(n, CLASSES)
    bound = n ** -0.5
    theta = {k: generator.uniform(-bound, bound, shape) for k, shape in cell.param_shapes().items()}
    beta = {k: generator.uniform(-bound, bound, shape) for k, shape in head.param_shapes().items()}
    return Problem(cell, theta, head, beta, generator.standard_normal((B, I)),
                   generator.integers(0, CLASSES, B))


def _bptt(p, T):
    """dθ by BPTT through the T-step trajectory (loss at step T only)."""
    B = p.x.shape[0]
    xs = numpy.broadcast_to(p.x, (T,) + p.x.shape)
    ys = numpy.broadcast_to(p.y, (T, B))
    return bptt(p.cell, p.theta, xs, None, p.head, p.beta, ys, last_step(T, B)).dtheta, None


def _implicit(p, T, solve):
    """T steps keeping the last state only, then ``solve`` at h_T; returns (dθ, result)."""
    h = numpy.zeros((p.x.shape[0], p.cell.n_state))
    for _ in range(T):
        h = p.cell.step(p.theta, h, p.x)[0]
    w = numpy.full(p.x.shape[0], 1.0 / p.x.shape[0])
    _, dh, _ = p.head.loss_and_grad(p.beta, h, p.y, w)
    result = solve(p.cell, p.theta, p.x, h, dh)
    return result.dtheta, result


def _runs(p, T):
    return {
        "bptt": lambda: _bptt(p, T),
        "neumann_rbp": lambda: _implicit(p, T, lambda *a: neumann_rbp(*a, K=K)),
        "cg_rbp": lambda: _implicit(p, T, lambda *a: cg_rbp(*a, rtol=CG_RTOL)),
    }


def _rel_error(ours, reference):
    """Normwise relative error max|a − b| / max|b| over the parameters, and the worst name."""
    errors = {k: float(numpy.abs(ours[k] - v).max() / numpy.abs(v).max()) for k, v in reference.items()}
    worst = max(errors, key=errors.get)
    return errors[worst], worst


def _torch_run(torch, p, T):
    """nn.RNN with refnet's weights: forward over T steps, readout loss at h_T, backward."""
    n = p.cell.hidden_size
    rnn = torch.nn.RNN(p.cell.input_size, n, nonlinearity="tanh", dtype=torch.float64)
    with torch.no_grad():
        for name, value in p.theta.items():
            getattr(rnn, f"{name}_l0").copy_(torch.from_numpy(value))
    xs = torch.from_numpy(numpy.ascontiguousarray(numpy.broadcast_to(p.x, (T,) + p.x.shape)))
    W, b, y = (torch.from_numpy(p.beta["weight"]), torch.from_numpy(p.beta["bias"]),
               torch.from_numpy(p.y))

    def run():
        rnn.zero_grad(set_to_none=True)
        _, h_T = rnn(xs)
        torch.nn.functional.cross_entropy(h_T[0] @ W.T + b, y).backward()
        return {k: getattr(rnn, f"{k}_l0").grad.numpy() for k in p.theta}

    return run


def _measure(torch, p, T, repeats):
    """Agreement check, peak memory and timings of every implementation at one T."""
    runs = _runs(p, T)
    results = {impl: fn() for impl, fn in runs.items()}
    reference = results["bptt"][0]
    checks = {}
    for impl in IMPLS[1:]:
        error, name = _rel_error(results[impl][0], reference)
        if error > GRAD_RTOL:
            raise BenchmarkError(f"{impl} and bptt disagree on d{name} at T = {T}: normwise relative "
                                 f"error {error:.2e} > {GRAD_RTOL:.0e}; a benchmark of a wrong "
                                 "computation is worthless")
        checks[impl] = (error, name)
    if torch is not None:
        runs["torch_bptt"] = _torch_run(torch, p, T)
        checks["torch_bptt"] = _rel_error(runs["torch_bptt"](), reference)
        if checks["torch_bptt"][0] > 1e-10:
            raise BenchmarkError(f"torch and refnet BPTT disagree at T = {T}: normwise relative error "
                                 f"{checks['torch_bptt'][0]:.2e} > 1e-10")
    peaks = {impl: peak_bytes(runs[impl]) for impl in IMPLS}
    timings = time_each(runs, repeats=repeats, max_seconds=BUDGET_S)
    return results, checks, peaks, timings


def _rows(env, p, T, measured):
    results, checks, peaks, timings = measured
    B, n = p.x.shape[0], p.cell.hidden_size
    sizes = {"n": n, "I": p.cell.input_size, "B": B, "T": T, "K": K}
    rows = []
    for impl, timing in timings.items():
        result = results[impl][1] if impl in results else None
        error, worst = checks.get(impl, (None, None))
        rows.append({**env, "row": "timing", "impl": impl, **sizes, "median_s": timing.median,
                     "min_s": timing.min, "max_s": timing.max, "repeats": timing.repeats,
                     "peak_bytes": peaks.get(impl), "state_bytes": T * B * n * 8,
                     "grad_rel_err_vs_bptt": error, "grad_worst": worst,
                     "iterations": None if result is None else result.iterations,
                     "linear_residual": None if result is None else result.residual,
                     "fixed_point_residual": None if result is None else result.fixed_point_residual})
    bptt_t = timings["bptt"].median
    ratio = {f"bptt_over_{impl}_time": bptt_t / timings[impl].median for impl in IMPLS[1:]}
    ratio.update({f"bptt_over_{impl}_memory": peaks["bptt"] / peaks[impl] for impl in IMPLS[1:]})
    ratio["bptt_over_torch_time"] = (bptt_t / timings["torch_bptt"].median
                                     if "torch_bptt" in timings else None)
    rows.append({**env, "row": "ratio", **sizes, **ratio})
    return rows


def _environment(torch):
    blas, blas_threads = numpy_blas()
    return {"case": "rbp", "numpy_version": numpy.__version__,
            "torch_version": None if torch is None else torch.__version__,
            "numpy_blas": blas, "numpy_blas_threads": blas_threads,
            "torch_threads": None if torch is None else torch.get_num_threads(),
            "cpu_count": os.cpu_count()}


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _table(rows, torch_missing):
    first = rows[0]
    peer = (f"torch {first['torch_version']} ({first['torch_threads']} threads)" if first["torch_version"]
            else f"torch not importable ({torch_missing}): peer skipped")
    header = "\n".join([
        f"rbp: tanh RNN n={first['n']} I={first['I']} B={first['B']}, static input, loss at h_T; "
        f"Neumann-RBP K={K}, CG-RBP rtol {CG_RTOL:g}; float64",
        "times: median [min, max] over n repeats; peak: tracemalloc, peak NumPy allocation above the "
        "start of one call; state: T·B·n·8 bytes, the trajectory alone",
        f"numpy {first['numpy_version']} ({first['numpy_blas']}, {first['numpy_blas_threads']} threads); "
        f"{peer}; {first['cpu_count']} CPUs",
    ])
    timing = format_table(
        ("T", "impl", "n", "median ms", "min ms", "max ms", "peak MB", "state MB", "rel err vs bptt",
         "iters", "‖F(h_T)−h_T‖∞"),
        [(str(r["T"]), r["impl"], str(r["repeats"]), f"{1e3 * r['median_s']:.1f}", f"{1e3 * r['min_s']:.1f}",
          f"{1e3 * r['max_s']:.1f}", _fmt(None if r["peak_bytes"] is None else r["peak_bytes"] / 1e6, ".2f"),
          f"{r['state_bytes'] / 1e6:.2f}", _fmt(r["grad_rel_err_vs_bptt"], ".1e"), _fmt(r["iterations"], "d"),
          _fmt(r["fixed_point_residual"], ".1e"))
         for r in rows if r["row"] == "timing"], text_columns=2)
    ratios = format_table(
        ("T", "bptt/neumann time", "bptt/neumann memory", "bptt/cg time", "bptt/cg memory",
         "bptt/torch time"),
        [(str(r["T"]), f"{r['bptt_over_neumann_rbp_time']:.2f}", f"{r['bptt_over_neumann_rbp_memory']:.1f}",
          f"{r['bptt_over_cg_rbp_time']:.2f}", f"{r['bptt_over_cg_rbp_memory']:.1f}",
          _fmt(r["bptt_over_torch_time"], ".2f"))
         for r in rows if r["row"] == "ratio"])
    return "\n\n".join([header, timing, ratios])


def run(*, repeats=None, quick=False):
    """Run the ``rbp`` case at each T of :data:`SIZES`.

    Parameters
    ----------
    repeats : int >= 1 or None
        Timed repeats per measurement; None for the default (5, or 1 with ``quick``).
    quick : bool
        n = 16, B = 4, T = 80 and 240, for tests.

    Returns
    -------
    Report
        Rows ``row`` = "timing" (per implementation and T: times, ``peak_bytes``,
        ``state_bytes``, agreement with BPTT, solver iterations and residuals)
        and "ratio" (BPTT ÷ each RBP variant in time and peak memory, and
        BPTT ÷ torch in time; > 1: the RBP variant is cheaper).

    Raises
    ------
    TypeError
        If ``repeats`` is not an int (or None).
    ValueError
        If ``repeats`` < 1.
    BenchmarkError
        If a gradient disagrees with BPTT beyond :data:`GRAD_RTOL`.
    """
    size = "quick" if quick else "full"
    repeats = DEFAULT_REPEATS[size] if repeats is None else check_int("repeats", repeats, 1)
    sizes = SIZES[size]
    torch, torch_missing = import_torch()
    with one_thread(torch):
        env = _environment(torch)
        p = make_problem(sizes["n"], sizes["I"], sizes["B"])
        rows = [row for T in sizes["T"] for row in _rows(env, p, T, _measure(torch, p, T, repeats))]
    return Report(tuple(rows), _table(rows, torch_missing))
