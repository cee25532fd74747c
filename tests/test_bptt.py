"""refnet.algorithms.bptt: BPTT, TBPTT(k1, k2) and the sequence VJP against their oracles."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads, compare_grads
from refnet import heads

from conftest import CELL_FACTORIES, SMOOTH_CELLS, make_cell

WEIGHTS = {"every": heads.every_step, "last": heads.last_step}


def _problem(name, T, B, seed, I=3, H=4, loss=heads.softmax_cross_entropy):
    r = refnet.rng(seed)
    cell = CELL_FACTORIES[name](I, H)
    head = refnet.Head(cell.n_out, 3, loss)
    theta, beta = cell.init(r), head.init(r)
    x = r.normal((T, B, I))
    s0 = r.normal((B, cell.n_state), 0.5)
    y = r.integers(0, 3, (T, B)) if loss.label_target else r.uniform((T, B, 3))
    return cell, theta, x, s0, head, beta, y


def _pack(theta, beta, s0):
    return dict({f"theta/{k}": v for k, v in theta.items()}, **{f"beta/{k}": v for k, v in beta.items()}, s0=s0)


def _unpack(flat, theta, beta):
    return ({k: flat[f"theta/{k}"] for k in theta}, {k: flat[f"beta/{k}"] for k in beta}, flat["s0"])


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(SMOOTH_CELLS), T=st.integers(1, 5), B=st.integers(1, 3),
       seed=st.integers(0, 1000), where=st.sampled_from(list(WEIGHTS)),
       loss=st.sampled_from(list(heads.LOSSES.values())))
def test_bptt_equals_finite_differences_of_the_loss(name, T, B, seed, where, loss):
    cell, theta, x, s0, head, beta, y = _problem(name, T, B, seed, loss=loss)
    w = WEIGHTS[where](T, B)
    res = refnet.bptt(cell, theta, x, s0, head, beta, y, w)

    def f(flat):
        th, be, s = _unpack(flat, theta, beta)
        return refnet.loss(cell, th, x, s, head, be, y, w)
    assert res.loss == pytest.approx(f(_pack(theta, beta, s0)), rel=1e-14)
    check_grads(f, _pack(theta, beta, s0), _pack(res.dtheta, res.dbeta, res.ds0))


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(SMOOTH_CELLS), T=st.integers(1, 7), k1=st.integers(1, 4),
       extra=st.integers(0, 3), seed=st.integers(0, 1000))
def test_tbptt_equals_finite_differences_of_the_truncated_objective(name, T, k1, extra, seed):
    k2 = k1 + extra
    cell, theta, x, s0, head, beta, y = _problem(name, T, 2, seed)
    res = refnet.tbptt(cell, theta, x, s0, head, beta, y, k1=k1, k2=k2)
    nominal = refnet.forward(cell, theta, x, s0).s

    def f(flat):
        th, be, s = _unpack(flat, theta, beta)
        return refnet.truncated_loss(cell, th, x, s, head, be, y, k1=k1, k2=k2, fixed_states=nominal)
    check_grads(f, _pack(theta, beta, s0), _pack(res.dtheta, res.dbeta, res.ds0))


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(list(CELL_FACTORIES)), T=st.integers(1, 8), k1=st.integers(1, 8),
       seed=st.integers(0, 1000))
def test_tbptt_with_k2_at_least_T_is_bptt(name, T, k1, seed):
    cell, theta, x, s0, head, beta, y = _problem(name, T, 2, seed)
    full = refnet.bptt(cell, theta, x, s0, head, beta, y)
    trunc = refnet.tbptt(cell, theta, x, s0, head, beta, y, k1=k1, k2=max(k1, T))
    # Same products summed in a different order: rounding only.
    compare_grads(_pack(trunc.dtheta, trunc.dbeta, trunc.ds0), _pack(full.dtheta, full.dbeta, full.ds0),
                  rtol=1e-12)


def test_chunked_tbptt_equals_bptt_on_each_detached_chunk():
    # k1 = k2 = k (k dividing T) is what PyTorch users write: run k steps, backward, detach, go on.
    cell, theta, x, s0, head, beta, y = _problem("lstm", 9, 2, 0)
    w = heads.every_step(9, 2)
    res = refnet.tbptt(cell, theta, x, s0, head, beta, y, w, k1=3, k2=3)
    s = refnet.forward(cell, theta, x, s0).s
    total = {k: np.zeros_like(v) for k, v in theta.items()}
    for start in (0, 3, 6):
        stop = start + 3
        chunk = refnet.bptt(cell, theta, x[start:stop], s[start], head, beta, y[start:stop], w[start:stop])
        for k in total:
            total[k] += chunk.dtheta[k]
    compare_grads(res.dtheta, total, rtol=1e-13)


def test_last_short_window_reaches_back_k2_steps_from_T():
    assert refnet.tbptt_windows(7, 3, 3) == [(1, 3, 0), (4, 6, 3), (7, 7, 4)]


@settings(max_examples=50, deadline=None)
@given(T=st.integers(1, 40), k1=st.integers(1, 10), extra=st.integers(0, 10))
def test_tbptt_windows_cover_every_loss_once_within_k2(T, k1, extra):
    k2 = k1 + extra
    windows = refnet.tbptt_windows(T, k1, k2)
    covered = [t for first, end, _ in windows for t in range(first, end + 1)]
    assert covered == list(range(1, T + 1))
    for first, end, fixed in windows:
        assert end - first + 1 <= k1 and fixed == max(end - k2, 0)


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(SMOOTH_CELLS), T=st.integers(1, 4), seed=st.integers(0, 1000))
def test_sequence_vjp_equals_finite_differences_of_the_pairing(name, T, seed):
    cell, theta, x, s0, *_ = _problem(name, T, 2, seed)
    r = refnet.rng(seed + 1)
    dout, ds_T = r.normal((T, 2, cell.n_out)), r.normal((2, cell.n_state))
    res = refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)

    def f(flat):
        out = refnet.sequence_vjp(cell, {k: flat[k] for k in theta}, flat["x"], flat["s0"], dout, ds_T)
        return float((out.outputs * dout).sum() + (out.s_T * ds_T).sum())
    check_grads(f, dict(theta, x=x, s0=s0), dict(res.dtheta, x=res.dx, s0=res.ds0))


def test_sequence_vjp_returns_the_forward_outputs():
    cell, theta, x, s0, *_ = _problem("lstm", 4, 2, 0)
    res = refnet.sequence_vjp(cell, theta, x, s0, np.zeros((4, 2, 4)))
    s = refnet.forward(cell, theta, x, s0).s
    # sequence_vjp runs the fused path (input projection as one GEMM), forward the per-step
    # one: the same sums in another order, equal to rounding (DESIGN.md §4: 1e-12).
    np.testing.assert_allclose(res.outputs[-1], cell.output(s[4]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res.s_T, s[4], rtol=1e-12, atol=1e-15)


def test_s0_none_means_zeros():
    cell, theta, x, _, head, beta, y = _problem("gru", 3, 2, 0)
    a = refnet.bptt(cell, theta, x, None, head, beta, y)
    b = refnet.bptt(cell, theta, x, np.zeros((2, 4)), head, beta, y)
    assert a.loss == b.loss


def test_tbptt_reports_the_vjp_steps_it_spent():
    cell, theta, x, s0, head, beta, y = _problem("elman_tanh", 6, 1, 0)
    assert refnet.tbptt(cell, theta, x, s0, head, beta, y, k1=1, k2=3).vjp_steps == 1 + 2 + 3 + 3 + 3 + 3
    assert refnet.tbptt(cell, theta, x, s0, head, beta, y, k1=4, k2=5).vjp_steps == 4 + 5
    assert refnet.bptt(cell, theta, x, s0, head, beta, y).vjp_steps == 6


# ---- bad input ---------------------------------------------------------------------------------

def _args(**change):
    cell, theta, x, s0, head, beta, y = _problem("lstm", 3, 2, 0)
    args = dict(cell=cell, theta=theta, x=x, s0=s0, head=head, beta=beta, y=y)
    args.update(change)
    return args


def _bad_theta(mutate):
    theta = make_cell("lstm").init(refnet.rng(0))
    mutate(theta)
    return theta


@pytest.mark.parametrize("change, error, match", [
    ({"x": np.zeros((0, 2, 3))}, ValueError, r"x must hold at least one time step \(T >= 1\), got T = 0"),
    ({"x": np.zeros((3, 3))}, ValueError, r"x must have shape \(\*, \*, 3\), got shape \(3, 3\)"),
    ({"x": np.zeros((3, 2, 5))}, ValueError, r"x must have shape \(\*, \*, 3\), got \(3, 2, 5\)"),
    ({"x": np.full((3, 2, 3), np.nan)}, ValueError, r"x must be finite, got nan at index \(0, 0, 0\)"),
    ({"s0": np.full((2, 8), np.inf)}, ValueError, "s0 must be finite"),
    ({"s0": np.zeros((2, 4))}, ValueError, r"s0 must have shape \(2, 8\), got \(2, 4\)"),
    ({"x": np.zeros((3, 2, 3), dtype=np.float32)}, TypeError, "mixed dtypes: x is float32"),
    ({"theta": _bad_theta(lambda t: t.pop("bias_hh"))}, ValueError, r"missing \['bias_hh'\]"),
    ({"theta": _bad_theta(lambda t: t.update(extra=np.zeros(1)))}, ValueError, r"unexpected \['extra'\]"),
    ({"theta": _bad_theta(lambda t: t["weight_hh"].__setitem__((0, 0), np.nan))}, ValueError,
     r"theta\['weight_hh'\] must be finite"),
    ({"theta": _bad_theta(lambda t: t.update(weight_hh=np.zeros((16, 5))))}, ValueError,
     r"theta\['weight_hh'\] must have shape \(16, 4\), got \(16, 5\)"),
    ({"y": np.zeros((3, 2, 3))}, TypeError, "y must be integer class labels"),
    ({"y": np.zeros((4, 2), dtype=np.int64)}, ValueError, r"y must have shape \(3, 2\)"),
])
def test_bad_input_is_named(change, error, match):
    with pytest.raises(error, match=match):
        refnet.bptt(**_args(**change))


def test_bad_weights_shape_is_named():
    with pytest.raises(ValueError, match=r"weights must have shape \(3, 2\), got \(2, 3\)"):
        refnet.bptt(**_args(), weights=np.ones((2, 3)))


@pytest.mark.parametrize("k1, k2, error, match", [
    (0, 3, ValueError, "k1 must be an int >= 1, got 0"),
    (2, 0, ValueError, "k2 must be an int >= 1, got 0"),
    (3, 2, ValueError, "k2 must be >= k1"),
    (1.5, 2, TypeError, "k1 must be an int >= 1, got float 1.5"),
])
def test_bad_truncation_is_named(k1, k2, error, match):
    with pytest.raises(error, match=match):
        refnet.tbptt(**_args(), k1=k1, k2=k2)


def test_bad_dout_shape_is_named():
    cell, theta, x, s0, *_ = _problem("lstm", 3, 2, 0)
    with pytest.raises(ValueError, match=r"dout must have shape \(3, 2, 4\), got \(3, 2, 8\)"):
        refnet.sequence_vjp(cell, theta, x, s0, np.zeros((3, 2, 8)))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_overflow_is_reported_as_a_numerical_error_naming_the_state():
    cell = refnet.ElmanRNN(1, 2, "relu")
    theta = {"weight_ih": np.ones((2, 1)), "weight_hh": 1e3 * np.eye(2),
             "bias_ih": np.ones(2), "bias_hh": np.zeros(2)}
    head = refnet.Head(2, 2)
    with pytest.raises(refnet.NumericalError, match=r"bptt: state s_\d+ became non-finite at step t=\d+") as info:
        refnet.bptt(cell, theta, np.ones((200, 1, 1)), None, head, head.init(refnet.rng(0)),
                    np.zeros((200, 1), dtype=np.int64))
    assert info.value.where == f"bptt: s_{info.value.step}"
    h, first_bad = np.zeros(2), None          # the same recurrence by hand: where does it first overflow?
    for t in range(1, 201):
        h = np.maximum(theta["weight_hh"] @ h + 1.0, 0.0)
        if first_bad is None and not np.isfinite(h).all():
            first_bad = t
    assert info.value.step == first_bad


def test_zero_weight_steps_are_skipped_without_changing_the_gradient():
    cell, theta, x, s0, head, beta, y = _problem("gru", 5, 2, 3)
    last = heads.last_step(5, 2)
    res = refnet.bptt(cell, theta, x, s0, head, beta, y, last)
    # Only the last step carries loss: the same as BPTT on the one-step loss with earlier targets ignored.
    y_other = y.copy()
    y_other[:-1] = (y[:-1] + 1) % 3
    other = refnet.bptt(cell, theta, x, s0, head, beta, y_other, last)
    for k, g in _pack(res.dtheta, res.dbeta, res.ds0).items():
        np.testing.assert_array_equal(g, _pack(other.dtheta, other.dbeta, other.ds0)[k])
    trunc = refnet.tbptt(cell, theta, x, s0, head, beta, y, last, k1=2, k2=2)
    assert trunc.loss == res.loss
