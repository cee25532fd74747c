"""Parameters are plain dicts ``{name: array}``; these are the tree helpers.

Flattening order is the dict's insertion order, which for a cell's ``init`` is
PyTorch's order (weight_ih, weight_hh, bias_ih, bias_hh); each array is
flattened in C order.  That order fixes the columns of J_theta.
"""
from .backend import xp_of

__all__ = ["zeros_like", "axpy", "vdot", "flatten", "unflatten", "size", "copy"]


def zeros_like(params):
    """A dict of zero arrays with the shapes of ``params``."""
    return {k: xp_of(v).zeros_like(v) for k, v in params.items()}


def copy(params):
    """A deep copy of the arrays in ``params``."""
    return {k: v.copy() for k, v in params.items()}


def axpy(a, x, y):
    """``y += a * x`` for every key of ``x``, in place; returns ``y``."""
    for k, v in x.items():
        y[k] += a * v
    return y


def vdot(x, y):
    """Σ over keys of ⟨x[k], y[k]⟩, a Python float."""
    return float(sum(float((x[k] * y[k]).sum()) for k in x))


def size(params):
    """Total number of scalars P."""
    return sum(int(v.size) for v in params.values())


def flatten(params):
    """One vector (P,) holding every array in key order, C order within each."""
    xp = xp_of(*params.values())
    return xp.concatenate([v.reshape(-1) for v in params.values()])


def unflatten(vector, like):
    """The inverse of :func:`flatten`: split ``vector`` into arrays shaped as ``like``."""
    total = size(like)
    if vector.shape != (total,):
        raise ValueError(f"vector must have shape ({total},) to unflatten into "
                         f"{ {k: tuple(v.shape) for k, v in like.items()} }, got {tuple(vector.shape)}")
    out, start = {}, 0
    for k, v in like.items():
        out[k] = vector[start:start + v.size].reshape(v.shape)
        start += v.size
    return out
