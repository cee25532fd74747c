"""Argument checks shared by the public entry points.

Every message names the argument, what was expected and what came.  Cells'
``step`` functions do not validate (they sit on the per-step hot path); the
algorithms validate their whole input once, at entry.
"""
import math
import numbers

import numpy

from .backend import _is_device_array, xp_of

__all__ = ["as_array", "tensor_to_numpy", "check_dtype", "check_seed", "first_nonfinite", "check_array", "check_params", "check_int", "check_number",
           "check_same_dtype",
           "check_finite"]


def _is_native(a):
    """Whether ``a`` is an array refnet computes on as it is: a NumPy or CuPy array (or NumPy scalar), or
    the device double's (refnet._strict, which stands for CuPy)."""
    return isinstance(a, (numpy.ndarray, numpy.generic)) or _is_device_array(a)


def _type_name(a):
    t = type(a)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__name__}"


def tensor_to_numpy(name, a):
    """A torch tensor as a NumPy array: detached, moved to the CPU (the interop functions' form).

    Raises TypeError naming ``name`` for a dtype NumPy lacks (torch.bfloat16).
    """
    return _from_torch(name, a.detach().cpu())


def check_dtype(name, dtype):
    """``dtype`` as a floating NumPy dtype (float64 or float32), or None (the active ``REFNET_DTYPE``).

    Raises
    ------
    ValueError
        A dtype NumPy does not know (``'bogus'``) or one that is not float64/float32.
    """
    if dtype is None:
        return None
    try:
        resolved = numpy.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 'float64', 'float32' (or None for REFNET_DTYPE), got {dtype!r} "
                         f"({exc})") from None
    if resolved.name not in ("float64", "float32"):
        raise ValueError(f"{name} must be 'float64', 'float32' (or None for REFNET_DTYPE), got {resolved.name}")
    return resolved


def _from_torch(name, a):
    """A CPU torch tensor as a NumPy array (detached: refnet computes its own gradients)."""
    device = getattr(getattr(a, "device", None), "type", "cpu")
    if device != "cpu":
        raise TypeError(f"{name} must be a NumPy/CuPy array or a CPU tensor, got a torch.Tensor on {a.device}; "
                        "move it with tensor.cpu() (or to CuPy with cupy.from_dlpack(tensor))")
    try:
        return a.detach().numpy()
    except TypeError as exc:           # bfloat16 and other dtypes NumPy lacks
        raise TypeError(f"{name} must have a dtype NumPy has (float64, float32, int64, ...), got a torch.Tensor "
                        f"of dtype {a.dtype} ({exc}); convert it first, e.g. tensor.double()") from None


def as_array(name, a):
    """``a`` as an array refnet computes on, or a TypeError/ValueError naming ``name``.

    NumPy and CuPy arrays pass unchanged.  A CPU torch tensor becomes a NumPy
    array (detached, so one with ``requires_grad`` is accepted: refnet forms
    its own gradients); any other array-like (JAX arrays, objects with
    ``__array__`` or ``__dlpack__``, nested lists/tuples, Python numbers)
    becomes a NumPy array.  Dtypes are kept (no cast: the checks that follow
    name a wrong one).

    Raises
    ------
    TypeError
        None, a dict, a string or another object that is not an array; a tensor on a GPU; a dtype
        NumPy lacks (torch.bfloat16).
    ValueError
        A ragged nested list.
    """
    if _is_native(a):
        return a
    if isinstance(a, (str, bytes, dict, set)) or a is None or isinstance(a, bool):
        raise TypeError(f"{name} must be an array (or a nested list of numbers), got {_type_name(a)}")
    if type(a).__module__.split(".")[0] == "torch" and hasattr(a, "detach"):
        return _from_torch(name, a)
    if isinstance(a, (list, tuple, numbers.Number)) or hasattr(a, "__array__") or hasattr(a, "__dlpack__"):
        try:
            out = numpy.asarray(a) if not (hasattr(a, "__dlpack__") and not hasattr(a, "__array__")) \
                else numpy.from_dlpack(a)
        except ValueError as exc:      # ragged nesting
            raise ValueError(f"{name} must be a rectangular array, got a ragged {type(a).__name__} "
                             f"({exc})") from None
        except (TypeError, RuntimeError, BufferError) as exc:
            raise TypeError(f"{name} must be an array NumPy can read, got {_type_name(a)} ({exc})") from None
        if out.dtype.kind == "O":
            raise TypeError(f"{name} must be a numeric array, got {_type_name(a)} that makes an object array "
                            "(mixed or non-numeric entries)")
        return out
    raise TypeError(f"{name} must be an array (or a nested list of numbers), got {_type_name(a)}")


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
    """Check an array's type, rank, shape (None = any size) and finiteness; returns it.

    ``a`` must already be an array with a NumPy dtype (NumPy, CuPy; JAX arrays are read as they
    are): entry points convert array-likes with :func:`as_array` first.  Anything else (a torch
    tensor, a list) is a TypeError naming ``name`` and its type.
    """
    if not _is_native(a) and not (hasattr(a, "shape") and isinstance(getattr(a, "dtype", None), numpy.dtype)):
        if hasattr(a, "shape") and hasattr(a, "dtype") or hasattr(a, "__array__"):
            raise TypeError(f"{name} must be a NumPy or CuPy array, got {_type_name(a)}; convert it first, "
                            f"e.g. numpy.asarray({name}) (tensor.detach().numpy() for a torch tensor)")
        raise TypeError(f"{name} must be an array, got {_type_name(a)}")
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
        # an array-like here (a torch tensor, a list) is named, not converted: the caller goes on with
        # its own dict, so it must hold arrays refnet computes on; finiteness is read once below
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


def check_seed(name, seed):
    """Check a random seed: an int >= 0 (what numpy.random.default_rng takes); returns it as an int."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 0, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be an int >= 0 (numpy.random.default_rng takes no negative seed), "
                         f"got {seed}")
    return int(seed)


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

    Parameters
    ----------
    arrays : sequence of arrays (or None)
        The arrays to search, any shapes, on one backend.

    Returns
    -------
    tuple or None
        ``(position, index, value)``: the position in ``arrays`` of the first array with a
        non-finite entry, that entry's index tuple and its value; None if all are finite.

    Raises
    ------
    TypeError
        If the arrays mix backends (:func:`refnet.backend.xp_of`).
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
