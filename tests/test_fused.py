"""The fused whole-sequence path: = the per-step path, kernels = twins, dispatch, memory, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from refnet.algorithms import fused
from refnet.cells.base import Cell, FORWARD_KERNEL_MAX_BLOCK, supports_fused_sequence
from refnet.cells.fast_weights import FastWeights, FastWeightsAttention

# Both paths sum the same float64 products in other orders (one GEMM over T·B against T
# GEMMs over B): rounding only, which stays near 1e-15 relative; 1e-12 is DESIGN.md §4's bound.
EXACT = 1e-12

CELLS = {
    "elman_tanh": lambda I, H: refnet.ElmanRNN(I, H, "tanh"),
    "elman_relu": lambda I, H: refnet.ElmanRNN(I, H, "relu"),
    "irnn": lambda I, H: refnet.IRNN(I, H, input_std=0.5),
    "lstm": lambda I, H: refnet.LSTM(I, H),
    "gru": lambda I, H: refnet.GRU(I, H),
    "fastrnn": lambda I, H: refnet.FastRNN(I, H),
    "fastrnn_sigmoid": lambda I, H: refnet.FastRNN(I, H, "sigmoid"),
    "fastgrnn": lambda I, H: refnet.FastGRNN(I, H),
    "fastgrnn_tanh_relu": lambda I, H: refnet.FastGRNN(I, H, "tanh", "relu"),
    "attention": lambda I, H: FastWeightsAttention(I, H, capacity=9),
    "attention_S2": lambda I, H: FastWeightsAttention(I, H, S=2, capacity=9),
}


def _close(a, b, rtol=EXACT):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1.0)
    assert float(np.abs(a - b).max()) <= rtol * scale if a.size else a.shape == b.shape


def _problem(name, T=6, B=3, I=3, H=5, seed=0):
    r = refnet.rng(seed)
    cell = CELLS[name](I, H)
    theta = cell.init(r)
    if isinstance(cell, FastWeightsAttention):
        theta["weight_hh"] = r.normal((H, H), 0.5)     # the 0.05·I init leaves the recurrence idle
    head = refnet.Head(cell.n_out, 3)
    return cell, theta, head, head.init(r), r.normal((T, B, I)), r.normal((B, cell.n_state), 0.5), \
        r.integers(0, 3, (T, B)), r.normal((T, B, cell.n_out)), r.normal((B, cell.n_state))


def _run(monkeypatch, flags, fn):
    for k, v in flags.items():
        monkeypatch.setenv(k, v)
    return fn()


def _all(name, **sizes):
    cell, theta, head, beta, x, s0, y, dout, ds_T = _problem(name, **sizes)
    res = refnet.bptt(cell, theta, x, s0, head, beta, y)
    tb = refnet.tbptt(cell, theta, x, s0, head, beta, y, k1=1, k2=3)
    sv = refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)
    return {"loss": res.loss, "ds0": res.ds0, "s_T": res.s_T, **{f"d{k}": v for k, v in res.dtheta.items()},
            **{f"b{k}": v for k, v in res.dbeta.items()}, "tb_ds0": tb.ds0, "tb_loss": tb.loss,
            "tb_steps": tb.vjp_steps, **{f"tb_{k}": v for k, v in tb.dtheta.items()},
            "outputs": sv.outputs, "sv_s_T": sv.s_T, "dx": sv.dx, "sv_ds0": sv.ds0,
            **{f"sv_{k}": v for k, v in sv.dtheta.items()}}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_fused_cell_says_so(name):
    assert supports_fused_sequence(CELLS[name](2, 3))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_path_equals_the_per_step_path(monkeypatch, name):
    ref = _run(monkeypatch, {"REFNET_FUSED": "0"}, lambda: _all(name))
    ours = _run(monkeypatch, {"REFNET_FUSED": "1"}, lambda: _all(name))
    assert ours.keys() == ref.keys()
    for k in ref:
        _close(ours[k], ref[k])


@pytest.mark.parametrize("name", [n for n in sorted(CELLS) if not n.startswith("attention")])
def test_fused_kernels_equal_their_plain_twins(monkeypatch, name):
    twin = _run(monkeypatch, {"REFNET_FUSED": "1", "REFNET_NUMBA": "0"}, lambda: _all(name))
    ours = _run(monkeypatch, {"REFNET_FUSED": "1", "REFNET_NUMBA": "1"}, lambda: _all(name))
    for k in twin:
        _close(ours[k], twin[k])


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(["elman_tanh", "lstm", "gru", "fastgrnn"]), T=st.integers(1, 7),
       B=st.integers(1, 4), H=st.integers(1, 6), seed=st.integers(0, 1000))
def test_fused_equals_per_step_at_any_size(name, T, B, H, seed):
    with pytest.MonkeyPatch.context() as mp:
        ref = _run(mp, {"REFNET_FUSED": "0"}, lambda: _all(name, T=T, B=B, H=H, seed=seed))
        ours = _run(mp, {"REFNET_FUSED": "1"}, lambda: _all(name, T=T, B=B, H=H, seed=seed))
    for k in ref:
        _close(ours[k], ref[k])


@pytest.mark.parametrize("name", ["lstm", "gru", "elman_tanh"])
def test_large_blocks_take_the_array_loop_and_still_equal_the_kernel(monkeypatch, name):
    """Above FORWARD_KERNEL_MAX_BLOCK the forward is the NumPy loop (halved sigmoid rows); the kernel
    forced by a larger threshold agrees with it."""
    H = FORWARD_KERNEL_MAX_BLOCK // 8 + 1                     # B·G > the threshold at B = 2 for every cell
    cell, theta, _, _, x, s0, _, dout, ds_T = _problem(name, T=3, B=2, I=2, H=H)
    array_loop = refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)
    monkeypatch.setattr("refnet.cells.base.FORWARD_KERNEL_MAX_BLOCK", 10 ** 9)
    kernel = refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)
    _close(array_loop.outputs, kernel.outputs)
    _close(array_loop.dx, kernel.dx)
    for k in theta:
        _close(array_loop.dtheta[k], kernel.dtheta[k])


def test_fused_path_runs_in_float32_close_to_float64(monkeypatch):
    cell, theta, head, beta, x, s0, y, _, _ = _problem("lstm")
    f32 = {k: v.astype(np.float32) for k, v in theta.items()}
    res32 = refnet.bptt(cell, f32, x.astype(np.float32), s0.astype(np.float32), head,
                        {k: v.astype(np.float32) for k, v in beta.items()}, y)
    res64 = refnet.bptt(cell, theta, x, s0, head, beta, y)
    assert res32.dtheta["weight_hh"].dtype == np.float32
    # float32 rounding (u = 6e-8) through 6 steps: 1e-5 relative leaves two orders of margin.
    _close(res32.dtheta["weight_hh"], res64.dtheta["weight_hh"], rtol=1e-5)


def test_stacked_sequence_vjp_takes_the_fused_forward_and_equals_per_step(monkeypatch):
    r = refnet.rng(3)
    cells = [refnet.LSTM(3, 4), refnet.GRU(4, 5)]
    thetas = [c.init(r) for c in cells]
    x, dout = r.normal((5, 2, 3)), r.normal((5, 2, 5))
    monkeypatch.setenv("REFNET_FUSED", "0")
    ref = refnet.stacked_sequence_vjp(cells, thetas, x, None, dout)
    monkeypatch.setenv("REFNET_FUSED", "1")
    ours = refnet.stacked_sequence_vjp(cells, thetas, x, None, dout)
    _close(ours.outputs, ref.outputs)
    _close(ours.dx, ref.dx)
    for l in range(2):
        _close(ours.ds0[l], ref.ds0[l])
        for k in thetas[l]:
            _close(ours.dtheta[l][k], ref.dtheta[l][k])


def test_attention_trace_is_linear_in_T_not_quadratic():
    """O(T n) kept per sequence: the per-step path keeps T states of n (1 + T) numbers each."""
    I, n, B, T = 3, 4, 2, 40
    cell = FastWeightsAttention(I, n, capacity=T)
    r = refnet.rng(0)
    theta = cell.init(r)
    _, _, trace = cell.fused_sequence(theta, r.normal((T, B, I)), np.zeros((B, cell.n_state)))
    kept = sum(a.nbytes for a in trace if isinstance(a, np.ndarray) and a is not trace.x)
    per_step_states = (T + 1) * B * cell.n_state * 8
    assert kept <= 8 * T * B * n * (3 * (cell.S + 1) + 2)       # hist, h0 and three (S + 1) inner blocks
    assert kept < per_step_states / 4


def test_explicit_fast_weights_and_an_unfused_subclass_take_the_per_step_path():
    class Tweaked(refnet.ElmanRNN):
        def step(self, params, s_prev, x, t=None):            # a new transition without its own fused pair
            return super().step(params, s_prev, x, t)
    assert not supports_fused_sequence(FastWeights(2, 3))
    assert not supports_fused_sequence(Tweaked(2, 3))
    assert supports_fused_sequence(refnet.IRNN(2, 3))        # same transition as its parent


def test_the_base_refuses_the_fused_pair_by_name():
    with pytest.raises(NotImplementedError, match="FastWeights does not support the fused"):
        FastWeights(2, 3).fused_sequence({}, None, None)
    with pytest.raises(NotImplementedError, match="fused_sequence_vjp"):
        Cell.fused_sequence_vjp(FastWeights(2, 3), {}, None, None, None)


def test_refnet_fused_rejects_a_bad_value(monkeypatch):
    monkeypatch.setenv("REFNET_FUSED", "yes")
    with pytest.raises(ValueError, match="REFNET_FUSED='yes'"):
        fused.enabled()


def test_attention_refuses_a_sequence_longer_than_its_capacity():
    cell = FastWeightsAttention(2, 3, capacity=4)
    theta = cell.init(refnet.rng(0))
    with pytest.raises(ValueError, match="capacity = 4"):
        cell.fused_sequence(theta, np.zeros((5, 1, 2)), np.zeros((1, cell.n_state)))


def test_a_non_finite_state_raises_before_the_backward(monkeypatch):
    cell, theta, head, beta, x, s0, y, _, _ = _problem("elman_relu")
    theta["weight_hh"] = np.full_like(theta["weight_hh"], 1e300)    # ReLU overflows to inf
    with pytest.raises(refnet.NumericalError, match="s_2"):
        refnet.bptt(cell, theta, x, np.abs(s0), head, beta, y)
