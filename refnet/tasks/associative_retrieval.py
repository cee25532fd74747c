"""Associative retrieval (Ba et al. 2016, §4.1): recall the digit stored under a key letter.

A sequence is K (letter, digit) pairs with K distinct letters from a–z and
digits 0–9 (digits may repeat), then ``??``, then a query letter that is one
of the K keys, drawn uniformly; the target is the query's digit::

    c9k8j3f1??c → 9        (K = 4, length 2K + 3 = 11)

Symbols are one-hot over 37 classes (:data:`SYMBOLS`): ``a``–``z`` are 0–25,
``0``–``9`` are 26–35 and ``?`` is 36.  :func:`associative_retrieval` draws
the train, validation and test splits (100 000 / 10 000 / 20 000 by default)
from one seeded stream, train first; sequences are drawn independently, so
with few pairs (K = 2 has 26·25·10²·2 = 130 000 distinct sequences) a test
sequence may also occur in the training split (:func:`overlap` measures it).
"""
from dataclasses import dataclass

import numpy

from .._validate import as_array, check_array, check_dtype, check_int, check_seed
from ..backend import asarray

__all__ = ["SYMBOLS", "N_SYMBOLS", "QUERY", "Split", "AssociativeRetrieval", "make_sequences",
           "associative_retrieval", "one_hot", "decode", "overlap"]

SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789?"
N_SYMBOLS = len(SYMBOLS)   # 37
QUERY = SYMBOLS.index("?")
_DIGIT0 = SYMBOLS.index("0")


@dataclass(frozen=True)
class Split:
    """One split: ``codes`` (N, 2K + 3) int64 symbol indices, ``targets`` (N,) int64 digits.

    ``len(split)`` is N.

    Attributes
    ----------
    codes : (N, 2K + 3) numpy.ndarray
        int64 symbol indices into :data:`SYMBOLS` (K pairs, ``??``, the query letter).
    targets : (N,) numpy.ndarray
        int64 digits 0–9, the query's value.
    """

    codes: numpy.ndarray
    targets: numpy.ndarray

    def __len__(self):
        return len(self.targets)


@dataclass(frozen=True)
class AssociativeRetrieval:
    """The three splits of one seeded draw, and the number of pairs K.

    Attributes
    ----------
    train : Split
        The training sequences (drawn first).
    valid : Split
        The validation sequences.
    test : Split
        The test sequences.
    pairs : int
        K, the (letter, digit) pairs per sequence.
    """

    train: Split
    valid: Split
    test: Split
    pairs: int


def make_sequences(n, pairs, generator):
    """Draw ``n`` sequences of ``pairs`` (letter, digit) pairs, ``??`` and a query key.

    Per row: ``pairs`` distinct letters (a uniformly random order of a–z, the first ``pairs``), a
    digit 0–9 for each, then which key is asked, uniformly (Ba et al. 2016, §4.1).

    Parameters
    ----------
    n : int
        Sequences to draw, >= 0.
    pairs : int
        K, the (letter, digit) pairs per sequence, in [1, 26].
    generator : numpy.random.Generator
        The stream drawn from (letters, then digits, then the queries).

    Returns
    -------
    Split
        codes (n, 2·pairs + 3) and targets (n,), NumPy int64.

    Raises
    ------
    TypeError
        If ``n`` or ``pairs`` is not an int, or ``generator`` is not a numpy.random.Generator.
    ValueError
        If ``n`` < 0, ``pairs`` < 1 or ``pairs`` > 26 (the keys are distinct letters).
    """
    n = check_int("n", n, 0)
    pairs = check_int("pairs", pairs, 1)
    if not isinstance(generator, numpy.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator (numpy.random.default_rng(seed)), got "
                        f"{type(generator).__name__}")
    if pairs > 26:
        raise ValueError(f"pairs must be <= 26 (the keys are distinct letters a–z), got {pairs}")
    keys = numpy.argsort(generator.random((n, 26)), axis=1)[:, :pairs]   # distinct letters per row
    digits = generator.integers(0, 10, size=(n, pairs))
    asked = generator.integers(0, pairs, size=n)
    rows = numpy.arange(n)
    codes = numpy.empty((n, 2 * pairs + 3), dtype=numpy.int64)
    codes[:, 0:2 * pairs:2] = keys
    codes[:, 1:2 * pairs:2] = _DIGIT0 + digits
    codes[:, 2 * pairs:2 * pairs + 2] = QUERY
    codes[:, -1] = keys[rows, asked]
    return Split(codes, digits[rows, asked].astype(numpy.int64))


def associative_retrieval(pairs=4, n_train=100_000, n_valid=10_000, n_test=20_000, seed=0):
    """The task of Ba et al. (2016, §4.1): train, validation and test splits from one seed.

    Defaults are the paper's: K = 4 pairs, 100 000 / 10 000 / 20 000 sequences.  All three are
    drawn by one :func:`make_sequences` call from ``numpy.random.default_rng(seed)``, train first.

    Parameters
    ----------
    pairs : int
        K, the (letter, digit) pairs per sequence, in [1, 26].
    n_train : int
        Training sequences, >= 0.
    n_valid : int
        Validation sequences, >= 0.
    n_test : int
        Test sequences, >= 0.
    seed : int
        Seed of the stream, >= 0.

    Returns
    -------
    AssociativeRetrieval
        The three :class:`Split` and ``pairs``.

    Raises
    ------
    TypeError
        If ``pairs``, a size or ``seed`` is not an int.
    ValueError
        If a size or ``seed`` < 0, or ``pairs`` is outside [1, 26].
    """
    sizes = [check_int(name, value, 0) for name, value in
             (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test))]
    check_seed("seed", seed)
    whole = make_sequences(sum(sizes), pairs, numpy.random.default_rng(seed))
    bounds = numpy.cumsum([0] + sizes)
    splits = [Split(whole.codes[a:b], whole.targets[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return AssociativeRetrieval(*splits, pairs=pairs)


def one_hot(codes, dtype=None):
    """Inputs (T, N, 37) on the active backend for codes (N, T): time first, as the algorithms take them.

    Parameters
    ----------
    codes : (N, T) int array
        Symbol indices in [0, 37), e.g. :attr:`Split.codes`.
    dtype : str, numpy.dtype or None
        'float64' or 'float32' (None: the active ``REFNET_DTYPE``).

    Returns
    -------
    (T, N, 37) array
        One-hot rows, on the active backend.

    Raises
    ------
    TypeError
        If ``codes`` is not an array (or array-like) of integers.
    ValueError
        If ``codes`` is not 2-D, an index is outside [0, 37), or ``dtype`` is not float64/float32.
    """
    codes = _codes(codes)
    dtype = check_dtype("dtype", dtype)
    return asarray(numpy.eye(N_SYMBOLS)[codes.T], dtype=dtype)


def _codes(codes):
    """``codes`` as a NumPy (N, T) array of integer symbol indices in [0, 37); named errors otherwise."""
    codes = as_array("codes", codes)
    check_array("codes", codes, ndim=2, floating=False, finite=False)
    codes = numpy.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes must be integer symbol indices, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= N_SYMBOLS):
        raise ValueError(f"codes must be symbol indices in [0, {N_SYMBOLS}), got values in "
                         f"[{codes.min()}, {codes.max()}]")
    return codes


def decode(codes):
    """The strings of codes (N, T), e.g. ``'c9k8j3f1??c'``.

    Parameters
    ----------
    codes : (N, T) int array
        Symbol indices in [0, 37); one sequence is ``codes[None]``.

    Returns
    -------
    list of str
        One string of T symbols per row.

    Raises
    ------
    TypeError
        If ``codes`` is not an array (or array-like) of integers.
    ValueError
        If ``codes`` is not 2-D or an index is outside [0, 37).
    """
    codes = _codes(codes)
    return ["".join(SYMBOLS[int(c)] for c in row) for row in numpy.asarray(codes)]


def overlap(train, other):
    """Fraction of the sequences of ``other`` that also occur in ``train`` (both :class:`Split`).

    Parameters
    ----------
    train : Split
        The sequences seen in training.
    other : Split
        The sequences to look up (validation or test).

    Returns
    -------
    float
        In [0, 1]; 0.0 when ``other`` is empty.

    Raises
    ------
    TypeError
        If either is not a :class:`Split`.
    """
    for name, split in (("train", train), ("other", other)):
        if not isinstance(split, Split):
            raise TypeError(f"{name} must be a Split (from associative_retrieval), got {type(split).__name__}")
    seen = {row.tobytes() for row in train.codes}
    if len(other) == 0:
        return 0.0
    return sum(row.tobytes() in seen for row in other.codes) / len(other)
