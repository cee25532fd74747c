"""Parameters are plain dicts ``{name: array}``; these are the tree helpers.

Flattening order is the dict's insertion order, which for a cell's ``init`` is
PyTorch's order (weight_ih, weight_hh, bias_ih, bias_hh); each array is
flattened in C order.  That order fixes the columns of J_theta.
"""
from .backend import xp_of

__all__ = ["zeros_like", "axpy", "vdot", "flatten", "unflatten", "size", "copy"]


def zeros_like(params):
    """A dict of zero arrays with the shapes of ``params``.

    Parameters
    ----------
    params : dict {name: array}
        A parameter tree (θ of a cell, β of a head); any shapes.

    Returns
    -------
    dict {name: array}
        Same keys, order, shapes, dtypes and backend, all zeros.

    Raises
    ------
    AttributeError
        If ``params`` is not a dict (has no ``items``).
    TypeError
        If arrays of two backends are mixed within one value (from :func:`~refnet.backend.xp_of`).
    """
    return {k: xp_of(v).zeros_like(v) for k, v in params.items()}


def copy(params):
    """A deep copy of the arrays in ``params``.

    Parameters
    ----------
    params : dict {name: array}
        A parameter tree; any shapes.

    Returns
    -------
    dict {name: array}
        New dict, same keys and order, each array copied.

    Raises
    ------
    AttributeError
        If ``params`` is not a dict, or a value has no ``copy`` method.
    """
    return {k: v.copy() for k, v in params.items()}


def axpy(a, x, y):
    """``y += a * x`` for every key of ``x``, in place; returns ``y``.

    Parameters
    ----------
    a : float or array
        Scale (e.g. a learning rate times -1); broadcast against each ``x[k]``.
    x : dict {name: array}
        The tree added.
    y : dict {name: array}
        The tree updated in place; must hold every key of ``x`` with a
        broadcast-compatible shape.

    Returns
    -------
    dict {name: array}
        ``y`` itself.

    Raises
    ------
    KeyError
        If ``y`` lacks a key of ``x``.
    ValueError
        If ``a * x[k]`` cannot be broadcast into ``y[k]``.
    TypeError
        If NumPy refuses the in-place cast (e.g. a complex ``x[k]`` into a
        float ``y[k]``), or ``x[k]`` and ``y[k]`` live on different backends.
    """
    for k, v in x.items():
        y[k] += a * v
    return y


def vdot(x, y):
    """Σ over keys of ⟨x[k], y[k]⟩, a Python float.

    Parameters
    ----------
    x : dict {name: array}
        A tree; its keys decide the sum.
    y : dict {name: array}
        A tree holding every key of ``x``, same shapes (or broadcastable).

    Returns
    -------
    float
        The Euclidean inner product of the two trees, on the host.

    Raises
    ------
    KeyError
        If ``y`` lacks a key of ``x``.
    ValueError
        If ``x[k]`` and ``y[k]`` do not broadcast.
    """
    return float(sum(float((x[k] * y[k]).sum()) for k in x))


def size(params):
    """Total number of scalars P.

    Parameters
    ----------
    params : dict {name: array}
        A parameter tree.

    Returns
    -------
    int
        P = Σ_k ``params[k].size``: the columns of J_θ.

    Raises
    ------
    AttributeError
        If ``params`` is not a dict, or a value has no ``size``.
    """
    return sum(int(v.size) for v in params.values())


def flatten(params):
    """One vector (P,) holding every array in key order, C order within each.

    Parameters
    ----------
    params : dict {name: array}
        A non-empty parameter tree, all arrays on one backend.

    Returns
    -------
    (P,) array
        The concatenation; P = :func:`size` of ``params``.

    Raises
    ------
    ValueError
        If ``params`` is empty (nothing to concatenate).
    TypeError
        If arrays of two backends are mixed (from :func:`~refnet.backend.xp_of`).
    """
    xp = xp_of(*params.values())
    return xp.concatenate([v.reshape(-1) for v in params.values()])


def unflatten(vector, like):
    """The inverse of :func:`flatten`: split ``vector`` into arrays shaped as ``like``.

    Parameters
    ----------
    vector : (P,) array
        Flat values in :func:`flatten`'s order.
    like : dict {name: array}
        Tree whose keys, order and shapes the result takes; P = :func:`size`
        of ``like``.

    Returns
    -------
    dict {name: array}
        Views into ``vector``, reshaped as the arrays of ``like``.

    Raises
    ------
    ValueError
        If ``vector`` does not have shape (P,) (the message names P, the
        shapes of ``like`` and the shape received).
    """
    total = size(like)
    if vector.shape != (total,):
        raise ValueError(f"vector must have shape ({total},) to unflatten into "
                         f"{ {k: tuple(v.shape) for k, v in like.items()} }, got {tuple(vector.shape)}")
    out, start = {}, 0
    for k, v in like.items():
        out[k] = vector[start:start + v.size].reshape(v.shape)
        start += v.size
    return out
