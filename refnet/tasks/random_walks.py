"""2-D random walks of two step sizes (the ERNN paper's toy task: Zhang et al. 2019, §1).

    X_0 = 0,     X_t ~ N(X_{t−1}, Σ_i),  t = 1..T,     class i ∈ {0, 1}

with σ_0 = 0.1 and σ_1 = 1, T = 100, 10^4 walks per class, half for training
and half for testing; a network reads the positions X_1..X_T and classifies
from its last state.  The paper writes Σ_i = σ_i I, which reads two ways:

- ``reading="variance"``: Σ_i = σ_i I, step standard deviations √0.1 ≈ 0.32 and 1;
- ``reading="std"``: Σ_i = σ_i² I, step standard deviations 0.1 and 1.

Only the first reproduced the paper's RNN/ERNN gap in a quick trial
(see the README's Reference section).  Either way the classes differ in one statistic, the
variance of the steps X_t − X_{t−1}: :func:`step_variance_baseline`
thresholds it, the trivial baseline to print beside any network.
"""
from dataclasses import dataclass
from typing import Any

import numpy

from .._validate import as_array, check_array, check_int, check_number, check_seed
from ..backend import asarray, to_numpy, xp_of

__all__ = ["READINGS", "RandomWalks", "step_std", "random_walks", "random_walk_task",
           "step_variance", "step_variance_baseline"]

READINGS = ("variance", "std")
SIGMAS = (0.1, 1.0)


@dataclass(frozen=True)
class RandomWalks:
    """A train/test split: x (T, N, 2) positions X_1..X_T, y (N,) int64 labels; classes balanced.

    Attributes
    ----------
    x_train : (T, N_train, 2) array
        Training walks' positions X_1..X_T, on the active backend and dtype.
    y_train : (N_train,) int64 array
        Their classes, 0 (σ_0) or 1 (σ_1).
    x_test : (T, N_test, 2) array
        Test walks' positions.
    y_test : (N_test,) int64 array
        Their classes.
    step_stds : tuple of float
        The per-class step standard deviations used (:func:`step_std` of σ_0, σ_1).
    """

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    step_stds: tuple   # the per-class step standard deviations used


def step_std(sigma, reading):
    """The standard deviation of one coordinate of a step for the paper's σ under ``reading``.

    Zhang et al. (2019, §1) write X_t ~ N(X_{t−1}, σ_i I): 'variance' reads σ_i as the variance
    (std √σ_i), 'std' as the standard deviation (std σ_i).

    Parameters
    ----------
    sigma : float
        The paper's σ_i, a finite number > 0.
    reading : {'variance', 'std'}
        How σ_i is read (:data:`READINGS`).

    Returns
    -------
    float
        √σ for 'variance', σ for 'std'.

    Raises
    ------
    ValueError
        If ``reading`` is not in :data:`READINGS`, or ``sigma`` is not a finite number > 0.
    TypeError
        If ``sigma`` is not a real number.
    """
    _check_reading(reading)
    sigma = check_number("sigma", sigma, low=0.0, low_open=True)
    return float(numpy.sqrt(sigma)) if reading == "variance" else float(sigma)


def _check_reading(reading):
    if not isinstance(reading, str) or reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")


def _check_sigmas(sigmas):
    """σ of every class: a sequence of at least two finite numbers > 0 (one class is no classification)."""
    if isinstance(sigmas, (str, bytes)) or not hasattr(sigmas, "__len__"):
        raise TypeError(f"sigmas must be a sequence (σ_0, σ_1, ...) of numbers > 0, got {type(sigmas).__name__} "
                        f"{sigmas!r}")
    if len(sigmas) < 2:
        raise ValueError(f"sigmas must hold at least two σ (one per class), got {tuple(sigmas)!r}")
    return [check_number(f"sigmas[{i}]", s, low=0.0, low_open=True) for i, s in enumerate(sigmas)]


def random_walks(n_per_class, *, T=100, sigmas=SIGMAS, reading="variance", seed=0):
    """Walks of both classes, shuffled together.

    X_0 = 0, X_t = X_{t−1} + step_t, each step's coordinates N(0, step_std(σ_i)²) (Zhang et al.
    2019, §1); class i has σ_i = ``sigmas[i]``.

    Parameters
    ----------
    n_per_class : int
        Walks of each class, >= 1.
    T : int
        Steps per walk, >= 1.
    sigmas : sequence of float
        (σ_0, σ_1, ...), the paper's σ of each class (at least two, each finite and > 0), read as
        ``reading`` says (module docstring).
    reading : {'variance', 'std'}
        How σ is read (:func:`step_std`).
    seed : int
        Seed of the stream (``numpy.random.default_rng``), >= 0.

    Returns
    -------
    x : (T, C·n_per_class, 2) array
        Positions X_1..X_T, on the active backend and dtype (C = len(sigmas)).
    y : (C·n_per_class,) int64 array
        The class of each walk, shuffled together with ``x``.

    Raises
    ------
    TypeError
        ``n_per_class``, ``T`` or ``seed`` not an int; ``sigmas`` not a sequence or holding a
        non-number.
    ValueError
        ``n_per_class`` or ``T`` < 1, fewer than two ``sigmas`` or one not finite and > 0, an unknown
        ``reading``, ``seed`` < 0.
    """
    n_per_class = check_int("n_per_class", n_per_class, 1)
    T = check_int("T", T, 1)
    _check_reading(reading)
    seed = check_seed("seed", seed)
    stds = [step_std(s, reading) for s in _check_sigmas(sigmas)]
    generator = numpy.random.default_rng(seed)
    labels = numpy.repeat(numpy.arange(len(stds)), n_per_class)
    steps = generator.standard_normal((T, labels.size, 2)) * numpy.asarray(stds)[labels][None, :, None]
    order = generator.permutation(labels.size)
    x = numpy.cumsum(steps, axis=0)[:, order]                  # X_t = X_{t−1} + step, X_0 = 0
    return asarray(x), asarray(labels[order], dtype=numpy.int64)


def random_walk_task(n_per_class=10_000, *, T=100, reading="variance", seed=0):
    """The paper's split: ``n_per_class`` walks per class, half of each class to train, half to test.

    σ_0 = 0.1, σ_1 = 1 (Zhang et al. 2019, §1); the train half is drawn from ``seed``, the test
    half from a second stream (``seed + 1 000 003``), so the train set does not depend on the
    parity of ``n_per_class``.

    Parameters
    ----------
    n_per_class : int
        Walks per class, >= 2 (⌊n/2⌋ to train, the rest to test); the paper's 10^4.
    T : int
        Steps per walk, >= 1 (the paper's 100).
    reading : {'variance', 'std'}
        How σ is read (:func:`step_std`).
    seed : int
        Seed of the training stream, >= 0.

    Returns
    -------
    RandomWalks
        The split and the step standard deviations used.

    Raises
    ------
    TypeError
        If ``n_per_class``, ``T`` or ``seed`` is not an int.
    ValueError
        If ``n_per_class`` < 2, ``T`` < 1, ``reading`` is unknown, or ``seed`` < 0.
    """
    n_per_class = check_int("n_per_class", n_per_class, 2)
    seed = check_seed("seed", seed)
    half = n_per_class // 2
    x_train, y_train = random_walks(half, T=T, reading=reading, seed=seed)
    # A second stream for the test set, so the train set does not change with n_per_class's parity.
    x_test, y_test = random_walks(n_per_class - half, T=T, reading=reading, seed=seed + 1_000_003)
    return RandomWalks(x_train, y_train, x_test, y_test, tuple(step_std(s, reading) for s in SIGMAS))


def step_variance(x):
    """Per walk, the mean squared step (1/2T) Σ_t ‖X_t − X_{t−1}‖², X_0 = 0: (T, N, 2) -> (N,).

    Parameters
    ----------
    x : (T, N, 2) array
        Positions X_1..X_T of N walks, floating, T >= 1, N >= 1.

    Returns
    -------
    (N,) array
        The step variance of each walk (per coordinate), on ``x``'s backend.

    Raises
    ------
    TypeError
        If ``x`` is not an array (or array-like) or not floating.
    ValueError
        If ``x`` is not (T, N, 2) with T >= 1 and N >= 1, or holds NaN/Inf.
    """
    x = _walks("x", x)
    xp = xp_of(x)
    steps = xp.diff(x, axis=0, prepend=xp.zeros_like(x[:1]))
    return (steps * steps).mean(axis=(0, 2))


def _walks(name, x):
    """``x`` as a finite floating (T, N, 2) array with T >= 1 and N >= 1 (the mean over T needs a step)."""
    x = as_array(name, x)
    check_array(name, x, shape=(None, None, 2))
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one step and one walk (T >= 1, N >= 1), got shape "
                         f"{tuple(x.shape)}")
    return x


def _labels(name, y, x):
    """``y`` as (N,) integer labels 0/1 for the N walks of ``x``."""
    y = as_array(name, y)
    check_array(name, y, shape=(x.shape[1],), floating=False)
    host = to_numpy(y)
    if host.dtype.kind not in "iub" or not numpy.isin(host, (0, 1)).all():
        raise ValueError(f"{name} must be integer labels 0 or 1, got dtype {host.dtype} with values "
                         f"{numpy.unique(host)[:5]}")
    return y


def step_variance_baseline(x_train, y_train, x_test, y_test):
    """Test accuracy of the best threshold on the step variance, the threshold fitted on the train set.

    The rule "class 1 if step variance > c" with c chosen among the midpoints
    between sorted training values to maximise training accuracy (:func:`step_variance`).

    Parameters
    ----------
    x_train : (T, N_train, 2) array
        Training walks, floating, finite.
    y_train : (N_train,) int array
        Their labels, 0 or 1.
    x_test : (T', N_test, 2) array
        Test walks, floating, finite.
    y_test : (N_test,) int array
        Their labels, 0 or 1.

    Returns
    -------
    tuple of float
        (test accuracy in [0, 1], the threshold c).

    Raises
    ------
    TypeError
        If a walk array is not floating, or an argument is not an array (or array-like).
    ValueError
        If the walks are not (T, N, 2) with T, N >= 1 or hold NaN/Inf, or the labels are not (N,)
        integers 0/1 for the N walks.
    """
    x_train, x_test = _walks("x_train", x_train), _walks("x_test", x_test)
    y_train, y_test = _labels("y_train", y_train, x_train), _labels("y_test", y_test, x_test)
    v_train = to_numpy(step_variance(x_train))
    order = numpy.argsort(v_train)
    v, y_sorted = v_train[order], to_numpy(y_train)[order]
    # Accuracy of the threshold between v[i-1] and v[i]: class 0 below, class 1 from i on.
    ones_above = numpy.concatenate([numpy.cumsum(y_sorted[::-1])[::-1], [0]])
    zeros_below = numpy.concatenate([[0], numpy.cumsum(1 - y_sorted)])
    best = int(numpy.argmax(zeros_below + ones_above))
    lower = v[best - 1] if best > 0 else v[0] - 1.0
    upper = v[best] if best < v.size else v[-1] + 1.0
    c = 0.5 * (lower + upper)
    predicted = to_numpy(step_variance(x_test)) > c
    return float((predicted == to_numpy(y_test).astype(bool)).mean()), float(c)
