"""refnet.online's SnApLearner and RFLOLearner: with θ fixed their gradients sum to snap's and rflo's."""
import numpy as np
import pytest

import refnet
from refnet.algorithms.rflo import rflo
from refnet.algorithms.snap import snap
from refnet.cells.leaky import LeakyRNN
from refnet.online import RFLOLearner, SnApLearner
from refnet.optim import SGD, Adagrad

from conftest import make_cell

T = 7


def _problem(cell, B=1, seed=0):
    r = refnet.rng(seed)
    head = refnet.Head(cell.n_out, 2, refnet.sigmoid_bce)
    theta, beta = cell.init(r), head.init(r)
    return theta, r.normal((T, B, 3)), head, beta, r.integers(0, 2, (T, B, 2)).astype(float)


def _summed(learner, x, y):
    dtheta = {k: np.zeros_like(v) for k, v in learner.dtheta.items()}
    loss = 0.0
    for t in range(T):
        loss += learner.step(x[t], y[t]).loss
        for k in dtheta:
            dtheta[k] += learner.dtheta[k]
    return loss, dtheta


def _same(learned, reference):
    loss, dtheta = learned
    assert loss == pytest.approx(reference.loss, rel=1e-12)
    for k, v in reference.dtheta.items():   # the same sums in another order: rounding only
        np.testing.assert_allclose(dtheta[k], v, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, n, B", [("elman_tanh", 1, 1), ("elman_tanh", 2, 2), ("gru", 1, 1), ("lstm", 1, 2)])
def test_snap_learner_with_theta_fixed_sums_to_snap(name, n, B):
    cell = make_cell(name)
    theta, x, head, beta, y = _problem(cell, B)
    learner = SnApLearner(cell, head, theta, beta, SGD(0.0), n=n, batch=B)
    _same(_summed(learner, x, y), snap(cell, theta, x, None, head, beta, y, np.full((T, B), 1.0 / B), n=n))


@pytest.mark.parametrize("B, random_feedback", [(1, False), (2, False), (1, True)])
def test_rflo_learner_with_theta_fixed_sums_to_rflo(B, random_feedback):
    cell = LeakyRNN(3, 4, alpha=0.3)
    theta, x, head, beta, y = _problem(cell, B)
    feedback = refnet.rng(7).normal((4, 2)) if random_feedback else None
    learner = RFLOLearner(cell, head, theta, beta, SGD(0.0), feedback=feedback, batch=B)
    reference = rflo(cell, theta, x, None, head, beta, y, np.full((T, B), 1.0 / B), feedback=feedback)
    _same(_summed(learner, x, y), reference)


@pytest.mark.parametrize("make", [lambda c, h, t, b: SnApLearner(c, h, t, b, Adagrad(0.1), n=1),
                                  lambda c, h, t, b: RFLOLearner(c, h, t, b, Adagrad(0.1))])
def test_learners_update_their_own_copy_of_the_weights(make):
    cell = LeakyRNN(3, 4, alpha=0.5)
    theta, x, head, beta, y = _problem(cell)
    before = {k: v.copy() for k, v in theta.items()}
    learner = make(cell, head, theta, beta)
    learner.step(x[0], y[0])
    assert all(np.array_equal(theta[k], before[k]) for k in theta)
    assert any(not np.array_equal(learner.theta[k], before[k]) for k in theta)


def test_learners_reject_bad_arguments_by_name():
    cell = LeakyRNN(3, 4)
    theta, x, head, beta, y = _problem(cell)
    with pytest.raises(ValueError, match="n must be"):
        SnApLearner(cell, head, theta, beta, SGD(0.1), n=0)
    with pytest.raises(ValueError, match="feedback"):
        RFLOLearner(cell, head, theta, beta, SGD(0.1), feedback=np.zeros((2, 4)))
    with pytest.raises(TypeError, match="GRU"):
        RFLOLearner(make_cell("gru"), head, make_cell("gru").init(refnet.rng(0)), beta, SGD(0.1))
    learner = SnApLearner(cell, head, theta, beta, SGD(0.1), n=1)
    with pytest.raises(ValueError, match="x must have shape"):
        learner.step(np.zeros((1, 5)), y[0])
