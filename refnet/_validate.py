"""Argument checks shared by the public entry points.

Every message names the argument, what was expected and what came.  Cells'
``step`` functions do not validate (they sit on the per-step hot path); the
algorithms validate their whole input once, at entry.
"""
import math
import numbers

import numpy

from .backend import xp_of

__all__ = ["as_array", "first_nonfinite", "check_array", "check_params", "check_int", "check_number",
           "check_same_dtype",
           "check_finite"]


def as_array(name, a):
    """``a`` as an array: arrays pass unchanged, lists/tuples/Python numbers become NumPy arrays.

    Anything else (None, a dict, a string, an object) is a TypeError naming ``name``.
    """
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return a
    if isinstance(a, (list, tuple, numbers.Number)) and not isinstance(a, bool):
        try:
            return numpy.asarray(a)
        except ValueError as exc:      # ragged nesting
            raise ValueError(f"{name} must be a rectangular array, got a ragged {type(a).__name__} "
                             f"({exc})") from None
    raise TypeError(f"{name} must be an array (or a nested list of numbers), got {type(a).__name__}")


def check_number(name, value, *, low=-math.inf, high=math.inf, low_open=False):
    """Check a finite real number in [low, high] ((low, high] if ``low_open``); returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bracket = "(" if low_open else "["
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        raise ValueError(f"{name} must be a finite number in {bracket}{low}, {high}], got {value!r}")
    return value


def _shape_str(shape):
    parts = ["*" if d is None else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_array(name, a, *, shape=None, ndim=None, finite=True, floating=True):
    """Check an array's type, rank, shape (None = any size) and finiteness."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if a.dtype.kind == "O":
        raise TypeError(f"{name} must be a numeric array, got an object array")
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and a.ndim != ndim:
        want = _shape_str(shape) if shape is not None else f"{ndim} dimensions"
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(a.shape)} "
                         f"({a.ndim} dimensions)")
    if shape is not None:
        for want, got in zip(shape, a.shape):
            if want is not None and want != got:
                raise ValueError(f"{name} must have shape {_shape_str(shape)}, "
                                 f"got {tuple(a.shape)}")
    if floating and a.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating array, got dtype {a.dtype}")
    if finite:
        check_finite(name, a)
    return a


def check_finite(name, a):
    """Raise ValueError if ``a`` holds NaN or Inf, naming the first bad index."""
    found = first_nonfinite([a])
    if found is not None:
        _, index, value = found
        raise ValueError(f"{name} must be finite, got {value} at index {index}")


def check_params(name, params, shapes):
    """Check a params dict against ``shapes`` {name: shape}: names, shapes, finiteness."""
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict of arrays {{name: array}} with keys {sorted(shapes)}, "
                        f"got {type(params).__name__}")
    missing = [k for k in shapes if k not in params]
    extra = [k for k in params if k not in shapes]
    if missing or extra:
        raise ValueError(
            f"{name} must have exactly the keys {sorted(shapes)}; "
            f"missing {missing}, unexpected {extra}")
    for key, shape in shapes.items():
        check_array(f"{name}[{key!r}]", params[key], shape=shape, finite=False)
    check_same_dtype({f"{name}[{k!r}]": params[k] for k in shapes})
    keys = list(shapes)          # one finiteness read-back for the whole dict, not one per array
    found = first_nonfinite([params[k] for k in keys])
    if found is not None:
        k, index, value = found
        raise ValueError(f"{name}[{keys[k]!r}] must be finite, got {value} at index {index}")
    return params


def check_int(name, value, minimum):
    """Check that ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_same_dtype(arrays):
    """Check that all named arrays share one dtype; TypeError naming two that differ."""
    items = [(k, a) for k, a in arrays.items() if a is not None]
    if not items:
        return
    xp_of(*(a for _, a in items))
    first_name, first = items[0]
    for k, a in items[1:]:
        if a.dtype != first.dtype:
            raise TypeError(f"mixed dtypes: {first_name} is {first.dtype} but {k} is {a.dtype}; "
                            "cast them to one dtype")


def _finite_sum(a):
    """Cheap host test: the dot product of ``a`` with itself is finite iff every entry is (NaN and Inf
    propagate; finite entries above ~1e154 overflow it, and then the entries themselves decide)."""
    v = a.ravel()
    if v.dtype.kind not in "fc":
        return True
    with numpy.errstate(over="ignore", invalid="ignore"):     # an overflow here is a question, not news
        return math.isfinite(abs(v.dot(v)))


def first_nonfinite(arrays):
    """Where the first NaN/Inf of a sequence of arrays is: ``(position, index, value)``, or None.

    One ``isfinite(...).all()`` per array, stacked on the arrays' device and read
    back once; the failing array alone is then searched for its first bad entry
    (C order).  None entries are skipped.
    """
    items = [(k, a) for k, a in enumerate(arrays) if a is not None]
    if not items:
        return None
    if all(isinstance(a, (numpy.ndarray, numpy.generic)) for _, a in items):
        # On the host a plain loop is the cheap form (no read-back to save): one BLAS dot per array.
        bad = next(((k, a) for k, a in items if not _finite_sum(a) and not numpy.isfinite(a).all()), None)
        if bad is None:
            return None
        k, a = bad
        xp = numpy
    else:
        xp = xp_of(*(a for _, a in items))
        flags = xp.stack([xp.isfinite(a).all() for _, a in items])
        if bool(flags.all()):
            return None
        k, a = items[int(xp.argmin(flags))]          # the first False
    a = xp.asarray(a)
    if a.ndim == 0:
        return k, (), float(a)
    index = tuple(int(i) for i in xp.argwhere(~xp.isfinite(a))[0])
    return k, index, float(a[index])
