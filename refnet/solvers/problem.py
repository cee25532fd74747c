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
contract (``refnet/cells/base.py``; the README's "Conventions worth knowing"), never by
importing :mod:`refnet.cells`.
"""
from dataclasses import dataclass
from typing import Any

from .._validate import as_array, check_array, check_same_dtype
from ..backend import xp_of

__all__ = ["check_cell", "check_problem", "check_tolerance", "CellMap"]


def check_cell(cell, needs=("step",), name="cell"):
    """TypeError unless ``cell`` has every method named in ``needs`` and the attributes the solvers read.

    Duck typing, not ``isinstance``: the solver layer sits below the cells and
    never imports them.

    Parameters
    ----------
    cell : object
        The candidate cell.
    needs : tuple of str
        Contract methods the caller will call (``param_shapes`` and
        ``check_params`` are always required).
    name : str
        How the error message calls ``cell``.

    Returns
    -------
    object
        ``cell`` itself.

    Raises
    ------
    TypeError
        If a required method is missing or not callable, or ``input_size`` or
        ``n_state`` is not an int (the message lists everything missing).
    """
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

    Parameters
    ----------
    cell : refnet cell
        Checked by :func:`check_cell` with ``needs``.
    theta : dict {name: array}
        The cell's params, checked by ``cell.check_params``.
    x : (B, I) array
        Static input, floating, finite, B >= 1.
    h : (B, n_state) array-like or None
        A state (start or equilibrium); None for zeros in the dtype of ``x``.
    h_name : str
        How the error messages call ``h``.
    needs : tuple of str
        Contract methods the caller will call.

    Returns
    -------
    (B, n_state) array
        ``h`` as an array (array-likes such as torch tensors and lists are
        converted), or zeros.

    Raises
    ------
    TypeError
        ``cell`` lacks a method of ``needs``; an argument is not an array;
        mixed dtypes or backends.
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
    """A finite float >= 0, or ``default`` when ``value`` is None.

    Parameters
    ----------
    name : str
        How the error messages call the tolerance (``"tol"``, ``"rtol"``, ...).
    value : float, int or None
        The tolerance asked for (units of the quantity it bounds).
    default : float
        Returned when ``value`` is None.

    Returns
    -------
    float
        ``value`` as a float, or ``default``.

    Raises
    ------
    TypeError
        If ``value`` is not an int, a float or None (a bool is refused).
    ValueError
        If ``value`` is negative, NaN or infinite.
    """
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float >= 0, got {type(value).__name__} {value!r}")
    if not (value >= 0 and value < float("inf")):
        raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CellMap:
    """F(h) = cell.step(θ, h, x, t)[0] as a map for :mod:`refnet.solvers.nonlinear` (module docstring).

    Calling it, ``F(h)`` with h (B, n_state), returns the new state (B, n_state).

    Attributes
    ----------
    cell : refnet cell
        The cell (duck-typed: ``step``, and ``state_jacobian`` or
        ``jacobians`` for :meth:`jacobian`).
    theta : dict {name: array}
        The cell's params.
    x : (B, I) array
        The static input.
    t : int or None
        The step index passed to ``cell.step``.
    """

    cell: Any
    theta: dict
    x: Any
    t: Any = None

    def __call__(self, h):
        """F(h) = the cell's step from state h with the map's θ, x and t (its new state).

        Parameters
        ----------
        h : (B, n_state) array
            The state the step starts from.

        Returns
        -------
        (B, n_state) array

        Raises
        ------
        ValueError
            If ``h``'s shape does not fit the cell (the array module's error).
        """
        return self.cell.step(self.theta, h, self.x, self.t)[0]

    def rows(self, index):
        """The map of the examples ``index`` (an index array or slice into the batch).

        Parameters
        ----------
        index : slice, int array or bool (B,) array
            Which rows of ``x`` the new map keeps.

        Returns
        -------
        CellMap
            The same cell, θ and t on ``x[index]``.

        Raises
        ------
        IndexError
            If ``index`` is out of range for the batch (from the array module).
        """
        return CellMap(self.cell, self.theta, self.x[index], self.t)

    def jacobian(self, h):
        """∂F/∂h at h per example, (B, n, n): the cell's ``state_jacobian`` if it has one, else ``jacobians``.

        Parameters
        ----------
        h : (B, n_state) array
            The state at which to linearise.

        Returns
        -------
        (B, n_state, n_state) array
            J_b = ∂F(h)_b/∂h_b for every example b.

        Raises
        ------
        AttributeError
            If the cell has neither ``state_jacobian`` nor ``jacobians``.
        ValueError
            If ``h``'s shape disagrees with the cell (from the array module).
        """
        _, cache = self.cell.step(self.theta, h, self.x, self.t)
        if callable(getattr(self.cell, "state_jacobian", None)):
            return self.cell.state_jacobian(self.theta, cache)
        return self.cell.jacobians(self.theta, cache)[0]
