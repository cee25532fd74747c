"""refnet.algorithms.rtrl: RTRL carries BPTT's gradient forward, for every cell."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import compare_grads
from refnet import heads
from refnet.algorithms.rtrl import rtrl, rtrl_update

from conftest import CELL_FACTORIES, make_cell


def _problem(name, T, B, seed, loss=heads.softmax_cross_entropy):
    r = refnet.rng(seed)
    cell = make_cell(name)
    head = refnet.Head(cell.n_out, 3, loss)
    theta, beta = cell.init(r), head.init(r)
    x = r.normal((T, B, 3))
    s0 = r.normal((B, cell.n_state), 0.5)
    y = r.integers(0, 3, (T, B)) if loss.label_target else r.uniform((T, B, 3))
    return cell, theta, x, s0, head, beta, y


def _all(res):
    return dict({f"theta/{k}": v for k, v in res.dtheta.items()},
                **{f"beta/{k}": v for k, v in res.dbeta.items()}, s0=res.ds0)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(list(CELL_FACTORIES)), T=st.integers(1, 6), B=st.integers(1, 3),
       seed=st.integers(0, 10_000), where=st.sampled_from(["every", "last"]),
       loss=st.sampled_from(list(heads.LOSSES.values())))
def test_rtrl_equals_bptt_with_theta_fixed(name, T, B, seed, where, loss):
    cell, theta, x, s0, head, beta, y = _problem(name, T, B, seed, loss)
    w = heads.every_step(T, B) if where == "every" else heads.last_step(T, B)
    forward = rtrl(cell, theta, x, s0, head, beta, y, w)
    backward = refnet.bptt(cell, theta, x, s0, head, beta, y, w)
    assert forward.loss == pytest.approx(backward.loss, rel=1e-14)
    # The same products summed forward instead of backward: rounding only (~1e-16 measured).
    compare_grads(_all(forward), _all(backward), rtol=1e-12, reference_name="bptt")


def test_rtrl_sensitivity_after_one_step_is_the_immediate_jacobian():
    cell, theta, x, s0, *_ = _problem("gru", 1, 2, 0)
    _, cache = cell.step(theta, s0, x[0])
    J_s, J_theta = cell.jacobians(theta, cache)
    np.testing.assert_array_equal(rtrl_update(J_s, J_theta, np.zeros_like(J_theta)), J_theta)


def test_rtrl_spends_no_vjp_and_returns_the_final_state():
    cell, theta, x, s0, head, beta, y = _problem("lstm", 4, 2, 0)
    res = rtrl(cell, theta, x, s0, head, beta, y)
    assert res.vjp_steps == 0
    np.testing.assert_array_equal(res.s_T, refnet.forward(cell, theta, x, s0).s[-1])


def test_rtrl_orders_columns_by_param_shapes_not_by_the_dict():
    # A theta dict built in another key order must give the same named gradients.
    cell, theta, x, s0, head, beta, y = _problem("elman_tanh", 3, 1, 0)
    shuffled = {k: theta[k] for k in reversed(list(theta))}
    a, b = rtrl(cell, theta, x, s0, head, beta, y), rtrl(cell, shuffled, x, s0, head, beta, y)
    for k in theta:
        np.testing.assert_array_equal(a.dtheta[k], b.dtheta[k])


def test_rtrl_bad_input_is_named():
    cell, theta, x, s0, head, beta, y = _problem("elman_tanh", 3, 2, 0)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, \*, 3\), got \(3, 2, 4\)"):
        rtrl(cell, theta, np.zeros((3, 2, 4)), s0, head, beta, y)
    with pytest.raises(ValueError, match=r"y must have shape \(3, 2\)"):
        rtrl(cell, theta, x, s0, head, beta, np.zeros((4, 2), dtype=np.int64))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_rtrl_overflow_is_a_numerical_error():
    cell = refnet.ElmanRNN(1, 2, "relu")
    theta = {"weight_ih": np.ones((2, 1)), "weight_hh": 1e3 * np.eye(2),
             "bias_ih": np.ones(2), "bias_hh": np.zeros(2)}
    head = refnet.Head(2, 2)
    with pytest.raises(refnet.NumericalError, match=r"rtrl: state s_\d+ became non-finite at step t=\d+"):
        rtrl(cell, theta, np.ones((200, 1, 1)), None, head, head.init(refnet.rng(0)),
             np.zeros((200, 1), dtype=np.int64))
