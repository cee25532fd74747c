"""What the approximations of RTRL read off a cell's structure (KF-RTRL, SnAp, RFLO).

- :func:`state_jacobian`: J_s = ∂s_t/∂s_{t−1} alone, from the cell's
  ``state_jacobian`` where it has one (no J_θ built), else from ``jacobians``.
- :func:`kronecker_layout`: for a cell with ``kronecker_factors``, which
  parameters have the Kronecker-factored immediate Jacobian
  ∂s_t/∂θ_k = diag(D_t) ⊗ ĥ_kᵀ (Mujika, Meier & Steger 2018) and where each
  one's ĥ_k sits in ĥ = [ĥ_k side by side].  A cell names them in
  ``kronecker_params`` (FastRNN: its W, U and bias, not the scalars α̂, β̂);
  without that attribute every parameter is taken to be factored.
"""
from typing import NamedTuple

__all__ = ["KroneckerLayout", "state_jacobian", "kronecker_layout", "has_kronecker"]


class KroneckerLayout(NamedTuple):
    """Where each Kronecker-factored parameter's ĥ_k sits in ĥ (:func:`kronecker_layout`).

    Attributes
    ----------
    blocks : dict {name: (int, int)}
        For each factored parameter, in ``param_shapes`` order, its columns [first, last) in ĥ.
    rest : tuple of str
        The parameters that are not factored (FastRNN's α̂, β̂), in ``param_shapes`` order.
    width : int
        m, the width of ĥ (the sum of the blocks' widths).
    """
    blocks: dict   # {name: (first, last)}: columns of ĥ_k in ĥ, for the factored parameters in param_shapes order
    rest: tuple    # names of the parameters that are not factored, in param_shapes order
    width: int     # m, the width of ĥ


def state_jacobian(cell, theta, cache):
    """J_s = ∂s_t/∂s_{t−1} (B, n, n) of the transition that made ``cache``, without J_θ where the cell allows.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The cell; its ``state_jacobian`` is used where it has one, else ``jacobians``.
    theta : dict {name: array}
        The cell's parameters.
    cache : NamedTuple
        What ``cell.step`` returned for the step.

    Returns
    -------
    (B, n_state, n_state) array
        J_s, with J_s[b, i, j] = ∂s_t[b, i]/∂s_{t−1}[b, j].

    Raises
    ------
    AttributeError
        ``cell`` has neither ``state_jacobian`` nor ``jacobians`` (it is not a cell).
    KeyError
        ``theta`` lacks a parameter the cell's Jacobian reads (the arguments are not
        validated here: the algorithms validated them at entry).
    """
    if callable(getattr(cell, "state_jacobian", None)):
        return cell.state_jacobian(theta, cache)
    return cell.jacobians(theta, cache)[0]


def has_kronecker(cell):
    """Whether ``cell`` offers ``kronecker_factors`` (J_θ = diag(D) ⊗ ĥᵀ per parameter, Mujika et al. 2018).

    Parameters
    ----------
    cell : object
        Any object; only the attribute is looked up.

    Returns
    -------
    bool
        True when ``cell.kronecker_factors`` exists and is callable.

    Raises
    ------
    None
        Nothing of its own: only what a property named ``kronecker_factors`` on ``cell``
        raises when read (a ``getattr`` with a default swallows AttributeError alone).
    """
    return callable(getattr(cell, "kronecker_factors", None))


def kronecker_layout(cell, algorithm="KF-RTRL"):
    """The factored parameters of ``cell`` and their columns in ĥ (module docstring; Mujika, Meier & Steger 2018).

    A parameter θ_k is factored when ∂s_t/∂θ_k = diag(D_t) ⊗ ĥ_kᵀ; its block in ĥ
    is ĥ_k's width m_k (1 for a bias (n,), the column count for a matrix (n, m_k)).

    Parameters
    ----------
    cell : refnet.cells.Cell
        A cell with ``kronecker_factors``; its optional ``kronecker_params`` names the factored
        parameters (default: all of them).
    algorithm : str
        The algorithm named in the messages (default ``"KF-RTRL"``).

    Returns
    -------
    KroneckerLayout
        The factored parameters' blocks in ĥ, the names of the others, and the width m of ĥ.

    Raises
    ------
    TypeError
        The cell has no ``kronecker_factors`` (a gated cell, GRU or LSTM, whose J_θ is a sum of
        Kronecker products with a different diagonal per gate).
    ValueError
        A factored parameter without n_state rows or with more than 2 dimensions, or a
        ``kronecker_params`` name the cell does not have.
    """
    if not has_kronecker(cell):
        raise TypeError(f"{algorithm} needs a cell whose J_theta is Kronecker-factored, diag(D) ⊗ ĥᵀ per "
                        f"parameter, with a kronecker_factors(params, cache) method (ElmanRNN, IRNN, LeakyRNN, "
                        f"FastRNN); got {type(cell).__name__}, which has none (a gated cell's J_theta is a sum "
                        f"of Kronecker products with one diagonal per gate)")
    shapes = cell.param_shapes()
    names = tuple(getattr(cell, "kronecker_params", tuple(shapes)))
    unknown = [k for k in names if k not in shapes]
    if unknown:
        raise ValueError(f"{type(cell).__name__}.kronecker_params names {unknown}, which are not among its "
                         f"parameters {list(shapes)}")
    n = cell.n_state
    blocks, width = {}, 0
    for k, shape in shapes.items():
        if k not in names:
            continue
        if shape[0] != n or len(shape) > 2:
            raise ValueError(f"{algorithm} needs every factored parameter to have n_state = {n} rows and at "
                             f"most 2 dimensions; {type(cell).__name__}'s {k!r} has shape {shape}")
        m = 1 if len(shape) == 1 else int(shape[1])
        blocks[k] = (width, width + m)
        width += m
    return KroneckerLayout(blocks, tuple(k for k in shapes if k not in names), width)
