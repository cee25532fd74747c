"""refnet.algorithms.fpp_buffer: the ring of the last N FPP transitions."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refnet.algorithms.fpp_buffer import FPPBuffer


def _filled(N, steps, B=2, n=3):
    buf = FPPBuffer(N, np.zeros((B, n)), (B, 1), (B,), np.int64)
    for t in range(1, steps + 1):
        buf.push(np.full((B, 1), float(t)), np.full((B, n), 10.0 * t))
        buf.set_target(np.full(B, t))
    return buf


@given(N=st.integers(1, 6), steps=st.integers(1, 30))
@settings(max_examples=40, deadline=None)
def test_buffer_holds_the_last_N_complete_transitions_with_their_states_inputs_and_targets(N, steps):
    buf = _filled(N, steps)
    assert len(buf) == min(N, steps - 1)
    for T in range(buf.first, steps):
        tr = buf.transition(T)
        assert tr.s_prev[0, 0] == 10.0 * (T - 1) and tr.s_next[0, 0] == 10.0 * (T + 1)
        assert tr.x[0, 0] == T and tr.x_next[0, 0] == T + 1 and tr.y[0] == T


def test_buffer_memory_is_fixed_at_construction():
    buf = _filled(4, 3)
    arrays = [(id(a), a.shape) for a in (buf.S, buf.X, buf.Y, buf.priority)]
    for t in range(4, 1000):
        buf.push(np.zeros((2, 1)), np.zeros((2, 3)))
    assert [(id(a), a.shape) for a in (buf.S, buf.X, buf.Y, buf.priority)] == arrays


def test_a_written_back_state_is_seen_by_every_transition_holding_it():
    buf = _filled(5, 8)
    buf.write_state(5, np.full((2, 3), -1.0))
    assert buf.transition(4).s_next[0, 0] == -1.0     # the target of transition 4
    assert buf.transition(6).s_prev[0, 0] == -1.0     # the input of transition 6


def test_uniform_index_spans_the_held_transitions():
    buf = _filled(5, 20)
    assert [buf.uniform_index(u) for u in (0.0, 0.2, 0.5, 0.999999)] == [15, 16, 17, 19]   # T = 15..19


def test_prioritised_index_follows_the_priorities():
    buf = _filled(3, 10)          # transitions 7, 8, 9
    for T, p in ((7, 1.0), (8, 0.0), (9, 3.0)):
        buf.set_priority(T, p)
    # cumulative priorities 1, 1, 4 of 4: u < 1/4 gives 7, the rest 9; 8 has priority 0
    assert [buf.prioritised_index(u) for u in (0.0, 0.24, 0.26, 0.99)] == [7, 7, 9, 9]


def test_buffer_rejects_a_transition_it_does_not_hold():
    buf = _filled(3, 10)
    with pytest.raises(ValueError, match=r"T must be in \[7, 9\] \(held by the buffer at t = 10\), got 6"):
        buf.transition(6)
    with pytest.raises(ValueError, match="capacity must be an int >= 1, got 0"):
        FPPBuffer(0, np.zeros((1, 1)), (1, 1), (1,), np.int64)
