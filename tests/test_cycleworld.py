"""refnet.tasks.cycleworld: the p-CycleWorld stream, its always-0 baseline, and a learner solving it."""
import numpy as np
import pytest

import refnet
from refnet.online import RTRLLearner
from refnet.optim import Adagrad
from refnet.tasks.cycleworld import always_zero_accuracy, cycleworld


@pytest.mark.parametrize("p, phase", [(2, 0), (6, 0), (6, 5), (15, 7)])
def test_stream_has_one_bit_per_cycle_and_targets_are_the_next_bit(p, phase):
    x, y = cycleworld(p, 5 * p + 3, phase=phase)
    assert x.shape == y.shape == (5 * p + 3, 1, 1)
    o = x[:, 0, 0]
    np.testing.assert_array_equal(o, [(t + phase) % p == 0 for t in range(5 * p + 3)])
    np.testing.assert_array_equal(y[:-1, 0, 0], o[1:])
    assert y[-1, 0, 0] == ((5 * p + 3 + phase) % p == 0)


def test_always_zero_scores_p_minus_one_over_p():
    assert always_zero_accuracy(6) == pytest.approx(5 / 6)
    _, y = cycleworld(6, 600)
    assert float((y == 0).mean()) == pytest.approx(always_zero_accuracy(6))


def test_stream_follows_the_requested_dtype():
    assert cycleworld(6, 4, dtype=np.float32)[0].dtype == np.float32
    assert cycleworld(6, 4)[0].dtype == np.float64


@pytest.mark.parametrize("kwargs, error, match", [
    ({"p": 1, "steps": 3}, ValueError, "p must be an int >= 2, got 1"),
    ({"p": 6, "steps": 0}, ValueError, "steps must be an int >= 1, got 0"),
    ({"p": 6, "steps": 3, "phase": 6}, ValueError, r"phase must be in \[0, p\) = \[0, 6\), got 6"),
    ({"p": 6.0, "steps": 3}, TypeError, "p must be an int >= 2, got float 6.0"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        cycleworld(**kwargs)


def test_rtrl_learns_6_cycleworld():
    # The FPP paper's setting (Elman tanh, 4 units, Adagrad 0.1, BCE): RTRL needs a few thousand steps.
    r = refnet.rng(0)
    cell, head = refnet.ElmanRNN(1, 4), refnet.Head(4, 1, refnet.sigmoid_bce)
    learner = RTRLLearner(cell, head, cell.init(r), head.init(r), Adagrad(0.1))
    x, y = cycleworld(6, 4000)
    correct = [bool((learner.step(x[t], y[t]).prediction[0, 0] > 0) == (y[t, 0, 0] == 1)) for t in range(4000)]
    assert np.mean(correct[-600:]) >= 0.99
