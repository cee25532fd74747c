"""``python -m refnet.bench gpu``: refnet's fused path on CuPy against PyTorch's cuDNN LSTM and GRU.

One forward and backward of the whole sequence (``refnet.sequence_vjp`` on
CuPy arrays: the fused pair with one cuBLAS GEMM and one elementwise kernel
per step, :mod:`refnet.kernels.fused_device`) against ``torch.nn.LSTM`` /
``torch.nn.GRU`` on CUDA (cuDNN) with the same weights, inputs and
cotangents, at B = 64, I = 64, H = 512, T = 256 in float32.  The gradients
are checked equal before any timing.  TF32 is switched off on the torch side
for the run (CuPy's cuBLAS computes in full float32 unless ``CUPY_TF32=1``),
so both sides do the same arithmetic.  Each time is the median of
``repeats`` calls after warm-ups, each call ended by a device
synchronisation.  The target of issue 14 is refnet ≤ 2× cuDNN's time.

Without CuPy seeing a GPU, or without a CUDA build of torch, the case
refuses to report (:class:`~refnet.bench.report.BenchmarkError`, exit
status 1 from the command line); ``python -m refnet.bench bptt`` then lists
the GPU rows as not measured, with the reason.
"""
import os
import statistics
import time

import numpy

from ..algorithms import sequence_vjp
from ..cells import GRU, LSTM
from .._validate import check_int
from . import bptt
from .bptt import CELLS, GRAD_RTOL, _split_state, make_problem, max_rel_error
from .report import BenchmarkError, Report, format_table
from .timing import import_torch

__all__ = ["SIZES", "DEFAULT_REPEATS", "import_gpu", "measure", "run", "table", "bptt_with_gpu"]

SIZES = {"full": dict(B=64, I=64, H=512, T=256), "quick": dict(B=4, I=8, H=16, T=8)}
DEFAULT_REPEATS = {"full": 20, "quick": 3}
WARMUP = 3
_MAKERS = {"lstm": LSTM, "gru": GRU}


def import_gpu():
    """CuPy with a visible GPU and a CUDA build of torch, or the reason they are not there.

    Returns
    -------
    cupy : module or None
    torch : module or None
    reason : str or None
        None when both are usable; otherwise what is missing, for the report.

    Raises
    ------
    None
        Import and driver errors are caught and returned as the reason.
    """
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, None, "CuPy sees no GPU"
    except Exception as exc:  # ImportError, or a driver/runtime error
        return None, None, f"CuPy unusable: {type(exc).__name__}: {exc}"
    torch, missing = import_torch()
    if torch is None:
        return None, None, f"torch unusable: {missing}"
    if not torch.cuda.is_available():
        return None, None, "torch has no CUDA device (a CPU build?)"
    return cupy, torch, None


def _median_seconds(fn, synchronize, repeats):
    """Median wall time of ``fn()`` over ``repeats`` calls, each ended by ``synchronize()``, after warm-ups."""
    for _ in range(WARMUP):
        fn()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def measure(cupy, torch, name, *, B, I, H, T, repeats):
    """Time refnet on CuPy and torch's cuDNN module for one cell, after checking their gradients agree.

    Parameters
    ----------
    cupy : module
    torch : module
        A CUDA build.
    name : str
        ``"lstm"`` or ``"gru"``.
    B : int
        Batch size.
    I : int
        Input size.
    H : int
        Hidden size.
    T : int
        Sequence length, in steps.
    repeats : int
        Timed calls per side.

    Returns
    -------
    dict
        One JSON-ready row: times in seconds, ``ratio`` = refnet / cuDNN, the agreement checked.

    Raises
    ------
    BenchmarkError
        If refnet's and cuDNN's outputs or gradients differ beyond :data:`refnet.bench.bptt.GRAD_RTOL`.

    Notes
    -----
    torch's TF32 switches (cuDNN and matmul) are off during the call and restored after, so the
    row's float32 is float32 on both sides; the row records ``CUPY_TF32`` as found.
    """
    cell = _MAKERS[name](I, H)
    p = make_problem(cell, B, T, "float32")
    theta = {k: cupy.asarray(v) for k, v in p.theta.items()}
    x, s0, dout, ds_T = (cupy.asarray(a) for a in (p.x, p.s0, p.dout, p.ds_T))

    def ours():
        return sequence_vjp(cell, theta, x, s0, dout, ds_T)

    device = torch.device("cuda")
    module = getattr(torch.nn, CELLS[name][1])(I, H).to(device=device, dtype=torch.float32)
    with torch.no_grad():
        for key, value in p.theta.items():
            getattr(module, f"{key}_l0").copy_(torch.from_numpy(value).to(device))
    xt = torch.tensor(p.x, device=device, requires_grad=True)
    state = tuple(torch.tensor(a, device=device, requires_grad=True) for a in _split_state(name, p.s0, H))
    cotangents = (torch.tensor(p.dout, device=device),
                  *(torch.tensor(a, device=device) for a in _split_state(name, p.ds_T, H)))

    def theirs():
        module.zero_grad(set_to_none=True)
        xt.grad = None
        for leaf in state:
            leaf.grad = None
        out, final = module(xt, state if name == "lstm" else state[0])
        torch.autograd.backward((out, *(final if name == "lstm" else (final,))), cotangents)
        return out

    previous = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        row = _compare_and_time(cupy, torch, name, cell, ours, theirs, xt, state, module, repeats)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous
    row.update({"B": B, "I": I, "H": H, "T": T})
    return row


def _compare_and_time(cupy, torch, name, cell, ours, theirs, xt, state, module, repeats):
    """Check the two sides agree, then time each (TF32 already off on torch's side)."""
    result = ours()
    out_t = theirs()
    mine = {"outputs": cupy.asnumpy(result.outputs), "dx": cupy.asnumpy(result.dx), "ds0": cupy.asnumpy(result.ds0),
            **{f"d{k}": cupy.asnumpy(v) for k, v in result.dtheta.items()}}
    peer = {"outputs": out_t.detach().cpu().numpy(), "dx": xt.grad.cpu().numpy(),
            "ds0": numpy.concatenate([leaf.grad[0].cpu().numpy() for leaf in state], axis=1),
            **{f"d{k}": getattr(module, f"{k}_l0").grad.cpu().numpy() for k in cell.param_shapes()}}
    error, where = max_rel_error(mine, peer)
    if not error <= GRAD_RTOL["float32"]:
        raise BenchmarkError(f"gpu {name}: refnet on CuPy and torch cuDNN disagree: {where} off by {error:.2e} "
                             f"(normwise relative; tolerance {GRAD_RTOL['float32']:.0e})")
    ours_s, ours_all = _median_seconds(ours, cupy.cuda.Device().synchronize, repeats)
    theirs_s, theirs_all = _median_seconds(theirs, torch.cuda.synchronize, repeats)
    return {"row": "gpu", "cell": name, "dtype": "float32",
            "cupy_tf32": os.environ.get("CUPY_TF32", "0"), "torch_tf32": False,
            "device": torch.cuda.get_device_name(0), "refnet_cupy_s": ours_s, "torch_cudnn_s": theirs_s,
            "ratio": ours_s / theirs_s, "target_ratio": 2.0, "repeats": repeats,
            "refnet_spread": max(ours_all) / min(ours_all), "torch_spread": max(theirs_all) / min(theirs_all),
            "max_rel_error": error, "cupy": cupy.__version__, "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version()}


def run(*, repeats=None, quick=False):
    """Run the ``gpu`` case: LSTM and GRU, refnet on CuPy against torch's cuDNN, float32.

    Parameters
    ----------
    repeats : int >= 1 or None
        Timed calls per side; None for the default (20, or 3 with ``quick``).
    quick : bool
        B = 4, I = 8, H = 16, T = 8 instead of 64, 64, 512, 256, for tests.

    Returns
    -------
    Report
        One row per cell (``row`` = "gpu").

    Raises
    ------
    TypeError
        If ``repeats`` is not an int (or None).
    ValueError
        If ``repeats`` < 1.
    BenchmarkError
        If CuPy sees no GPU or torch has no CUDA device (nothing to measure), ``CUPY_TF32`` is set
        (CuPy would not compute in float32), or the two sides' gradients disagree.
    """
    size = "quick" if quick else "full"
    repeats = DEFAULT_REPEATS[size] if repeats is None else check_int("repeats", repeats, 1)
    cupy, torch, missing = import_gpu()
    if missing:
        raise BenchmarkError(f"gpu: not measured: {missing}")
    if os.environ.get("CUPY_TF32", "0") != "0":
        raise BenchmarkError("gpu: CUPY_TF32 is set: CuPy's cuBLAS would compute in TF32 while the row says "
                             "float32; unset it to compare like with like")
    rows = tuple(measure(cupy, torch, name, repeats=repeats, **SIZES[size]) for name in _MAKERS)
    return Report(rows, table(rows))


def table(rows):
    """The GPU rows laid out for a person.

    Parameters
    ----------
    rows : sequence of dict
        Rows from :func:`measure`.

    Returns
    -------
    str

    Raises
    ------
    KeyError
        If a row lacks a field of :func:`measure`'s rows.
    """
    if not rows:
        return "gpu: no rows"
    first = rows[0]
    head = (f"refnet on CuPy vs torch cuDNN, {first['device']}, B={first['B']} I={first['I']} H={first['H']} "
            f"T={first['T']} float32, forward + backward, median of {first['repeats']} (TF32 off)")
    body = [(r["cell"], f"{1e3 * r['refnet_cupy_s']:.2f} ms", f"{1e3 * r['torch_cudnn_s']:.2f} ms",
             f"{r['ratio']:.2f}", f"{r['max_rel_error']:.1e}") for r in rows]
    return head + "\n" + format_table(("cell", "refnet (CuPy)", "torch (cuDNN)", "refnet / cuDNN", "max rel err"),
                                      body)


def bptt_with_gpu(*, repeats=None, quick=False):
    """The command's ``bptt`` case: :func:`refnet.bench.bptt.run` and, where a GPU is here, this case's rows.

    Parameters
    ----------
    repeats : int >= 1 or None
        Passed to both cases (None: each case's own default).
    quick : bool
        Passed to both cases.

    Returns
    -------
    Report
        The CPU rows, then the "gpu" rows; without a GPU the table ends with the reason they are absent.

    Raises
    ------
    TypeError
        If ``repeats`` is not an int (or None).
    ValueError
        If ``repeats`` < 1.
    BenchmarkError
        If refnet and a peer disagree, on the CPU or on the GPU.
    """
    cpu = bptt.run(repeats=repeats, quick=quick)
    missing = import_gpu()[2]
    if missing:
        return Report(cpu.rows, f"{cpu.table}\n\ngpu rows: not measured ({missing})")
    on_gpu = run(repeats=repeats, quick=quick)
    return Report(cpu.rows + on_gpu.rows, f"{cpu.table}\n\n{on_gpu.table}")
