"""Timing helpers shared by the benchmark cases.

A timing is the median of ``repeats`` wall-clock runs (``time.perf_counter``)
after an untimed warm-up, with the min and max beside it: on a small,
noisy machine the median is the figure to quote and the spread says how far
to trust it.  The garbage collector is switched off while a call is timed, as
:mod:`timeit` does, so a collection triggered by earlier garbage is not billed
to whichever call happens to be running.

Implementations compared with each other are timed one after another, each
in its own block (warm-up, then all its repeats), never interleaved call by
call: a BLAS or OpenMP library keeps its worker threads spinning for a while
after it returns (OpenBLAS's thread timeout, libgomp's spin-wait), and on a
2-core machine those spinning threads take a core from the next library's
threads.  Interleaving refnet (OpenBLAS) with PyTorch (OpenMP) call by call
slowed PyTorch 3–12× that way on a 2-core machine; a block's warm-up, at
least ``WARMUP_SECONDS`` long, absorbs it instead.
"""
import contextlib
import gc
import os
import statistics
import time
import tracemalloc
from dataclasses import dataclass

import numpy

from .._validate import check_int

__all__ = ["import_torch", "one_thread", "peak_bytes", "Timing", "GemmThroughput", "time_call", "time_each", "gemm_flops",
           "gemm_throughput", "numpy_blas", "MIN_ROUNDS", "WARMUP_SECONDS"]

# Timed calls always made before a time budget may cut a measurement short.
MIN_ROUNDS = 3
# Least warm-up time: longer than OpenBLAS's default thread timeout (2^28 cycles,
# about 0.1 s), after which its idle workers stop spinning.
WARMUP_SECONDS = 0.25


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, min and max over ``repeats`` timed calls.

    Attributes
    ----------
    median : float
        Median time per call, in seconds: the figure to quote.
    min : float
        Fastest call, in seconds.
    max : float
        Slowest call, in seconds.
    repeats : int
        How many timed calls (fewer than asked when a time budget cut it short).
    """

    median: float
    min: float
    max: float
    repeats: int

    @classmethod
    def of(cls, seconds):
        """The summary of a list of per-call times in seconds.

        Parameters
        ----------
        seconds : sequence of float
            Per-call wall-clock times, in seconds; at least one.

        Returns
        -------
        Timing
            Their median, min, max and count.

        Raises
        ------
        ValueError
            If ``seconds`` is empty (``statistics.StatisticsError`` is a ValueError).
        """
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))


@dataclass(frozen=True)
class GemmThroughput:
    """A measured matmul rate: ``flops`` per timed call, ``timing`` of that call.

    Attributes
    ----------
    label : str
        Name of the measurement in reports.
    flops : int
        Floating-point operations per timed call (:func:`gemm_flops` summed).
    timing : Timing
        Seconds per timed call.
    """

    label: str
    flops: int
    timing: Timing

    @property
    def flops_per_s(self):
        """FLOP/s at the median time."""
        return self.flops / self.timing.median


def _timed(fn):
    """Seconds taken by one call of ``fn()``, with the garbage collector off."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def time_call(fn, *, repeats, warmup=1, warmup_seconds=WARMUP_SECONDS, max_seconds=None):
    """Time a zero-argument callable: untimed warm-up calls, then ``repeats`` timed ones.

    Parameters
    ----------
    fn : callable
        Called with no argument; its result is discarded.
    repeats : int
        Timed calls, >= 1.
    warmup : int, optional
        Untimed calls first (caches, lazy imports, allocator pools), >= 0.
    warmup_seconds : float, optional
        ...and more untimed calls until this long (seconds) has passed, so that
        another library's spinning worker threads have gone to sleep (module docstring).
    max_seconds : float or None
        Wall-clock budget of the timed calls: once they have taken this long,
        no further call starts, provided at least ``MIN_ROUNDS`` are done (or
        all ``repeats``, if fewer).  A loaded machine then yields fewer
        repeats rather than an unbounded wait; ``Timing.repeats`` says how many.

    Returns
    -------
    Timing
        Seconds per timed call: median, min, max and the number of calls.

    Raises
    ------
    TypeError
        If ``repeats`` or ``warmup`` is not an int.
    ValueError
        If ``repeats`` < 1 or ``warmup`` < 0.
    Exception
        Whatever ``fn`` raises propagates (the garbage collector is re-enabled first).
    """
    repeats = check_int("repeats", repeats, 1)
    warmup = check_int("warmup", warmup, 0)
    started = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - started < warmup_seconds:
        fn()
        done += 1
    gc.collect()
    seconds = []
    started = time.perf_counter()
    while len(seconds) < repeats and not _over_budget(started, max_seconds, len(seconds)):
        seconds.append(_timed(fn))
    return Timing.of(seconds)


def _over_budget(started, max_seconds, done):
    """Whether a budget of ``max_seconds`` since ``started`` is spent, with ``MIN_ROUNDS`` calls done."""
    if max_seconds is None or done < MIN_ROUNDS:
        return False
    return time.perf_counter() - started > max_seconds


def time_each(fns, *, repeats, warmup=1, warmup_seconds=WARMUP_SECONDS, max_seconds=None):
    """:func:`time_call` for each of ``fns`` {name: callable} in turn, in blocks (module docstring).

    The keywords are :func:`time_call`'s, ``max_seconds`` the budget of each
    block.

    Parameters
    ----------
    fns : dict {str: callable}
        The implementations to time, each a zero-argument callable, in the order given.
    repeats : int
        Timed calls per implementation, >= 1.
    warmup : int, optional
        Untimed calls before each block, >= 0.
    warmup_seconds : float, optional
        Least warm-up time per block, in seconds.
    max_seconds : float or None, optional
        Wall-clock budget of each block's timed calls, in seconds (:func:`time_call`).

    Returns
    -------
    dict {str: Timing}
        Seconds per call of each implementation, under its name.

    Raises
    ------
    ValueError
        If ``fns`` is empty, or as :func:`time_call`.
    TypeError
        As :func:`time_call`.
    """
    if not fns:
        raise ValueError("fns must name at least one callable, got an empty dict")
    return {name: time_call(fn, repeats=repeats, warmup=warmup, warmup_seconds=warmup_seconds,
                            max_seconds=max_seconds)
            for name, fn in fns.items()}


def gemm_flops(m, k, n):
    """FLOPs of one (m×k)@(k×n) product: 2·m·k·n (a multiply and an add per term).

    Parameters
    ----------
    m : int
        Rows of the left operand.
    k : int
        The shared (summed) dimension.
    n : int
        Columns of the right operand.

    Returns
    -------
    int
        2 m k n floating-point operations.

    Raises
    ------
    TypeError
        If the arguments cannot be multiplied (None, say); nothing else is
        validated: the sizes are the caller's.
    """
    return 2 * m * k * n


def gemm_throughput(label, shapes, dtype, *, calls=1, repeats, warmup=1, warmup_seconds=WARMUP_SECONDS,
                    max_seconds=None, seed=0):
    """Measure NumPy's matmul rate on a list of shapes, in ``dtype``.

    One timed call runs, ``calls`` times over, ``a @ b`` for every
    ``(m, k, n)`` in ``shapes`` on fixed random operands, the way a recurrent
    loop issues its small products one after another (Python overhead per
    product included, as it is in the workload).

    Parameters
    ----------
    label : str
        Name of the measurement in reports.
    shapes : sequence of (m, k, n)
        Each product is (m×k)@(k×n).
    dtype : numpy dtype
        The operands' dtype (float64 or float32, as the workload it stands beside).
    calls : int, optional
        How many times the list of products is issued per timed call, >= 1.
    repeats : int
        Timed calls, as :func:`time_call`.
    warmup : int, optional
        Untimed calls, as :func:`time_call`.
    warmup_seconds : float, optional
        Least warm-up time in seconds, as :func:`time_call`.
    max_seconds : float or None, optional
        Budget of the timed calls in seconds, as :func:`time_call`.
    seed : int, optional
        Seed of the operands.

    Returns
    -------
    GemmThroughput
        The flops per timed call and their timing; ``flops_per_s`` the rate.

    Raises
    ------
    TypeError
        If ``calls``, ``repeats`` or ``warmup`` is not an int, or ``dtype`` is not a dtype.
    ValueError
        If ``calls`` < 1, ``shapes`` is empty, a size is negative, or as :func:`time_call`.
    """
    calls = check_int("calls", calls, 1)
    if not shapes:
        raise ValueError("shapes must list at least one (m, k, n), got an empty sequence")
    generator = numpy.random.default_rng(seed)
    operands = [(generator.standard_normal((m, k)).astype(dtype),
                 generator.standard_normal((k, n)).astype(dtype)) for m, k, n in shapes]

    def products():
        for _ in range(calls):
            for a, b in operands:
                numpy.matmul(a, b)

    flops = calls * sum(gemm_flops(m, k, n) for m, k, n in shapes)
    return GemmThroughput(label, flops, time_call(products, repeats=repeats, warmup=warmup,
                                                      warmup_seconds=warmup_seconds,
                                                      max_seconds=max_seconds))


def numpy_blas():
    """NumPy's BLAS library and its thread count, as ``(name, threads)``.

    Read with ``threadpoolctl`` when it is importable; otherwise (None, None),
    because the count cannot be read reliably without it.  Where several BLAS
    libraries are loaded (PyTorch may bring its own), the one shipped with
    NumPy (under ``numpy/`` or a wheel's ``numpy.libs/``) is chosen.

    Returns
    -------
    name : str or None
        threadpoolctl's ``internal_api`` (``'openblas'``, ``'mkl'``, ...), or None.
    threads : int or None
        Its thread count, or None.

    Raises
    ------
    None
        A missing threadpoolctl or BLAS gives ``(None, None)``, not an error.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None, None
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    numpy_dir = os.path.dirname(numpy.__file__)
    own = [info for info in blas if info.get("filepath", "").startswith(numpy_dir)]
    chosen = (own or blas or [None])[0]
    if chosen is None:
        return None, None
    return chosen.get("internal_api"), int(chosen["num_threads"])


def import_torch():
    """PyTorch, or ``(None, reason)`` if it cannot be imported (the peer is then skipped).

    Returns
    -------
    torch : module or None
        The ``torch`` module, or None.
    reason : str or None
        None on success, else ``'<ExceptionType>: <message>'`` for the report.

    Raises
    ------
    None
        Any Exception raised by ``import torch`` (ImportError, or a broken
        install failing at import) is caught and returned as the reason.
    """
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install failing at import
        return None, f"{type(exc).__name__}: {exc}"
    return torch, None


@contextlib.contextmanager
def one_thread(torch):
    """NumPy's BLAS (when threadpoolctl is importable) and PyTorch on one thread, restored after.

    On a shared 2-core machine a second BLAS or torch thread fighting other work makes small
    products erratic (single calls up to 100× slower); one thread each compares like with like.
    A context manager: ``with one_thread(torch): ...``.

    Parameters
    ----------
    torch : module or None
        The ``torch`` module to limit too, or None for NumPy's BLAS only.

    Yields
    ------
    None
        Inside the block both run on one thread; the previous torch thread
        count is restored on exit, whatever the block raised.

    Raises
    ------
    AttributeError
        If ``torch`` is not None and has no ``get_num_threads``/``set_num_threads``.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1, user_api="blas")
    previous = None if torch is None else torch.get_num_threads()
    try:
        with limits:
            if torch is not None:
                torch.set_num_threads(1)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


def peak_bytes(fn):
    """Peak traced allocation (bytes) above the start during one call of ``fn``.

    :mod:`tracemalloc` sees NumPy's buffers (NumPy reports them to it), not PyTorch's
    CPU allocator, so this measures refnet's side only.  Tracing slows the
    call: never time it at the same time.

    Parameters
    ----------
    fn : callable
        Called once with no argument; its result is discarded.

    Returns
    -------
    int
        Peak traced bytes above what was traced when the call began.

    Raises
    ------
    Exception
        Whatever ``fn`` raises propagates (tracing is stopped first).
    """
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
