"""refnet.cells.leaky: the leaky RNN (Murray 2019, Eq. 1) under the cell contract."""
import math

import numpy as np
import pytest

import refnet
from refnet.cells.base import Cell
from refnet.cells.leaky import LeakyRNN


def _point(cell, B, seed=0):
    r = refnet.rng(seed)
    theta = cell.init(r)
    return theta, r.normal((6, B, cell.input_size)), r.normal((B, cell.n_state), 0.5)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_alpha_one_is_the_elman_cell_bit_for_bit(nonlinearity):
    leaky, elman = LeakyRNN(3, 4, alpha=1.0, nonlinearity=nonlinearity), refnet.ElmanRNN(3, 4, nonlinearity)
    theta, x, s0 = _point(leaky, 3)
    # B = 3 runs the same array code in both cells: 0·h + 1·y = y exactly
    np.testing.assert_array_equal(refnet.forward(leaky, theta, x, s0).s[-1], refnet.forward(elman, theta, x, s0).s[-1])


@pytest.mark.parametrize("B", [1, 3])
def test_alpha_one_gives_the_elman_gradient(B):
    leaky, elman = LeakyRNN(3, 4, alpha=1.0), refnet.ElmanRNN(3, 4)
    theta, x, s0 = _point(leaky, B)
    head = refnet.Head(4, 2)
    beta = head.init(refnet.rng(1))
    y = refnet.rng(2).integers(0, 2, (6, B))
    a = refnet.bptt(leaky, theta, x, s0, head, beta, y)
    b = refnet.bptt(elman, theta, x, s0, head, beta, y)
    # at B = 1 the Elman cell runs its numba kernels, another summation order: <= 1e-15 relative
    for k in theta:
        assert np.abs(a.dtheta[k] - b.dtheta[k]).max() <= 1e-15 * max(np.abs(b.dtheta[k]).max(), 1.0)


def test_step_is_the_leaky_update():
    cell = LeakyRNN(3, 4, alpha=0.25)
    theta, x, s0 = _point(cell, 2)
    a = x[0] @ theta["weight_ih"].T + theta["bias_ih"] + s0 @ theta["weight_hh"].T + theta["bias_hh"]
    np.testing.assert_allclose(cell.step(theta, s0, x[0])[0], 0.75 * s0 + 0.25 * np.tanh(a), rtol=1e-15)


@pytest.mark.parametrize("alpha, nonlinearity", [(0.3, "tanh"), (0.7, "relu")])
def test_closed_form_jacobians_equal_the_generic_ones_from_jvps(alpha, nonlinearity):
    cell = LeakyRNN(3, 4, alpha=alpha, nonlinearity=nonlinearity)
    theta, x, s0 = _point(cell, 2)
    _, cache = cell.step(theta, s0, x[0])
    for ours, generic in zip(cell.jacobians(theta, cache), Cell.jacobians(cell, theta, cache)):
        np.testing.assert_allclose(ours, generic, rtol=1e-14, atol=1e-16)
    np.testing.assert_array_equal(cell.state_jacobian(theta, cache), cell.jacobians(theta, cache)[0])


def test_kronecker_factors_rebuild_the_immediate_jacobian():
    cell = LeakyRNN(3, 4, alpha=0.4)
    theta, x, s0 = _point(cell, 2)
    _, cache = cell.step(theta, s0, x[0])
    D, h_hat = cell.kronecker_factors(theta, cache)
    eye = np.eye(4)[None, :, :, None]
    dense = np.concatenate([(D[:, :, None, None] * eye * h_hat[k][:, None, None, :]).reshape(2, 4, -1)
                            for k in cell.param_shapes()], axis=2)
    np.testing.assert_allclose(dense, cell.jacobians(theta, cache)[1], rtol=1e-15)


def test_vjp_and_jvp_pass_the_dot_product_test():
    cell = LeakyRNN(3, 4, alpha=0.35)
    theta, x, s0 = _point(cell, 2)
    _, cache = cell.step(theta, s0, x[0])
    r = refnet.rng(5)
    u, v, dx = r.normal((2, 4)), r.normal((2, 4)), r.normal((2, 3))
    dtheta = {k: r.normal(w.shape) for k, w in theta.items()}
    ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
    lhs = float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum())
    rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + refnet.params.vdot(dparams, dtheta)
    assert lhs == pytest.approx(rhs, rel=1e-13)


def test_init_honours_the_rng_dtype():
    theta = LeakyRNN(3, 4).init(refnet.rng(0, np.float32))
    assert {v.dtype for v in theta.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("alpha", [0.0, -0.5, 1.5, math.nan, math.inf])
def test_alpha_outside_0_1_is_named(alpha):
    with pytest.raises(ValueError, match="alpha"):
        LeakyRNN(3, 4, alpha=alpha)


@pytest.mark.parametrize("alpha", ["0.5", True, None])
def test_alpha_not_a_number_is_a_type_error(alpha):
    with pytest.raises(TypeError, match="alpha"):
        LeakyRNN(3, 4, alpha=alpha)


def test_bad_nonlinearity_and_sizes_are_named():
    with pytest.raises(ValueError, match="nonlinearity"):
        LeakyRNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        LeakyRNN(3, 0)
