"""The device double: a strict array backend that behaves like a GPU array library where it matters.

``REFNET_BACKEND=strict`` makes new arrays :class:`StrictArray` objects: NumPy
arrays wrapped so that, like ``cupy.ndarray``,

- **implicit conversion to NumPy is refused**: ``numpy.asarray(a)``,
  ``numpy.array(a)`` and anything else that calls ``a.__array__()`` raise
  ``TypeError`` (CuPy raises the same), and the attempt is counted as
  ``implicit``;
- **NumPy array operands are refused**: ``a + numpy_array``, ``xp.stack([a,
  numpy_array])`` raise ``TypeError``, as CuPy's ufuncs and functions do
  (Python and NumPy scalars are accepted, as there);
- **host synchronisations are counted**: ``float(a)``, ``int(a)``,
  ``bool(a)``, ``a.item()``, ``a.tolist()`` and ``operator.index(a)`` work
  (on a GPU they work too, by waiting for the device and copying), and each
  is counted as a ``sync`` with the line of refnet (or other) code that made
  it;
- **the explicit door is** ``a.get()`` (CuPy's name), which
  :func:`refnet.backend.to_numpy` uses; it is counted as a ``transfer``;
- reductions return 0-d arrays, never Python or NumPy scalars (as CuPy's do),
  so a loss summed in a loop stays on the "device" until someone asks for it.

The namespace (:data:`xp`, what :func:`refnet.backend.xp_of` returns for these
arrays) exposes NumPy's functions, wrapped: arrays in, arrays out.
``xp.asarray``/``xp.array`` are the host-to-device doors and accept NumPy
input.  :func:`krylov` gives the solver layer a cupyx-like Krylov backend
(SciPy's solvers, with the operator applied to strict arrays).

Counting: :func:`counts` returns the totals since the last :func:`reset`;
:func:`counting` is a context manager yielding a :class:`Counts` for one
block; each sync and implicit conversion records its call site
(``file:line`` of the first frame outside this module), so a test can say
*where* a loop synchronised.

What the double cannot catch, compared with a real GPU: CuPy API gaps (a NumPy
function or keyword CuPy lacks), kernel compile errors, cupyx solver keyword
differences (the solver adapter's tests cover those), device memory limits,
asynchrony bugs (a read of a buffer still being written), float32 atomics'
non-determinism, and the speed of anything.  It runs on the CPU with NumPy's
numerics, so its results equal NumPy's bit for bit.
"""
import collections
import contextlib
import functools
import os
import sys
import threading
import types

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = ["StrictArray", "xp", "Counts", "counts", "reset", "counting", "krylov", "is_strict"]

_HERE = os.path.abspath(__file__)
_NUMPY_DIR = os.path.dirname(os.path.abspath(numpy.__file__))


class Counts:
    """Tallies of one counting block: ``syncs``, ``implicit`` and ``transfers``, with call sites."""

    def __init__(self):
        self.syncs = 0          # float/int/bool/item/tolist/index of a device array: the host waits
        self.transfers = 0      # explicit device-to-host copies (get, to_numpy): the host waits too
        self.implicit = 0       # refused implicit conversions to NumPy (each raised TypeError)
        self.sync_sites = collections.Counter()
        self.implicit_sites = collections.Counter()

    @property
    def reads(self):
        """Host read-backs of any kind: syncs + explicit transfers (each one waits for the device)."""
        return self.syncs + self.transfers

    def __repr__(self):
        return (f"Counts(syncs={self.syncs}, implicit={self.implicit}, transfers={self.transfers}, "
                f"sync_sites={dict(self.sync_sites.most_common(8))}, "
                f"implicit_sites={dict(self.implicit_sites.most_common(8))})")


_lock = threading.Lock()
_stack = [Counts()]          # the global tally at the bottom; counting() blocks pushed above it


def _site():
    """Where a sync was asked for: ``file:line`` of the first two caller frames outside this module
    and NumPy, innermost first (``_validate.py:152 < optim.py:40``), so a shared helper names its caller."""
    frame, found = sys._getframe(2), []
    while frame is not None and len(found) < 2:
        path = os.path.abspath(frame.f_code.co_filename)
        if path != _HERE and not path.startswith(_NUMPY_DIR):
            found.append(f"{os.sep.join(path.split(os.sep)[-2:])}:{frame.f_lineno}")
        frame = frame.f_back
    return " < ".join(found) or "?"


def _count(kind):
    site = _site()
    with _lock:
        for c in _stack:
            if kind == "sync":
                c.syncs += 1
                c.sync_sites[site] += 1
            elif kind == "implicit":
                c.implicit += 1
                c.implicit_sites[site] += 1
            else:
                c.transfers += 1
                c.sync_sites["transfer: " + site] += 1


def counts():
    """The global :class:`Counts` since the last :func:`reset`."""
    return _stack[0]


def reset():
    """Zero the global counts."""
    _stack[0] = Counts()


@contextlib.contextmanager
def counting():
    """Count the syncs, implicit conversions and transfers made inside the block; yields a :class:`Counts`."""
    c = Counts()
    with _lock:
        _stack.append(c)
    try:
        yield c
    finally:
        with _lock:
            _stack.remove(c)


def is_strict(a):
    """True for a :class:`StrictArray`."""
    return isinstance(a, StrictArray)


def _refuse_numpy(value, where):
    raise TypeError(f"{where}: a numpy.ndarray of shape {value.shape} was mixed with device arrays "
                    "(CuPy refuses NumPy array operands too; move it with xp.asarray first)")


def _unwrap(value, where, allow_numpy=False):
    """Strict arrays -> their NumPy data, recursively in lists/tuples; NumPy arrays refused unless allowed."""
    if isinstance(value, StrictArray):
        return value._a
    if isinstance(value, numpy.ndarray) and not allow_numpy:
        _refuse_numpy(value, where)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, where, allow_numpy) for v in value)
    return value


def _wrap(value):
    """NumPy arrays and NumPy scalars -> StrictArray (0-d for scalars), recursively in tuples/lists."""
    if isinstance(value, numpy.ndarray):
        return StrictArray(value)
    if isinstance(value, numpy.generic):
        return StrictArray(numpy.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class StrictArray(NDArrayOperatorsMixin):
    """A NumPy array behind a device-like wall (module docstring)."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, data):
        if isinstance(data, StrictArray):
            data = data._a
        if not isinstance(data, numpy.ndarray):
            raise TypeError(f"StrictArray wraps a numpy.ndarray, got {type(data).__name__}")
        self._a = data

    # --- the wall -------------------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        _count("implicit")
        raise TypeError("implicit conversion of a device array to a NumPy array is refused (as CuPy "
                        "refuses it); use refnet.backend.to_numpy(a) (a.get()) to copy it to the host")

    def get(self):
        """The explicit device-to-host copy (CuPy's ``ndarray.get``)."""
        _count("transfer")
        return self._a.copy()

    def __float__(self):
        _count("sync")
        return float(self._a)

    def __int__(self):
        _count("sync")
        return int(self._a)

    def __index__(self):
        _count("sync")
        return self._a.__index__()

    def __bool__(self):
        _count("sync")
        return bool(self._a)

    def __complex__(self):
        _count("sync")
        return complex(self._a)

    def item(self, *args):
        _count("sync")
        return self._a.item(*args)

    def tolist(self):
        _count("sync")
        return self._a.tolist()

    def __repr__(self):
        return f"StrictArray({self._a!r})"

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        _count("sync")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    # --- NEP 13 / NEP 18 ------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"numpy.{ufunc.__name__}"
        args = [_unwrap(v, where) for v in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(v, where) for v in out)
        if "where" in kwargs:
            kwargs["where"] = _unwrap(kwargs["where"], where)
        result = getattr(ufunc, method)(*args, **kwargs)
        if method == "at":
            return None
        if out is not None and len(out) == 1 and isinstance(out[0], StrictArray):
            return out[0]
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        where = f"numpy.{func.__name__}"
        result = func(*_unwrap(args, where), **{k: _unwrap(v, where) for k, v in kwargs.items()})
        return _wrap(result)

    # --- attributes and methods -----------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StrictArray(self._a.T))

    @property
    def real(self):
        return StrictArray(self._a.real)

    @property
    def imag(self):
        return StrictArray(self._a.imag)

    @property
    def base(self):
        return None if self._a.base is None else StrictArray(self._a.base)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (StrictArray(numpy.asarray(v)) if not isinstance(v, numpy.ndarray) else StrictArray(v)
                for v in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "indexing", allow_numpy=True)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "indexing", allow_numpy=True)] = _unwrap(value, "assignment", allow_numpy=True)

    def __copy__(self):
        return StrictArray(self._a.copy())

    def __deepcopy__(self, memo):
        return StrictArray(self._a.copy())

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            where = f"ndarray.{name}"

            @functools.wraps(attr)
            def method(*args, **kwargs):
                out = kwargs.get("out")
                result = attr(*_unwrap(args, where), **{k: _unwrap(v, where) for k, v in kwargs.items()})
                if out is not None and isinstance(out, StrictArray):
                    return out
                return _wrap(result)
            return method
        return _wrap(attr)

    def __reduce__(self):
        _count("transfer")
        return (StrictArray, (self._a,))


# In-place operators must keep the same StrictArray object (views share it through ``_a``).
def _inplace(ufunc):
    def op(self, other):
        ufunc(self._a, _unwrap(other, f"numpy.{ufunc.__name__}"), out=self._a)
        return self
    return op


for _name, _ufunc in (("__iadd__", numpy.add), ("__isub__", numpy.subtract), ("__imul__", numpy.multiply),
                      ("__itruediv__", numpy.true_divide), ("__ifloordiv__", numpy.floor_divide),
                      ("__ipow__", numpy.power), ("__imod__", numpy.remainder), ("__iand__", numpy.bitwise_and),
                      ("__ior__", numpy.bitwise_or), ("__ixor__", numpy.bitwise_xor)):
    setattr(StrictArray, _name, _inplace(_ufunc))


def _imatmul(self, other):
    self._a[...] = self._a @ _unwrap(other, "numpy.matmul")
    return self


StrictArray.__imatmul__ = _imatmul

# ------------------------------------------------------------------------------------------------
# The namespace: NumPy's functions, wrapped.
_DOORS = {"asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray", "array_equal"}


def _wrap_function(function, name):
    allow_numpy = name in _DOORS

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        if name in ("asarray", "array", "asanyarray", "ascontiguousarray") and args and \
                isinstance(args[0], StrictArray):
            data = args[0]._a
            result = function(data, *_unwrap(args[1:], name), **kwargs)
            if name == "array" and kwargs.get("copy", True) is not False and result is data:
                result = result.copy()
            return _wrap(result)
        out = kwargs.get("out")
        result = function(*_unwrap(args, f"xp.{name}", allow_numpy),
                          **{k: _unwrap(v, f"xp.{name}", allow_numpy) for k, v in kwargs.items()})
        if isinstance(out, StrictArray):
            return out
        return _wrap(result)
    return wrapped


class _Namespace(types.ModuleType):
    """A module-like object forwarding to a NumPy module, wrapping its functions."""

    def __init__(self, name, target):
        super().__init__(name)
        self._target = target
        self._cache = {}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cache = self.__dict__.setdefault("_cache", {})
        if name in cache:
            return cache[name]
        attr = getattr(self._target, name)
        if isinstance(attr, types.ModuleType) and attr.__name__.startswith("numpy"):
            value = _Namespace(f"{self.__name__}.{name}", attr)
        elif isinstance(attr, type) or not callable(attr):
            value = attr                    # dtypes, classes, constants
        else:
            value = _wrap_function(attr, name)
        cache[name] = value
        return value


xp = _Namespace("refnet.strict", numpy)
xp.ndarray = StrictArray


def krylov():
    """A cupyx-like Krylov backend: SciPy's CG/GMRES on operators that act on strict arrays.

    The solvers run on the host (as NumPy arrays); every product with the
    operator is made on strict arrays, and the result and every callback's
    iterate come back as strict arrays, so the caller sees a device solver.
    """
    import scipy.sparse.linalg as linalg

    class LinearOperator(linalg.LinearOperator):
        def __init__(self, shape, matvec, dtype):
            super().__init__(dtype=dtype, shape=shape)
            self._device_matvec = matvec

        def _matvec(self, v):
            out = self._device_matvec(StrictArray(numpy.ascontiguousarray(v).reshape(-1)))
            return out.get() if isinstance(out, StrictArray) else out

    def host(solver):
        def run(A, b, x0=None, *, callback=None, **options):
            if callback is not None:
                options["callback"] = lambda xk: callback(StrictArray(numpy.array(xk)))
            x, info = solver(A, _unwrap(b, "krylov"), None if x0 is None else _unwrap(x0, "krylov"), **options)
            return StrictArray(numpy.asarray(x)), info
        run.__signature__ = __import__("inspect").signature(solver)
        run.__name__ = solver.__name__
        return run

    return host(linalg.cg), host(linalg.gmres), LinearOperator
