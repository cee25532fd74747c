"""Freezing parameters: which of a cell's parameters are trained (``trainable=``).

Convention (one for every algorithm that takes ``trainable``): a gradient
algorithm returns ``dtheta`` with the trainable parameters only — a frozen
one is *absent*, not a zero, so it cannot be mistaken for a computed
gradient — and RTRL carries sensitivity columns for the trainable entries
only (M_t is (B, n, P_trainable): a frozen parameter costs no sensitivity
memory).  An online learner holds a frozen parameter fixed: its entries
of the flat gradient are zero and the optimiser never moves them.
"""
import numpy as np

__all__ = ["check_trainable", "trainable_columns", "restrict"]


def check_trainable(cell, trainable):
    """The trainable parameter names in ``cell.param_shapes()`` order; None means all.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell whose parameters are named.
    trainable : collection of str or None
        The names to train (a set, list or tuple; one name as a one-element collection); None
        for every parameter.  Order and repeats do not matter.

    Returns
    -------
    tuple of str
        The trainable names, in ``cell.param_shapes()`` order (possibly empty).

    Raises
    ------
    TypeError
        ``trainable`` is a str (one name must be given as a one-element collection) or not
        iterable.
    ValueError
        ``trainable`` names parameters the cell does not have (the message lists them and the
        cell's own).
    """
    names = list(cell.param_shapes())
    if trainable is None:
        return tuple(names)
    if isinstance(trainable, str) or not hasattr(trainable, "__iter__"):
        raise TypeError(f"trainable must be a collection of parameter names (e.g. {{'{names[0]}'}}) or None, "
                        f"got {type(trainable).__name__} {trainable!r}")
    given = list(trainable)
    unknown = sorted(str(k) for k in given if k not in names)
    if unknown:
        raise ValueError(f"trainable names parameters the {type(cell).__name__} does not have: {unknown}; "
                         f"its parameters are {names}")
    return tuple(k for k in names if k in set(given))


def trainable_columns(cell, names):
    """Indices of the trainable entries among J_θ's P columns (``refnet.params.flatten`` order).

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell; its ``param_shapes()`` fixes the column order.
    names : collection of str
        The trainable names (from :func:`check_trainable`).

    Returns
    -------
    (P_trainable,) int64 NumPy array
        The flat column indices of those parameters' entries, ascending.

    Raises
    ------
    TypeError
        ``names`` does not support ``in`` (it is not a collection).
    """
    columns, start = [], 0
    for k, shape in cell.param_shapes().items():
        size = int(np.prod(shape))
        if k in names:
            columns.extend(range(start, start + size))
        start += size
    return np.asarray(columns, dtype=np.int64)


def restrict(dtheta, names):
    """``dtheta`` with the trainable ``names`` only, in that order (a frozen parameter is absent, not zero).

    Parameters
    ----------
    dtheta : dict {name: array}
        Gradients of every parameter.
    names : iterable of str
        The trainable names (from :func:`check_trainable`).

    Returns
    -------
    dict {name: array}
        ``{k: dtheta[k] for k in names}``; the arrays are not copied.

    Raises
    ------
    KeyError
        A name that ``dtheta`` lacks.
    """
    return {k: dtheta[k] for k in names}
