"""FPP's replay buffer: the last N transitions as fixed-size rings of preallocated arrays.

Transition T is ``(s_{T−1}, o_T, o_{T+1}, s_{T+1}, y_T)`` (FPP paper,
Algorithm 1).  Neighbouring transitions share states — s_{T+1} is the target
of transition T and the input of transition T + 2 — so the buffer keeps one
ring of states S[t], one of observations X[t] and one of targets Y[t], indexed
by time modulo M = N + 2, and a transition is a view of five of their
entries.  Writing back a refreshed s'_{T+1} then changes that state for every
transition that holds it, and memory is fixed at construction whatever the
length of the stream.

After ``push`` of step t (o_t and s_t) and ``set_target`` of y_t, the
complete transitions are T = max(1, t − N) … t − 1: transition T needs
o_{T+1} and s_{T+1}, so the newest one lags the stream by one step.
"""
from typing import NamedTuple

from .._validate import check_int
from ..backend import xp_of

__all__ = ["Transition", "FPPBuffer"]


class Transition(NamedTuple):
    T: int          # the time index of the transition
    s_prev: object  # (B, n_state) s_{T−1}
    x: object       # (B, I) o_T
    x_next: object  # (B, I) o_{T+1}
    s_next: object  # (B, n_state) s_{T+1}
    y: object       # (B,) or (B, O) y_T


class FPPBuffer:
    """Rings of the last ``capacity`` transitions, with a priority per transition.

    Parameters
    ----------
    capacity : int >= 1, N, the number of transitions kept
    s0 : (B, n_state) the initial state s_0 (its array module and dtype are the buffer's)
    x_shape : (B, I), the shape of an observation
    y_shape, y_dtype : the shape and dtype of a target y_t
    """

    def __init__(self, capacity, s0, x_shape, y_shape, y_dtype):
        self.capacity = check_int("capacity", capacity, 1)
        xp = xp_of(s0)
        M = self.capacity + 2
        self.S = xp.zeros((M,) + tuple(s0.shape), dtype=s0.dtype)
        self.X = xp.zeros((M,) + tuple(x_shape), dtype=s0.dtype)
        self.Y = xp.zeros((M,) + tuple(y_shape), dtype=y_dtype)
        self.priority = xp.zeros(M, dtype=s0.dtype)
        self.max_priority = 1.0     # a new transition gets the largest priority seen (Schaul et al. 2016)
        self.S[0] = s0
        self.t = 0

    def _slot(self, t):
        return t % self.S.shape[0]

    def push(self, x, s):
        """Record step t + 1: the observation o_{t+1} and the state s_{t+1} it led to."""
        self.t += 1
        self.X[self._slot(self.t)] = x
        self.S[self._slot(self.t)] = s
        if self.t >= 2:
            self.priority[self._slot(self.t - 1)] = self.max_priority

    def set_target(self, y):
        """Record y_t, the target of the newest step."""
        self.Y[self._slot(self.t)] = y

    @property
    def first(self):
        """The oldest complete transition T."""
        return max(1, self.t - self.capacity)

    def __len__(self):
        """How many complete transitions are held (at most N)."""
        return max(0, self.t - self.first)

    def state(self, t):
        """s_t, a view into the ring (t within the last N + 2 steps)."""
        self._check_time("t", t, self.t - self.capacity - 1, self.t)
        return self.S[self._slot(t)]

    def write_state(self, t, s):
        """Replace the stored s_t by ``s`` (the write-back of Algorithm 1)."""
        self.state(t)[...] = s

    def transition(self, T):
        """Transition T as views into the rings."""
        self._check_time("T", T, self.first, self.t - 1)
        return Transition(T, self.S[self._slot(T - 1)], self.X[self._slot(T)], self.X[self._slot(T + 1)],
                          self.S[self._slot(T + 1)], self.Y[self._slot(T)])

    def set_priority(self, T, value):
        """The priority of transition T (its last loss, for prioritised sampling)."""
        self._check_time("T", T, self.first, self.t - 1)
        self.priority[self._slot(T)] = value
        self.max_priority = max(self.max_priority, float(value))

    def uniform_index(self, u):
        """The transition T at quantile u ∈ [0, 1) of the held ones, all equally likely."""
        return self.first + min(int(u * len(self)), len(self) - 1)

    def prioritised_index(self, u):
        """The transition T at quantile u ∈ [0, 1) of the held ones weighted by priority."""
        xp = xp_of(self.priority)
        slots = (self.first + xp.arange(len(self))) % self.S.shape[0]
        cumulative = xp.cumsum(self.priority[slots])
        j = int(xp.searchsorted(cumulative, u * cumulative[-1], side="right"))
        return self.first + min(j, len(self) - 1)

    def _check_time(self, name, value, low, high):
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}] (held by the buffer at t = {self.t}), got {value}")
