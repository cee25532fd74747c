"""Sequential digits: scikit-learn's 8×8 handwritten digits read one pixel (or one row) per step.

The FPP paper classifies MNIST pixel by pixel (784 steps; Nath, Jafferjee &
White, §3 and App. C.2); MNIST cannot be downloaded here, so this task uses the
1 797 8×8 digits that ship with scikit-learn: 64 steps of one pixel, or 8
steps of one 8-pixel row, the label to be read from the last state.  Pixels
are scaled from 0..16 to [0, 1].  MNIST itself, from IDX files, is
:mod:`refnet.tasks.mnist`.
"""
import numbers
from typing import NamedTuple

import numpy as np

from .._validate import as_array, check_dtype, check_int, check_seed
from ..backend import asarray, get_dtype

__all__ = ["SequenceSplit", "digits", "to_sequences"]


class SequenceSplit(NamedTuple):
    """Images as sequences, split into train and test (:func:`digits`, :func:`refnet.tasks.mnist.mnist`).

    Attributes
    ----------
    x_train : (T, N_train, I) array
        Inputs, time first (refnet's layout), pixels in [0, 1]; T·I = the pixels of an image.
    y_train : (N_train,) int64 array
        Labels 0–9.
    x_test : (T, N_test, I) array
        Test inputs.
    y_test : (N_test,) int64 array
        Test labels.
    """

    x_train: object  # (T, N_train, I) inputs, time first (refnet's layout)
    y_train: object  # (N_train,) int64 labels
    x_test: object   # (T, N_test, I)
    y_test: object   # (N_test,)


def to_sequences(images, pixels_per_step):
    """Images (N, H, W) in [0, 1] → sequences (T, N, pixels_per_step), read row-major.

    Parameters
    ----------
    images : (N, H, W) or (N, D) array
        N >= 1 images of at least one pixel; any dtype, values as they are.
    pixels_per_step : int
        Pixels read per step, >= 1, dividing the H·W pixels of an image.

    Returns
    -------
    (T, N, pixels_per_step) numpy.ndarray
        T = H·W / pixels_per_step steps, row-major; a contiguous NumPy array (on the host).

    Raises
    ------
    TypeError
        ``images`` not an array, ``pixels_per_step`` not an int.
    ValueError
        ``images`` with fewer than 2 dimensions, no image or no pixel; ``pixels_per_step`` < 1 or not
        a divisor of the pixel count.
    """
    images = as_array("images", images)
    if images.ndim < 2 or images.shape[0] < 1 or images[0].size < 1:
        raise ValueError(f"images must be (N, H, W) or (N, D) with N >= 1 images of at least one pixel, got "
                         f"shape {tuple(images.shape)}")
    pixels_per_step = check_int("pixels_per_step", pixels_per_step, 1)
    N = images.shape[0]
    flat = images.reshape(N, -1)
    if flat.shape[1] % pixels_per_step:
        raise ValueError(f"pixels_per_step must divide the {flat.shape[1]} pixels of an image, got {pixels_per_step}")
    return np.ascontiguousarray(flat.reshape(N, -1, pixels_per_step).transpose(1, 0, 2))


def digits(*, rows=False, test_fraction=0.25, seed=0, dtype=None):
    """The 8×8 digits as sequences, split at random into train and test.

    Parameters
    ----------
    rows : bool
        False for 64 steps of one pixel; True for 8 steps of one row of 8 pixels.
    test_fraction : float
        The share of the 1 797 images held out, in (0, 1) (rounded to whole images); an int or a
        float.
    seed : int
        Seed of the shuffle (``numpy.random.default_rng``), >= 0.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', the inputs' dtype (None: ``REFNET_DTYPE``).

    Returns
    -------
    SequenceSplit
        x (64, N, 1) or (8, N, 8) in [0, 1] and int64 labels, on the active backend.

    Raises
    ------
    ValueError
        If ``test_fraction`` is not in (0, 1) (or not finite), ``seed`` < 0, or ``dtype`` not
        float64/float32.
    TypeError
        If ``test_fraction`` is not a real number (a bool or a str), ``rows`` is not a bool or
        ``seed`` not an int.
    ImportError
        If scikit-learn is not installed.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {type(test_fraction).__name__} "
                        f"{test_fraction!r}")
    if not 0 < test_fraction < 1:                     # NaN fails this too
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not isinstance(rows, bool):
        raise TypeError(f"rows must be a bool, got {type(rows).__name__} {rows!r}")
    seed = check_seed("seed", seed)
    dtype = check_dtype("dtype", dtype)
    from sklearn.datasets import load_digits        # after the checks: bad arguments are named without it
    data = load_digits()
    images, labels = data.images / 16.0, data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    x = to_sequences(images, 8 if rows else 1)
    dtype = get_dtype() if dtype is None else dtype
    return SequenceSplit(asarray(x[:, train], dtype), asarray(labels[train], np.int64),
                         asarray(x[:, test], dtype), asarray(labels[test], np.int64))
