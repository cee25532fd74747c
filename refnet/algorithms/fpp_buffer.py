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

import numpy

from .._validate import as_array, check_array, check_int, check_number
from ..backend import xp_of

__all__ = ["Transition", "FPPBuffer"]


class Transition(NamedTuple):
    """One stored transition T, ``(s_{T−1}, o_T, o_{T+1}, s_{T+1}, y_T)`` (Nath, Jafferjee & White, Algorithm 1).

    The arrays are views into the buffer's rings: writing into them writes the buffer.

    Attributes
    ----------
    T : int
        The time index of the transition.
    s_prev : (B, n_state) array
        s_{T−1}.
    x : (B, I) array
        o_T.
    x_next : (B, I) array
        o_{T+1}.
    s_next : (B, n_state) array
        s_{T+1}.
    y : (B,) or (B, O) array
        y_T.
    """
    T: int          # the time index of the transition
    s_prev: object  # (B, n_state) s_{T−1}
    x: object       # (B, I) o_T
    x_next: object  # (B, I) o_{T+1}
    s_next: object  # (B, n_state) s_{T+1}
    y: object       # (B,) or (B, O) y_T


class FPPBuffer:
    """Rings of the last ``capacity`` transitions, with a priority per transition (module docstring).

    Memory is fixed at construction: M = N + 2 states, observations and targets,
    whatever the length of the stream.  A new transition gets the largest priority
    seen so far, as in prioritised replay (Schaul et al. 2016).

    Parameters
    ----------
    capacity : int
        N >= 1, the number of transitions kept.
    s0 : (B, n_state) array-like
        The initial state s_0, B >= 1; its array module and dtype are the buffer's.
    x_shape : tuple of int
        (B, I), the shape of one observation.
    y_shape : tuple of int
        The shape of one target y_t, starting with B: (B,) for labels, (B, O) for targets.
    y_dtype : numpy dtype or str
        The dtype of a target (an int dtype for labels).

    Attributes
    ----------
    t : int
        The newest step pushed (0 before the first push).

    Raises
    ------
    TypeError
        ``capacity`` not an int; ``s0`` not an array or not floating; ``x_shape`` or ``y_shape``
        not a tuple/list of ints >= 0; ``y_dtype`` not a dtype.
    ValueError
        ``capacity`` < 1; ``s0`` not 2-D, with B = 0 or not finite; ``x_shape`` not (B, I) with
        s0's B; ``y_shape`` empty or not starting with B.
    """

    def __init__(self, capacity, s0, x_shape, y_shape, y_dtype):
        self.capacity = check_int("capacity", capacity, 1)
        s0 = as_array("s0", s0)
        check_array("s0", s0, ndim=2)
        if s0.shape[0] < 1:
            raise ValueError(f"s0 must hold at least one example (B >= 1), got shape {tuple(s0.shape)}")
        x_shape, y_shape = _shape("x_shape", x_shape), _shape("y_shape", y_shape)
        if len(x_shape) != 2 or x_shape[0] != s0.shape[0]:
            raise ValueError(f"x_shape must be (B, I) with B = {s0.shape[0]} (the batch of s0), got {x_shape}")
        if not y_shape or y_shape[0] != s0.shape[0]:
            raise ValueError(f"y_shape must start with B = {s0.shape[0]} (the batch of s0), got {y_shape}")
        try:
            y_dtype = numpy.dtype(y_dtype)
        except TypeError as exc:
            raise TypeError(f"y_dtype must be a NumPy dtype, got {y_dtype!r}") from exc
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

    def push(self, x, s, *, check=True):
        """Record step t + 1: the observation o_{t+1} and the state s_{t+1} it led to.

        Completes transition t (which needs o_{t+1} and s_{t+1}) and gives it the
        largest priority seen so far.

        Parameters
        ----------
        x : (B, I) array-like
            The observation o_{t+1}, in the buffer's dtype (it is cast on storing).
        s : (B, n_state) array-like
            The state s_{t+1}.
        check : bool
            Whether to test x and s for NaN/Inf (default True); False skips that read-back on a
            device, for a caller that checks them itself (refnet.online's deferred checks).

        Raises
        ------
        TypeError
            ``x`` or ``s`` not an array or not floating.
        ValueError
            A shape other than the buffer's, or NaN/Inf (with ``check``); nothing is recorded then.
        """
        check_array("x", as_array("x", x), shape=self.X.shape[1:], finite=check)
        check_array("s", as_array("s", s), shape=self.S.shape[1:], finite=check)
        self.t += 1
        self.X[self._slot(self.t)] = x
        self.S[self._slot(self.t)] = s
        if self.t >= 2:
            self.priority[self._slot(self.t - 1)] = self.max_priority

    def set_target(self, y, *, check=True):
        """Record y_t, the target of the newest step.

        Parameters
        ----------
        y : (B,) or (B, O) array-like
            The target, of the buffer's ``y_shape``; stored in its ``y_dtype`` (cast, not checked).
        check : bool
            Whether to test y for NaN/Inf (default True); False as in :meth:`push`.

        Raises
        ------
        TypeError
            ``y`` not an array.
        ValueError
            A shape other than ``y_shape``, or NaN/Inf (with ``check``).
        """
        y = as_array("y", y)
        check_array("y", y, shape=self.Y.shape[1:], floating=False, finite=check)
        self.Y[self._slot(self.t)] = y

    @property
    def first(self):
        """The oldest complete transition T."""
        return max(1, self.t - self.capacity)

    def __len__(self):
        """How many complete transitions are held (at most N)."""
        return max(0, self.t - self.first)

    def state(self, t):
        """s_t, a view into the ring (t within the last N + 2 steps).

        Parameters
        ----------
        t : int
            The time index, in [t_new − N − 1, t_new] with t_new the newest step (``self.t``).

        Returns
        -------
        (B, n_state) array
            A view of the stored s_t: writing into it writes the buffer.

        Raises
        ------
        TypeError
            ``t`` not an int.
        ValueError
            ``t`` outside the steps the buffer holds.
        """
        self._check_time("t", t, self.t - self.capacity - 1, self.t)
        return self.S[self._slot(t)]

    def write_state(self, t, s):
        """Replace the stored s_t by ``s`` (the write-back of s'_{T+1}, Algorithm 1).

        Every transition that holds s_t (as its s_prev or its s_next) sees the new value.

        Parameters
        ----------
        t : int
            The time index, within the last N + 2 steps.
        s : (B, n_state) array-like
            The new state, finite.

        Raises
        ------
        TypeError
            ``s`` not a floating array; ``t`` not an int.
        ValueError
            ``s`` not (B, n_state) or not finite; ``t`` outside the steps the buffer holds.
        """
        check_array("s", as_array("s", s), shape=self.S.shape[1:])
        self.state(t)[...] = s

    def transition(self, T):
        """Transition T as views into the rings.

        Parameters
        ----------
        T : int
            A complete transition: ``first`` <= T <= t − 1.

        Returns
        -------
        Transition
            ``(T, s_{T−1}, o_T, o_{T+1}, s_{T+1}, y_T)``, each a view into the buffer.

        Raises
        ------
        TypeError
            ``T`` not an int.
        ValueError
            ``T`` is not a complete transition the buffer holds.
        """
        self._check_time("T", T, self.first, self.t - 1)
        return Transition(T, self.S[self._slot(T - 1)], self.X[self._slot(T)], self.X[self._slot(T + 1)],
                          self.S[self._slot(T + 1)], self.Y[self._slot(T)])

    def set_priority(self, T, value, *, check=True):
        """Set the priority of transition T (its last loss, for prioritised sampling).

        Parameters
        ----------
        T : int
            A complete transition: ``first`` <= T <= t − 1.
        value : float or 0-d array
            The priority, >= 0 (in the loss's units).  With ``check`` False, a 0-d device array
            taken unchecked.
        check : bool
            Whether to validate ``value`` (default True); False keeps the largest priority on the
            device too (no read-back; refnet.online's deferred checks).

        Raises
        ------
        TypeError
            ``T`` not an int; ``value`` not a real number (with ``check``).
        ValueError
            ``T`` not a complete transition the buffer holds; ``value`` < 0 or not finite (with
            ``check``).
        """
        self._check_time("T", T, self.first, self.t - 1)
        if not check:
            self.priority[self._slot(T)] = value
            self.max_priority = xp_of(self.priority).maximum(self.max_priority, value)
            return
        value = check_number("value", value, low=0.0)
        self.priority[self._slot(T)] = value
        self.max_priority = max(self.max_priority, float(value))

    def uniform_index(self, u):
        """The transition T at quantile u ∈ [0, 1) of the held ones, all equally likely.

        Parameters
        ----------
        u : float
            A uniform draw in [0, 1).

        Returns
        -------
        int
            T = ``first`` + ⌊u · len⌋ (at most the newest transition).

        Raises
        ------
        ValueError
            No transition is held yet, or ``u`` is not a Python int/float in [0, 1) (a bool or a
            non-number is a ValueError here too).
        """
        self._check_sample(u)
        return self.first + min(int(u * len(self)), len(self) - 1)

    def prioritised_index(self, u):
        """The transition T at quantile u ∈ [0, 1) of the held ones weighted by priority.

        Parameters
        ----------
        u : float
            A uniform draw in [0, 1).

        Returns
        -------
        int
            The first T whose cumulative priority exceeds u · (total priority).

        Raises
        ------
        ValueError
            No transition is held yet, or ``u`` is not a Python int/float in [0, 1).
        """
        self._check_sample(u)
        xp = xp_of(self.priority)
        slots = (self.first + xp.arange(len(self))) % self.S.shape[0]
        cumulative = xp.cumsum(self.priority[slots])
        j = int(xp.searchsorted(cumulative, u * cumulative[-1], side="right"))
        return self.first + min(j, len(self) - 1)

    def _check_sample(self, u):
        if len(self) == 0:
            raise ValueError(f"the buffer holds no complete transition yet (t = {self.t}; transition T needs "
                             "o_{T+1} and s_{T+1}, so sample after the second push)")
        if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0 <= u < 1:
            raise ValueError(f"u must be a number in [0, 1), got {u!r}")

    def _check_time(self, name, value, low, high):
        if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)):
            raise TypeError(f"{name} must be an int time index, got {type(value).__name__} {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}] (held by the buffer at t = {self.t}), got {value}")


def _shape(name, shape):
    """``shape`` as a tuple of ints >= 0; TypeError naming ``name`` otherwise."""
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, numpy.integer)) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise TypeError(f"{name} must be a tuple of ints >= 0, got {shape!r}")
    return tuple(int(d) for d in shape)
