"""Deferred finiteness checks (refnet.online on a device) together with all-or-nothing steps.

A deferred learner reads its flags after a step has committed, outside the step's transaction:
the error names an earlier step (whose updates were undone on the device) and the step that
reached the check is kept, so the learner goes on from there.  The deferred path runs on NumPy
too when ``check_every`` > 1, which is how these tests drive it without a device.
"""
import numpy as np
import pytest

import refnet
from refnet import online, optim


def _exploding(check_every):
    """ReLU RTRL with lr 1e200: its state overflows a few steps in, again after every good restart.
    Batch 2: the learner's own path (at batch 1 on NumPy the fused kernel checks at once)."""
    cell, head = refnet.ElmanRNN(3, 4, "relu"), refnet.Head(4, 3)
    r = refnet.rng(0)
    return online.RTRLLearner(cell, head, cell.init(r), head.init(r), optim.SGD(1e200), batch=2,
                              check_every=check_every)


def _data(T=40):
    return (np.random.default_rng(0).normal(size=(T, 2, 3)), np.random.default_rng(1).integers(0, 3, (T, 2)))


def _first_error(learner, xs, ys, start):
    for t in range(start, len(xs)):
        try:
            learner.step(xs[t], ys[t])
        except refnet.NumericalError as exc:
            return t, exc
    pytest.fail("the learner never overflowed")


def test_the_step_that_reaches_the_check_is_kept():
    learner = _exploding(check_every=4)
    assert learner.deferred
    xs, ys = _data()
    t, exc = _first_error(learner, xs, ys, 0)
    assert learner.t == t + 1          # committed: the flags were read after the step, not inside it
    assert exc.step <= learner.t


def test_after_a_deferred_error_the_next_check_names_a_later_step():
    """The flags read at the check are consumed: a rolled-back check would name the same step again."""
    learner = _exploding(check_every=4)
    xs, ys = _data()
    t1, first = _first_error(learner, xs, ys, 0)
    _, second = _first_error(learner, xs, ys, t1 + 1)
    assert second.step > first.step


def test_a_deferred_error_leaves_w_finite_and_as_the_host_leaves_it():
    """θ and β keep their values from before the first bad step, as on the immediate (host) path."""
    xs, ys = _data()
    host, deferred = _exploding(check_every=1), _exploding(check_every=4)
    _, on_host = _first_error(host, xs, ys, 0)
    _, on_deferred = _first_error(deferred, xs, ys, 0)
    assert on_deferred.step == on_host.step
    np.testing.assert_array_equal(deferred.w, host.w)   # same operations in the same order on NumPy
