"""No public function returns NaN/Inf silently (issue 11, item 2; DESIGN.md §5).

Either what comes back is finite, or :class:`refnet.NumericalError` is raised naming the
first non-finite step — and a diverging forward pass is reported before any backward
pass or TBPTT window is spent on it.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refnet
from refnet import online, optim
from refnet.algorithms import (bptt, forward, fpp_grad, kfrtrl, loss, rtrl, sequence_vjp, stacked_forward,
                               stacked_sequence_vjp, tbptt, uoro)
from refnet.algorithms.checks import CHECK_EVERY

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:divide by zero encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")


def _doubling_relu(T, B=1, I=2, H=3):
    """The issue's example: an Elman ReLU cell with W_hh = 2·I, whose state doubles every step."""
    cell = refnet.ElmanRNN(I, H, "relu")
    theta = {"weight_ih": np.full((H, I), 0.1), "weight_hh": 2.0 * np.eye(H), "bias_ih": np.ones(H),
             "bias_hh": np.zeros(H)}
    head = refnet.Head(H, 2)
    return cell, theta, np.ones((T, B, I)), head, head.init(refnet.rng(0)), np.zeros((T, B), np.int64)


def _first_overflow(theta, T, I=2):
    """The first step t whose state is not finite, by a plain NumPy loop (the reference)."""
    h = np.zeros(theta["weight_hh"].shape[0])
    for t in range(1, T + 1):
        h = np.maximum(theta["weight_ih"] @ np.ones(I) + theta["bias_ih"] + theta["weight_hh"] @ h, 0.0)
        if not np.isfinite(h).all():
            return t
    return None


EXAMPLE_CALLS = {
    "forward": lambda c, th, x, hd, b, y: forward(c, th, x),
    "loss": lambda c, th, x, hd, b, y: loss(c, th, x, None, hd, b, y),
    "sequence_vjp": lambda c, th, x, hd, b, y: sequence_vjp(c, th, x, None, np.ones((x.shape[0], 1, 3))),
    "stacked_forward": lambda c, th, x, hd, b, y: stacked_forward([c], [th], x),
    "stacked_sequence_vjp": lambda c, th, x, hd, b, y: stacked_sequence_vjp([c], [th], x, None,
                                                                            np.ones((x.shape[0], 1, 3))),
    "bptt": lambda c, th, x, hd, b, y: bptt(c, th, x, None, hd, b, y),
    "rtrl": lambda c, th, x, hd, b, y: rtrl(c, th, x, None, hd, b, y),
    "uoro": lambda c, th, x, hd, b, y: uoro(c, th, x, None, hd, b, y, rng=refnet.rng(0)),
    "kfrtrl": lambda c, th, x, hd, b, y: kfrtrl(c, th, x, None, hd, b, y, rng=refnet.rng(0)),
}


@pytest.mark.parametrize("name", list(EXAMPLE_CALLS))
def test_the_doubling_relu_example_raises_naming_the_first_non_finite_state(name):
    cell, theta, x, head, beta, y = _doubling_relu(2000)
    pattern = rf"^{name}( \(layer 0\))?: .* became non-finite at step t=\d+"
    with pytest.raises(refnet.NumericalError, match=pattern) as info:
        EXAMPLE_CALLS[name](cell, theta, x, head, beta, y)
    if name in ("uoro", "kfrtrl"):
        # Their carried estimates (s̃ θ̃ᵀ, A ⊗ u) grow as 4^t against the state's 2^t and overflow first:
        # that is the first non-finite quantity, and it is named.
        assert info.value.step <= _first_overflow(theta, 2000)
        return
    assert "state s_" in str(info.value)
    assert info.value.step == _first_overflow(theta, 2000)
    assert info.value.where.endswith(f"s_{info.value.step}")
    assert info.value.index[0] == 0          # (batch, unit) of the first bad entry


@dataclass(frozen=True)
class _CountingElman(refnet.ElmanRNN):
    """An Elman RNN that counts its VJP calls (in a class-level list: the dataclass is frozen)."""

    calls = []

    def step_vjp(self, params, cache, ds):
        self.calls.append(1)
        return super().step_vjp(params, cache, ds)


def test_a_diverging_tbptt_raises_after_the_forward_without_spending_a_vjp():
    cell, theta, x, head, beta, y = _doubling_relu(5000, B=2)
    cell = _CountingElman(2, 3, "relu")
    _CountingElman.calls.clear()
    start = time.perf_counter()
    with pytest.raises(refnet.NumericalError, match="tbptt: state s_") as info:
        tbptt(cell, theta, x, None, head, beta, y, k1=5, k2=5000)
    elapsed = time.perf_counter() - start
    assert _CountingElman.calls == []                          # not one of the O(T k2 / k1) VJPs
    assert info.value.step == _first_overflow(theta, 5000)
    # The forward stops within CHECK_EVERY steps of the overflow (~1000 steps of a 3-unit cell, a few ms);
    # before, the windows' VJPs took 40 s.  5 s is far above the first and far below the second.
    assert elapsed < 5.0


def test_the_forward_stops_within_check_every_steps_of_the_overflow():
    cell, theta, x, head, beta, y = _doubling_relu(5000)
    steps = []

    @dataclass(frozen=True)
    class Counting(refnet.ElmanRNN):
        def step(self, params, s_prev, x, t=None):
            steps.append(t)
            return super().step(params, s_prev, x, t)

    with pytest.raises(refnet.NumericalError):
        forward(Counting(2, 3, "relu"), theta, x)
    assert _first_overflow(theta, 5000) <= len(steps) < _first_overflow(theta, 5000) + CHECK_EVERY


# ---- the property: whatever comes back is finite, else NumericalError was raised ----------------------------

CELLS = {
    "elman_tanh": lambda: refnet.ElmanRNN(2, 3, "tanh"),
    "elman_relu": lambda: refnet.ElmanRNN(2, 3, "relu"),
    "lstm": lambda: refnet.LSTM(2, 3),
    "gru": lambda: refnet.GRU(2, 3),
    "fastrnn": lambda: refnet.FastRNN(2, 3),
    "fastweights": lambda: refnet.FastWeights(2, 3),
}


def _scaled(cell, scale, seed):
    """θ from the cell's init with every entry multiplied by ``scale`` (overflowing for large scales)."""
    theta = cell.init(refnet.rng(seed))
    return {k: v * scale for k, v in theta.items()}


def _finite(value):
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if value is None or isinstance(value, (int, str)):
        return True
    return bool(np.isfinite(np.asarray(value, dtype=float)).all())


def _learner_run(cls, extra):
    def run(c, th, x, hd, b, y):
        learner = cls(c, hd, th, b, optim.SGD(0.1), batch=x.shape[1], **extra)
        return [tuple(learner.step(x[t], y[t])) for t in range(x.shape[0])] + [learner.w, learner.s]
    return run


PUBLIC = {
    **{k: v for k, v in EXAMPLE_CALLS.items() if k != "kfrtrl"},
    "sequence_vjp": lambda c, th, x, hd, b, y: sequence_vjp(c, th, x, None, np.ones((x.shape[0], x.shape[1], c.n_out))),
    "tbptt": lambda c, th, x, hd, b, y: tbptt(c, th, x, None, hd, b, y, k1=2, k2=4),
    "fpp_grad": lambda c, th, x, hd, b, y: fpp_grad(c, th, hd, b, np.zeros((x.shape[1], c.n_state)), x[0], x[-1],
                                                    np.zeros((x.shape[1], c.n_state)), y[0],
                                                    np.full(x.shape[1], 1.0 / x.shape[1])),
    "head.loss_and_grad": lambda c, th, x, hd, b, y: hd.loss_and_grad(b, forward(c, th, x).s[-1][:, :c.n_out], y[-1],
                                                                       np.ones(x.shape[1])),
    "TBPTTLearner": _learner_run(online.TBPTTLearner, {"k": 3}),
    "RTRLLearner": _learner_run(online.RTRLLearner, {}),
    "UOROLearner": _learner_run(online.UOROLearner, {"rng": refnet.rng(1)}),
    "FPPLearner": _learner_run(online.FPPLearner, {"rng": refnet.rng(1)}),
}
PUBLIC.pop("stacked_sequence_vjp")
PUBLIC["stacked_sequence_vjp"] = lambda c, th, x, hd, b, y: stacked_sequence_vjp(
    [c], [th], x, None, np.ones((x.shape[0], x.shape[1], c.n_out)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(function=st.sampled_from(sorted(PUBLIC)), cell_name=st.sampled_from(sorted(CELLS)),
       log_scale=st.floats(-1.0, 3.0), T=st.integers(1, 40), B=st.integers(1, 2), seed=st.integers(0, 99))
def test_no_public_function_returns_a_non_finite_array_without_raising(function, cell_name, log_scale, T, B, seed):
    cell = CELLS[cell_name]()
    theta = _scaled(cell, 10.0 ** log_scale, seed)
    head = refnet.Head(cell.n_out, 2)
    beta = _scaled(head, 10.0 ** log_scale, seed + 1)
    r = refnet.rng(seed + 2)
    x = r.normal((T, B, 2), 10.0 ** log_scale)
    y = r.integers(0, 2, (T, B))
    try:
        result = PUBLIC[function](cell, theta, x, head, beta, y)
    except refnet.NumericalError as exc:
        assert exc.where, "a NumericalError names where it happened"
        return
    result = asdict(result) if hasattr(result, "__dataclass_fields__") else result
    assert _finite(result), f"{function} on {cell_name} at scale 1e{log_scale:.1f} returned NaN/Inf"


def test_head_logits_that_overflow_raise_naming_the_quantity():
    head = refnet.Head(2, 2, refnet.heads.mse)
    beta = {"weight": np.full((2, 2), 1e200), "bias": np.zeros(2)}
    with pytest.raises(refnet.NumericalError, match="Head.loss_and_grad: L is non-finite"):
        head.loss_and_grad(beta, np.full((1, 2), 1e200), np.zeros((1, 2)), np.ones(1))


def test_a_learner_refuses_a_non_finite_gradient_before_updating_the_parameters():
    cell, theta, x, head, beta, y = _doubling_relu(1)
    # h_1 = relu(5e307 + 5e307 + 1) = 1e308, finite; logits 1e-300 · 3e308 ≈ 3e8, a finite loss ≈ 1e17;
    # but ∂L/∂W_head = (logits − y) h_1ᵀ ≈ 3e8 · 1e308 overflows.
    theta = dict(theta, weight_ih=np.full((3, 2), 5e307))
    learner = online.RTRLLearner(cell, refnet.Head(3, 2, refnet.heads.mse), theta,
                                 {"weight": np.full((2, 3), 1e-300), "bias": np.zeros(2)}, optim.SGD(0.1))
    w_before = learner.w.copy()
    with pytest.raises(refnet.NumericalError, match="RTRLLearner: .* non-finite at step t=1"):
        learner.step(np.ones((1, 2)), np.zeros((1, 2)))
    np.testing.assert_array_equal(learner.w, w_before)


def test_a_fixture_with_a_non_finite_array_is_refused_by_name():
    from refnet.fixtures.common import FixtureWriter, make_problem
    w = FixtureWriter(make_problem("gru", seed=0, T=2, B=1, input_size=2, hidden_size=2), "bptt", {}, "test")
    w.add("grads/x", np.array([1.0, np.inf]), "a gradient")
    with pytest.raises(refnet.NumericalError, match=r"array 'grads/x' is non-finite at index \(1,\)"):
        w.fixture()
