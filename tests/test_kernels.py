"""refnet.kernels: every numba kernel equals its plain twin to 1e-12; REFNET_NUMBA switches them.

Every twin test also watches ``kernels.load`` and asserts that the kernel it is about really ran
with the kernels on, and that nothing ran with REFNET_NUMBA=0.
"""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from refnet import kernels
from gradcheck.matrix.paths import kernel_path
from refnet.algorithms.rtrl import KERNEL_MAX_WORK, rtrl_update

# Both sides sum the same products in different orders: float64 rounding, far below 1e-12.
TWIN_RTOL = 1e-12


def _close(a, b):
    scale = max(float(np.abs(b).max()), 1.0)
    assert float(np.abs(a - b).max()) <= TWIN_RTOL * scale


def _elman_point(I, H, B, relu, seed):
    r = refnet.rng(seed)
    cell = refnet.ElmanRNN(I, H, "relu" if relu else "tanh")
    return cell, cell.init(r), r.normal((B, I)), r.normal((B, H)), r.normal((B, H))


def _numba(flag, fn):
    """(fn(), the kernels it called) under REFNET_NUMBA=flag.

    ``kernels.load`` is the one door from a dispatching function to its kernel, so watching it
    (the matrix's :func:`gradcheck.matrix.paths.kernel_path`) tells which path ran.  A context,
    not the monkeypatch fixture: hypothesis reruns the body.
    """
    with kernel_path(flag) as calls:
        return fn(), calls


def _with_and_without(fn, *kernel_names):
    """fn() with the kernels on, then with REFNET_NUMBA=0, after checking which path each took.

    With the kernels on, exactly ``kernel_names`` must have run (so a twin test can never compare
    the array code with itself); with REFNET_NUMBA=0, none.
    """
    (on, called_on), (off, called_off) = _numba("1", fn), _numba("0", fn)
    assert sorted(called_on) == sorted(kernel_names), f"kernel path not taken: ran {called_on}"
    assert called_off == [], f"REFNET_NUMBA=0 still ran {called_off}"
    return on, off


@settings(max_examples=20, deadline=None)
@given(I=st.integers(1, 5), H=st.integers(1, 9), relu=st.booleans(), seed=st.integers(0, 10_000))
def test_elman_step_kernel_equals_the_array_code(I, H, relu, seed):
    cell, theta, x, h, _ = _elman_point(I, H, 1, relu, seed)
    (h_on, _), (h_off, _) = _with_and_without(lambda: cell.step(theta, h, x), "_elman_step")
    _close(h_on, h_off)


@settings(max_examples=20, deadline=None)
@given(I=st.integers(1, 5), H=st.integers(1, 9), relu=st.booleans(), seed=st.integers(0, 10_000))
def test_elman_step_vjp_kernel_equals_the_array_code(I, H, relu, seed):
    cell, theta, x, h, dh = _elman_point(I, H, 1, relu, seed)
    (_, cache), _ = _numba("0", lambda: cell.step(theta, h, x))
    on, off = _with_and_without(lambda: cell.step_vjp(theta, cache, dh), "_elman_step_vjp")
    _close(on[0], off[0])
    _close(on[2], off[2])
    for k in theta:
        _close(on[1][k], off[1][k])


@settings(max_examples=20, deadline=None)
@given(I=st.integers(1, 5), H=st.integers(1, 9), relu=st.booleans(), seed=st.integers(0, 10_000))
def test_elman_jacobians_kernel_equals_the_array_code(I, H, relu, seed):
    cell, theta, x, h, _ = _elman_point(I, H, 1, relu, seed)
    (_, cache), _ = _numba("0", lambda: cell.step(theta, h, x))
    on, off = _with_and_without(lambda: cell.jacobians(theta, cache), "_elman_jacobians")
    _close(on[0], off[0])
    _close(on[1], off[1])


@settings(max_examples=20, deadline=None)
@given(I=st.integers(1, 4), H=st.integers(1, 8), k=st.integers(1, 7), relu=st.booleans(), seed=st.integers(0, 10_000))
def test_elman_steps_and_steps_vjp_kernels_equal_the_loops_over_step(I, H, k, relu, seed):
    cell, theta, _, h0, dh = _elman_point(I, H, 1, relu, seed)
    xs = [refnet.rng(seed + 1).normal((1, I)) for _ in range(k)]

    def run():
        states, trace = cell.steps(theta, h0, xs)
        return states, cell.steps_vjp(theta, trace, dh)
    (states_on, (dh0_on, d_on)), (states_off, (dh0_off, d_off)) = _with_and_without(run, "_elman_steps",
                                                                                    "_elman_steps_vjp")
    for j in range(k + 1):
        _close(states_on[j], states_off[j])
    _close(dh0_on, dh0_off)
    for name in theta:
        _close(d_on[name], d_off[name])


def test_elman_vjp_kernel_returns_separate_bias_gradients():
    # Callers accumulate into dparams in place: bias_ih and bias_hh must not be one array.
    cell, theta, x, h, dh = _elman_point(2, 3, 1, False, 0)
    _, cache = cell.step(theta, h, x)
    (_, dparams, _), called = _numba("1", lambda: cell.step_vjp(theta, cache, dh))
    assert called == ["_elman_step_vjp"]
    assert dparams["bias_ih"] is not dparams["bias_hh"]
    np.testing.assert_array_equal(dparams["bias_ih"], dparams["bias_hh"])


def test_the_kernel_watch_sees_the_array_path_at_batch_2():
    # The Elman kernels are for batch 1: at batch 2 the watch must report no kernel, or the
    # "kernel path taken" assertions above would prove nothing.
    cell, theta, x, h, dh = _elman_point(2, 3, 2, False, 0)
    (_, cache), called = _numba("1", lambda: cell.step(theta, h, x))
    assert called == []
    assert _numba("1", lambda: cell.step_vjp(theta, cache, dh))[1] == []
    assert _numba("1", lambda: cell.jacobians(theta, cache))[1] == []


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), n=st.integers(1, 8), P=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_rtrl_update_kernel_equals_the_matmul(B, n, P, seed):
    r = refnet.rng(seed)
    J_s, J_theta, M = r.normal((B, n, n)), r.normal((B, n, P)), r.normal((B, n, P))
    on, off = _with_and_without(lambda: rtrl_update(J_s, J_theta, M), "_rtrl_update")
    _close(on, J_s @ M + J_theta)
    _close(off, J_s @ M + J_theta)


def test_rtrl_update_takes_blas_above_the_work_threshold(monkeypatch):
    r = refnet.rng(0)
    n, P = 8, KERNEL_MAX_WORK // 64 + 1
    monkeypatch.setattr(kernels, "load", lambda name: pytest.fail("kernel used above the threshold"))
    J_s, J_theta, M = r.normal((1, n, n)), r.normal((1, n, P)), r.normal((1, n, P))
    _close(rtrl_update(J_s, J_theta, M), J_s @ M + J_theta)


def test_refnet_numba_0_keeps_every_kernel_off(monkeypatch):
    monkeypatch.setenv("REFNET_NUMBA", "0")
    monkeypatch.setattr(kernels, "load", lambda name: pytest.fail(f"kernel module {name} loaded"))
    cell, theta, x, h, dh = _elman_point(2, 3, 1, False, 0)
    _, cache = cell.step(theta, h, x)
    cell.step_vjp(theta, cache, dh)
    cell.steps_vjp(theta, cell.steps(theta, h, [x, x])[1], dh)
    J_s, J_theta = cell.jacobians(theta, cache)
    rtrl_update(J_s, J_theta, np.zeros_like(J_theta))


def test_bad_refnet_numba_value_is_named(monkeypatch):
    monkeypatch.setenv("REFNET_NUMBA", "yes")
    with pytest.raises(ValueError, match=r"REFNET_NUMBA='yes' is not a valid choice; expected one of '1', '0'"):
        kernels.enabled()


def test_kernels_apply_only_to_numpy_arrays_of_one_float_dtype(monkeypatch):
    monkeypatch.setenv("REFNET_NUMBA", "1")
    a64, a32 = np.zeros(2), np.zeros(2, dtype=np.float32)
    assert kernels.applicable(a64, a64) and kernels.applicable(a32, a32)
    assert not kernels.applicable(a64, a32)
    assert not kernels.applicable(np.zeros(2, dtype=np.int64))
    assert not kernels.applicable(a64, [0.0, 0.0])


def test_kernels_are_cached_and_exact():
    # cache=True (compiled once per machine) and no fastmath (IEEE semantics, so twins agree).
    for module, names in (("elman", ("_elman_step", "_elman_step_vjp", "_elman_jacobians", "_elman_steps",
                                     "_elman_steps_vjp")),
                          ("rtrl", ("_rtrl_update",))):
        loaded = kernels.load(module)
        for name in names:
            dispatcher = getattr(loaded, name)
            assert not dispatcher.targetoptions.get("fastmath"), name
            assert type(dispatcher._cache).__name__ != "NullCache", name


def test_the_kernel_watch_restores_the_variable_and_the_loader_even_on_error(monkeypatch):
    monkeypatch.setenv("REFNET_NUMBA", "0")
    load = kernels.load
    with pytest.raises(RuntimeError, match="inside"):
        with kernel_path("1"):
            raise RuntimeError("inside")
    assert kernels.load is load
    assert os.environ["REFNET_NUMBA"] == "0"
