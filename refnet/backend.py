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
    """The active backend's name, from ``REFNET_BACKEND`` (default 'numpy').

    Returns
    -------
    str
        One of :data:`BACKENDS`: 'numpy', 'cupy' or 'strict'.

    Raises
    ------
    ValueError
        If ``REFNET_BACKEND`` is set to anything else (the message names the
        variable, the value and the valid choices).
    """
    return _env_choice("REFNET_BACKEND", BACKENDS, "numpy")


def get_xp():
    """The array module in which new arrays are made (numpy, cupy, or the strict device double).

    Read from ``REFNET_BACKEND`` at every call; compute functions use
    :func:`xp_of` on their inputs instead.

    Returns
    -------
    module
        ``numpy``, ``cupy`` or ``refnet._strict.xp``.

    Raises
    ------
    ValueError
        If ``REFNET_BACKEND`` is not 'numpy', 'cupy' or 'strict'.
    RuntimeError
        If 'cupy' was asked for and CuPy cannot be imported or sees no GPU
        (the original exception is kept as the cause).
    """
    name = backend_name()
    if name == "cupy":
        return _import_cupy()
    if name == "strict":
        from . import _strict
        return _strict.xp
    return numpy


def get_dtype():
    """The floating dtype of new arrays, from ``REFNET_DTYPE`` (default float64).

    Returns
    -------
    numpy.dtype
        ``float64`` or ``float32``.

    Raises
    ------
    ValueError
        If ``REFNET_DTYPE`` is set to anything but 'float64' or 'float32'.
    """
    return numpy.dtype(_env_choice("REFNET_DTYPE", DTYPES, "float64"))


def _is_cupy_array(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _is_strict_array(a):
    return type(a).__name__ == "StrictArray" and type(a).__module__ == "refnet._strict"


def _is_device_array(a):
    """A CuPy array or a device-double array: lives behind a host/device wall."""
    return _is_cupy_array(a) or _is_strict_array(a)


def xp_of(*arrays):
    """The array module of ``arrays`` (CuPy's ``get_array_module``, with the mixing refused).

    Parameters
    ----------
    *arrays : array, None or Python scalar
        Any number of operands, any shapes; None and Python scalars (bool,
        int, float, complex) are ignored.

    Returns
    -------
    module
        ``cupy`` or ``refnet._strict.xp`` if any operand lives on that device
        backend, else ``numpy`` (also with no arrays at all).

    Raises
    ------
    TypeError
        If NumPy arrays are mixed with device (CuPy or strict) arrays, or
        arrays of the two device backends are mixed (the message names the
        types and shapes of the first of each).
    RuntimeError
        If an operand is a CuPy array but CuPy sees no GPU.
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
    """A NumPy copy (or view) of ``a``, wherever it lives: the explicit device-to-host door.

    Parameters
    ----------
    a : array-like, any shape
        A NumPy, CuPy or strict-double array, or anything ``numpy.asarray``
        takes (scalars, nested lists).

    Returns
    -------
    numpy.ndarray
        ``a`` on the host, same shape and dtype; a view when ``a`` already is a
        NumPy array.

    Raises
    ------
    ValueError
        If ``a`` is a ragged nested sequence that NumPy cannot make an array of.
    """
    if _is_device_array(a):
        return a.get()
    return numpy.asarray(a)


def asarray(a, dtype=None):
    """``a`` on the active backend, as ``dtype`` (default: the active float dtype).

    A device array from another backend is first brought to the host.

    Parameters
    ----------
    a : array-like, any shape
        Values to place.
    dtype : dtype or None
        Dtype of the result; None for :func:`get_dtype` (``REFNET_DTYPE``).

    Returns
    -------
    array
        ``a`` as an array of the module :func:`get_xp` returns, same shape.

    Raises
    ------
    ValueError
        If ``REFNET_BACKEND`` or ``REFNET_DTYPE`` has an invalid value, or ``a``
        cannot be converted to ``dtype`` (e.g. a non-numeric string).
    TypeError
        If ``dtype`` is not a dtype the array module understands.
    RuntimeError
        If the active backend is 'cupy' and CuPy is unusable.
    """
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

    Parameters
    ----------
    seed : int
        Seed of NumPy's PCG64 generator, >= 0.
    dtype : {'float64', 'float32'}, numpy.dtype or None
        Dtype of float draws made without ``like=``; None for ``REFNET_DTYPE``
        read at each call.

    Attributes
    ----------
    generator : numpy.random.Generator
        The host generator every draw comes from.
    dtype : numpy.dtype or None
        The fixed float dtype, or None.

    Raises
    ------
    TypeError
        If ``seed`` is not an int (a bool is refused).
    ValueError
        If ``seed`` < 0, or ``dtype`` is not float64, float32 or None.
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
        """Samples of N(0, scale²).

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the result.
        scale : float
            Standard deviation, >= 0 (in the units of the values drawn).
        like : array or None
            Array whose backend (and, for floats, dtype) the draw takes; None for
            the active backend and this rng's dtype.

        Returns
        -------
        array, ``shape``
            Independent normal draws.

        Raises
        ------
        ValueError
            If ``scale`` < 0 or ``shape`` has a negative entry (from NumPy).
        TypeError
            If ``shape`` is not an int or tuple of ints.
        """
        return self._float(self.generator.normal(0.0, scale, size=shape), like)

    def uniform(self, shape, low=0.0, high=1.0, *, like=None):
        """Samples of U(low, high).

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the result.
        low : float
            Lower bound (included).
        high : float
            Upper bound (excluded).
        like : array or None
            Array whose backend (and, for floats, dtype) the draw takes; None for
            the active backend and this rng's dtype.

        Returns
        -------
        array, ``shape``
            Independent uniform draws.

        Raises
        ------
        OverflowError
            If ``high - low`` is not finite (from NumPy).
        ValueError
            If ``shape`` has a negative entry (from NumPy).
        TypeError
            If ``shape`` is not an int or tuple of ints.
        """
        return self._float(self.generator.uniform(low, high, size=shape), like)

    def integers(self, low, high, shape, *, like=None):
        """Integers in [low, high), as int64.

        Parameters
        ----------
        low : int
            Smallest value drawn.
        high : int
            One past the largest value drawn, > ``low``.
        shape : int or tuple of int
            Shape of the result.
        like : array or None
            Array whose backend the draw takes (the dtype stays int64); None
            for the active backend.

        Returns
        -------
        int64 array, ``shape``
            Independent uniform integers.

        Raises
        ------
        ValueError
            If ``low >= high`` or ``shape`` has a negative entry (from NumPy).
        TypeError
            If ``shape`` is not an int or tuple of ints.
        """
        return _place(self.generator.integers(low, high, size=shape), numpy.int64, like)

    def constant(self, values, *, like=None):
        """``values`` as a float array in this rng's dtype, on the backend of its draws.

        The constants of a parameter initialisation (zeros, ones, a scaled
        identity), made in the same dtype and on the same backend as its
        random draws.

        Parameters
        ----------
        values : array-like, any shape
            A NumPy array, nested list or scalar of real numbers.
        like : array or None
            Array whose backend (and, for floats, dtype) the draw takes; None for
            the active backend and this rng's dtype.

        Returns
        -------
        array
            ``values`` as floats, same shape.

        Raises
        ------
        ValueError
            If ``values`` is ragged or not numeric (from ``numpy.asarray``).
        TypeError
            If ``values`` holds objects NumPy cannot convert to float64.
        """
        return self._float(numpy.asarray(values, dtype=numpy.float64), like)

    def signs(self, shape, *, like=None):
        """Independent ±1 with probability ½ each (Rademacher).

        The random signs of UORO (Tallec & Ollivier 2018) and KF-RTRL
        (Mujika, Meier & Steger 2018).

        Parameters
        ----------
        shape : int or tuple of int
            Shape of the result.
        like : array or None
            Array whose backend (and, for floats, dtype) the draw takes; None for
            the active backend and this rng's dtype.

        Returns
        -------
        array, ``shape``
            Entries -1.0 or +1.0.

        Raises
        ------
        ValueError
            If ``shape`` has a negative entry (from NumPy).
        TypeError
            If ``shape`` is not an int or tuple of ints.
        """
        return self._float(self.generator.integers(0, 2, size=shape) * 2.0 - 1.0, like)


def rng(seed, dtype=None):
    """A :class:`Rng` seeded with ``seed``, making floats in ``dtype`` (default: REFNET_DTYPE).

    Parameters
    ----------
    seed : int
        Seed of NumPy's PCG64 generator, >= 0.
    dtype : {'float64', 'float32'}, numpy.dtype or None
        Dtype of float draws made without ``like=``; None for ``REFNET_DTYPE``.

    Returns
    -------
    Rng
        The seeded source.

    Raises
    ------
    TypeError
        ``seed`` not an int.
    ValueError
        ``seed`` < 0; ``dtype`` not 'float64', 'float32' or None.
    """
    return Rng(seed, dtype)
