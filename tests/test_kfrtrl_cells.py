"""KF-RTRL beyond the Elman cell: the leaky RNN, FastRNN's factored blocks, and the gated cells' refusal."""
import numpy as np
import pytest

import refnet
from refnet.algorithms.kfrtrl import kfrtrl, kfrtrl_init, kfrtrl_sensitivity, kfrtrl_update
from refnet.algorithms.rtrl import rtrl_update
from refnet.cells.leaky import LeakyRNN


def _cell_point(cell, B, seed=0):
    r = refnet.rng(seed)
    theta = cell.init(r)
    if isinstance(cell, refnet.FastRNN):   # away from EdgeML's init, where α ≈ 0.05 and J_s ≈ I
        theta.update(alpha=np.array([0.3]), beta=np.array([-0.2]), U=r.normal((4, 4), 0.5))
    return theta, r.normal((5, B, 3)), r.normal((B, 4), 0.5)


@pytest.mark.parametrize("cell", [LeakyRNN(3, 4, alpha=0.4), refnet.FastRNN(3, 4)])
def test_the_first_step_is_exact(cell):
    # From M_0 = 0: A_1 ⊗ u_1 = c2² diag(D) ⊗ ĥ = J_θ, and FastRNN's α̂, β̂ columns are RTRL's own
    theta, x, s0 = _cell_point(cell, 2)
    state = kfrtrl_init(cell, 2, x)
    _, cache = cell.step(theta, s0, x[0])
    state = kfrtrl_update(cell, theta, cache, state, np.array([1.0, -1.0]), np.array([-1.0, 1.0]))
    np.testing.assert_allclose(kfrtrl_sensitivity(state, cell.param_shapes()), cell.jacobians(theta, cache)[1],
                               rtol=1e-12, atol=1e-15)


def test_fastrnn_alpha_beta_columns_are_carried_exactly():
    cell = refnet.FastRNN(3, 4)
    theta, x, s0 = _cell_point(cell, 1)
    state = kfrtrl_init(cell, 1, x)
    assert set(state.rest) == {"alpha", "beta"} and set(state.blocks) == {"W", "U", "bias_update"}
    M, s = np.zeros((1, 4, cell.flat_params(theta).size)), s0
    r = refnet.rng(4)
    for t in range(5):
        s, cache = cell.step(theta, s, x[t])
        state = kfrtrl_update(cell, theta, cache, state, r.signs((1,)), r.signs((1,)))
        M = rtrl_update(*cell.jacobians(theta, cache), M)
    dense = kfrtrl_sensitivity(state, cell.param_shapes())
    np.testing.assert_allclose(dense[:, :, -2:], M[:, :, -2:], rtol=1e-12, atol=1e-15)   # α̂, β̂: the last columns


@pytest.mark.parametrize("cell", [refnet.GRU(3, 4), refnet.LSTM(3, 4)])
def test_gated_cells_are_refused_by_name(cell):
    r = refnet.rng(0)
    head = refnet.Head(4, 2)
    with pytest.raises(TypeError, match=type(cell).__name__):
        kfrtrl(cell, cell.init(r), r.normal((3, 1, 3)), None, head, head.init(r), r.integers(0, 2, (3, 1)),
               rng=refnet.rng(1))
