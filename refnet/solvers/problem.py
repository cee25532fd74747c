"""A cell on a static input as a problem for the solvers: validation once at entry, and its map F.

A convergent model is any cell iterated on a static input x (B, I) (Liao et
al. 2018, "Reviving and Improving Recurrent Back-Propagation", §2):

    F(h) = cell.step(θ, h, x, t)[0],      h* = F(h*).

The solvers of :mod:`refnet.solvers.nonlinear` take a *map*: a callable
``F(h) -> (B, n)`` on states h (B, n) that is block-separable over the batch
(row b of F(h) depends on row b of h only), optionally with
``F.rows(index)`` (the same map on a subset of the examples) and
``F.jacobian(h)`` (B, n, n) (∂F/∂h per example).  :class:`CellMap` is that
map for a cell; the solver layer knows cells only through this duck-typed
contract (DESIGN.md §3), never by importing :mod:`refnet.cells`.
"""
from dataclasses import dataclass
from typing import Any

from .._validate import as_array, check_array, check_same_dtype
from ..backend import xp_of

__all__ = ["check_cell", "check_problem", "check_tolerance", "CellMap"]


def check_cell(cell, needs=("step",), name="cell"):
    """TypeError unless ``cell`` has every method named in ``needs`` and the attributes the solvers read."""
    missing = [m for m in ("param_shapes", "check_params") + tuple(needs) if not callable(getattr(cell, m, None))]
    for attribute in ("input_size", "n_state"):
        if not isinstance(getattr(cell, attribute, None), int):
            missing.append(attribute)
    if missing:
        raise TypeError(f"{name} must be a refnet cell with {', '.join(needs)} (the contract of "
                        f"refnet.cells.base.Cell); {type(cell).__name__} lacks {', '.join(missing)}")
    return cell


def check_problem(cell, theta, x, h, h_name="h0", needs=("step",)):
    """Validate (cell, θ, x, h) once at entry; returns h (zeros if None).

    Raises
    ------
    TypeError
        ``cell`` lacks a method of ``needs``; an argument is not an array; mixed dtypes.
    ValueError
        Shapes disagree, a batch of size 0, or an input is not finite.
    """
    check_cell(cell, needs)
    cell.check_params(theta, "theta")
    x = as_array("x", x)       # the callers convert x themselves (as_array); here for the message's sake
    check_array("x", x, shape=(None, cell.input_size))
    B = x.shape[0]
    if B == 0:
        raise ValueError("x must hold at least one example, got a batch of size 0 (shape "
                         f"{tuple(x.shape)})")
    if h is None:
        h = xp_of(x).zeros((B, cell.n_state), dtype=x.dtype)
    h = as_array(h_name, h)          # array-likes as the sequence algorithms take them (torch tensors, lists)
    check_array(h_name, h, shape=(B, cell.n_state))
    first = next(iter(cell.param_shapes()))
    check_same_dtype({"x": x, h_name: h, f"theta[{first!r}]": theta[first]})
    return h


def check_tolerance(name, value, default):
    """A finite float >= 0, or ``default`` when ``value`` is None."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float >= 0, got {type(value).__name__} {value!r}")
    if not (value >= 0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CellMap:
    """F(h) = cell.step(θ, h, x, t)[0] as a map for :mod:`refnet.solvers.nonlinear` (module docstring)."""

    cell: Any
    theta: dict
    x: Any
    t: Any = None

    def __call__(self, h):
        return self.cell.step(self.theta, h, self.x, self.t)[0]

    def rows(self, index):
        """The map of the examples ``index`` (an index array or slice into the batch)."""
        return CellMap(self.cell, self.theta, self.x[index], self.t)

    def jacobian(self, h):
        """∂F/∂h at h per example, (B, n, n): the cell's ``state_jacobian`` if it has one, else ``jacobians``."""
        _, cache = self.cell.step(self.theta, h, self.x, self.t)
        if callable(getattr(self.cell, "state_jacobian", None)):
            return self.cell.state_jacobian(self.theta, cache)
        return self.cell.jacobians(self.theta, cache)[0]
