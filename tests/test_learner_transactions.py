"""Online learners' steps are all or nothing: a step that overflows raises and leaves the learner as before.

Every learner class in :mod:`refnet.online` (found by introspection, so a new
learner is covered without a change here) is driven into three kinds of
failure by one finite but extreme observation:

- ``x``: x_t = 1e308 into a ReLU cell whose input weights are all >= 1, so s_t overflows in ``predict``;
- ``y``: an MSE target of 1e200, so ℓ_t overflows in ``learn``, after ``predict`` advanced the state;
- ``optimiser``: x_t = 100 (so h_t >= 150) and an MSE target of 1.3e154: ℓ_t = ½ r² ≈ 0.8e308 and
  the gradient (r h_t for the head's weight) are finite, but Adagrad's G = g² > 1.7e308 is not.

Each must raise :class:`refnet.NumericalError`, leave every carried quantity,
the parameters, the optimiser state and the random streams exactly as before
the step, and then learn the next good observations bit for bit as a twin
learner that never saw the bad one — on the learners' own path and on the
batch-1 numba kernel path (:mod:`refnet.online_kernels`).
"""
import inspect
from collections import deque

import numpy as np
import pytest

import refnet
from refnet import online, optim
from refnet.heads import Head, mse

LEARNERS = sorted((cls for _, cls in inspect.getmembers(online, inspect.isclass)
                   if issubclass(cls, online.OnlineLearner) and cls is not online.OnlineLearner),
                  key=lambda cls: cls.__name__)

# a value for every required keyword-only argument of a learner (a new learner needing another
# one fails test_every_learner_class_is_constructed below, rather than going untested)
REQUIRED = {"k": lambda: 3, "n": lambda: 2, "rng": lambda: refnet.rng(7)}
CELLS = (lambda: refnet.ElmanRNN(3, 4, nonlinearity="relu"),
         lambda: refnet.LeakyRNN(3, 4, alpha=0.5, nonlinearity="relu"))
SCRATCH = {"_M_next", "_E_next", "_kernel_plan"}     # spare buffers, written before a swap


def _make(cls, optimiser):
    """A learner of ``cls`` on the first cell it accepts (Elman, else leaky), MSE head; None if none."""
    required = {name: REQUIRED[name]() for name, p in inspect.signature(cls).parameters.items()
                if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    for make_cell in CELLS:
        cell = make_cell()
        r = refnet.rng(0)
        theta = cell.init(r)
        theta["weight_ih"] = np.abs(theta["weight_ih"]) + 1.0    # every unit's input drive >= Σ x (BAD)
        head = Head(cell.n_out, 3, mse)
        beta = head.init(r)
        try:
            return cls(cell, head, theta, beta, optimiser, **required)
        except (TypeError, ValueError):
            continue
    return None


def _stream(T, seed=5):
    g = np.random.default_rng(seed)
    return g.normal(size=(T, 1, 3)), g.normal(size=(T, 1, 3))


BAD = {"x": (np.full((1, 3), 1e308), None),
       "y": (None, np.array([[1e200, 0.0, 0.0]])),
       "optimiser": (np.full((1, 3), 100.0), np.array([[1.3e154, 0.0, 0.0]]))}


def _snapshot(obj, seen=None):
    """Everything a learner holds, as plain values: arrays copied, containers and refnet objects walked."""
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype, obj.shape, obj.copy())
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items() if k not in SCRATCH}
    if isinstance(obj, (list, tuple, deque)):
        return [type(obj).__name__] + [_snapshot(v) for v in obj]
    if isinstance(obj, np.random.Generator):
        return obj.bit_generator.state
    if type(obj).__module__.startswith("refnet") and hasattr(obj, "__dict__") \
            and not hasattr(obj, "__dataclass_fields__"):       # buffers, streams; cells and heads are frozen
        return (type(obj).__name__, _snapshot(vars(obj)))
    return obj


def _assert_same(a, b, path="learner"):
    if isinstance(a, tuple) and a and a[0] == "array":
        assert isinstance(b, tuple) and b[:3] == a[:3], path
        np.testing.assert_array_equal(a[3], b[3], err_msg=path)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, sorted(a), sorted(b))
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{path}[{i}]")
    else:
        assert a == b or (a is None and b is None), (path, a, b)


def test_every_learner_class_is_constructed():
    assert len(LEARNERS) >= 7, [c.__name__ for c in LEARNERS]
    for cls in LEARNERS:
        assert _make(cls, optim.SGD(0.01)) is not None, cls.__name__


@pytest.mark.parametrize("numba", ["1", "0"])
@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("cls", LEARNERS, ids=lambda c: c.__name__)
def test_a_failed_step_changes_nothing_and_later_steps_equal_a_twins(monkeypatch, cls, kind, numba):
    if kind == "optimiser" and cls is online.FPPLearner:
        pytest.skip("FPP replays transition t from step t + 1 on: y_t reaches no gradient at its own step")
    monkeypatch.setenv("REFNET_NUMBA", numba)
    xs, ys = _stream(8)
    learner, twin = _make(cls, optim.Adagrad(0.05)), _make(cls, optim.Adagrad(0.05))
    for t in range(4):
        learner.step(xs[t], ys[t])
        twin.step(xs[t], ys[t])
    before = _snapshot(vars(learner))
    bad_x, bad_y = BAD[kind]
    with pytest.raises(refnet.NumericalError) as info:
        learner.step(xs[4] if bad_x is None else bad_x, ys[4] if bad_y is None else bad_y)
    assert cls.__name__ in str(info.value)
    if kind == "optimiser":
        assert "Adagrad" in str(info.value) and "G['w']" in str(info.value), str(info.value)
    _assert_same(before, _snapshot(vars(learner)))
    for t in range(4, 8):                   # learns on as if the bad observation had never come
        a, b = learner.step(xs[t], ys[t]), twin.step(xs[t], ys[t])
        np.testing.assert_array_equal(a.prediction, b.prediction)
        assert a.loss == b.loss
    np.testing.assert_array_equal(learner.w, twin.w)
    _assert_same(_snapshot(vars(twin)), _snapshot(vars(learner)))
    if numba == "1" and cls in (online.TBPTTLearner, online.RTRLLearner):   # the kernel path was the one tested
        assert learner.__dict__.get("_kernel_plan"), "the batch-1 kernel did not apply"


@pytest.mark.parametrize("cls", LEARNERS, ids=lambda c: c.__name__)
def test_a_failed_predict_or_learn_alone_changes_nothing(cls):
    xs, ys = _stream(3)
    learner = _make(cls, optim.SGD(0.05))
    learner.step(xs[0], ys[0])
    before = _snapshot(vars(learner))
    with pytest.raises(refnet.NumericalError):
        learner.predict(BAD["x"][0])
    _assert_same(before, _snapshot(vars(learner)))
    learner.predict(xs[1])
    after_predict = _snapshot(vars(learner))
    with pytest.raises(refnet.NumericalError):
        learner.learn(BAD["y"][1])
    _assert_same(after_predict, _snapshot(vars(learner)))
    learner.learn(ys[1])


@pytest.mark.parametrize("cls", [online.UOROLearner, online.KFRTRLLearner, online.FPPLearner],
                         ids=lambda c: c.__name__)
def test_a_failed_step_that_drew_a_new_block_of_random_numbers_puts_it_back(cls):
    """The streams draw 1024 steps' numbers at once; a failing step that drew a block rewinds the generator."""
    xs, ys = _stream(2)
    learner, twin = _make(cls, optim.SGD(0.05)), _make(cls, optim.SGD(0.05))
    before = _snapshot(vars(learner))
    with pytest.raises(refnet.NumericalError):          # the very first step draws the first block
        learner.step(xs[0], BAD["y"][1])
    _assert_same(before, _snapshot(vars(learner)))
    for t in range(2):
        assert learner.step(xs[t], ys[t]).loss == twin.step(xs[t], ys[t]).loss
