"""Case ``bptt``: BPTT of an LSTM, refnet against PyTorch's nn.LSTM.

One run is the forward pass over the whole sequence and the backward pass
with given cotangents on every output and on the final state:

- refnet: ``refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)``;
- PyTorch: ``nn.LSTM`` forward, then ``torch.autograd.backward`` of
  ``(out, h_n, c_n)`` with grads ``(dout, ds_T[:, :H], ds_T[:, H:])``;
  x, h0 and c0 require grad, so both compute the same gradients
  (θ, every x_t and s_0).

Both see the same data and the same weights (refnet's names are PyTorch's
without the ``_l0``), and before anything is timed their gradients are
compared (:func:`max_rel_error`); a disagreement beyond
:data:`GRAD_RTOL` raises :class:`~refnet.bench.report.BenchmarkError`.

PyTorch runs on as many threads as NumPy's BLAS (read with threadpoolctl;
without it both keep their defaults, and the report says what they are).
Without PyTorch the peer is skipped and the ratios are null.

Throughput is reported against NumPy's measured matmul rate in the same
dtype, on the LSTM's own product shapes and on one large square product,
with the FLOP count of :func:`lstm_bptt_flops`.
"""
import os
from dataclasses import dataclass

import numpy

from ..cells import LSTM
from ..algorithms import sequence_vjp
from .._validate import check_int
from .report import BenchmarkError, Report, format_table
from .timing import gemm_throughput, import_torch, numpy_blas, time_each

__all__ = ["Problem", "GRAD_RTOL", "lstm_bptt_flops", "make_problem", "max_rel_error",
           "lstm_gemms", "run"]

BATCH, INPUT, HIDDEN = 32, 16, 128
STEPS = {"full": 256, "quick": 16}
SQUARE = {"full": 1024, "quick": 256}
DEFAULT_REPEATS = {"full": 15, "quick": 3}
DTYPES = ("float32", "float64")
# Wall-clock budgets in seconds of each measurement (time_call's max_seconds), so
# that the whole case stays near a minute even when the 2-core machine is loaded.
BUDGET_S = {"bptt": 9.0, "gemm": 3.0}

# A measurement whose max exceeds NOISY_SPREAD × its min is flagged in the table.
NOISY_SPREAD = 2.0

# Normwise relative error allowed between refnet's and PyTorch's gradients.  Both
# sum the same terms in different orders; over T = 256 steps of sums of
# B·(I + H) products that stays near 1e-6 in float32 (ε = 1.2e-7) and 1e-14 in
# float64 (ε = 2.2e-16); the tolerances leave two orders of margin.
GRAD_RTOL = {"float32": 1e-4, "float64": 1e-11}


@dataclass(frozen=True)
class Problem:
    """One BPTT problem, all NumPy arrays of one dtype.

    theta : LSTM params {weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,)}
    x : (T, B, I);  s0 : (B, 2H) = [h0, c0];  dout : (T, B, H);  ds_T : (B, 2H)
    """

    theta: dict
    x: numpy.ndarray
    s0: numpy.ndarray
    dout: numpy.ndarray
    ds_T: numpy.ndarray


def lstm_bptt_flops(B, I, H, T):
    """Matmul FLOPs of LSTM forward + backward over T steps: 24·T·B·(I+H)·H.

    Forward, per step, the gate pre-activations a = [x, h] Wᵀ, W = [W_ih, W_hh]
    (4H, I+H), are one (B×(I+H))@((I+H)×4H) product: 2·B·(I+H)·4H FLOPs.
    Backward, per step, twice that: dW = daᵀ [x, h] and d[x, h] = da W, each a
    product of the same size.  Total T·3·2·B·(I+H)·4H = 24·T·B·(I+H)·H.
    The elementwise gate work and the bias sums (O(T·B·H)) are not counted.
    """
    return 24 * T * B * (I + H) * H


def make_problem(cell, batch, steps, dtype, seed=0):
    """Random :class:`Problem` for ``cell``: drawn in float64, then cast to ``dtype``.

    Weights follow PyTorch's init U(−1/√H, 1/√H); x, dout and ds_T are N(0, 1);
    s0 is N(0, 0.5²) so that the gradient for s_0 is exercised from a nonzero state.
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
    entries near zero do not blow the figure up.  Returns ``(error, name)``
    for the worst of the names in ``theirs``.
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


def _torch_run(torch, cell, problem):
    """nn.LSTM with refnet's weights, and the forward + backward call to time.

    Returns ``(run, leaves)``: ``run()`` does one forward and backward;
    ``leaves`` holds the module and the input tensors whose ``.grad`` it fills.
    """
    p, H = problem, cell.hidden_size
    lstm = torch.nn.LSTM(cell.input_size, H, dtype=getattr(torch, str(p.x.dtype)))
    with torch.no_grad():
        for name, value in p.theta.items():
            getattr(lstm, f"{name}_l0").copy_(torch.from_numpy(value))
    x = torch.tensor(p.x, requires_grad=True)
    h0 = torch.tensor(p.s0[None, :, :H], requires_grad=True)
    c0 = torch.tensor(p.s0[None, :, H:], requires_grad=True)
    cotangents = (torch.from_numpy(p.dout), torch.tensor(p.ds_T[None, :, :H]),
                  torch.tensor(p.ds_T[None, :, H:]))

    def run():
        lstm.zero_grad(set_to_none=True)
        x.grad = h0.grad = c0.grad = None
        out, (h_n, c_n) = lstm(x, (h0, c0))
        torch.autograd.backward((out, h_n, c_n), cotangents)
        return out

    return run, {"lstm": lstm, "x": x, "h0": h0, "c0": c0}


def _torch_results(cell, run, leaves):
    """PyTorch's outputs and gradients after one ``run()``, as NumPy arrays."""
    out = run().detach().numpy()
    grads = {f"d{k}": getattr(leaves["lstm"], f"{k}_l0").grad.numpy() for k in cell.param_shapes()}
    ds0 = numpy.concatenate([leaves["h0"].grad[0].numpy(), leaves["c0"].grad[0].numpy()], axis=1)
    return {"outputs": out, "dx": leaves["x"].grad.numpy(), "ds0": ds0, **grads}


def _check_agreement(cell, problem, torch_run, torch_leaves):
    """Compare refnet with PyTorch once; returns ``(error, worst name)`` or raises."""
    dtype = str(problem.x.dtype)
    error, name = max_rel_error(_refnet_results(cell, problem),
                                _torch_results(cell, torch_run, torch_leaves))
    if error > GRAD_RTOL[dtype]:
        raise BenchmarkError(
            f"refnet and torch disagree on {name} in {dtype}: normwise relative error "
            f"{error:.2e} > {GRAD_RTOL[dtype]:.0e}; a benchmark of a wrong computation is worthless")
    return error, name


def lstm_gemms(B, I, H, T, dtype, *, square, repeats, max_seconds=None):
    """NumPy's matmul rate on the LSTM's products and on one square product.

    ``lstm``: the three per-step products of :func:`lstm_bptt_flops`,
    (B×(I+H))@((I+H)×4H), (4H×B)@(B×(I+H)) and (B×4H)@(4H×(I+H)), each issued
    T times, one after another.  ``square``: (n×n)@(n×n) with n = ``square``.
    ``repeats`` and ``max_seconds`` apply to each of the two.
    Returns ``{"lstm": GemmThroughput, "square": GemmThroughput}``.
    """
    K, G = I + H, 4 * H
    return {
        "lstm": gemm_throughput(f"lstm {B}x{K}x{G} x3 xT", [(B, K, G), (G, B, K), (B, G, K)],
                                dtype, calls=T, repeats=repeats, max_seconds=max_seconds),
        "square": gemm_throughput(f"square {square}", [(square, square, square)],
                                  dtype, repeats=repeats, max_seconds=max_seconds),
    }


def _load_1min():
    """The 1-minute load average, or None where the OS does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _threads(torch):
    """Match PyTorch's threads to NumPy's BLAS; returns the environment dict for every row."""
    blas, blas_threads = numpy_blas()
    if torch is not None and blas_threads is not None:
        torch.set_num_threads(blas_threads)
    return {
        "case": "bptt",
        "numpy_version": numpy.__version__,
        "torch_version": None if torch is None else torch.__version__,
        "numpy_blas": blas,
        "numpy_blas_threads": blas_threads,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_1min_start": _load_1min(),
    }


def _measure_dtype(torch, cell, dtype, steps, square, repeats):
    """Agreement check, timings of each implementation and GEMM rates for one dtype."""
    problem = make_problem(cell, BATCH, steps, dtype)
    runs = {"refnet": _refnet_run(cell, problem)}
    agreement = (None, None)
    if torch is not None:
        runs["torch"], leaves = _torch_run(torch, cell, problem)
        agreement = _check_agreement(cell, problem, runs["torch"], leaves)
    timings = time_each(runs, repeats=repeats, max_seconds=BUDGET_S["bptt"])
    gemms = lstm_gemms(BATCH, INPUT, HIDDEN, steps, dtype, square=square, repeats=repeats,
                       max_seconds=BUDGET_S["gemm"])
    return timings, gemms, agreement


def _timing_fields(timing):
    return {"median_s": timing.median, "min_s": timing.min, "max_s": timing.max,
            "repeats": timing.repeats}


def _rows_for_dtype(env, dtype, steps, timings, gemms, agreement):
    """JSON rows of one dtype: a timing row per implementation, GEMM rows, the ratio row."""
    flops = lstm_bptt_flops(BATCH, INPUT, HIDDEN, steps)
    sizes = {"B": BATCH, "I": INPUT, "H": HIDDEN, "T": steps}
    rows = []
    for impl, timing in timings.items():
        rate = flops / timing.median
        rows.append({**env, "row": "timing", "impl": impl, "dtype": dtype, **sizes,
                     **_timing_fields(timing), "flops": flops, "gflop_per_s": rate / 1e9,
                     **{f"fraction_of_gemm_{k}": rate / g.flops_per_s for k, g in gemms.items()}})
    for key, gemm in gemms.items():
        rows.append({**env, "row": "gemm", "impl": "numpy.matmul", "gemm": key, "shapes": gemm.label,
                     "dtype": dtype, **_timing_fields(gemm.timing), "flops": gemm.flops,
                     "gflop_per_s": gemm.flops_per_s / 1e9})
    ratio = timings["refnet"].median / timings["torch"].median if "torch" in timings else None
    rows.append({**env, "row": "ratio", "dtype": dtype, **sizes, "refnet_over_torch": ratio,
                 "grad_max_rel_err": agreement[0], "grad_worst": agreement[1],
                 "grad_rtol": GRAD_RTOL[dtype]})
    return rows


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _header(rows, torch_missing):
    """Lines saying what was run, where, and with which libraries."""
    env = first = rows[0]
    blas = (f"{env['numpy_blas']}, {env['numpy_blas_threads']} threads" if env["numpy_blas"]
            else "BLAS threads unknown: threadpoolctl not importable, defaults kept")
    peer = (f"torch {env['torch_version']} ({env['torch_threads']} threads)" if env["torch_version"]
            else f"torch not importable ({torch_missing}): peer skipped, ratios null")
    return "\n".join([
        "bptt: LSTM forward + backward over a sequence, refnet.sequence_vjp vs torch nn.LSTM + "
        "autograd.backward",
        f"B={first['B']} I={first['I']} H={first['H']} T={first['T']}; "
        f"{lstm_bptt_flops(first['B'], first['I'], first['H'], first['T']) / 1e9:.3g} GFLOP of "
        "matmuls per run (24·T·B·(I+H)·H)",
        "times: median [min, max] over n repeats, after a warm-up",
        f"numpy {env['numpy_version']} ({blas}); {peer}; {env['cpu_count']} CPUs",
    ])


def _times_ms(row, digits):
    return [f"{1e3 * row[k]:.{digits}f}" for k in ("median_s", "min_s", "max_s")]


def _timing_table(rows):
    return format_table(
        ("dtype", "impl", "n", "median ms", "min ms", "max ms", "GFLOP/s", "of GEMM lstm",
         "of GEMM square"),
        [(r["dtype"], r["impl"], str(r["repeats"]), *_times_ms(r, 1), f"{r['gflop_per_s']:.2f}",
          f"{r['fraction_of_gemm_lstm']:.0%}", f"{r['fraction_of_gemm_square']:.0%}")
         for r in rows if r["row"] == "timing"],
        text_columns=2)


def _gemm_table(rows):
    return format_table(
        ("dtype", "numpy.matmul", "n", "median ms", "min ms", "max ms", "GFLOP/s"),
        [(r["dtype"], r["shapes"], str(r["repeats"]), *_times_ms(r, 2), f"{r['gflop_per_s']:.2f}")
         for r in rows if r["row"] == "gemm"],
        text_columns=2)


def _ratio_table(rows):
    return format_table(
        ("dtype", "refnet_over_torch (>1: refnet slower)", "grad max rel err", "worst", "tolerance"),
        [(r["dtype"], _fmt(r["refnet_over_torch"], ".2f"), _fmt(r["grad_max_rel_err"], ".1e"),
          r["grad_worst"] or "-", f"{r['grad_rtol']:.0e}")
         for r in rows if r["row"] == "ratio"])


def _noise_note(rows):
    """A warning line if some measurement's max/min exceeds :data:`NOISY_SPREAD`, else ''."""
    noisy = [r for r in rows if r["row"] in ("timing", "gemm") and r["max_s"] > NOISY_SPREAD * r["min_s"]]
    if not noisy:
        return ""
    env = rows[0]
    return (f"note: max/min > {NOISY_SPREAD:g} in {len(noisy)} of the timing and GEMM rows; 1-min load "
            f"average {_fmt(env['load_1min_start'], '.2f')} at start, {_fmt(env['load_1min_end'], '.2f')} "
            f"at end on {env['cpu_count']} CPUs: other work shared the machine; rerun when it is idle")


def _table(rows, torch_missing):
    """The human-readable report of ``rows``."""
    parts = [_header(rows, torch_missing), _timing_table(rows), _gemm_table(rows), _ratio_table(rows),
             _noise_note(rows)]
    return "\n\n".join(part for part in parts if part)


def run(*, repeats=None, quick=False):
    """Run the ``bptt`` case in float32 and float64.

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
        Rows ``row`` = "timing" (per implementation and dtype), "gemm" and
        "ratio" (``refnet_over_torch`` = refnet time / torch time, so > 1 means
        refnet is slower; null without torch), each with the environment.

    Raises
    ------
    BenchmarkError
        If refnet's and PyTorch's gradients disagree beyond :data:`GRAD_RTOL`.
    """
    size = "quick" if quick else "full"
    repeats = DEFAULT_REPEATS[size] if repeats is None else check_int("repeats", repeats, 1)
    torch, torch_missing = import_torch()
    previous_threads = None if torch is None else torch.get_num_threads()
    try:
        env = _threads(torch)
        cell = LSTM(INPUT, HIDDEN)
        measured = {dtype: _measure_dtype(torch, cell, dtype, STEPS[size], SQUARE[size], repeats)
                    for dtype in DTYPES}
    finally:
        if torch is not None:
            torch.set_num_threads(previous_threads)
    env["load_1min_end"] = _load_1min()
    rows = [row for dtype in DTYPES for row in _rows_for_dtype(env, dtype, STEPS[size], *measured[dtype])]
    return Report(tuple(rows), _table(rows, torch_missing))
