"""Timing helpers shared by the benchmark cases.

A timing is the median of ``repeats`` wall-clock runs (``time.perf_counter``)
after ``warmup`` untimed runs, with the min and max beside it: on a small,
noisy machine the median is the figure to quote and the spread says how far
to trust it.  The garbage collector is switched off while a call is timed, as
:mod:`timeit` does, so a collection triggered by earlier garbage is not billed
to whichever call happens to be running.

Implementations compared with each other are timed *interleaved* (one run of
each in turn, ``repeats`` rounds), so that a slow spell of the machine hits
all of them rather than whichever was being timed at the moment.
"""
import gc
import os
import statistics
import time
from dataclasses import dataclass

import numpy

from .._validate import check_int

__all__ = ["Timing", "GemmThroughput", "time_call", "time_interleaved", "gemm_flops",
           "gemm_throughput", "numpy_blas", "MIN_ROUNDS"]

# Timed rounds always run before a time budget may cut a measurement short.
MIN_ROUNDS = 3


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median, min and max over ``repeats`` timed calls."""

    median: float
    min: float
    max: float
    repeats: int

    @classmethod
    def of(cls, seconds):
        """The summary of a list of per-call times in seconds."""
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))


@dataclass(frozen=True)
class GemmThroughput:
    """A measured matmul rate: ``flops`` per timed call, ``timing`` of that call."""

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


def time_interleaved(fns, *, repeats, warmup=1):
    """Time several zero-argument callables in turn, round by round.

    Parameters
    ----------
    fns : dict {name: callable}
        The calls to time; each is called ``warmup + repeats`` times.
    repeats : int >= 1
        Timed rounds; in each round every callable runs once, in dict order.
    warmup : int >= 0
        Untimed rounds first (caches, lazy imports, allocator pools).
    max_seconds : float or None
        Wall-clock budget of the timed rounds: once they have taken this long,
        no further round starts, provided at least ``MIN_ROUNDS`` are done
        (or all ``repeats``, if fewer).  A loaded machine then yields fewer
        repeats rather than an unbounded wait; ``Timing.repeats`` says how many.

    Returns
    -------
    dict {name: Timing}
    """
    repeats = check_int("repeats", repeats, 1)
    warmup = check_int("warmup", warmup, 0)
    if not fns:
        raise ValueError("fns must name at least one callable, got an empty dict")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    gc.collect()
    seconds = {name: [] for name in fns}
    started = time.perf_counter()
    for done in range(1, repeats + 1):
        for name, fn in fns.items():
            seconds[name].append(_timed(fn))
        if _over_budget(started, max_seconds, done):
            break
    return {name: Timing.of(s) for name, s in seconds.items()}


def _over_budget(started, max_seconds, rounds_done):
    """Whether a budget of ``max_seconds`` since ``started`` is spent, after ``MIN_ROUNDS`` rounds."""
    if max_seconds is None or rounds_done < MIN_ROUNDS:
        return False
    return time.perf_counter() - started > max_seconds


def time_call(fn, *, repeats, warmup=1, max_seconds=None):
    """:class:`Timing` of one zero-argument callable (see :func:`time_interleaved`)."""
    return time_interleaved({"fn": fn}, repeats=repeats, warmup=warmup, max_seconds=max_seconds)["fn"]


def gemm_flops(m, k, n):
    """FLOPs of one (m×k)@(k×n) product: 2·m·k·n (a multiply and an add per term)."""
    return 2 * m * k * n


def gemm_throughput(label, shapes, dtype, *, calls=1, repeats, warmup=1, max_seconds=None, seed=0):
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
    calls : int >= 1
        How many times the list of products is issued per timed call.
    repeats, warmup, max_seconds
        As :func:`time_interleaved`.
    seed : int
        Seed of the operands.

    Returns
    -------
    GemmThroughput
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
                                                      max_seconds=max_seconds))


def numpy_blas():
    """NumPy's BLAS library and its thread count, as ``(name, threads)``.

    Read with ``threadpoolctl`` when it is importable; otherwise (None, None),
    because the count cannot be read reliably without it.  Where several BLAS
    libraries are loaded (PyTorch may bring its own), the one shipped with
    NumPy (under ``numpy/`` or a wheel's ``numpy.libs/``) is chosen.
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
