"""Exceptions for numerical trouble: reported, never silently returned."""

__all__ = ["NumericalError", "ConvergenceError", "SingularSystemError"]


class NumericalError(ArithmeticError):
    """A computation produced NaN or Inf, or hit a singular system.

    ``where`` names the quantity and the step at which it was detected
    (e.g. ``"forward: s_37"``).  Where a step is known, ``step`` holds it
    (1-based, as the state s_t it made) and ``index`` the first non-finite
    entry (batch, unit, ...); both are None otherwise.

    Parameters
    ----------
    message : str
        What went wrong, for a reader: the function, the quantity, the step.
    where : str or None
        The quantity and step at which it was detected, e.g. ``"forward: s_37"``.
    step : int or None
        The 1-based time step t of the first non-finite quantity, if known.
    index : tuple of int or None
        Index of the first non-finite entry within that quantity (batch,
        unit, ...), if known.

    Raises
    ------
    TypeError
        If ``where``, ``step`` or ``index`` is passed positionally (they are
        keyword-only).
    """

    def __init__(self, message, *, where=None, step=None, index=None):
        super().__init__(message)
        self.where = where
        self.step = step
        self.index = index


class ConvergenceError(NumericalError):
    """An iterative solve did not reach its tolerance.

    ``residual`` is the last residual norm and ``iterations`` the number of
    iterations spent, so the caller can judge how far off the answer was.

    Parameters
    ----------
    message : str
        What did not converge and by how much.
    residual : float
        The last residual norm the solver reached (in the units of its system).
    iterations : int
        Iterations spent before giving up.
    where : str or None
        The solver or quantity concerned.

    Raises
    ------
    TypeError
        If ``residual`` or ``iterations`` is missing (they are keyword-only and
        required).
    """

    def __init__(self, message, *, residual, iterations, where=None):
        super().__init__(message, where=where)
        self.residual = residual
        self.iterations = iterations


class SingularSystemError(ConvergenceError):
    """A linear solve failed because its matrix is singular or nearly so (no solution to tolerance).

    Raised where the residual r that a solver leaves is (nearly) a null vector
    of Aᵀ, i.e. ‖Aᵀ r‖ <= tiny·‖r‖: no x can reduce it, so more iterations
    cannot help.  ``residual`` and ``iterations`` as :class:`ConvergenceError`.

    Parameters
    ----------
    message : str
        What was solved and why it is taken as singular.
    residual : float
        The residual norm ‖b − A x‖ the solver was left with.
    iterations : int
        Iterations spent.
    where : str or None
        The solver or quantity concerned.

    Raises
    ------
    TypeError
        If ``residual`` or ``iterations`` is missing (they are keyword-only and
        required).
    """
