"""refnet.algorithms.kfrtrl: KF-RTRL is unbiased for RTRL; the Elman cell's Kronecker factors."""
import numpy as np
import pytest

import refnet
from gradcheck.matrix.rtrl import z_test
from refnet.algorithms.kfrtrl import (kfrtrl, kfrtrl_gradient, kfrtrl_init, kfrtrl_sensitivity,
                                      kfrtrl_update)
from refnet.algorithms.rtrl import rtrl, rtrl_update

from conftest import make_cell


def _problem(name, T, B, seed):
    r = refnet.rng(seed)
    cell = make_cell(name)
    head = refnet.Head(cell.n_out, 3)
    theta, beta = cell.init(r), head.init(r)
    return cell, theta, r.normal((T, B, 3)), r.normal((B, cell.n_state), 0.5), head, beta, r.integers(0, 3, (T, B))


@pytest.mark.parametrize("name", ["elman_tanh", "elman_relu", "irnn"])
def test_kronecker_factors_rebuild_the_immediate_jacobian(name):
    cell, theta, x, s0, *_ = _problem(name, 1, 2, 0)
    _, cache = cell.step(theta, s0, x[0])
    D, h_hat = cell.kronecker_factors(theta, cache)
    blocks = [(D[:, :, None, None] * np.eye(cell.n_state)[None, :, :, None] * h_hat[k][:, None, None, :])
              .reshape(2, cell.n_state, -1) for k in cell.param_shapes()]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=2), cell.jacobians(theta, cache)[1])


def test_kfrtrl_estimates_average_to_the_rtrl_gradient():
    cell, theta, x, s0, head, beta, y = _problem("elman_tanh", 4, 1, 0)
    exact = cell.flat_params(rtrl(cell, theta, x, s0, head, beta, y).dtheta)
    # 40 estimates, each the mean of 50 independent ones (the sequence repeated along the batch,
    # default weights: the mean over the copies), so the central limit theorem holds for each.
    copies = (np.tile(x, (1, 50, 1)), np.tile(s0, (50, 1)), head, beta, np.tile(y, (1, 50)))
    r = refnet.rng(1)
    samples = np.stack([cell.flat_params(kfrtrl(cell, theta, *copies, rng=r).dtheta) for _ in range(40)])
    test = z_test(samples, exact)   # every coordinate within the Bonferroni bound at α = 1e-3
    assert test.passed, test


def test_kfrtrl_kronecker_product_is_an_unbiased_estimate_of_the_sensitivity():
    cell, theta, x, s0, *_ = _problem("elman_tanh", 5, 1, 2)
    N = 4000
    state = kfrtrl_init(cell, N, x)
    s, s_exact = np.tile(s0, (N, 1)), s0
    M = np.zeros((1, cell.n_state, cell.flat_params(theta).size))
    r = refnet.rng(3)
    for t in range(5):
        s, cache = cell.step(theta, s, np.tile(x[t], (N, 1)))
        state = kfrtrl_update(cell, theta, cache, state, r.signs((N,)), r.signs((N,)))
        s_exact, cache = cell.step(theta, s_exact, x[t])
        M = rtrl_update(*cell.jacobians(theta, cache), M)
    assert z_test(kfrtrl_sensitivity(state).reshape(N, -1), M.reshape(-1)).passed


def test_kfrtrl_is_exact_after_one_step():
    # From M_0 = 0: A_1 ⊗ u_1 = c2² diag(D) ⊗ ĥ = J_θ whatever the signs.
    cell, theta, x, s0, *_ = _problem("elman_tanh", 1, 3, 0)
    _, cache = cell.step(theta, s0, x[0])
    state = kfrtrl_update(cell, theta, cache, kfrtrl_init(cell, 3, x), -np.ones(3), np.array([1.0, -1.0, 1.0]))
    np.testing.assert_allclose(kfrtrl_sensitivity(state), cell.jacobians(theta, cache)[1], rtol=1e-12, atol=1e-15)


def test_kfrtrl_gradient_equals_ds_times_the_dense_estimate():
    cell, theta, x, s0, *_ = _problem("elman_tanh", 3, 2, 4)
    state, s, r = kfrtrl_init(cell, 2, x), s0, refnet.rng(5)
    for t in range(3):
        s, cache = cell.step(theta, s, x[t])
        state = kfrtrl_update(cell, theta, cache, state, r.signs((2,)), r.signs((2,)))
    ds = r.normal((2, cell.n_state))
    dense = (ds[:, None, :] @ kfrtrl_sensitivity(state))[:, 0, :].sum(axis=0)
    np.testing.assert_allclose(cell.flat_params(kfrtrl_gradient(state, ds, cell.param_shapes())), dense,
                               rtol=1e-12, atol=1e-15)


def test_kfrtrl_refuses_a_cell_without_kronecker_factors():
    cell, theta, x, s0, head, beta, y = _problem("lstm", 2, 1, 0)
    with pytest.raises(TypeError, match=r"kronecker_factors\(params, cache\) method .* got LSTM"):
        kfrtrl(cell, theta, x, s0, head, beta, y, rng=refnet.rng(0))
