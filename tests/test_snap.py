"""refnet.algorithms.snap: SnAp-n's mask, storage, exactness and argument checks."""
import numpy as np
import pytest

import refnet
from refnet.algorithms.rtrl import rtrl
from refnet.algorithms.snap import snap, snap_init, snap_pattern, snap_update
from refnet.cells.leaky import LeakyRNN

from conftest import make_cell

PATTERN_CELLS = {**{k: (lambda k=k: make_cell(k)) for k in ("elman_tanh", "elman_relu", "irnn", "gru", "lstm")},
                 "leaky": lambda: LeakyRNN(3, 4, alpha=0.3)}


def _problem(cell, B=2, T=5, seed=0):
    r = refnet.rng(seed)
    head = refnet.Head(cell.n_out, 3)
    theta, beta = cell.init(r), head.init(r)
    return theta, r.normal((T, B, 3)), r.normal((B, cell.n_state), 0.5), head, beta, r.integers(0, 3, (T, B))


@pytest.mark.parametrize("name", list(PATTERN_CELLS))
def test_declared_patterns_cover_every_observed_nonzero(name):
    cell = PATTERN_CELLS[name]()
    theta, x, s0, *_ = _problem(cell, B=8)
    S, Theta = cell.jacobian_pattern(theta)
    _, cache = cell.step(theta, s0, x[0])
    J_s, J_theta = cell.jacobians(theta, cache)
    assert not ((J_s != 0).any(axis=0) & ~S).any()
    assert not ((J_theta != 0).any(axis=0) & ~Theta).any()


@pytest.mark.parametrize("name, kept_per_parameter", [("elman_tanh", 1), ("leaky", 1), ("gru", 1)])
def test_snap1_stores_one_entry_per_parameter(name, kept_per_parameter):
    cell = PATTERN_CELLS[name]()
    theta = cell.init(refnet.rng(0))
    pattern = snap_pattern(cell, theta, 1)
    P = cell.flat_params(theta).size
    assert snap_init(pattern, 1, theta["weight_hh"]).V.size == kept_per_parameter * P == int(pattern.mask.sum())


def test_snap1_on_the_lstm_keeps_h_and_c_for_the_i_f_g_rows_and_h_for_o():
    cell = make_cell("lstm")
    pattern = snap_pattern(cell, cell.init(refnet.rng(0)), 1)
    P = cell.flat_params(cell.init(refnet.rng(0))).size
    assert int(pattern.mask.sum()) == 2 * (3 * P // 4) + P // 4


def test_snap2_with_a_dense_recurrence_is_rtrl():
    cell = LeakyRNN(3, 4, alpha=0.5)
    theta, x, s0, head, beta, y = _problem(cell)
    assert snap_pattern(cell, theta, 2).exact and not snap_pattern(cell, theta, 1).exact
    ours, exact = snap(cell, theta, x, s0, head, beta, y, n=2), rtrl(cell, theta, x, s0, head, beta, y)
    for k in theta:   # the kept block is RTRL's whole M: the same products in another order
        np.testing.assert_allclose(ours.dtheta[k], exact.dtheta[k], rtol=1e-12, atol=1e-15)


def test_snap1_is_biased_on_a_dense_recurrence():
    cell = make_cell("elman_tanh")
    theta, x, s0, head, beta, y = _problem(cell)
    ours, exact = snap(cell, theta, x, s0, head, beta, y, n=1), rtrl(cell, theta, x, s0, head, beta, y)
    assert np.abs(cell.flat_params(ours.dtheta) - cell.flat_params(exact.dtheta)).max() > 1e-6


def test_chain_recurrence_closes_at_diameter_plus_one():
    cell = make_cell("elman_tanh", H=5)
    theta = cell.init(refnet.rng(0))
    theta["weight_hh"] = np.diag(np.full(4, 0.9), k=-1)         # chain 0 -> 1 -> ... -> 4: diameter 4
    assert [snap_pattern(cell, theta, n).exact for n in range(1, 7)] == [False] * 4 + [True] * 2


def test_snap_update_leaves_the_previous_state_alone():
    cell = make_cell("elman_tanh")
    theta, x, s0, *_ = _problem(cell, B=1)
    pattern = snap_pattern(cell, theta, 1)
    state = snap_init(pattern, 1, x)
    _, cache = cell.step(theta, s0, x[0])
    before = state.V.copy()
    snap_update(cell, theta, cache, state, pattern)
    np.testing.assert_array_equal(state.V, before)


@pytest.mark.parametrize("n, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_order_is_named(n, error):
    cell = make_cell("elman_tanh")
    with pytest.raises(error, match="n must be"):
        snap_pattern(cell, cell.init(refnet.rng(0)), n)


def test_a_cell_without_patterns_is_refused_by_name():
    cell = refnet.FastRNN(3, 4)
    with pytest.raises(TypeError, match="FastRNN"):
        snap_pattern(cell, cell.init(refnet.rng(0)), 1)


def test_bad_theta_is_named():
    cell = make_cell("elman_tanh")
    theta = cell.init(refnet.rng(0))
    theta["weight_hh"] = theta["weight_hh"][:2]
    with pytest.raises(ValueError, match="weight_hh"):
        snap_pattern(cell, theta, 1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the overflow itself is the point
def test_an_overflowing_run_is_a_numerical_error():
    cell = make_cell("elman_relu")
    theta, x, s0, head, beta, y = _problem(cell, B=1)
    theta["weight_hh"] = np.eye(4) * 1e200
    theta["bias_ih"] = np.full(4, 1e200)
    with pytest.raises(refnet.NumericalError, match="snap"):
        snap(cell, theta, x, s0, head, beta, y, n=1)
