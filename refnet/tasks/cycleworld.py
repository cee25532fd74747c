"""p-CycleWorld (Tanner & Sutton 2005): predict the next bit of a cycle of p states.

An agent steps around a cycle of p states, one state per time step.  The
observation is 1 in one state and 0 in the other p − 1, so the stream is
periodic, ``…0 0 0 0 0 1 0 0 0 0 0 1…`` for p = 6, and the target at each
step is the next observation.  Predicting it needs a memory of the last p
steps: a model that always says 0 is right (p − 1)/p of the time
(83.3% for p = 6), one that counts to p is always right.  The FPP paper's
setup (Nath, Jafferjee & White, App. C.1): an Elman RNN with 4 tanh units,
Adagrad 0.1, 300 000 online steps, 5 runs.
"""
from .._validate import check_dtype, check_int
from ..backend import get_dtype, get_xp

__all__ = ["cycleworld", "always_zero_accuracy"]


def cycleworld(p, steps, *, phase=0, dtype=None):
    """The observation stream of p-CycleWorld as online inputs and targets.

    Parameters
    ----------
    p : int
        The length of the cycle, >= 2.
    steps : int
        How many time steps, >= 1.
    phase : int
        The state the agent starts in, in [0, p); the observation is 1 in state 0, so o_t = 1 when
        (t + phase) is a multiple of p.
    dtype : str, numpy.dtype or None
        'float64' or 'float32' (None: the active ``REFNET_DTYPE``).

    Returns
    -------
    x : (steps, 1, 1) array
        x[t] = o_t, the observation at step t (a batch of one stream), on the active backend.
    y : (steps, 1, 1) array
        y[t] = o_{t+1}, the target: the next observation.

    Raises
    ------
    TypeError
        If ``p``, ``steps`` or ``phase`` is not an int.
    ValueError
        If ``p`` < 2, ``steps`` < 1, ``phase`` outside [0, p), or ``dtype`` not float64/float32.
    """
    p = check_int("p", p, 2)
    steps = check_int("steps", steps, 1)
    phase = check_int("phase", phase, 0)
    if phase >= p:
        raise ValueError(f"phase must be in [0, p) = [0, {p}), got {phase}")
    dtype = check_dtype("dtype", dtype)
    xp = get_xp()
    o = ((xp.arange(steps + 1) + phase) % p == 0).astype(get_dtype() if dtype is None else dtype)
    return o[:-1, None, None], o[1:, None, None]


def always_zero_accuracy(p):
    """(p − 1)/p: the accuracy of always predicting 0 on p-CycleWorld (Tanner & Sutton 2005).

    Parameters
    ----------
    p : int
        The length of the cycle, >= 2.

    Returns
    -------
    float
        (p − 1)/p, e.g. 0.833… for p = 6.

    Raises
    ------
    TypeError
        If ``p`` is not an int.
    ValueError
        If ``p`` < 2.
    """
    p = check_int("p", p, 2)
    return (p - 1) / p
