"""Compile every numba kernel once, so that their on-disk cache (``cache=True``) is warm.

numba compiles a kernel at its first call in a process that finds no cached
machine code for it — seconds per kernel (the whole online TBPTT step about
5–7 s on a small machine) — and writes the result next to the module
(``__pycache__``, or ``NUMBA_CACHE_DIR``).  Every later process loads it in
milliseconds.  Running this once after installation (``python -m
refnet.kernels``) moves the compilation out of the first online step: the
first step of a fresh process then costs imports and cache loads only.

Each kernel is compiled for float64 and float32 by running the public code
path that calls it on a tiny problem, so the signatures are exactly those
the library uses.
"""
import os
import time

import numpy

__all__ = ["warm"]


def _fused_paths(dtype):
    """The fused whole-sequence kernels, through each cell's fused pair (forward and VJP)."""
    from ..cells import GRU, LSTM, ElmanRNN, FastGRNN, FastRNN
    r = numpy.random.default_rng(0)
    for cell in (ElmanRNN(2, 3), LSTM(2, 3), GRU(2, 3), FastRNN(2, 3), FastGRNN(2, 3)):
        theta = {k: r.standard_normal(v).astype(dtype) for k, v in cell.param_shapes().items()}
        x = r.standard_normal((2, 1, 2)).astype(dtype)
        s0 = numpy.zeros((1, cell.n_state), dtype=dtype)
        outputs, _, trace = cell.fused_sequence(theta, x, s0)
        cell.fused_sequence_vjp(theta, trace, numpy.ones_like(outputs), s0)


def _online_paths(dtype):
    """The online kernels (whole learner steps) and the Elman batch-1 kernels, through the learners."""
    from ..cells import ElmanRNN
    from ..heads import Head, sigmoid_bce
    from ..online import RTRLLearner, TBPTTLearner
    from ..optim import Adagrad
    r = numpy.random.default_rng(0)
    cell, head = ElmanRNN(1, 2), Head(2, 1, sigmoid_bce)
    theta = {k: r.standard_normal(v).astype(dtype) for k, v in cell.param_shapes().items()}
    beta = {k: r.standard_normal(v).astype(dtype) for k, v in head.param_shapes().items()}
    x, y = numpy.ones((1, 1), dtype=dtype), numpy.ones((1, 1), dtype=dtype)
    for learner in (TBPTTLearner(cell, head, theta, beta, Adagrad(0.1), k=2),
                    RTRLLearner(cell, head, theta, beta, Adagrad(0.1))):
        learner.step(x, y)            # the one-kernel step
        learner.predict(x)            # the learner's own path: the Elman and RTRL kernels
        learner.learn(y)


def warm(dtypes=("float64", "float32")):
    """Compile (or load from the cache) every kernel for ``dtypes``; returns seconds per part.

    Parameters
    ----------
    dtypes : sequence of str
        Each 'float64' or 'float32': the dtypes to compile the kernels for.

    Returns
    -------
    dict {str: float}
        Wall-clock seconds per "<part> <dtype>" (part 'fused' or 'online'):
        compile time on a cold cache, load time on a warm one.

    Raises
    ------
    ValueError
        If a dtype is not the string 'float64' or 'float32', or
        ``REFNET_NUMBA`` is '0' (nothing would compile) or invalid.
    ModuleNotFoundError
        If numba is not installed.
    """
    from . import enabled
    if not enabled():
        raise ValueError("REFNET_NUMBA must be '1' (the default) to compile the kernels, got '0'")
    seconds = {}
    for dtype in dtypes:
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtypes must hold 'float64' or 'float32', got {dtype!r}")
        for part, run in (("fused", _fused_paths), ("online", _online_paths)):
            start = time.perf_counter()
            run(numpy.dtype(dtype))
            seconds[f"{part} {dtype}"] = time.perf_counter() - start
    return seconds


def main():
    """``python -m refnet.kernels``: warm the cache and say where it is and how long it took."""
    seconds = warm()
    where = os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside refnet/kernels/*.py"
    for part, s in seconds.items():
        print(f"{part}: {s:.2f} s")
    print(f"numba cache: {where}")
