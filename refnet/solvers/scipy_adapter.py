"""The one place that knows how SciPy's and cupyx's Krylov solvers differ.

``scipy.sparse.linalg`` (NumPy arrays) and ``cupyx.scipy.sparse.linalg``
(CuPy arrays) share names but not every keyword or count:

=====================  ==================================  ==================================
                       SciPy >= 1.12 (1.10, 1.11)          cupyx 13.x, 14.x
=====================  ==================================  ==================================
relative tolerance     ``rtol=`` (``tol=`` before 1.12;     ``tol=``
                       ``tol`` removed in 1.14)
``atol``               absolute floor (1.10/1.11: None      ``max(atol, tol·‖b‖)``
                       meant "legacy"; refnet always
                       passes a float)
GMRES ``maxiter``      restart **cycles**                   **inner iterations**, checked
                                                            after each whole cycle
GMRES ``callback``     ``callback_type="x"``: x once per    ``"x"``: x at the start of every
                       cycle                                cycle (before it, too)
CG ``callback``        ``callback(xk)`` every iteration     the same
=====================  ==================================  ==================================

scipy.optimize's nonlinear solvers (Anderson, Newton–Krylov) signal
non-convergence with ``NoConvergence``, public as
``scipy.optimize.NoConvergence`` only since SciPy 1.11 (in 1.10 it lives in
``scipy.optimize._nonlin``): :data:`NoConvergence` is whichever exists.

The keyword is chosen by inspecting the solver's signature (``rtol`` if it
takes one, else ``tol``), not by version numbers, so a SciPy between
deprecation and removal, or a CuPy that adopts ``rtol``, works unchanged.
refnet's GMRES ``maxiter`` counts inner iterations (products with A), like
every other refnet solver's; it is rounded up to whole restart cycles and
translated to each backend's count.  cupyx's GMRES divides by the Arnoldi
norm without a breakdown guard, so an exactly invariant Krylov space gives
NaN there: the caller checks its result for finiteness.
"""
import importlib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy
import scipy.optimize

__all__ = ["KrylovBackend", "backend_for", "tolerance_keyword", "cg", "gmres", "gmres_maxiter",
           "NoConvergence", "no_convergence_class"]


def no_convergence_class(optimize):
    """The NoConvergence exception of a scipy.optimize module: public since SciPy 1.11, in ``_nonlin`` before.

    Parameters
    ----------
    optimize : module
        ``scipy.optimize`` (or a stand-in with the same layout, in tests).

    Returns
    -------
    type
        The exception class scipy's nonlinear solvers raise on non-convergence.

    Raises
    ------
    ImportError
        Neither ``optimize``, its ``_nonlin`` nor its ``nonlin`` has it.
    AttributeError
        If ``optimize`` lacks ``NoConvergence`` and has no ``__name__`` to
        look further with.
    """
    found = getattr(optimize, "NoConvergence", None)
    for private in ("_nonlin", "nonlin"):
        if found is not None:
            return found
        try:
            found = getattr(importlib.import_module(f"{optimize.__name__}.{private}"), "NoConvergence", None)
        except (ImportError, AttributeError):
            found = None
    if found is None:
        raise ImportError(f"{optimize.__name__} has no NoConvergence (looked in it, _nonlin and nonlin)")
    return found


@dataclass(frozen=True)
class KrylovBackend:
    """A scipy-like module's Krylov pieces and how to call them.

    Attributes
    ----------
    name : str
        Which backend, for messages ("scipy", "cupyx", "scipy (device double)").
    cg : callable
        Its CG, with scipy's positional layout (A, b, x0).
    gmres : callable
        Its restarted GMRES, same layout.
    LinearOperator : type
        Its operator class, called as ``(shape, matvec=, dtype=)``.
    gmres_maxiter_in_cycles : bool
        True where GMRES's ``maxiter`` counts restart cycles (SciPy), False
        where it counts inner iterations (cupyx).
    """

    name: str
    cg: Callable
    gmres: Callable
    LinearOperator: Any
    gmres_maxiter_in_cycles: bool


def backend_for(xp):
    """SciPy's Krylov backend for NumPy, cupyx's for CuPy (SciPy's behind the wall for the device double).

    Parameters
    ----------
    xp : module
        The array module of the operands (:func:`refnet.backend.xp_of`).

    Returns
    -------
    KrylovBackend
        The solvers to call for arrays of ``xp``.

    Raises
    ------
    ModuleNotFoundError
        If ``xp`` is neither NumPy nor the device double and cupyx cannot be
        imported (CuPy absent).
    """
    if xp is numpy:
        import scipy.sparse.linalg as linalg
        return KrylovBackend("scipy", linalg.cg, linalg.gmres, linalg.LinearOperator, True)
    if getattr(xp, "__name__", "") == "refnet.strict":
        from .._strict import krylov
        cg, gmres, LinearOperator = krylov()
        return KrylovBackend("scipy (device double)", cg, gmres, LinearOperator, True)
    import cupyx.scipy.sparse.linalg as linalg
    return KrylovBackend("cupyx", linalg.cg, linalg.gmres, linalg.LinearOperator, False)


def tolerance_keyword(solver):
    """'rtol' if ``solver`` accepts it, else 'tol' (SciPy < 1.12, cupyx 13).

    Decided by the signature, not by version numbers (module docstring).

    Parameters
    ----------
    solver : callable
        A scipy-like Krylov solver (``cg``, ``gmres``).

    Returns
    -------
    str
        'rtol' or 'tol'.

    Raises
    ------
    TypeError
        ``solver`` takes neither, or is not callable.
    ValueError
        If no signature can be read from ``solver`` (some built-ins).
    """
    parameters = inspect.signature(solver).parameters
    for keyword in ("rtol", "tol"):
        if keyword in parameters:
            return keyword
    raise TypeError(f"solver {getattr(solver, '__name__', solver)!r} takes neither rtol nor tol: "
                    "not a scipy-like Krylov solver")


def gmres_maxiter(backend, maxiter, restart):
    """refnet's ``maxiter`` (inner iterations, rounded up to whole cycles) in ``backend``'s count.

    Parameters
    ----------
    backend : KrylovBackend
        Whose count to translate to.
    maxiter : int
        Inner iterations (products with A), >= 1.
    restart : int
        Krylov dimension of one cycle, >= 1.

    Returns
    -------
    int
        ⌈maxiter / restart⌉ cycles (at least 1) for SciPy; that many cycles
        times ``restart`` inner iterations for cupyx.

    Raises
    ------
    ZeroDivisionError
        If ``restart`` is 0 (refnet's GMRES refuses that before calling).
    TypeError
        If ``maxiter`` or ``restart`` is not a number.
    """
    cycles = max(1, math.ceil(maxiter / restart))
    return cycles if backend.gmres_maxiter_in_cycles else cycles * restart


def _operator(backend, A, dtype):
    """``A`` (refnet.solvers.LinearOperator) as the backend's LinearOperator on flat vectors."""
    return backend.LinearOperator(A.shape, matvec=lambda v: A.matvec(v.reshape(-1)), dtype=dtype)


def cg(backend, A, b, x0, *, rtol, atol, maxiter, callback=None):
    """The backend's CG on the symmetric positive (semi)definite A: ``(x, info)`` as scipy returns them.

    Stops on ‖b − A x‖₂ <= max(rtol ‖b‖₂, atol) (both backends).

    Parameters
    ----------
    backend : KrylovBackend
        From :func:`backend_for`.
    A : refnet.solvers.LinearOperator
        The operator; wrapped as the backend's LinearOperator on flat vectors.
    b : (N,) array
        Right-hand side, flat.
    x0 : (N,) array or None
        Start, flat; None for zeros.
    rtol : float
        Relative tolerance (dimensionless), passed as ``rtol=`` or ``tol=``.
    atol : float
        Absolute tolerance (units of b).
    maxiter : int or None
        Most CG iterations; None for the backend's default.
    callback : callable or None
        ``callback(xk)``, called after every iteration with the iterate (N,).

    Returns
    -------
    x : (N,) array
        The backend's last iterate.
    info : int
        The backend's code: 0 converged, > 0 iterations spent without
        converging, < 0 breakdown.

    Raises
    ------
    TypeError
        If the backend's CG takes neither ``rtol`` nor ``tol``.
    ValueError
        If the backend refuses the shapes of ``b``/``x0`` against A.
    """
    options = {tolerance_keyword(backend.cg): rtol, "atol": atol, "maxiter": maxiter,
               "callback": callback}
    return backend.cg(_operator(backend, A, b.dtype), b, x0, **options)


def gmres(backend, A, b, x0, *, rtol, atol, restart, maxiter, callback=None):
    """The backend's restarted GMRES (Saad & Schultz 1986): ``(x, info)``; ``maxiter`` in refnet's count.

    Parameters
    ----------
    backend : KrylovBackend
        From :func:`backend_for`.
    A : refnet.solvers.LinearOperator
        The operator; wrapped as the backend's LinearOperator on flat vectors.
    b : (N,) array
        Right-hand side, flat.
    x0 : (N,) array or None
        Start, flat; None for zeros.
    rtol : float
        Relative tolerance (dimensionless), passed as ``rtol=`` or ``tol=``.
    atol : float
        Absolute tolerance (units of b).
    restart : int
        Krylov dimension between restarts, >= 1.
    maxiter : int
        Most inner iterations (products with A), >= 1, rounded up to whole
        cycles and translated by :func:`gmres_maxiter`.
    callback : callable or None
        ``callback(x)``, called with the current iterate (N,) about once per
        restart cycle (``callback_type="x"`` on both backends).

    Returns
    -------
    x : (N,) array
        The backend's last iterate.
    info : int
        The backend's code: 0 converged, > 0 not converged, < 0 breakdown.

    Raises
    ------
    TypeError
        If the backend's GMRES takes neither ``rtol`` nor ``tol``, or
        ``maxiter``/``restart`` is not a number.
    ZeroDivisionError
        If ``restart`` is 0.
    ValueError
        If the backend refuses the shapes of ``b``/``x0`` against A.
    """
    options = {tolerance_keyword(backend.gmres): rtol, "atol": atol, "restart": restart,
               "maxiter": gmres_maxiter(backend, maxiter, restart)}
    if callback is not None:
        options.update(callback=callback, callback_type="x")
    return backend.gmres(_operator(backend, A, b.dtype), b, x0, **options)


NoConvergence = no_convergence_class(scipy.optimize)
