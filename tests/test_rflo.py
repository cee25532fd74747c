"""refnet.algorithms.rflo: RFLO's exact case, its feedback variants and argument checks."""
import numpy as np
import pytest

import refnet
from refnet.algorithms.rflo import rflo
from refnet.algorithms.rtrl import rtrl
from refnet.cells.leaky import LeakyRNN


def _problem(alpha=0.3, B=2, T=6, seed=0, nonlinearity="tanh"):
    r = refnet.rng(seed)
    cell = LeakyRNN(3, 4, alpha=alpha, nonlinearity=nonlinearity)
    head = refnet.Head(4, 3)
    theta, beta = cell.init(r), head.init(r)
    return cell, theta, r.normal((T, B, 3)), r.normal((B, 4), 0.5), head, beta, r.integers(0, 3, (T, B))


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_rflo_is_rtrl_when_the_recurrence_is_zero(alpha):
    cell, theta, x, s0, head, beta, y = _problem(alpha)
    theta["weight_hh"] = np.zeros((4, 4))
    ours, exact = rflo(cell, theta, x, s0, head, beta, y), rtrl(cell, theta, x, s0, head, beta, y)
    for k in theta:   # every parameter, W_hh's own columns too; rounding at most
        np.testing.assert_allclose(ours.dtheta[k], exact.dtheta[k], rtol=1e-13, atol=1e-16)


def test_rflo_is_biased_when_the_recurrence_is_not_zero():
    cell, theta, x, s0, head, beta, y = _problem()
    ours, exact = rflo(cell, theta, x, s0, head, beta, y), rtrl(cell, theta, x, s0, head, beta, y)
    assert np.abs(cell.flat_params(ours.dtheta) - cell.flat_params(exact.dtheta)).max() > 1e-6


def test_feedback_equal_to_the_readout_transpose_is_the_readout_variant():
    cell, theta, x, s0, head, beta, y = _problem()
    a = rflo(cell, theta, x, s0, head, beta, y)
    b = rflo(cell, theta, x, s0, head, beta, y, feedback=beta["weight"].T.copy())
    for k in theta:
        np.testing.assert_allclose(b.dtheta[k], a.dtheta[k], rtol=1e-13, atol=1e-17)


def test_random_feedback_changes_the_cell_gradient_but_not_the_head_gradient():
    cell, theta, x, s0, head, beta, y = _problem()
    a = rflo(cell, theta, x, s0, head, beta, y)
    b = rflo(cell, theta, x, s0, head, beta, y, feedback=refnet.rng(9).normal((4, 3)))
    assert np.abs(b.dtheta["weight_ih"] - a.dtheta["weight_ih"]).max() > 1e-6
    for k in beta:
        np.testing.assert_array_equal(b.dbeta[k], a.dbeta[k])


def test_bad_feedback_shape_is_named():
    cell, theta, x, s0, head, beta, y = _problem()
    with pytest.raises(ValueError, match="feedback"):
        rflo(cell, theta, x, s0, head, beta, y, feedback=np.zeros((3, 4)))


def test_non_finite_feedback_is_named():
    cell, theta, x, s0, head, beta, y = _problem()
    with pytest.raises(ValueError, match="feedback"):
        rflo(cell, theta, x, s0, head, beta, y, feedback=np.full((4, 3), np.nan))


@pytest.mark.parametrize("cell", [refnet.ElmanRNN(3, 4), refnet.GRU(3, 4), refnet.FastRNN(3, 4)])
def test_cells_without_a_leak_or_factored_jacobian_are_refused_by_name(cell):
    _, _, x, s0, head, beta, y = _problem()
    with pytest.raises(TypeError, match=type(cell).__name__):
        rflo(cell, cell.init(refnet.rng(0)), x, s0, head, beta, y)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the overflow itself is the point
def test_an_overflowing_run_is_a_numerical_error():
    cell, theta, x, s0, head, beta, y = _problem(alpha=1.0, nonlinearity="relu", B=1)
    theta["weight_hh"] = np.eye(4) * 1e200
    theta["bias_ih"] = np.full(4, 1e200)
    with pytest.raises(refnet.NumericalError, match="rflo"):
        rflo(cell, theta, x, s0, head, beta, y)
