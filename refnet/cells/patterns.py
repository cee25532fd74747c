"""Structural nonzero patterns of a cell's Jacobians, for sparse approximations of RTRL (SnAp).

A pattern is what a cell's ``jacobian_pattern(params)`` returns: NumPy bool
arrays ``(S (n, n), Theta (n, P))`` that are False wherever J_s = ∂s_t/∂s_{t−1}
and J_θ = ∂s_t/∂θ are zero for every state and input (a superset of any one
step's nonzeros; columns of Theta in ``refnet.params.flatten`` order).
"""
import numpy

__all__ = ["row_pattern"]


def row_pattern(shapes, owner):
    """J_θ's pattern (n, P) when row r of every parameter acts directly on the state entries ``owner[r]``.

    The structural nonzeros SnAp (sparse n-step approximation of RTRL) keeps:
    entry (i, p) is True when parameter entry p, which sits in row r of its
    parameter, can move state entry i within one step, i.e. ``owner[r, i]``.

    Parameters
    ----------
    shapes : dict {name: tuple of int}
        The cell's ``param_shapes()``; every shape has the same number of rows R
        (a vector's entry r counts as row r).
    owner : (R, n) bool array-like
        owner[r, i]: row r of each parameter enters state entry i within one step.

    Returns
    -------
    (n, P) numpy bool array
        Columns in ``refnet.params.flatten`` order (parameters in ``shapes``
        order, each flattened in C order), P = Σ sizes of ``shapes``.

    Raises
    ------
    ValueError
        If a parameter's row count is not R (the message names the parameter),
        or ``shapes`` is empty (nothing to concatenate).
    IndexError
        If a shape is ``()`` (a scalar parameter has no rows), or ``owner`` is
        not 2-D.
    """
    owner = numpy.asarray(owner, dtype=bool)
    blocks = []
    for name, shape in shapes.items():
        if shape[0] != owner.shape[0]:
            raise ValueError(f"row_pattern: parameter {name!r} has {shape[0]} rows, the owner table "
                             f"{owner.shape[0]}")
        width = int(numpy.prod(shape[1:], dtype=int))
        blocks.append(numpy.repeat(owner.T, width, axis=1))
    return numpy.concatenate(blocks, axis=1)

