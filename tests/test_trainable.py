"""Freezing parameters (``trainable=``): BPTT, RTRL and the online learners (refnet/algorithms/trainable.py)."""
import numpy as np
import pytest

import refnet
from refnet.algorithms.rtrl import rtrl
from refnet.backend import rng
from refnet.online import RTRLLearner, TBPTTLearner
from refnet.optim import SGD, Adam


def _problem(cell):
    r = rng(0)
    theta = cell.init(r)
    head = refnet.Head(cell.n_out, 3)
    beta = head.init(r)
    x = r.normal((5, 2, cell.input_size))
    y = r.integers(0, 3, (5, 2))
    return theta, head, beta, x, y


@pytest.mark.parametrize("make, frozen", [(lambda: refnet.FastRNN(3, 4), {"alpha", "beta"}),
                                          (lambda: refnet.ElmanRNN(3, 4, "tanh"), {"weight_hh"})])
def test_bptt_and_rtrl_give_the_trainable_gradients_only_and_equal_the_full_ones(make, frozen):
    cell = make()
    theta, head, beta, x, y = _problem(cell)
    trainable = set(theta) - frozen
    full = refnet.bptt(cell, theta, x, None, head, beta, y)
    part = refnet.bptt(cell, theta, x, None, head, beta, y, trainable=trainable)
    forward = rtrl(cell, theta, x, None, head, beta, y, trainable=trainable)
    assert set(part.dtheta) == set(forward.dtheta) == trainable      # frozen: absent, not zero
    for k in trainable:
        np.testing.assert_array_equal(part.dtheta[k], full.dtheta[k])
        np.testing.assert_allclose(forward.dtheta[k], full.dtheta[k], rtol=1e-10, atol=1e-14)  # forward vs reverse sums


def test_rtrl_learner_carries_no_sensitivity_columns_for_frozen_parameters_and_never_moves_them():
    cell = refnet.ElmanRNN(3, 4, "tanh")
    theta, head, beta, x, y = _problem(cell)
    full = RTRLLearner(cell, head, theta, beta, SGD(lr=0.1), batch=2)
    frozen = RTRLLearner(cell, head, theta, beta, SGD(lr=0.1), batch=2, trainable={"weight_ih", "bias_ih"})
    assert full.M.shape == (2, 4, 4 * 3 + 16 + 4 + 4)
    assert frozen.M.shape == (2, 4, 4 * 3 + 4)                       # the frozen weight_hh, bias_hh cost nothing
    for t in range(5):
        a, b = full.step(x[t], y[t]), frozen.step(x[t], y[t])
        if t == 0:
            assert a.loss == b.loss
    np.testing.assert_array_equal(frozen.theta["weight_hh"], theta["weight_hh"])
    np.testing.assert_array_equal(frozen.theta["bias_hh"], theta["bias_hh"])
    assert not np.allclose(frozen.theta["weight_ih"], theta["weight_ih"])


def test_frozen_rtrl_learner_steps_equal_the_full_learner_restricted():
    """One step: the trainable part of the update is the full learner's (same gradient entries)."""
    cell = refnet.FastRNN(3, 4)
    theta, head, beta, x, y = _problem(cell)
    full = RTRLLearner(cell, head, theta, beta, Adam(lr=0.01), batch=2)
    part = RTRLLearner(cell, head, theta, beta, Adam(lr=0.01), batch=2, trainable=["W", "U", "bias_update"])
    full.step(x[0], y[0])
    part.step(x[0], y[0])
    for k in ("W", "U", "bias_update"):
        np.testing.assert_allclose(part.theta[k], full.theta[k], rtol=1e-14)
    np.testing.assert_array_equal(part.theta["alpha"], theta["alpha"])


def test_tbptt_learner_holds_frozen_parameters_fixed():
    cell = refnet.ElmanRNN(3, 4, "tanh")
    theta, head, beta, x, y = _problem(cell)
    learner = TBPTTLearner(cell, head, theta, beta, SGD(lr=0.5), k=2, batch=2, trainable={"weight_ih"})
    for t in range(5):
        learner.step(x[t], y[t])
    np.testing.assert_array_equal(learner.theta["weight_hh"], theta["weight_hh"])
    assert not np.allclose(learner.theta["weight_ih"], theta["weight_ih"])


def test_bad_trainable_is_named():
    cell = refnet.FastRNN(3, 4)
    theta, head, beta, x, y = _problem(cell)
    with pytest.raises(ValueError, match=r"does not have: \['gamma'\]"):
        refnet.bptt(cell, theta, x, None, head, beta, y, trainable={"W", "gamma"})
    with pytest.raises(TypeError, match="collection of parameter names"):
        rtrl(cell, theta, x, None, head, beta, y, trainable="W")
    with pytest.raises(ValueError, match="does not have"):
        RTRLLearner(cell, head, theta, beta, SGD(lr=0.1), trainable={"weight_hh"})
