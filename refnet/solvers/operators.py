"""Linear operators from a cell's hand-written VJP and JVP at a point (scipy.sparse.linalg's LinearOperator idea).

At a state h (B, n) on a static input x, a cell's one-step map F is
linearised from one ``step``'s cache:

    Jᵀ v = cell.step_vjp(θ, cache, v)[0],        J v = cell.step_jvp(θ, cache, v, None, None),

J = ∂F/∂h at h, per example.  The implicit-gradient (adjoint) system of
recurrent back-propagation (Liao et al. 2018, Eq. 2) is

    A z = b,     A = I − Jᵀ,   b = ∂L/∂h*,

and ``A.rmatvec(v) = v − J v`` is Aᵀ, which CG on the normal equations and
the singularity diagnosis need.

**Batches.**  A is block-diagonal over the batch: example b's block is
I − J_bᵀ.  It is one operator on arrays of shape ``vshape`` = (B, n) (flat
length B·n, as scipy sees it) rather than B separate operators: each product
is one batched VJP (a GEMM over all B rows instead of B matrix-vector
products and B times the Python overhead).  ``block_diagonal`` tells the
solvers they may report per-example results (rows of (B, n)).
"""
import math
from dataclasses import dataclass
from typing import Any

import numpy

from ..backend import xp_of
from .problem import check_cell

__all__ = ["LinearOperator", "IdentityMinus", "Linearisation", "linearise", "as_operator"]


class LinearOperator:
    """A linear map on arrays of shape ``vshape``, given by ``matvec`` and, optionally, ``rmatvec``.

    After ``scipy.sparse.linalg.LinearOperator``; :meth:`matvec` and
    :meth:`rmatvec` also accept flat vectors (N,) and return flat ones.

    Parameters
    ----------
    vshape : tuple of int
        Shape of the arrays it acts on, e.g. (B, n); ``shape`` is (N, N), N = prod(vshape).
    dtype : numpy dtype
        Floating dtype of the vectors it maps.
    matvec : callable
        v -> A v, from an array of ``vshape`` to an array of ``vshape``.
    rmatvec : callable or None
        v -> Aᵀ v, same shapes; None where it is not available.
    block_diagonal : bool
        True when, for vshape (B, n), row b of A v depends on row b of v only
        (ignored unless ``vshape`` is 2-D).

    Raises
    ------
    TypeError
        If ``vshape`` is not an iterable of ints or ``dtype`` is not a dtype.
    ValueError
        If an entry of ``vshape`` cannot be read as an int (e.g. a string).
    """

    def __init__(self, vshape, dtype, matvec, rmatvec=None, *, block_diagonal=False):
        self.vshape = tuple(int(d) for d in vshape)
        self.dtype = numpy.dtype(dtype)
        self.size = math.prod(self.vshape)
        self._matvec, self._rmatvec = matvec, rmatvec
        self.block_diagonal = bool(block_diagonal) and len(self.vshape) == 2

    @property
    def shape(self):
        """(N, N), N = prod(vshape): the matrix as scipy sees it."""
        return (self.size, self.size)

    @property
    def has_rmatvec(self):
        """Whether :meth:`rmatvec` (Aᵀ v) is available."""
        return self._rmatvec is not None

    def _apply(self, fn, v):
        if tuple(v.shape) == self.vshape:
            return fn(v)
        return fn(v.reshape(self.vshape)).reshape(v.shape)

    def matvec(self, v):
        """A v.

        Parameters
        ----------
        v : array of shape ``vshape``, or (N,)
            The vector, structured or flat.

        Returns
        -------
        array
            A v, in the shape of ``v``.

        Raises
        ------
        ValueError
            If ``v`` has neither shape ``vshape`` nor N entries (the reshape fails).
        """
        return self._apply(self._matvec, v)

    def rmatvec(self, v):
        """Aᵀ v.

        Parameters
        ----------
        v : array of shape ``vshape``, or (N,)
            The vector, structured or flat.

        Returns
        -------
        array
            Aᵀ v, in the shape of ``v``.

        Raises
        ------
        TypeError
            If the operator has no transpose product (built without ``rmatvec``).
        ValueError
            If ``v`` has neither shape ``vshape`` nor N entries.
        """
        if self._rmatvec is None:
            raise TypeError("this LinearOperator has no rmatvec (Aᵀ v): build it with rmatvec=")
        return self._apply(self._rmatvec, v)


class IdentityMinus(LinearOperator):
    """A = I − M for a LinearOperator M; ``A.M`` keeps M so that series and iterations use M v exactly.

    With M = Jᵀ this is the RBP adjoint system's matrix (Liao et al. 2018,
    Eq. 2); Aᵀ = I − Mᵀ is available where M has ``rmatvec``.

    Parameters
    ----------
    M : LinearOperator
        The operator subtracted from the identity; A takes its ``vshape``,
        ``dtype`` and ``block_diagonal``.

    Raises
    ------
    AttributeError
        If ``M`` is not a :class:`LinearOperator` (lacks ``vshape``,
        ``has_rmatvec``, ...).
    """

    def __init__(self, M):
        rmatvec = (lambda v: v - M.rmatvec(v)) if M.has_rmatvec else None
        super().__init__(M.vshape, M.dtype, lambda v: v - M.matvec(v), rmatvec,
                         block_diagonal=M.block_diagonal)
        self.M = M


def as_operator(A, name="A"):
    """Accept a :class:`LinearOperator`, or a dense (N, N) NumPy/CuPy matrix (wrapped, flat vectors).

    Parameters
    ----------
    A : LinearOperator or (N, N) array
        The operator, or a square floating matrix, N >= 1.
    name : str
        How the error messages call ``A``.

    Returns
    -------
    LinearOperator
        ``A`` itself, or a wrapper with vshape (N,), ``A @ v`` and ``A.T @ v``.

    Raises
    ------
    TypeError
        If ``A`` is neither a LinearOperator nor a 2-D array, or is a
        non-floating matrix.
    ValueError
        If the matrix is not square or is empty.
    """
    if isinstance(A, LinearOperator):
        return A
    if hasattr(A, "shape") and hasattr(A, "dtype") and getattr(A, "ndim", 0) == 2:
        if A.shape[0] != A.shape[1] or A.shape[0] == 0:
            raise ValueError(f"{name} must be a square, non-empty matrix, got shape {tuple(A.shape)}")
        if A.dtype.kind != "f":
            raise TypeError(f"{name} must be a floating matrix, got dtype {A.dtype}")
        return LinearOperator((A.shape[0],), A.dtype, lambda v: A @ v, lambda v: A.T @ v)
    raise TypeError(f"{name} must be a refnet.solvers.LinearOperator or a square matrix, "
                    f"got {type(A).__name__}")


@dataclass(frozen=True)
class Linearisation:
    """F linearised at h: products with Jᵀ and J from one step's cache (module docstring).

    J = ∂F/∂h at h per example, F(h) = cell.step(θ, h, x, t)[0]; made by
    :func:`linearise`.

    Attributes
    ----------
    cell : refnet cell
        The cell, with ``step_vjp`` and ``step_jvp``.
    theta : dict {name: array}
        The cell's params.
    cache : object
        What ``cell.step`` returned at h, the point of linearisation.
    vshape : tuple of int
        (B, n_state), the shape of the vectors J acts on.
    dtype : numpy dtype
        The dtype of h.
    fixed_point_residual : (B,) array
        ‖F(h) − h‖_∞ per example, on the backend of h: how far h is from an equilibrium.
    """

    cell: Any
    theta: dict
    cache: Any
    vshape: tuple
    dtype: Any
    fixed_point_residual: Any

    def vjp(self, v):
        """(Jᵀ v, vᵀ ∂F/∂θ, vᵀ ∂F/∂x) for v (B, n): the cell's ``step_vjp`` at the cache.

        Parameters
        ----------
        v : (B, n_state) array
            The cotangent of F(h).

        Returns
        -------
        tuple
            (Jᵀ v (B, n_state), {name: array} shaped as θ, (B, I) array), as
            ``cell.step_vjp`` returns them.

        Raises
        ------
        ValueError
            If ``v``'s shape disagrees with the cell (from the array module).
        """
        return self.cell.step_vjp(self.theta, self.cache, v)

    def jvp(self, v):
        """J v for v (B, n): the cell's ``step_jvp`` with no tangent on θ or x.

        Parameters
        ----------
        v : (B, n_state) array
            The tangent of h.

        Returns
        -------
        (B, n_state) array
            J v, per example.

        Raises
        ------
        ValueError
            If ``v``'s shape disagrees with the cell (from the array module).
        """
        return self.cell.step_jvp(self.theta, self.cache, v, None, None)

    def jacobian_transpose(self):
        """Jᵀ as a block-diagonal LinearOperator on (B, n) (rmatvec: J).

        Returns
        -------
        LinearOperator
            matvec v -> Jᵀ v (:meth:`vjp`), rmatvec v -> J v (:meth:`jvp`).

        Raises
        ------
        TypeError
            If ``vshape`` or ``dtype`` is malformed (possible only for an
            instance built by hand rather than by :func:`linearise`).
        """
        return LinearOperator(self.vshape, self.dtype, lambda v: self.vjp(v)[0], self.jvp,
                              block_diagonal=True)

    def jacobian(self):
        """J as a block-diagonal LinearOperator on (B, n) (rmatvec: Jᵀ).

        Returns
        -------
        LinearOperator
            matvec v -> J v (:meth:`jvp`), rmatvec v -> Jᵀ v (:meth:`vjp`).

        Raises
        ------
        TypeError
            If ``vshape`` or ``dtype`` is malformed (possible only for an
            instance built by hand rather than by :func:`linearise`).
        """
        return LinearOperator(self.vshape, self.dtype, self.jvp, lambda v: self.vjp(v)[0],
                              block_diagonal=True)

    def adjoint_system(self):
        """A = I − Jᵀ (Liao et al. 2018, Eq. 2), with ``A.M`` = Jᵀ and Aᵀ = I − J.

        Returns
        -------
        IdentityMinus
            The adjoint system's matrix, block-diagonal over the batch.

        Raises
        ------
        TypeError
            If ``vshape`` or ``dtype`` is malformed (possible only for an
            instance built by hand rather than by :func:`linearise`).
        """
        return IdentityMinus(self.jacobian_transpose())


def linearise(cell, theta, x, h, t=None):
    """Linearise F(h) = cell.step(θ, h, x, t)[0] at h (no validation beyond the cell's contract).

    Parameters
    ----------
    cell : refnet cell
        A cell with ``step``, ``step_vjp`` and ``step_jvp``.
    theta : dict {name: array}
        The cell's params.
    x : (B, I) array
        Static input.
    h : (B, n_state) array
        The point of linearisation.
    t : int or None
        The step index passed to ``cell.step``.

    Returns
    -------
    Linearisation
        Products with J and Jᵀ at h, and ‖F(h) − h‖_∞ per example.

    Raises
    ------
    TypeError
        ``cell`` lacks ``step``, ``step_vjp``, ``step_jvp`` or the contract's
        ``param_shapes``/``check_params``/``input_size``/``n_state``.
    ValueError
        If the shapes of ``x``/``h`` disagree with the cell (from its ``step``).
    """
    check_cell(cell, ("step", "step_vjp", "step_jvp"))
    xp = xp_of(h)
    h_next, cache = cell.step(theta, h, x, t)
    return Linearisation(cell, theta, cache, tuple(h.shape), h.dtype, xp.abs(h_next - h).max(axis=1))
