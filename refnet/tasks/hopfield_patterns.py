"""Binary patterns for the Hopfield associative memory (Liao et al. 2018, "Continuous Hopfield Networks").

Liao et al. store one binarised MNIST image per digit class (28×28) and
present it with 50% of its "on" pixels switched off.  MNIST cannot be
downloaded here, so :func:`digit_patterns` makes the ten patterns from the
8×8 digits that ship with scikit-learn: the first image of each class,
scaled to [0, 1], upsampled bilinearly to ``side``×``side`` and thresholded.
:func:`corrupt` switches off a fraction of each pattern's on pixels, chosen
uniformly without replacement (floor(level · #on) of them, as Liao et al.'s
code does).
"""
import numbers

import numpy

from .._validate import as_array, check_array, check_int, check_number, check_seed
from ..backend import asarray, to_numpy

__all__ = ["digit_patterns", "corrupt"]


def digit_patterns(side=28, *, threshold=0.5):
    """Ten binary patterns (10, side·side), row d the digit d, on the active backend and dtype.

    Parameters
    ----------
    side : int >= 8
        Width and height after upsampling (28 for MNIST's size).
    threshold : float in (0, 1)
        A pixel is on where the upsampled intensity (in [0, 1]) exceeds it.

    Returns
    -------
    (10, side·side) array
        0/1 patterns on the active backend, in the active float dtype; row d is the digit d.

    Raises
    ------
    TypeError
        If ``side`` is not an int or ``threshold`` not a real number.
    ValueError
        If ``side`` < 8 or ``threshold`` is not in (0, 1).
    ImportError
        If scikit-learn is not installed.
    """
    side = check_int("side", side, 8)
    threshold = check_number("threshold", threshold, low=0.0, low_open=True)
    if threshold >= 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("digit_patterns needs scikit-learn (pip install 'refnet[examples]')") from exc
    from scipy.ndimage import zoom

    digits = load_digits()
    first = [int(numpy.flatnonzero(digits.target == d)[0]) for d in range(10)]
    images = digits.images[first] / 16.0                                  # (10, 8, 8) in [0, 1]
    up = numpy.stack([zoom(image, side / 8.0, order=1, grid_mode=True, mode="nearest")
                      for image in images])
    return asarray((up > threshold).reshape(10, side * side))


def corrupt(patterns, level=0.5, *, seed=0):
    """A copy of ``patterns`` (P, D) with floor(level · #on) on pixels of each row switched off.

    Parameters
    ----------
    patterns : (P, D) array
        Floating, holding only 0 and 1 (e.g. :func:`digit_patterns`).
    level : float
        The fraction of each row's on pixels to switch off, in [0, 1].
    seed : int
        Seed of the choice of pixels (``numpy.random.default_rng``, PCG64), >= 0.

    Returns
    -------
    (P, D) array
        The corrupted copy, on the active backend, in ``patterns``' dtype.

    Raises
    ------
    TypeError
        If ``patterns`` is not a floating array, ``level`` not a real number, ``seed`` not an int.
    ValueError
        If ``patterns`` is not 2-D, holds NaN/Inf or values other than 0 and 1, ``level`` is outside
        [0, 1] or NaN, or ``seed`` < 0.
    """
    patterns = as_array("patterns", patterns)
    check_array("patterns", patterns, ndim=2)
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise TypeError(f"level must be a real number in [0, 1], got {type(level).__name__} {level!r}")
    if not 0.0 <= level <= 1.0:              # NaN fails it too
        raise ValueError(f"level must be in [0, 1], got {level!r}")
    seed = check_seed("seed", seed)
    host = to_numpy(patterns)
    if not numpy.isin(host, (0.0, 1.0)).all():
        raise ValueError("patterns must hold only 0 and 1")
    generator = numpy.random.default_rng(seed)
    out = host.copy()
    for row in out:
        on = numpy.flatnonzero(row)
        row[generator.permutation(on)[:int(len(on) * level)]] = 0.0
    return asarray(out, dtype=patterns.dtype)
