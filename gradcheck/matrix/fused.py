"""The fused whole-sequence path in the matrix: fused = per-step, and each fused numba kernel = its plain twin.

For every cell with its own ``fused_sequence``/``fused_sequence_vjp``
(:func:`refnet.cells.base.supports_fused_sequence`):

- ``fused path = per-step path``: BPTT (loss, ∂L/∂θ, ∂L/∂β, ∂L/∂s_0, s_T),
  TBPTT(2, 3) and TBPTT(1, 2) (overlapping windows: the windowed VJP), and the
  sequence VJP (outputs, s_T, ∂/∂θ, ∂/∂x, ∂/∂s_0 from random cotangents) run
  once with ``REFNET_FUSED=1`` and once with ``REFNET_FUSED=0`` (the per-step
  reference); every array agrees to the dtype's ``exact`` tolerance (1e-12 in
  float64: the same sums in another order).  The BPTT, TBPTT and sequence-VJP
  rows of the other families run the fused path against finite differences.
- ``fused numba kernel = plain twin``: the same runs on the fused path with
  ``REFNET_NUMBA=1`` and ``=0``; the row also watches that the cell's forward
  and backward kernels did run, and fails without that evidence (on CuPy
  there are no kernels to compare: the row says so and fails).
- ``fused device kernel = per-step path``: the fused path through the device
  loops of :mod:`refnet.kernels.fused_device` (one GEMM and one elementwise
  kernel per step) against the per-step path.  On CuPy the kernels are
  CuPy's ElementwiseKernels; on NumPy the row runs the same bodies compiled
  for the host (``host_emulation``) and is registered only where a C++
  compiler is found.  The row counts the kernels' launches and fails
  without them.
"""
import contextlib
import os

import refnet
from refnet import kernels
from refnet.backend import backend_name, rng, to_numpy
from refnet.cells.fast_weights import FastWeightsAttention
from refnet.kernels import fused_device

from ..check import compare_grads
from .common import CELLS, B, Check, H, I, Problem, T, exact_tol, worst

__all__ = ["FUSED_CELLS", "KERNELS", "checks"]


class _DrawnAttention(FastWeightsAttention):
    """The attention form with W drawn (its 0.05·I init would leave the recurrence nearly idle)."""

    def init(self, rng_):
        theta = super().init(rng_)
        theta["weight_hh"] = rng_.normal((self.hidden_size, self.hidden_size), 0.5)
        return theta


FUSED_CELLS = {
    **CELLS,
    "fastrnn": lambda: refnet.FastRNN(I, H),
    "fastgrnn": lambda: refnet.FastGRNN(I, H),
    "fastgrnn_relu_gate": lambda: refnet.FastGRNN(I, H, gate_nonlinearity="relu"),
    "fw_attention_S1": lambda: _DrawnAttention(I, H, capacity=T + 2),
    "fw_attention_S2": lambda: _DrawnAttention(I, H, S=2, capacity=T),
}

# The kernels (refnet.kernels.fused) each cell's fused pair calls: (forward, backward).
KERNELS = {
    "elman_tanh": ("_elman_forward", "_elman_backward"),
    "elman_relu": ("_elman_forward", "_elman_backward"),
    "irnn": ("_elman_forward", "_elman_backward"),
    "lstm": ("_lstm_forward", "_lstm_backward"),
    "gru": ("_gru_forward", "_gru_backward"),
    "fastrnn": ("_fastrnn_forward", "_fastrnn_backward"),
    "fastgrnn": ("_fastgrnn_forward", "_fastgrnn_backward"),
    "fastgrnn_relu_gate": ("_fastgrnn_forward", "_fastgrnn_backward"),
}


@contextlib.contextmanager
def _env(**values):
    """Environment variables set for the block, restored after."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def _everything(name):
    """Every array the sequence algorithms return for one problem, as a flat dict of NumPy arrays."""
    p = Problem(FUSED_CELLS[name])
    r = rng(1)
    dout = r.normal((T, B, p.cell.n_out))
    ds_T = r.normal((B, p.cell.n_state))
    out = {}
    for label, res in (("bptt", refnet.bptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)),
                       ("tbptt(2,3)", refnet.tbptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights,
                                                   k1=2, k2=3)),
                       ("tbptt(1,2)", refnet.tbptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights,
                                                   k1=1, k2=2))):
        out[f"{label}/loss"] = res.loss
        out[f"{label}/ds0"] = res.ds0
        out[f"{label}/s_T"] = res.s_T
        out.update({f"{label}/theta/{k}": v for k, v in res.dtheta.items()})
        out.update({f"{label}/beta/{k}": v for k, v in res.dbeta.items()})
    res = refnet.sequence_vjp(p.cell, p.theta, p.x, p.s0, dout, ds_T)
    out.update({"vjp/outputs": res.outputs, "vjp/s_T": res.s_T, "vjp/dx": res.dx, "vjp/ds0": res.ds0,
                **{f"vjp/theta/{k}": v for k, v in res.dtheta.items()}})
    return {k: to_numpy(v).astype("float64") for k, v in out.items()}


def _compare(ours, reference, reference_name):
    report = compare_grads(ours, reference, rtol=exact_tol(), reference_name=reference_name,
                           raise_on_failure=False)
    return report.max_rel_error, report.rtol, report.passed, worst(report)


def _fused_equals_per_step(name):
    def run():
        with _env(REFNET_FUSED="0"):
            reference = _everything(name)
        with _env(REFNET_FUSED="1"):
            ours = _everything(name)
        return _compare(ours, reference, "per-step path")
    return run


@contextlib.contextmanager
def _watch(module, names):
    """Count the calls of ``module``'s functions ``names`` while the block runs."""
    calls = {n: 0 for n in names}
    originals = {n: getattr(module, n) for n in names}

    def counting(n):
        def call(*args):
            calls[n] += 1
            return originals[n](*args)
        return call
    for n in names:
        setattr(module, n, counting(n))
    try:
        yield calls
    finally:
        for n, f in originals.items():
            setattr(module, n, f)


def _kernel_equals_twin(name):
    def run():
        if refnet.get_xp().__name__ != "numpy":
            return None, exact_tol(), False, "no numba kernels off NumPy: nothing to compare (no evidence)"
        with _env(REFNET_FUSED="1", REFNET_NUMBA="0"):
            twin = _everything(name)
        with _env(REFNET_FUSED="1", REFNET_NUMBA="1"), _watch(kernels.load("fused"), KERNELS[name]) as calls:
            ours = _everything(name)
        if not all(calls.values()):
            return None, exact_tol(), False, f"a kernel did not run (calls {calls}): no evidence"
        err, tol, passed, detail = _compare(ours, twin, "plain twin")
        return err, tol, passed, f"{detail}; kernel calls {calls}".lstrip("; ")
    return run


def _launches(kernel_set):
    """Launches so far per direction: {"forward": n, "backward": n}."""
    counts = {"forward": 0, "backward": 0}
    for key, k in kernel_set.built.items():
        counts["forward" if key[0].endswith("_forward") else "backward"] += k.calls
    return counts


def _device_equals_per_step(name, emulate):
    def run():
        with _env(REFNET_FUSED="0"):
            reference = _everything(name)
        with _env(REFNET_FUSED="1"), (fused_device.host_emulation() if emulate else contextlib.nullcontext()):
            kernel_set = fused_device.kernels_for(refnet.get_xp())
            if kernel_set is None:
                return None, exact_tol(), False, "no device kernels for this backend: no evidence"
            before = _launches(kernel_set)
            ours = _everything(name)
            launched = {d: n - before[d] for d, n in _launches(kernel_set).items()}
        if not all(launched.values()):          # both directions must have run on the device loops
            return None, exact_tol(), False, f"device kernels launched {launched}: no evidence for both directions"
        err, tol, passed, detail = _compare(ours, reference, "per-step path")
        return err, tol, passed, f"{detail}; {launched} kernel launches".lstrip("; ")
    return run


def checks():
    """The family's rows: fused = per-step for every fused cell, kernel = twin for those with kernels.

    The kernel rows are listed on the NumPy backend only (the kernels take NumPy arrays).

    Returns
    -------
    list of Check
        The rows, each with its cell, algorithm, relation and ``run``.

    Raises
    ------
    ValueError
        If ``REFNET_BACKEND`` names no backend (read to decide whether the
        kernel rows apply).
    """
    rows = [Check(name, "fused sequence", "fused path = per-step path (bptt, tbptt, sequence_vjp)",
                  _fused_equals_per_step(name)) for name in FUSED_CELLS]
    if backend_name() == "numpy":       # the kernels take NumPy arrays only; elsewhere the twin is the path
        rows += [Check(name, "fused sequence", "fused numba kernel = plain twin", _kernel_equals_twin(name))
                 for name in KERNELS]
    if backend_name() == "cupy" or (backend_name() == "numpy" and fused_device.host_compiler() is not None):
        emulate = backend_name() == "numpy"
        relation = ("fused device kernel, host-compiled = per-step path" if emulate
                    else "fused device kernel = per-step path")
        rows += [Check(name, "fused sequence", relation, _device_equals_per_step(name, emulate)) for name in KERNELS]
    return rows
