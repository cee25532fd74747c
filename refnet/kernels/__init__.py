"""numba kernels for the CPU hot loops of online learning (private); each has a plain twin.

The kernels are small, compiled with ``cache=True`` and no fastmath, and
write into arrays their caller allocates.  The public function that owns a
kernel dispatches: the kernel runs when :func:`applicable` says so, the
plain array code (its twin, which is also what CuPy runs) otherwise.  ``tests/test_kernels.py`` holds every
kernel equal to its twin to 1e-12 in float64.

``REFNET_NUMBA=1`` (default) or ``0`` switches the kernels on or off; like
``REFNET_BACKEND`` it is read at every use and a bad value fails there,
naming the variable.  numba itself is imported only when a kernel first runs,
so ``import refnet`` stays light and ``REFNET_NUMBA=0`` never touches it.
"""
import importlib
import os

import numpy

__all__ = ["CHOICES", "enabled", "applicable", "load"]

CHOICES = ("1", "0")

_FLOATS = (numpy.dtype("float64"), numpy.dtype("float32"))
_loaded = {}

# os.environ.get costs about a microsecond (key encoding, the Mapping protocol, a KeyError
# when unset), and an online learner asks at every cell call of every step.  CPython's
# os.environ keeps the raw values in the dict ``_data`` (since 3.2) and every change made
# through os.environ replaces the value object there, so an identity check on that object
# tells whether the parsed answer is still good; elsewhere os.environ.get is used.
_RAW = getattr(os.environ, "_data", None)
_RAW_KEY = os.environ.encodekey("REFNET_NUMBA") if _RAW is not None else None
_last = [object(), None]   # [raw value last parsed, its answer]


def enabled():
    """Whether ``REFNET_NUMBA`` allows the kernels (default '1').

    Read at every call (the parsed answer is reused while the variable's raw
    value is the same object).

    Returns
    -------
    bool
        True for '1' or unset, False for '0'.

    Raises
    ------
    ValueError
        If ``REFNET_NUMBA`` is set to anything but '1' or '0' (the message
        names the variable, the value and the valid choices).
    """
    if _RAW is None:
        return _parse(os.environ.get("REFNET_NUMBA", "1"))
    raw = _RAW.get(_RAW_KEY)
    if raw is not _last[0]:
        _last[1] = _parse("1" if raw is None else os.environ.decodevalue(raw))
        _last[0] = raw
    return _last[1]


def _parse(value):
    if value not in CHOICES:
        raise ValueError(f"REFNET_NUMBA={value!r} is not a valid choice; expected one of "
                         f"{', '.join(repr(c) for c in CHOICES)}")
    return value == "1"


def applicable(*arrays):
    """Whether a kernel may take ``arrays``: kernels enabled, all NumPy, one float dtype.

    Parameters
    ----------
    *arrays : array
        The operands of one kernel call, at least one, any shapes; the first
        one's dtype is the one all must share.

    Returns
    -------
    bool
        True if every operand is exactly a ``numpy.ndarray`` (no subclass, no
        CuPy or device-double array), all share one dtype that is float64 or
        float32, and :func:`enabled` is true.

    Raises
    ------
    IndexError
        If no array is given.
    AttributeError
        If the first operand has no ``dtype``.
    ValueError
        If ``REFNET_NUMBA`` is invalid (read only once the operands qualify).
    """
    dtype = arrays[0].dtype
    for a in arrays:
        if type(a) is not numpy.ndarray or a.dtype != dtype:
            return False
    return dtype in _FLOATS and enabled()


def load(name):
    """The kernel module ``refnet.kernels.<name>``, imported (with numba) at first use.

    Parameters
    ----------
    name : str
        A module of this package, e.g. 'elman', 'rtrl', 'online', 'fused', 'traces'.

    Returns
    -------
    module
        The imported module (cached: later calls return the same object).

    Raises
    ------
    ModuleNotFoundError
        If there is no module ``refnet.kernels.<name>``, or numba is not installed.
    """
    module = _loaded.get(name)
    if module is None:
        module = _loaded[name] = importlib.import_module(f"{__name__}.{name}")
    return module
