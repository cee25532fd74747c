"""refnet.cells: each step's VJP and JVP against finite differences and each other."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads
from refnet import params as P

from conftest import CELL_FACTORIES, SMOOTH_CELLS, make_cell


def _point(cell, seed, B=3):
    r = refnet.rng(seed)
    theta = cell.init(r)
    s_prev = r.normal((B, cell.n_state), 0.5)
    x = r.normal((B, cell.input_size))
    return theta, s_prev, x, r


def _dot_gap(cell, seed, B):
    theta, s_prev, x, r = _point(cell, seed, B)
    _, cache = cell.step(theta, s_prev, x)
    u, v = r.normal((B, cell.n_state)), r.normal((B, cell.n_state))
    dtheta = {k: r.normal(w.shape) for k, w in theta.items()}
    dx = r.normal((B, cell.input_size))
    lhs = float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum())
    ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
    rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + P.vdot(dparams, dtheta)
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs), 1e-300)   # a dead ReLU unit makes both 0


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(list(CELL_FACTORIES)), I=st.integers(1, 5), H=st.integers(1, 6),
       B=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_jvp_and_vjp_pass_the_dot_product_test_to_1e12(name, I, H, B, seed):
    # Both sides are sums of the same products in float64: agreement to ~1e-15 is expected.
    assert _dot_gap(CELL_FACTORIES[name](I, H), seed, B) < 1e-12


@pytest.mark.parametrize("name", SMOOTH_CELLS + ["elman_relu", "irnn"])
def test_step_vjp_equals_finite_differences_of_one_step(name):
    cell = make_cell(name)
    theta, s_prev, x, r = _point(cell, 1)
    u = r.normal((3, cell.n_state))
    _, cache = cell.step(theta, s_prev, x)
    ds_prev, dtheta, dx = cell.step_vjp(theta, cache, u)

    def pairing(flat):
        th = {k: flat[k] for k in theta}
        s, _ = cell.step(th, flat["s_prev"], flat["x"])
        return float((u * s).sum())
    point = dict(theta, s_prev=s_prev, x=x)
    check_grads(pairing, point, dict(dtheta, s_prev=ds_prev, x=dx))


def test_step_jvp_with_no_tangents_is_zero(cell_name):
    cell = make_cell(cell_name)
    theta, s_prev, x, _ = _point(cell, 2)
    _, cache = cell.step(theta, s_prev, x)
    out = cell.step_jvp(theta, cache)
    assert out.shape == s_prev.shape and not out.any()


def test_jacobians_reproduce_the_jvp_column_by_column(cell_name):
    cell = make_cell(cell_name)
    theta, s_prev, x, r = _point(cell, 3)
    _, cache = cell.step(theta, s_prev, x)
    J_s, J_theta = cell.jacobians(theta, cache)
    P_total = P.size(theta)
    assert J_s.shape == (3, cell.n_state, cell.n_state) and J_theta.shape == (3, cell.n_state, P_total)
    v = r.normal((3, cell.n_state))
    dtheta = {k: r.normal(w.shape) for k, w in theta.items()}
    dense = np.einsum("bij,bj->bi", J_s, v) + J_theta @ cell.flat_params(dtheta)
    np.testing.assert_allclose(dense, cell.step_jvp(theta, cache, v, dtheta), rtol=0, atol=1e-13)


def test_elman_closed_form_jacobians_equal_the_generic_ones():
    cell = make_cell("elman_tanh")
    theta, s_prev, x, _ = _point(cell, 4)
    _, cache = cell.step(theta, s_prev, x)
    closed = cell.jacobians(theta, cache)
    generic = refnet.Cell.jacobians(cell, theta, cache)
    for a, b in zip(closed, generic):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def test_lstm_state_is_h_then_c_and_output_is_h():
    cell = refnet.LSTM(2, 3)
    theta, s_prev, x, _ = _point(cell, 5)
    s, cache = cell.step(theta, s_prev, x)
    assert s.shape == (3, 6)
    np.testing.assert_array_equal(cell.output(s), cache.o * np.tanh(s[:, 3:]))
    np.testing.assert_array_equal(cell.output_vjp(np.ones((3, 3)))[:, 3:], 0.0)


def test_gru_reset_gate_multiplies_after_the_hidden_product():
    # PyTorch's form: n = tanh(a_in + r ⊙ (W_hn h + b_hn)); with r = 0 the hidden bias b_hn must vanish.
    cell = refnet.GRU(1, 1)
    theta = {"weight_ih": np.zeros((3, 1)), "weight_hh": np.zeros((3, 1)),
             "bias_ih": np.array([-1e3, 0.0, 0.0]), "bias_hh": np.array([0.0, 0.0, 5.0])}
    h, cache = cell.step(theta, np.zeros((1, 1)), np.zeros((1, 1)))
    assert cache.r[0, 0] == 0.0 and h[0, 0] == 0.0


def test_irnn_init_is_identity_recurrence_and_zero_bias():
    theta = refnet.IRNN(3, 5, scale=0.5).init(refnet.rng(0))
    np.testing.assert_array_equal(theta["weight_hh"], 0.5 * np.eye(5))
    assert not theta["bias_ih"].any() and not theta["bias_hh"].any()
    assert 0 < np.std(theta["weight_ih"]) < 0.01


def test_init_uses_pytorch_names_and_shapes():
    theta = refnet.LSTM(3, 4).init(refnet.rng(0))
    assert {k: v.shape for k, v in theta.items()} == {
        "weight_ih": (16, 3), "weight_hh": (16, 4), "bias_ih": (16,), "bias_hh": (16,)}
    assert all(np.abs(v).max() <= 0.5 for v in theta.values())


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 0, "hidden_size": 3}, "input_size must be a positive int, got 0"),
    ({"input_size": 2, "hidden_size": 2.5}, "hidden_size must be a positive int, got 2.5"),
    ({"input_size": 2, "hidden_size": 3, "nonlinearity": "sigmoid"}, "nonlinearity must be"),
])
def test_bad_cell_configuration_is_rejected_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        refnet.ElmanRNN(**kwargs)


def test_check_params_names_missing_and_extra_keys():
    cell = refnet.GRU(2, 3)
    theta = cell.init(refnet.rng(0))
    theta["weight_hr"] = theta.pop("weight_hh")
    with pytest.raises(ValueError, match=r"missing \['weight_hh'\], unexpected \['weight_hr'\]"):
        cell.check_params(theta)
