"""Array backend and floating dtype.

``REFNET_BACKEND=numpy|cupy|strict`` decides where *new* arrays are made
(parameter initialisation, zero states).  Compute functions never consult it:
they take the array module from their inputs with :func:`xp_of`, and random
numbers drawn inside them land on their inputs' backend (the ``like=``
argument of :class:`Rng`'s methods), so one process can hold NumPy and CuPy
models side by side.  ``strict`` is the device double (:mod:`refnet._strict`):
NumPy behind a device-like wall that refuses implicit conversion to NumPy and
counts host synchronisations, so CI without a GPU proves the discipline a GPU
needs.

``REFNET_DTYPE=float64|float32`` is the dtype of new arrays; float64 by
default, because an oracle must be exact first.

Both variables are read at every use, and a bad value fails there, naming the
variable, the value and the valid choices.  CuPy is imported lazily; if it was
asked for and cannot be imported or sees no GPU, the error says so and keeps
the original exception as its cause.  There is never a silent fallback.
"""
import os

import numpy

__all__ = [
    "BACKENDS", "DTYPES", "backend_name", "get_xp", "get_dtype", "xp_of",
    "to_numpy", "asarray", "Rng", "rng",
]

BACKENDS = ("numpy", "cupy", "strict")
DTYPES = ("float64", "float32")

_cupy = None


def _env_choice(variable, choices, default):
    value = os.environ.get(variable, default)
    if value not in choices:
        raise ValueError(
            f"{variable}={value!r} is not a valid choice; expected one of "
            f"{', '.join(repr(c) for c in choices)}")
    return value


def _import_cupy():
    """Import CuPy and check that it sees a GPU; raise RuntimeError if not."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError, CUDARuntimeError, missing driver...
        raise RuntimeError(
            "REFNET_BACKEND='cupy' was requested but CuPy is unusable here "
            f"({type(exc).__name__}: {exc}); valid choices are "
            f"{', '.join(repr(c) for c in BACKENDS)}, and 'numpy' needs no GPU"
        ) from exc
    if n_devices < 1:
        raise RuntimeError(
            "REFNET_BACKEND='cupy' was requested but CuPy sees no GPU "
            "(getDeviceCount() == 0); use REFNET_BACKEND='numpy'")
    _cupy = cupy
    return cupy


def backend_name():
    """The active backend's name, from ``REFNET_BACKEND`` (default 'numpy')."""
    return _env_choice("REFNET_BACKEND", BACKENDS, "numpy")


def get_xp():
    """The array module in which new arrays are made (numpy or cupy)."""
    name = backend_name()
    if name == "cupy":
        return _import_cupy()
    if name == "strict":
        from . import _strict
        return _strict.xp
    return numpy


def get_dtype():
    """The floating dtype of new arrays, from ``REFNET_DTYPE`` (default float64)."""
    return numpy.dtype(_env_choice("REFNET_DTYPE", DTYPES, "float64"))


def _is_cupy_array(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _is_strict_array(a):
    return type(a).__name__ == "StrictArray" and type(a).__module__ == "refnet._strict"


def _is_device_array(a):
    """A CuPy array or a device-double array: lives behind a host/device wall."""
    return _is_cupy_array(a) or _is_strict_array(a)


def xp_of(*arrays):
    """The array module of ``arrays`` (None and Python scalars are ignored).

    Raises TypeError if NumPy arrays are mixed with device (CuPy or strict)
    arrays, or arrays of two device backends are mixed.  With no arrays at
    all, returns NumPy.
    """
    first_numpy = first_device = None
    for a in arrays:
        if a is None or isinstance(a, (bool, int, float, complex)):
            continue
        if _is_device_array(a):
            if first_device is not None and _is_cupy_array(a) != _is_cupy_array(first_device):
                raise TypeError("arrays from two device backends (cupy and the strict double) were mixed "
                                "in one call; move them to one backend first")
            first_device = a if first_device is None else first_device
        else:
            first_numpy = a if first_numpy is None else first_numpy
    if first_device is not None and first_numpy is not None:
        raise TypeError(
            "arrays from two backends were mixed in one call: a "
            f"{type(first_numpy).__module__}.{type(first_numpy).__name__} of shape "
            f"{getattr(first_numpy, 'shape', '?')} and a "
            f"{'cupy.ndarray' if _is_cupy_array(first_device) else 'StrictArray (the device double)'} "
            f"of shape {first_device.shape}; move them to one backend first (refnet.to_numpy or refnet.asarray)")
    if first_device is None:
        return numpy
    if _is_cupy_array(first_device):
        return _import_cupy()
    from . import _strict
    return _strict.xp


def to_numpy(a):
    """A NumPy copy (or view) of ``a``, wherever it lives: the explicit device-to-host door."""
    if _is_device_array(a):
        return a.get()
    return numpy.asarray(a)


def asarray(a, dtype=None):
    """``a`` on the active backend, as ``dtype`` (default: the active float dtype)."""
    xp = get_xp()
    if _is_device_array(a) and xp_of(a) is not xp:
        a = a.get()
    return xp.asarray(a, dtype=get_dtype() if dtype is None else dtype)


def _place(a, dtype, like):
    """Host draws ``a`` on ``like``'s backend (as ``dtype``, default like's), or on the active one."""
    if like is None:
        return asarray(a, dtype=dtype)
    return xp_of(like).asarray(a, dtype=like.dtype if dtype is None else dtype)


class Rng:
    """A seeded random source.

    Numbers are drawn by NumPy's PCG64 and then moved, so a seed gives the same
    values on NumPy and on CuPy: a model initialised on the GPU equals the one
    initialised on the CPU.  Every method takes ``like=``: with an array there,
    the draw lands on that array's backend and (floats) in its dtype — what a
    compute function does, so its random numbers follow its inputs, not
    ``REFNET_BACKEND``.  Without it (parameter initialisation) the draw lands
    on the active backend, in ``dtype`` (default: the active ``REFNET_DTYPE``
    at each call).
    """

    def __init__(self, seed, dtype=None):
        if not isinstance(seed, (int, numpy.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int >= 0, got {type(seed).__name__} {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be an int >= 0 (NumPy's PCG64 takes no negative seed), got {seed}")
        if dtype is not None:
            try:
                name = numpy.dtype(dtype).name
            except (TypeError, ValueError):
                name = None
            if name not in DTYPES:
                raise ValueError(f"dtype must be one of {DTYPES} or None, got {dtype!r}")
        self.generator = numpy.random.default_rng(int(seed))
        self.dtype = None if dtype is None else numpy.dtype(dtype)

    def _float(self, a, like):
        if like is None:
            return asarray(a, dtype=self.dtype)
        return _place(a, None, like)

    def normal(self, shape, scale=1.0, *, like=None):
        """Samples of N(0, scale²)."""
        return self._float(self.generator.normal(0.0, scale, size=shape), like)

    def uniform(self, shape, low=0.0, high=1.0, *, like=None):
        """Samples of U(low, high)."""
        return self._float(self.generator.uniform(low, high, size=shape), like)

    def integers(self, low, high, shape, *, like=None):
        """Integers in [low, high), as int64."""
        return _place(self.generator.integers(low, high, size=shape), numpy.int64, like)

    def constant(self, values, *, like=None):
        """``values`` (a NumPy array or nested list) as a float array in this rng's dtype: the
        constants of a parameter initialisation (zeros, ones, a scaled identity), made in the same
        dtype and on the same backend as its random draws."""
        return self._float(numpy.asarray(values, dtype=numpy.float64), like)

    def signs(self, shape, *, like=None):
        """Independent ±1 with probability ½ each (Rademacher)."""
        return self._float(self.generator.integers(0, 2, size=shape) * 2.0 - 1.0, like)


def rng(seed, dtype=None):
    """A :class:`Rng` seeded with ``seed``, making floats in ``dtype`` (default: REFNET_DTYPE).

    Raises
    ------
    TypeError
        ``seed`` not an int.
    ValueError
        ``seed`` < 0; ``dtype`` not 'float64', 'float32' or None.
    """
    return Rng(seed, dtype)
