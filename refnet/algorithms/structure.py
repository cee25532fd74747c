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
    blocks: dict   # {name: (first, last)}: columns of ĥ_k in ĥ, for the factored parameters in param_shapes order
    rest: tuple    # names of the parameters that are not factored, in param_shapes order
    width: int     # m, the width of ĥ


def state_jacobian(cell, theta, cache):
    """J_s (B, n, n) of the transition that made ``cache``, without J_θ where the cell allows."""
    if callable(getattr(cell, "state_jacobian", None)):
        return cell.state_jacobian(theta, cache)
    return cell.jacobians(theta, cache)[0]


def has_kronecker(cell):
    """Whether ``cell`` offers ``kronecker_factors``."""
    return callable(getattr(cell, "kronecker_factors", None))


def kronecker_layout(cell, algorithm="KF-RTRL"):
    """The factored parameters of ``cell`` and their columns in ĥ (module docstring).

    Parameters
    ----------
    cell : a refnet cell with ``kronecker_factors``
    algorithm : str, named in the messages

    Returns
    -------
    KroneckerLayout

    Raises
    ------
    TypeError
        The cell has no ``kronecker_factors`` (a gated cell, GRU or LSTM, whose J_θ
        is a sum of Kronecker products with a different diagonal per gate).
    ValueError
        A factored parameter without n_state rows or with more than 2 dimensions,
        or a ``kronecker_params`` name the cell does not have.
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
