"""Exceptions for numerical trouble: reported, never silently returned."""

__all__ = ["NumericalError", "ConvergenceError"]


class NumericalError(ArithmeticError):
    """A computation produced NaN or Inf, or hit a singular system.

    ``where`` names the quantity and the step at which it was detected
    (e.g. ``"forward: s_37"``).  Where a step is known, ``step`` holds it
    (1-based, as the state s_t it made) and ``index`` the first non-finite
    entry (batch, unit, ...); both are None otherwise.
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
    """

    def __init__(self, message, *, residual, iterations, where=None):
        super().__init__(message, where=where)
        self.residual = residual
        self.iterations = iterations
