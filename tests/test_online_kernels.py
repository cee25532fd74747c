"""Whole online learner steps in one kernel (refnet.online_kernels): = the learner's own path, and dispatch."""
import numpy as np
import pytest

import refnet
import refnet.online
from refnet.heads import Head, mse, sigmoid_bce, softmax_cross_entropy
from refnet.online import RTRLLearner, TBPTTLearner
from refnet.optim import SGD, Adagrad, Adam

# The kernel and the learner's own path sum the same float64 products in other orders,
# over 40 steps of weight updates that feed back: rounding, measured near 1e-14; 1e-12
# is DESIGN.md §4's bound for a kernel against its twin.
EXACT = 1e-12
STEPS = 40
OPTIMISERS = {"sgd": lambda: SGD(0.05), "sgd_momentum": lambda: SGD(0.05, momentum=0.9),
              "adagrad": lambda: Adagrad(0.1), "adam": lambda: Adam(0.01)}
LOSSES = {"ce": softmax_cross_entropy, "mse": mse, "bce": sigmoid_bce}


def _learner(kind, n, nonlinearity, loss, opt, I=2, O=3, seed=0):
    r = refnet.rng(seed)
    cell = refnet.ElmanRNN(I, n, nonlinearity)
    head = Head(n, O, LOSSES[loss])
    theta, beta = cell.init(r), head.init(r)
    if kind == "tbptt":
        return TBPTTLearner(cell, head, theta, beta, OPTIMISERS[opt](), k=4)
    return RTRLLearner(cell, head, theta, beta, OPTIMISERS[opt]())


def _stream(loss, I=2, O=3, steps=STEPS, seed=1):
    g = np.random.default_rng(seed)
    x = g.standard_normal((steps, 1, I))
    y = g.integers(0, O, (steps, 1)) if loss == "ce" else g.uniform(0, 1, (steps, 1, O))
    return x, y


def _own_path_forbidden(self, x):
    raise AssertionError("the learner's own path ran where the kernel should have")


def _run(monkeypatch, flag, kind, n, nonlinearity, loss, opt, steps=STEPS):
    """``steps`` learner steps with REFNET_NUMBA=flag; with '1' the learner's own path is made to fail."""
    monkeypatch.setenv("REFNET_NUMBA", flag)
    learner = _learner(kind, n, nonlinearity, loss, opt)
    x, y = _stream(loss, steps=steps)
    with monkeypatch.context() as mp:
        if flag == "1":
            mp.setattr(refnet.online.OnlineLearner, "predict", _own_path_forbidden)
        results = [learner.step(x[t], y[t]) for t in range(steps)]
    return learner, results


def _close(a, b):
    scale = max(float(np.abs(b).max()), 1.0)
    assert float(np.abs(np.asarray(a) - np.asarray(b)).max()) <= EXACT * scale


def _assert_same(ours, theirs):
    (a, ra), (b, rb) = ours, theirs
    _close(a.w, b.w)
    _close(a.s, b.s)
    for (pa, la), (pb, lb) in zip(ra, rb):
        _close(pa, pb)
        assert abs(la - lb) <= EXACT * max(abs(lb), 1.0)


@pytest.mark.parametrize("kind", ["tbptt", "rtrl"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("opt", sorted(OPTIMISERS))
def test_kernel_step_equals_the_learners_own_path(monkeypatch, kind, loss, opt):
    twin = _run(monkeypatch, "0", kind, 4, "tanh", loss, opt)
    ours = _run(monkeypatch, "1", kind, 4, "tanh", loss, opt)
    _assert_same(ours, twin)


@pytest.mark.parametrize("kind", ["tbptt", "rtrl"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_kernel_step_with_blas_products_equals_the_learners_own_path(monkeypatch, kind, nonlinearity):
    """n = 20 >= BLAS_MIN_N: the n² and n²P products go through np.dot inside the kernel."""
    twin = _run(monkeypatch, "0", kind, 20, nonlinearity, "bce", "adagrad", steps=15)
    ours = _run(monkeypatch, "1", kind, 20, nonlinearity, "bce", "adagrad", steps=15)
    _assert_same(ours, twin)


@pytest.mark.parametrize("kind", ["tbptt", "rtrl"])
def test_kernel_steps_and_predict_learn_may_alternate(monkeypatch, kind):
    monkeypatch.setenv("REFNET_NUMBA", "0")
    twin = _learner(kind, 4, "tanh", "ce", "adam")
    monkeypatch.setenv("REFNET_NUMBA", "1")
    ours = _learner(kind, 4, "tanh", "ce", "adam")
    x, y = _stream("ce", steps=12)
    for t in range(12):
        monkeypatch.setenv("REFNET_NUMBA", "0")
        twin.step(x[t], y[t])
        monkeypatch.setenv("REFNET_NUMBA", "1")
        if t % 3 == 2:                      # the learner's own path in the middle of kernel steps
            ours.predict(x[t])
            ours.learn(y[t])
        else:
            ours.step(x[t], y[t])
    _close(ours.w, twin.w)
    _close(ours.s, twin.s)
    assert ours.t == twin.t == 12


def test_the_kernel_is_not_used_where_it_does_not_apply(monkeypatch):
    monkeypatch.setenv("REFNET_NUMBA", "1")
    r = refnet.rng(0)
    cell, head = refnet.LSTM(2, 3), Head(3, 2)
    learner = TBPTTLearner(cell, head, cell.init(r), head.init(r), Adagrad(0.1), k=2)
    learner.step(np.zeros((1, 2)), np.zeros(1, dtype=np.int64))
    assert learner.__dict__["_kernel_plan"] is False


def test_a_bad_shape_gets_the_learners_own_error(monkeypatch):
    monkeypatch.setenv("REFNET_NUMBA", "1")
    learner = _learner("tbptt", 4, "tanh", "ce", "sgd")
    with pytest.raises(ValueError, match="x must have shape"):
        learner.step(np.zeros((1, 5)), np.zeros(1, dtype=np.int64))


def test_a_non_finite_input_is_left_to_the_learners_own_path(monkeypatch):
    """The kernel touches nothing and the learner's path decides (here: a non-finite loss)."""
    monkeypatch.setenv("REFNET_NUMBA", "1")
    learner = _learner("rtrl", 4, "tanh", "mse", "sgd")
    w = learner.w.copy()
    with pytest.raises((refnet.NumericalError, ValueError)):
        learner.step(np.full((1, 2), np.nan), np.zeros((1, 3)))
    _close(learner.w, w)


def test_an_overflowing_loss_raises_and_leaves_the_weights(monkeypatch):
    monkeypatch.setenv("REFNET_NUMBA", "1")
    learner = _learner("tbptt", 4, "tanh", "mse", "adam")
    learner.step(np.zeros((1, 2)), np.zeros((1, 3)))
    w, t_adam = learner.w.copy(), learner.opt_state.t
    with pytest.raises(refnet.NumericalError):
        learner.step(np.zeros((1, 2)), np.full((1, 3), 1e300))     # ½‖z − y‖² overflows
    _close(learner.w, w)
    assert learner.opt_state.t == t_adam



def test_warm_runs_every_kernel_path_and_times_it():
    from refnet.kernels.warm import warm
    seconds = warm(("float64",))
    assert set(seconds) == {"fused float64", "online float64"}
    assert all(s > 0 for s in seconds.values())


def test_warm_refuses_a_bad_dtype_and_kernels_switched_off(monkeypatch):
    from refnet.kernels.warm import warm
    with pytest.raises(ValueError, match="'float16'"):
        warm(("float16",))
    monkeypatch.setenv("REFNET_NUMBA", "0")
    with pytest.raises(ValueError, match="REFNET_NUMBA must be '1'"):
        warm()
