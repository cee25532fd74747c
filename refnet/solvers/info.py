"""What a solve reports (:class:`SolveInfo`) and the one place where a failed solve is raised.

Every solver of :mod:`refnet.solvers` returns ``(x, info)``.  ``info``
carries the claim and the evidence for it, after torchdeq's ``SolverStat``
(Geng & Kolter 2023, "TorchDEQ"): whether the stopping rule was met on the
system the caller asked about, the residual traces (absolute and relative),
the lowest residual reached and the iterate that reached it, the iteration
count, and per-example results for a batch solved as one block-diagonal
system.

**Failure policy.**  A solver never raises for non-convergence itself: it
returns ``info.converged = False`` with a message.  The entry points that
hand a result to a user (``refnet.fixed_point``, the RBP variants, the
exact-equilibrium ERNN's step) pass ``info`` to :func:`settle`, the only
function that turns a failed solve into an exception or a warning:

- by default it raises :class:`refnet.ConvergenceError` (or
  :class:`refnet.SingularSystemError` where the matrix is singular), carrying
  the residual and the iteration count;
- inside ``with refnet.solvers.failures("warn"):`` it issues a
  :class:`ConvergenceWarning` and the caller gets the unconverged result,
  flagged ``converged=False``;
- inside ``failures("ignore")`` it does neither (read ``info`` yourself).

The choice lives in a :mod:`contextvars` variable, so it is set once per
block of code (and per thread / asyncio task), never threaded through
signatures.  Whoever calls a solver directly can call
:meth:`SolveInfo.raise_if_failed`.  NaN or Inf never goes through the policy:
it always raises :class:`refnet.NumericalError` where it is detected.

**Host synchronisation.**  Loops written here (fixed-point iteration,
Richardson/RBP, Neumann) keep their per-iteration residual norms on the
device and read one back to the host only every :data:`CHECK_EVERY`
iterations on CuPy (every iteration on NumPy, where there is no device), so
a converged solve may run up to ``CHECK_EVERY − 1`` iterations past the
first iterate that met its tolerance; the traces are moved to the host once,
at the end.
"""
import contextlib
import contextvars
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy

from ..backend import to_numpy, xp_of
from ..errors import ConvergenceError, NumericalError, SingularSystemError

__all__ = ["SolveInfo", "ConvergenceWarning", "SeriesDivergenceWarning", "failures", "failure_mode",
           "settle", "FAILURE_MODES", "CHECK_EVERY", "DEFAULT_TOL", "DEFAULT_FP_RTOL", "RUNAWAY",
           "DEFAULT_RTOL", "SINGULAR_TOL",
           "check_interval", "Recorder", "Lowest", "raise_non_finite"]

# ‖F(h) − h‖_∞ default by dtype: a few hundred unit roundoffs of O(1) states.
DEFAULT_TOL = {numpy.dtype("float64"): 1e-10, numpy.dtype("float32"): 1e-5}
# Fixed points: default rtol of ‖F(h_b) − h_b‖_∞ <= tol + rtol ‖h_b‖_∞.  64 u: F(h) − h of a
# state of size ‖h‖ is computed with a rounding error of a few u ‖h‖ (one product and one sum
# per unit), so an absolute tol alone cannot be met by large states; 64 u keeps the relative part
# far below DEFAULT_TOL for states of order 1 (1.4e-14 and 7.6e-6).
DEFAULT_FP_RTOL = {numpy.dtype("float64"): 64 * float(numpy.finfo(numpy.float64).eps),
                   numpy.dtype("float32"): 64 * float(numpy.finfo(numpy.float32).eps)}
# Fixed points: an iterate with ‖h_b‖_∞ > RUNAWAY · max(‖h0_b‖_∞, ‖F(h0)_b‖_∞, 1) has run away
# (refnet.solvers.nonlinear): 1/√u (6.7e7 in float64, 2.9e3 in float32).  A genuine equilibrium
# that far out needs 1/(1 − ρ(J)) beyond 1/√u, where the dtype cannot resolve it anyway.
RUNAWAY = {numpy.dtype("float64"): 1 / float(numpy.sqrt(numpy.finfo(numpy.float64).eps)),
           numpy.dtype("float32"): 1 / float(numpy.sqrt(numpy.finfo(numpy.float32).eps))}
# Linear solves: default relative tolerance on ‖b − A x‖₂ / ‖b‖₂, by dtype.
DEFAULT_RTOL = {numpy.dtype("float64"): 1e-10, numpy.dtype("float32"): 1e-5}
# A residual r with ‖Aᵀ r‖ <= SINGULAR_TOL ‖r‖ is (numerically) a null vector of Aᵀ: σ_min(A) is
# at most that ratio, so no iterate can reduce r further.  √u: far above rounding of one product
# (≈ u), far below any system a solver should be asked to finish (κ ≈ 1/√u = 7e7 in float64).
SINGULAR_TOL = {numpy.dtype("float64"): float(numpy.sqrt(numpy.finfo(numpy.float64).eps)),
                numpy.dtype("float32"): float(numpy.sqrt(numpy.finfo(numpy.float32).eps))}
# On a device backend, iterations between host reads of the residual (module docstring).
CHECK_EVERY = 10

FAILURE_MODES = ("raise", "warn", "ignore")
_MODE = contextvars.ContextVar("refnet_solver_failures", default="raise")


class ConvergenceWarning(RuntimeWarning):
    """A solve stopped short of its tolerance and the caller asked for warnings (:func:`failures`).

    Issued by :func:`settle` under ``failures("warn")``; filter it with the
    :mod:`warnings` machinery like any :class:`RuntimeWarning`.

    Parameters
    ----------
    *args : str
        The message, as for any warning (``settle`` passes one string naming
        the solver, the residual reached and the tolerance).
    **kwargs : never
        Not accepted: warnings take no keyword arguments.

    Raises
    ------
    TypeError
        If a keyword argument is given.
    """


class SeriesDivergenceWarning(RuntimeWarning):
    """The terms of a Neumann series did not shrink: ρ(J) >= 1 is likely, Prop. 3's bound does not hold.

    Issued by Neumann-RBP (Liao et al. 2018, Alg. 2; Prop. 3 bounds its error
    only when ρ(J) < 1) when ‖(Jᵀ)^k g‖ grows over the series.

    Parameters
    ----------
    *args : str
        The message, as for any warning (the growth factor measured).
    **kwargs : never
        Not accepted: warnings take no keyword arguments.

    Raises
    ------
    TypeError
        If a keyword argument is given.
    """


def check_interval(xp):
    """Iterations between host reads of a residual: 1 on NumPy, :data:`CHECK_EVERY` on a device.

    Parameters
    ----------
    xp : module
        The array module of the solve (:func:`refnet.backend.xp_of` of its operands).

    Returns
    -------
    int
        1 when ``xp`` is NumPy (no device to wait for), else :data:`CHECK_EVERY`.

    Raises
    ------
    None
        Nothing of its own: it only compares ``xp`` with the numpy module.
    """
    return 1 if xp is numpy else CHECK_EVERY


@dataclass(frozen=True)
class SolveInfo:
    """The claim of one solve and its evidence (module docstring).

    Attributes
    ----------
    solver : str
        Which solver (and, once settled by an entry point, which entry point).
    converged : bool or None
        Whether the stopping rule held on the returned x, measured on the
        caller's system (never a surrogate); None where no tolerance was asked.
    iterations : int
        Iterations spent, as each solver defines them (its docstring).
    residual : float
        Final residual of the returned x in ``norm``.
    tolerance : float or None
        A summary of the rule: for a linear solve max(rtol ‖b‖₂, atol) of the
        stacked batch (reported only; ``converged`` is decided per example
        against ``example_tolerance``); for a fixed point the largest
        per-example threshold atol + rtol ‖h_b‖_∞.
    norm : str
        The norm of ``residual``, ``abs_trace`` and ``lowest``, in words.
    abs_trace : (m,) NumPy array
        Residuals recorded during the solve, absolute, in ``norm``.
    rel_trace : (m,) NumPy array
        The same residuals, relative (to ‖b‖ for a linear solve, to ‖F(h)‖
        for a fixed point).
    trace_at : (m,) int NumPy array
        The iteration at which each trace entry was recorded.
    lowest : float
        Residual of ``lowest_x``.
    lowest_x : array like x
        Every example's own lowest-residual recorded iterate (a batch solve is
        block-diagonal, so each example's best can be taken separately).
    example_residual : (B,) NumPy array
        Final residual of each example (its rows of x), in ``norm``.
    example_converged : (B,) bool NumPy array or None
        Each example against its own threshold (same rule, its own ‖b_b‖ or
        ‖h_b‖); ``converged`` is True only where every entry is.
    singular : bool
        The residual left is (nearly) a null vector of Aᵀ (:data:`SINGULAR_TOL`).
    example_tolerance : (B,) NumPy array or None
        Each example's own threshold (None where no tolerance was asked).
    diagnostics : dict
        Solver-specific evidence (e.g. Neumann's per-example growth factor,
        ``sigma_min_bound`` = ‖Aᵀ r‖ / ‖r‖ per example for a failed linear solve).
    message : str
        Why the solve failed ("" when it did not).
    """

    solver: str
    converged: Optional[bool]
    iterations: int
    residual: float
    tolerance: Optional[float]
    norm: str
    abs_trace: Any
    rel_trace: Any
    trace_at: Any
    lowest: float
    lowest_x: Any
    example_residual: Any
    example_converged: Any
    singular: bool = False
    example_tolerance: Any = None
    diagnostics: dict = field(default_factory=dict)
    message: str = ""

    @property
    def failed(self):
        """True when a tolerance was asked and not met."""
        return self.converged is False

    def error(self):
        """The exception describing this failure: SingularSystemError or ConvergenceError.

        Made, not raised (:meth:`raise_if_failed` and :func:`settle` raise it).

        Returns
        -------
        refnet.ConvergenceError or refnet.SingularSystemError
            SingularSystemError when ``singular``; carries ``message`` (or the
            residual and the tolerance), ``residual``, ``iterations`` and
            ``where`` = ``solver``.

        Raises
        ------
        TypeError
            If no ``message`` was set and ``residual`` is not a number (the
            default message formats it with ``.3e``).
        """
        kind = SingularSystemError if self.singular else ConvergenceError
        return kind(self.message or f"{self.solver}: residual {self.residual:.3e} > {self.tolerance}",
                    residual=self.residual, iterations=self.iterations, where=self.solver)

    def raise_if_failed(self):
        """Raise :meth:`error` if the solve failed; return self otherwise.

        For a caller of a solver who wants an exception whatever the
        :func:`failures` policy in force.

        Returns
        -------
        SolveInfo
            ``self``, when ``converged`` is not False.

        Raises
        ------
        refnet.SingularSystemError
            If the solve failed and the residual left is a null vector of Aᵀ.
        refnet.ConvergenceError
            If the solve failed otherwise.
        """
        if self.failed:
            raise self.error()
        return self


@contextlib.contextmanager
def failures(mode):
    """Choose, for a block of code, what a failed solve does at every entry point (module docstring).

    Parameters
    ----------
    mode : {"raise", "warn", "ignore"}
        "raise" (the default outside any block) raises ConvergenceError or
        SingularSystemError; "warn" issues a :class:`ConvergenceWarning` and
        returns the unconverged result; "ignore" returns it silently (its
        ``converged`` is False).

    Yields
    ------
    str
        ``mode``, in force until the block ends (the previous policy is then
        restored, also when the block raises).

    Raises
    ------
    ValueError
        ``mode`` is none of the three.

    Examples
    --------
    >>> with refnet.solvers.failures("warn"):          # doctest: +SKIP
    ...     res = refnet.rbp(cell, theta, x, h, dh, maxiter=10)
    """
    if mode not in FAILURE_MODES:
        raise ValueError(f"mode must be one of {FAILURE_MODES}, got {mode!r}")
    token = _MODE.set(mode)
    try:
        yield mode
    finally:
        _MODE.reset(token)


def failure_mode():
    """The policy in force here: "raise", "warn" or "ignore" (:func:`failures`).

    Returns
    -------
    str
        The mode of the innermost ``failures`` block of this context (thread
        or asyncio task), "raise" outside any.

    Raises
    ------
    None
        Nothing of its own: it reads a :mod:`contextvars` variable that has a
        default.
    """
    return _MODE.get()


def settle(info, *, stacklevel=3):
    """Apply the failure policy to ``info``: the one place a failed solve is raised or warned.

    Parameters
    ----------
    info : SolveInfo
        What a solver returned.
    stacklevel : int
        Passed to :func:`warnings.warn` under "warn", so that the warning
        points at the user's call (3: the caller of the entry point that
        called ``settle``).

    Returns
    -------
    SolveInfo
        ``info`` unchanged, when it did not fail or the policy ("warn",
        "ignore") lets the failure through.

    Raises
    ------
    refnet.SingularSystemError
        Under the default policy "raise", where ``info.failed`` and
        ``info.singular``.
    refnet.ConvergenceError
        Under "raise", where ``info.failed`` otherwise.
    AttributeError
        If ``info`` is not a :class:`SolveInfo` (has no ``failed``).
    """
    if not info.failed:
        return info
    mode = _MODE.get()
    if mode == "raise":
        raise info.error()
    if mode == "warn":
        warnings.warn(f"{info.message} (returned unconverged: refnet.solvers.failures('warn') is in force)",
                      ConvergenceWarning, stacklevel=stacklevel)
    return info


class Recorder:
    """Per-iteration residuals kept on the device; one transfer to the host at the end.

    ``record(i, abs, rel)`` takes 0-d arrays of the backend ``xp`` (device
    scalars on CuPy: recording does not synchronise); ``host()`` returns
    (abs_trace, rel_trace, trace_at) as NumPy arrays; ``first_non_finite()``
    names the first iteration whose residual was NaN/Inf.

    Parameters
    ----------
    xp : module
        The array module the recorded values live on (numpy, cupy, ...).

    Raises
    ------
    None
        Nothing at construction: it stores ``xp`` and three empty lists.
    """

    def __init__(self, xp):
        self.xp = xp
        self.abs, self.rel, self.at = [], [], []

    def record(self, i, abs_value, rel_value):
        """Keep one iteration's residuals, without reading them back (no host sync).

        Parameters
        ----------
        i : int
            The iteration number.
        abs_value : 0-d array of ``xp``
            The absolute residual at iteration ``i``.
        rel_value : 0-d array of ``xp``
            The relative residual at iteration ``i``.

        Raises
        ------
        TypeError
            If ``i`` cannot be converted with ``int()``.
        """
        self.abs.append(abs_value)
        self.rel.append(rel_value)
        self.at.append(int(i))

    def host(self):
        """The traces on the host, in one transfer per trace.

        Returns
        -------
        abs_trace : (m,) float NumPy array
            The absolute residuals recorded, m = the number of ``record`` calls.
        rel_trace : (m,) float NumPy array
            The relative residuals.
        trace_at : (m,) int NumPy array
            The iteration of each entry.

        Raises
        ------
        ValueError
            If a recorded value is not 0-d like the others (they cannot be stacked).
        """
        if not self.abs:
            return numpy.zeros(0), numpy.zeros(0), numpy.zeros(0, dtype=int)
        xp = self.xp
        abs_trace = to_numpy(xp.stack([xp.asarray(a) for a in self.abs])).astype(float)
        rel_trace = to_numpy(xp.stack([xp.asarray(a) for a in self.rel])).astype(float)
        return abs_trace, rel_trace, numpy.asarray(self.at, dtype=int)

    def first_non_finite(self):
        """(iteration, value) of the first non-finite recorded residual, or None.

        Returns
        -------
        tuple (int, float) or None
            The iteration and the absolute residual (NaN or ±Inf) there; None
            when every recorded residual is finite.

        Raises
        ------
        ValueError
            As :meth:`host`.
        """
        abs_trace, _, at = self.host()
        bad = numpy.flatnonzero(~numpy.isfinite(abs_trace))
        return None if bad.size == 0 else (int(at[bad[0]]), float(abs_trace[bad[0]]))


class Lowest:
    """Every example's lowest residual so far and the iterate that had it, updated on the device.

    NaN never replaces a finite best (NaN < a is False).

    Parameters
    ----------
    x : (B, n) array
        The first iterate (copied); any trailing shape (B, ...) is accepted.
    norms : (B,) array
        Its per-example residuals (copied).
    i : int
        The iteration of ``x``.

    Attributes
    ----------
    x : (B, ...) array
        Each example's best iterate so far.
    norms : (B,) array
        Their residuals.
    at : (B,) int64 array
        The iteration at which each was reached.

    Raises
    ------
    AttributeError
        If ``x`` or ``norms`` is not an array (no ``copy``/``shape``).
    """

    def __init__(self, x, norms, i=0):
        xp = xp_of(x)
        self.x, self.norms = x.copy(), norms.copy()
        self.at = xp.full(norms.shape, i, dtype=numpy.int64)

    def update(self, x, norms, i):
        """Keep, example by example, whichever of the best so far and ``x`` has the lower residual.

        Parameters
        ----------
        x : (B, ...) array
            A new iterate, shaped as the first.
        norms : (B,) array
            Its per-example residuals.
        i : int
            Its iteration.

        Raises
        ------
        ValueError
            If ``x`` or ``norms`` is not shaped as the first iterate's (broadcasting fails).
        TypeError
            If ``x`` lives on another backend than the best so far.
        """
        xp = xp_of(x)
        better = norms < self.norms
        self.norms = xp.where(better, norms, self.norms)
        self.x = xp.where(better.reshape(better.shape + (1,) * (x.ndim - 1)), x, self.x)
        self.at = xp.where(better, i, self.at)


def raise_non_finite(name, quantity, recorder, fallback_iteration):
    """NumericalError naming the first iteration at which ``quantity`` became NaN/Inf.

    Parameters
    ----------
    name : str
        The solver, as the message names it.
    quantity : str
        The residual that went non-finite, e.g. "‖F(h) − h‖_∞".
    recorder : Recorder or None
        Its trace, searched for the first non-finite entry; None when there is none.
    fallback_iteration : int
        The iteration to name when the trace holds no non-finite entry (the
        value is then reported as NaN).

    Raises
    ------
    refnet.NumericalError
        Always: ``where`` names the quantity and the iteration.
    """
    first = recorder.first_non_finite() if recorder is not None else None
    iteration, value = first if first is not None else (fallback_iteration, math.nan)
    raise NumericalError(f"{name}: {quantity} became {value} at iteration {iteration} (the iteration "
                         "diverged or overflowed)", where=f"{quantity}, iteration {iteration}")
