"""Inputs at the door: optimisers' overflow and foreign states, array-likes, the tasks' and rng's arguments.

Each case asserts the exception class and that the message names the argument
(or, for an overflow, the optimiser, the quantity and the parameter), and that
nothing was changed where the function updates in place.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from refnet import online, optim
from refnet.fixtures import bptt_fixture, rtrl_fixture
from refnet.tasks import associative_retrieval, cycleworld, digits, hopfield_patterns, mnist, random_walks

OPTIMISERS = {"sgd": lambda: optim.SGD(0.1), "sgd_momentum": lambda: optim.SGD(0.1, momentum=0.9),
              "adagrad": lambda: optim.Adagrad(0.1), "adam": lambda: optim.Adam(0.1)}


def _copy(tree):
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if hasattr(tree, "_fields"):
        return [_copy(v) for v in tree]
    return tree.copy() if isinstance(tree, np.ndarray) else tree


def _same(a, b):
    if isinstance(a, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


# --- 07: an update that would overflow raises, naming optimiser, quantity and parameter; nothing changes

@pytest.mark.parametrize("name, make, grad, quantity", [
    ("Adagrad", lambda: optim.Adagrad(0.1), 1e160, "G['w']"),     # g² = 1e320 overflows G
    ("Adam", lambda: optim.Adam(0.1, beta2=0.0), 1e160, "v['w']"),  # (1 − β2) g² with β2 = 0
    ("SGD", lambda: optim.SGD(1e308), 10.0, "params['w']"),        # θ − 1e309
    ("SGD", lambda: optim.SGD(1e308, momentum=0.5), 10.0, "params['w']"),
    ("SGD", lambda: optim.SGD(0.1, momentum=0.5), 1.7e308, "b['w']"),   # μ b + g: 2 steps of 1.7e308
])
def test_an_overflowing_update_raises_by_name_and_changes_nothing(name, make, grad, quantity):
    opt = make()
    params = {"w": np.ones(3), "u": np.zeros(2)}
    state = opt.init(params)
    if quantity == "b['w']":
        state = opt.update(params, {"w": np.full(3, grad), "u": np.zeros(2)}, state)
    before, state_before = _copy(params), _copy(state)
    with pytest.raises(refnet.NumericalError, match=rf"{name}\.update.*{quantity.split('[')[0]}.*\['w'\].*index \(0,\)"):
        opt.update(params, {"w": np.full(3, grad), "u": np.ones(2)}, state)
    assert _same(before, params) and _same(state_before, _copy(state))


@settings(max_examples=40, deadline=None)
@given(exponent=st.floats(100, 307), which=st.sampled_from(sorted(OPTIMISERS)), steps=st.integers(1, 3))
def test_an_update_either_stays_finite_or_raises_with_nothing_changed(exponent, which, steps):
    """Whatever the gradient's size, no update leaves a NaN/Inf in the params or the state."""
    opt = OPTIMISERS[which]()
    params = {"w": np.array([1.0, -2.0, 0.5])}
    state = opt.init(params)
    for _ in range(steps):
        before, state_before = _copy(params), _copy(state)
        try:
            state = opt.update(params, {"w": np.array([10.0 ** exponent, -1.0, 3.0])}, state)
        except refnet.NumericalError:
            assert _same(before, params) and _same(state_before, _copy(state))
            return
        assert np.isfinite(params["w"]).all()
        assert all(np.isfinite(v["w"]).all() for v in state if isinstance(v, dict) and v)


@pytest.mark.parametrize("numba", ["1", "0"])      # the batch-1 kernel path and the learner's own
def test_a_learner_whose_optimiser_overflows_is_left_as_before(monkeypatch, numba):
    monkeypatch.setenv("REFNET_NUMBA", numba)
    cell = refnet.ElmanRNN(3, 4)
    r = refnet.rng(0)
    theta, head = cell.init(r), refnet.Head(4, 3, refnet.heads.mse)
    learner = online.RTRLLearner(cell, head, theta, head.init(r), optim.SGD(1e308))
    w, s, t = learner.w.copy(), learner.s.copy(), learner.t
    # the head bias's gradient is z − y ≈ −100: θ − 1e308 · (−100) overflows
    with pytest.raises(refnet.NumericalError, match=r"RTRLLearner at step t=1: SGD\.update.*params\['w'\]"):
        learner.step(np.full((1, 3), 0.5), np.full((1, 3), 100.0))
    assert np.array_equal(learner.w, w) and np.array_equal(learner.s, s) and learner.t == t


# --- 12: a state made for other params or by another setting is refused before anything changes

def _foreign_states(which):
    params = {"w": np.ones(3)}
    if which == "sgd":          # no buffers: only a state with some is foreign
        yield "buffers", optim.SGD(0.1, momentum=0.5).init(params), "with momentum"
        return
    yield "other keys", OPTIMISERS[which]().init({"a": np.ones(3)}), r"keys \['a'\].*params has \['w'\]"
    yield "other shape", OPTIMISERS[which]().init({"w": np.ones(1)}), r"shape \(1,\).*shape \(3,\)"
    yield "other dtype", OPTIMISERS[which]().init({"w": np.ones(3, np.float32)}), r"float32.*float64"
    if which == "sgd_momentum":
        yield "no buffers", optim.SGD(0.1).init(params), "without momentum"


@pytest.mark.parametrize("which", sorted(OPTIMISERS))
def test_a_foreign_state_is_refused_naming_state_with_nothing_updated(which):
    opt = OPTIMISERS[which]()
    for label, state, match in _foreign_states(which):
        params = {"w": np.ones(3)}
        state_before = _copy(state)
        with pytest.raises(ValueError, match="state") as info:
            opt.update(params, {"w": np.ones(3)}, state)
        assert __import__("re").search(match, str(info.value)), (label, str(info.value))
        assert np.array_equal(params["w"], np.ones(3)) and _same(state_before, _copy(state)), label


def test_an_adam_state_with_a_bad_step_count_is_refused():
    params = {"w": np.ones(3)}
    state = optim.Adam().init(params)._replace(t=-1)
    with pytest.raises(TypeError, match="state.t"):
        optim.Adam().update(params, {"w": np.ones(3)}, state)


# --- 11: array-likes at the door: torch tensors and lists give the NumPy answer; others are named

torch = pytest.importorskip("torch")


def _problem():
    cell = refnet.GRU(3, 4)
    r = refnet.rng(0)
    theta, head = cell.init(r), refnet.Head(4, 3)
    beta = head.init(r)
    x = refnet.to_numpy(r.normal((5, 2, 3)))
    y = np.random.default_rng(1).integers(0, 3, (5, 2))
    return cell, theta, head, beta, x, y


def test_torch_tensors_and_lists_give_the_numpy_answer_everywhere():
    cell, theta, head, beta, x, y = _problem()
    t = torch.from_numpy
    grad = torch.from_numpy(x).requires_grad_(True)          # detached, not refused: refnet forms its own
    np.testing.assert_array_equal(refnet.forward(cell, theta, grad)[0], refnet.forward(cell, theta, x)[0])
    np.testing.assert_array_equal(refnet.forward(cell, theta, x.tolist())[0], refnet.forward(cell, theta, x)[0])
    assert refnet.bptt(cell, theta, x, None, head, beta, t(y)).loss == refnet.bptt(cell, theta, x, None, head,
                                                                                     beta, y).loss
    dout = np.ones((5, 2, 4))
    a, b = refnet.sequence_vjp(cell, theta, x, None, t(dout)), refnet.sequence_vjp(cell, theta, x, None, dout)
    np.testing.assert_array_equal(a.dtheta["weight_hh"], b.dtheta["weight_hh"])
    for x0 in (t(x[0]), x[0].tolist()):
        np.testing.assert_array_equal(refnet.fixed_point(cell, theta, x0).h, refnet.fixed_point(cell, theta, x[0]).h)
    h = refnet.fixed_point(cell, theta, x[0]).h
    dh = np.ones((2, 4))
    want = refnet.gmres_rbp(cell, theta, x[0], h, dh).dtheta["weight_hh"]
    for d in (t(dh), dh.tolist()):
        np.testing.assert_array_equal(refnet.gmres_rbp(cell, theta, x[0], h, d).dtheta["weight_hh"], want)


def test_a_learner_takes_torch_theta_and_observations():
    cell, theta, head, beta, x, y = _problem()
    ours = online.RTRLLearner(cell, head, {k: torch.from_numpy(v) for k, v in theta.items()},
                              {k: torch.from_numpy(v) for k, v in beta.items()}, optim.SGD(0.1), batch=2)
    plain = online.RTRLLearner(cell, head, theta, beta, optim.SGD(0.1), batch=2)
    for step in range(3):
        a = ours.step(torch.from_numpy(x[step]), torch.from_numpy(y[step]))
        assert a.loss == plain.step(x[step], y[step]).loss


@pytest.mark.parametrize("call, error, match", [
    (lambda c, th, x: refnet.forward(c, {k: torch.from_numpy(v) for k, v in th.items()}, x), TypeError,
     r"theta\['weight_ih'\] must be a NumPy or CuPy array, got torch.Tensor"),
    (lambda c, th, x: refnet.forward(c, th, torch.from_numpy(x).to(torch.bfloat16)), TypeError,
     r"x must have a dtype NumPy has.*bfloat16"),
    (lambda c, th, x: refnet.forward(c, th, {"x": x}), TypeError, "x must be an array"),
    (lambda c, th, x: refnet.forward(c, th, [[[1.0, 2.0, 3.0]], [[1.0]]]), ValueError, "x must be a rectangular"),
    (lambda c, th, x: refnet.fixed_point(c, th, "x"), TypeError, "x must be an array"),
    (lambda c, th, x: refnet.interop.from_torch(torch.nn.LSTM(3, 4).to(torch.bfloat16)), TypeError,
     r"source\['weight_ih_l0'\].*bfloat16"),
    (lambda c, th, x: refnet.interop.from_torch(torch.nn.RNN(3, 4), dtype="bogus"), ValueError, "dtype must be"),
    (lambda c, th, x: refnet.interop.from_torch(torch.nn.RNN(3, 4), dtype="int32"), ValueError, "dtype must be"),
    (lambda c, th, x: refnet.interop.state_from_torch(torch.zeros(1, 2, 4), dtype="bogus"), ValueError,
     "dtype must be"),
])
def test_array_likes_that_cannot_be_used_are_named(call, error, match):
    cell, theta, _, _, x, _ = _problem()
    with pytest.raises(error, match=match):
        call(cell, theta, x)


# --- 13: tasks, rng and fixture seeds

def _truncated(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(b"\x00\x00\x08\x03\x00")
    return path


def _not_gzip(tmp_path):
    path = tmp_path / "t.idx.gz"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")
    return path


@pytest.mark.parametrize("call, error, match", [
    (lambda p: random_walks.step_variance(np.zeros((0, 2, 2))), ValueError, "x must hold at least one step"),
    (lambda p: random_walks.step_variance(np.zeros((3, 0, 2))), ValueError, "x must hold at least one step"),
    (lambda p: random_walks.random_walks(3, sigmas=()), ValueError, "sigmas must hold at least two"),
    (lambda p: random_walks.random_walks(3, sigmas=(1.0,)), ValueError, "sigmas must hold at least two"),
    (lambda p: random_walks.random_walks(3, sigmas=1.0), TypeError, "sigmas must be a sequence"),
    (lambda p: random_walks.random_walks(3, sigmas=(1.0, float("inf"))), ValueError, r"sigmas\[1\]"),
    (lambda p: random_walks.random_walks(3, seed=-1), ValueError, "seed must be an int >= 0"),
    (lambda p: random_walks.random_walk_task(4, seed=-2), ValueError, "seed must be an int >= 0"),
    (lambda p: random_walks.step_std("a", "std"), TypeError, "sigma must be a real number"),
    (lambda p: random_walks.step_variance_baseline(np.ones((2, 3, 2)), np.array([0, 1]), np.ones((2, 3, 2)),
                                                   np.array([0, 1, 1])), ValueError, "y_train"),
    (lambda p: random_walks.step_variance_baseline(np.ones((2, 2, 2)), np.array([0, 2]), np.ones((2, 2, 2)),
                                                   np.array([0, 1])), ValueError, "y_train must be integer labels"),
    (lambda p: digits.digits(test_fraction="0.25"), TypeError, "test_fraction must be a number"),
    (lambda p: digits.digits(test_fraction=1), ValueError, r"test_fraction must be a number in \(0, 1\), got 1"),
    (lambda p: digits.digits(test_fraction=float("nan")), ValueError, "test_fraction must be a number"),
    (lambda p: digits.to_sequences(np.zeros((2, 64)), 0), ValueError, "pixels_per_step must be an int >= 1"),
    (lambda p: digits.to_sequences(np.zeros((2, 64)), 1.5), TypeError, "pixels_per_step"),
    (lambda p: digits.to_sequences(np.zeros((0, 8, 8)), 1), ValueError, "images must be"),
    (lambda p: digits.to_sequences(None, 1), TypeError, "images must be an array"),
    (lambda p: mnist.read_idx(_truncated(p)), ValueError, "is truncated"),
    (lambda p: mnist.read_idx(_not_gzip(p)), ValueError, "could not be read as a gzipped IDX"),
    (lambda p: mnist.read_idx(3), TypeError, "path must be a str"),
    (lambda p: mnist.write_idx(p / "f.idx", np.array([1.5, 3.0])), ValueError, "array must hold whole numbers"),
    (lambda p: mnist.write_idx(p / "f.idx", np.array([1.0, 300.0])), ValueError, r"values in \[0, 255\]"),
    (lambda p: mnist.write_idx(p / "f.idx", np.array([1, 300])), ValueError, r"values in \[0, 255\]"),
    (lambda p: mnist.write_idx(p / "f.idx", np.array([None])), TypeError, "array must hold integers"),
    (lambda p: mnist.mnist(p, dtype="bogus"), ValueError, "dtype must be"),
    (lambda p: associative_retrieval.decode(np.array([3, 4])), ValueError, "codes must have shape"),
    (lambda p: associative_retrieval.decode(np.array([[3.0, 4.0]])), TypeError, "codes must be integer"),
    (lambda p: associative_retrieval.decode([[3, 99]]), ValueError, "codes must be symbol indices"),
    (lambda p: associative_retrieval.one_hot(np.array([[3, 4]]), dtype="bogus"), ValueError, "dtype must be"),
    (lambda p: associative_retrieval.associative_retrieval(seed=-1), ValueError, "seed must be an int >= 0"),
    (lambda p: associative_retrieval.make_sequences(2, 2, 0), TypeError, "generator must be"),
    (lambda p: associative_retrieval.overlap(None, None), TypeError, "train must be a Split"),
    (lambda p: cycleworld.cycleworld(3, 5, dtype="bogus"), ValueError, "dtype must be"),
    (lambda p: hopfield_patterns.corrupt(np.ones((2, 4)), "half"), TypeError, "level must be a real number"),
    (lambda p: hopfield_patterns.corrupt(np.ones((2, 4)), 0.5, seed=-1), ValueError, "seed must be an int >= 0"),
    (lambda p: hopfield_patterns.corrupt([[1.0, 0.0]], float("nan")), ValueError, r"level must be in \[0, 1\]"),
    (lambda p: refnet.rng(-1), ValueError, "seed must be an int >= 0"),
    (lambda p: refnet.rng(1.5), TypeError, "seed must be an int"),
    (lambda p: refnet.rng(0, dtype="bogus"), ValueError, "dtype must be one of"),
    (lambda p: bptt_fixture("gru", seed=-1), ValueError, "seed must be an int >= 0"),
    (lambda p: rtrl_fixture("gru", seed=-1), ValueError, "seed must be an int >= 0"),
    (lambda p: bptt_fixture("gru", seed=True), TypeError, "seed must be an int"),
])
def test_tasks_rng_and_fixture_arguments_are_named(tmp_path, call, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no numpy warning (empty slice, overflow) on the way
        with pytest.raises(error, match=match):
            call(tmp_path)


def test_write_idx_round_trips_integer_arrays(tmp_path):
    a = np.arange(24, dtype=np.int64).reshape(2, 3, 4) * 10
    mnist.write_idx(tmp_path / "a.idx", a)
    back = mnist.read_idx(tmp_path / "a.idx")
    assert back.dtype == np.uint8 and np.array_equal(back, a)


def test_decode_of_one_sequence_is_codes_none():
    assert associative_retrieval.decode(np.array([3, 30])[None]) == ["d4"]
