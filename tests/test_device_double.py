"""The device double (refnet._strict, ``REFNET_BACKEND=strict``) and the discipline it proves.

A device array library refuses implicit conversion to NumPy and makes every
host read-back a synchronisation.  The double behaves so (its own tests
first); then every algorithm runs on it with zero implicit conversions and a
number of read-backs per call that does not grow with every step, the random
draws follow the inputs' backend, and every cell's ``init`` honours the rng's
dtype.  ``tests/test_device_double_matrix.py`` runs the whole gradcheck matrix
on it.
"""
import importlib
import inspect
import math
import pkgutil

import numpy as np
import pytest

import refnet
import refnet.cells
from refnet import _strict, online, optim
from refnet.algorithms.checks import CHECK_EVERY
from refnet.backend import to_numpy


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv("REFNET_BACKEND", "strict")
    return _strict.xp


# --- the double itself ---------------------------------------------------------------------------

def test_implicit_conversion_to_numpy_is_refused_and_counted(strict):
    a = refnet.asarray([1.0, 2.0])
    with _strict.counting() as c:
        with pytest.raises(TypeError, match="implicit conversion"):
            np.asarray(a)
    assert c.implicit == 1 and c.syncs == 0


def test_scalar_reads_are_counted_as_syncs_with_their_site(strict):
    a = refnet.asarray([1.0, 2.0])
    with _strict.counting() as c:
        assert float(a.sum()) == 3.0 and bool((a > 0).all()) and a[0].item() == 1.0
    assert c.syncs == 3 and c.implicit == 0
    assert all("test_device_double.py" in site for site in c.sync_sites)


def test_to_numpy_is_the_explicit_door(strict):
    a = refnet.asarray([1.0, 2.0])
    with _strict.counting() as c:
        host = to_numpy(a)
    assert isinstance(host, np.ndarray) and c.transfers == 1 and c.reads == 1 and c.syncs == 0


def test_numpy_array_operands_are_refused_as_cupy_refuses_them(strict):
    a = refnet.asarray([1.0, 2.0])
    with pytest.raises(TypeError, match="mixed"):
        a + np.ones(2)
    with pytest.raises(TypeError, match="mixed"):
        strict.stack([a, np.ones(2)])
    assert float((a * 2.0 + np.float64(1.0)).sum()) == 8.0    # Python and NumPy scalars are fine


def test_reductions_stay_on_the_device(strict):
    a = refnet.asarray([[1.0, 2.0], [3.0, 4.0]])
    with _strict.counting() as c:
        total = a.sum() + strict.sum(a) + (a @ a).max()
    assert isinstance(total, _strict.StrictArray) and total.shape == () and c.reads == 0


def test_in_place_operators_and_views_write_through(strict):
    a = refnet.asarray(np.zeros((2, 3)))
    row = a[1]
    row += 1.0
    row[...] = row * 2.0
    a[0, :] = strict.ones(3)
    np.testing.assert_array_equal(to_numpy(a), [[1, 1, 1], [2, 2, 2]])


def test_xp_of_mixing_numpy_and_the_double_is_a_type_error(strict):
    with pytest.raises(TypeError, match="mixed"):
        refnet.xp_of(refnet.asarray([1.0]), np.ones(1))


# --- randomness follows the inputs' backend -------------------------------------------------------

def _elman_problem(on_strict, T=6, B=2):
    r = refnet.rng(0)
    cell, head = refnet.ElmanRNN(3, 4), refnet.Head(4, 3)
    theta, beta = cell.init(r), head.init(r)
    x, y = r.normal((T, B, 3)), r.integers(0, 3, (T, B))
    if on_strict:
        move = _strict.xp.asarray
        theta, beta = {k: move(v) for k, v in theta.items()}, {k: move(v) for k, v in beta.items()}
        x, y = move(x), move(y)
    return cell, head, theta, beta, x, y


@pytest.mark.parametrize("algorithm", [refnet.uoro, refnet.kfrtrl])
def test_estimator_signs_are_drawn_on_the_data_backend(algorithm, monkeypatch):
    """REFNET_BACKEND=numpy (the default) with data on the double: the signs follow the data."""
    monkeypatch.delenv("REFNET_BACKEND", raising=False)
    cell, head, theta, beta, x, y = _elman_problem(on_strict=True)
    res = algorithm(cell, theta, x, None, head, beta, y, rng=refnet.rng(5))
    assert isinstance(res.dtheta["weight_hh"], _strict.StrictArray)
    cell, head, theta, beta, x, y = _elman_problem(on_strict=False)
    ref = algorithm(cell, theta, x, None, head, beta, y, rng=refnet.rng(5))
    for k in ref.dtheta:                           # same seed, same signs: the same estimate
        np.testing.assert_array_equal(to_numpy(res.dtheta[k]), ref.dtheta[k])


def test_estimator_signs_follow_numpy_data_under_a_device_backend(monkeypatch):
    monkeypatch.delenv("REFNET_BACKEND", raising=False)
    cell, head, theta, beta, x, y = _elman_problem(on_strict=False)
    monkeypatch.setenv("REFNET_BACKEND", "strict")
    res = refnet.uoro(cell, theta, x, None, head, beta, y, rng=refnet.rng(5))
    assert isinstance(res.dtheta["weight_hh"], np.ndarray)


@pytest.mark.parametrize("cls, extra", [(online.UOROLearner, {"rng": refnet.rng(2)}),
                                        (online.KFRTRLLearner, {"rng": refnet.rng(2)}),
                                        (online.FPPLearner, {"rng": refnet.rng(2), "prioritised": True})])
def test_learners_draw_on_their_parameters_backend(cls, extra, monkeypatch):
    monkeypatch.delenv("REFNET_BACKEND", raising=False)
    cell, head, theta, beta, x, y = _elman_problem(on_strict=True, B=1)
    learner = cls(cell, head, theta, beta, optim.SGD(0.1), **extra)
    for t in range(4):
        learner.step(x[t], y[t])
    learner.flush()
    assert isinstance(learner.w, _strict.StrictArray)


def test_rng_like_places_draws_in_the_like_dtype(strict):
    like = np.zeros(3, dtype=np.float32)
    assert refnet.rng(0).signs((2,), like=like).dtype == np.float32
    assert isinstance(refnet.rng(0).normal((2,), like=like), np.ndarray)
    assert refnet.rng(0).integers(0, 3, (2,), like=like).dtype == np.int64


# --- every init honours the rng's dtype -----------------------------------------------------------

_SIZES = {"input_size": 3, "hidden_size": 4, "output_size": 2, "capacity": 2}


def _every_cell_class():
    found = set()
    for info in pkgutil.iter_modules(refnet.cells.__path__):
        module = importlib.import_module(f"refnet.cells.{info.name}")
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, refnet.Cell) and obj is not refnet.Cell
                    and obj.__module__ == module.__name__ and not obj.__name__.startswith("_")):
                found.add(obj)
    return sorted(found, key=lambda c: c.__name__)


def _build(cls):
    required = {n: _SIZES[n] for n, p in inspect.signature(cls.__init__).parameters.items()
                if n != "self" and p.default is inspect.Parameter.empty}
    return cls(**required)


def test_the_introspection_finds_every_cell():
    names = {c.__name__ for c in _every_cell_class()}
    assert {"ERNN", "ExactERNN", "ToyERNN", "FastRNN", "FastGRNN", "FastWeights", "FastWeightsAttention",
            "Hopfield", "LeakyRNN", "ElmanRNN", "IRNN", "GRU", "LSTM"} <= names


@pytest.mark.parametrize("cls", _every_cell_class(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("backend", ["numpy", "strict"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_returns_params_in_the_rng_dtype(cls, backend, dtype, monkeypatch):
    monkeypatch.setenv("REFNET_BACKEND", backend)
    monkeypatch.setenv("REFNET_DTYPE", "float64" if dtype == "float32" else "float32")   # the other one
    cell = _build(cls)
    theta = cell.init(refnet.rng(0, dtype=dtype))
    assert {k: str(v.dtype) for k, v in theta.items()} == {k: dtype for k in theta}
    cell.check_params(theta)


@pytest.mark.parametrize("head", [refnet.Head(4, 3), refnet.MLPHead(4, 3, n_hidden=5)], ids=["Head", "MLPHead"])
def test_head_init_returns_params_in_the_rng_dtype(head):
    beta = head.init(refnet.rng(0, dtype="float32"))
    assert all(v.dtype == np.float32 for v in beta.values())
    head.check_params(beta)


# --- read-backs per call: bounded, not per step ---------------------------------------------------

def _problem(cell, T, B=2):
    r = refnet.rng(0)
    head = refnet.Head(cell.n_out, 3)
    theta, beta = cell.init(r), head.init(r)
    return cell, theta, head, beta, r.normal((T, B, cell.input_size)), r.integers(0, 3, (T, B))


def _sequence(fn, make_cell=lambda: refnet.ElmanRNN(3, 4), **kw):
    def run(T):
        cell, theta, head, beta, x, y = _problem(make_cell(), T)
        fn(cell, theta, x, None, head, beta, y, **kw)
    return run


def _forward(T):
    cell, theta, _, _, x, _ = _problem(refnet.ElmanRNN(3, 4), T)
    refnet.forward(cell, theta, x)


def _sequence_vjp(T):
    cell, theta, _, _, x, _ = _problem(refnet.GRU(3, 4), T)
    refnet.sequence_vjp(cell, theta, x, None, refnet.rng(1).normal((T, 2, 4)))


def _stacked(T):
    cells, r = [refnet.ElmanRNN(3, 4), refnet.LSTM(4, 5)], refnet.rng(0)
    thetas = [c.init(r) for c in cells]
    refnet.stacked_sequence_vjp(cells, thetas, r.normal((T, 2, 3)), None, r.normal((T, 2, 5)))


# name: (run(T), k): read-backs per CHECK_EVERY steps (one per watched quantity); the rest is a
# constant for the entry checks, the final loss and the result checks.
SEQUENCE_BOUNDS = {
    "forward": (_forward, 1),
    "bptt": (_sequence(refnet.bptt), 1),
    "bptt/lstm": (_sequence(refnet.bptt, lambda: refnet.LSTM(3, 4)), 1),
    "bptt/fastgrnn": (_sequence(refnet.bptt, lambda: refnet.FastGRNN(3, 4)), 1),
    "bptt/fast_weights": (_sequence(refnet.bptt, lambda: refnet.FastWeights(3, 4)), 1),
    "bptt/ernn": (_sequence(refnet.bptt, lambda: refnet.ERNN(3, 4)), 1),
    "loss": (_sequence(refnet.loss), 1),
    "tbptt(1,3)": (_sequence(refnet.tbptt, k1=1, k2=3), 2),       # forward + windows, each in blocks
    "tbptt(4,8)": (_sequence(refnet.tbptt, k1=4, k2=8), 2),
    "sequence_vjp": (_sequence_vjp, 1),
    "stacked_sequence_vjp": (_stacked, 3),    # 2 layers: the lower one run twice (its outputs, its VJP)
    "rtrl": (_sequence(refnet.rtrl), 3),                         # state, loss term, gradient term
    "uoro": (_sequence(refnet.uoro, rng=refnet.rng(1)), 3),
    "kfrtrl": (_sequence(refnet.kfrtrl, rng=refnet.rng(1)), 3),
    "snap": (_sequence(refnet.snap, n=1), 3),
    "rflo": (_sequence(refnet.rflo, lambda: refnet.LeakyRNN(3, 4)), 3),
}
ENTRY_READS = 24     # entry validation (θ, β, x, s0, y, weights: a few read-backs each) + result checks


def _reads(run, T):
    with _strict.counting() as c:
        run(T)
    return c


@pytest.mark.parametrize("name", list(SEQUENCE_BOUNDS))
def test_sequence_algorithms_read_back_once_per_block_not_per_step(name, strict):
    run, k = SEQUENCE_BOUNDS[name]
    short, long = 2 * CHECK_EVERY + 3, 6 * CHECK_EVERY + 3
    c_short, c_long = _reads(run, short), _reads(run, long)
    assert c_short.implicit == 0 and c_long.implicit == 0, c_long
    assert c_short.reads <= ENTRY_READS + k * math.ceil(short / CHECK_EVERY), c_short
    # the growth from T to 3T is k per CHECK_EVERY steps at most: nothing is read back per step
    assert c_long.reads - c_short.reads <= k * (math.ceil(long / CHECK_EVERY) - math.ceil(short / CHECK_EVERY) + 1), \
        (c_short, c_long)


LEARNERS = {
    "TBPTTLearner": (online.TBPTTLearner, {"k": 3}, 0),
    "RTRLLearner": (online.RTRLLearner, {}, 0),
    "UOROLearner": (online.UOROLearner, {"rng": refnet.rng(3)}, 0),
    "KFRTRLLearner": (online.KFRTRLLearner, {"rng": refnet.rng(3)}, 0),
    "SnApLearner": (online.SnApLearner, {"n": 1}, 0),
    "FPPLearner": (online.FPPLearner, {"rng": refnet.rng(3), "n": 2, "refresh": 1}, 0),
    # prioritised sampling reads each sampled index back: n + refresh per step (documented)
    "FPPLearner(prioritised)": (online.FPPLearner, {"rng": refnet.rng(3), "n": 2, "refresh": 1,
                                                    "prioritised": True}, 3),
}


def _learner_run(cls, extra, device_observations=False, optimiser=None):
    def run(T):
        cell = refnet.LeakyRNN(3, 4) if cls is online.RFLOLearner else refnet.ElmanRNN(3, 4)
        r = refnet.rng(0)
        head = refnet.Head(cell.n_out, 3)
        learner = cls(cell, head, cell.init(r), head.init(r), optimiser or optim.Adam(0.01), **extra)
        xs = np.random.default_rng(0).normal(size=(T, 1, 3))
        ys = np.random.default_rng(1).integers(0, 3, (T, 1))
        if device_observations:
            xs, ys = refnet.asarray(xs), refnet.asarray(ys, dtype=np.int64)
        losses = [learner.step(xs[t], ys[t]).loss for t in range(T)]
        learner.flush()
        return learner, losses
    return run


@pytest.mark.parametrize("name", list(LEARNERS) + ["RFLOLearner"])
def test_learners_read_back_once_per_check_not_per_step(name, strict):
    cls, extra, per_step = LEARNERS.get(name, (online.RFLOLearner, {}, 0))
    run = _learner_run(cls, extra)
    T = 3 * CHECK_EVERY
    c = _reads(lambda T: run(T), T)
    assert c.implicit == 0, c
    assert c.reads <= 8 + math.ceil(T / CHECK_EVERY) + per_step * T, c


def test_a_device_observation_costs_its_validation_only(strict):
    T = 2 * CHECK_EVERY
    c = _reads(lambda T: _learner_run(online.RTRLLearner, {}, device_observations=True)(T), T)
    assert c.implicit == 0 and c.reads <= 8 + math.ceil(T / CHECK_EVERY) + 2 * T, c   # x finite, y in range


def test_learner_losses_stay_on_the_device_until_read(strict):
    learner, losses = _learner_run(online.RTRLLearner, {})(5)
    assert all(isinstance(loss, _strict.StrictArray) and loss.shape == () for loss in losses)


def test_deferred_check_names_the_first_bad_step_and_keeps_the_parameters(monkeypatch):
    """A learner that blows up (ReLU, lr 1e200) raises at its check, naming the step NumPy names,
    with w as NumPy leaves it: the updates from the bad step on were undone on the device."""
    def make():
        cell, head = refnet.ElmanRNN(3, 4, "relu"), refnet.Head(4, 3)
        r = refnet.rng(0)
        return online.RTRLLearner(cell, head, cell.init(r), head.init(r), optim.SGD(1e200))
    xs = np.random.default_rng(0).normal(size=(20, 1, 3))
    ys = np.random.default_rng(1).integers(0, 3, (20, 1))
    monkeypatch.delenv("REFNET_BACKEND", raising=False)
    host = make()
    with pytest.raises(refnet.NumericalError) as on_host:
        for t in range(20):
            host.step(xs[t], ys[t])
    monkeypatch.setenv("REFNET_BACKEND", "strict")
    device = make()
    assert device.deferred and device.check_every == CHECK_EVERY
    for t in range(20):
        device.step(xs[t], ys[t])         # no error yet: the flags are on the device
    with pytest.raises(refnet.NumericalError, match=f"step t={on_host.value.step} ") as on_device:
        device.flush()
    assert on_device.value.step == on_host.value.step
    # equal to rounding (the two paths order a few sums differently); an update kept from the bad
    # step on would have made w non-finite
    np.testing.assert_allclose(to_numpy(device.w), host.w, rtol=1e-13, atol=0)
