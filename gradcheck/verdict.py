"""Three-valued verdicts: pass, fail, or inconclusive, each with its reason.  NumPy only.

A check that found no evidence either way (every Taylor remainder at the
noise floor, a kink where the analytic value is one of the one-sided
derivatives, a difference below what the objective's rounding can resolve,
nothing in common to compare) is *inconclusive*.  Inconclusive is never a
pass: ``verdict.passed`` is False for it, ``raise_on_failure=True`` raises
:class:`InconclusiveError` unless the caller passes ``allow_inconclusive=True``,
and ``python -m gradcheck`` exits non-zero on it unless ``--allow-inconclusive``.

:class:`InconclusiveError` subclasses :class:`GradcheckError`, so code that
treats "raised GradcheckError" as "did not pass" (``pytest.raises``, an
``except GradcheckError``) keeps treating an inconclusive check as not passed;
catch ``InconclusiveError`` first to tell the two apart.
"""
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["PASS", "FAIL", "INCONCLUSIVE", "Verdict", "GradcheckError", "InconclusiveError",
           "combine", "as_verdict", "raise_for", "recording"]

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
_STATUSES = (PASS, FAIL, INCONCLUSIVE)


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``status`` (``'pass'``, ``'fail'``, ``'inconclusive'``) and why.

    Make one with ``Verdict.pass_(reason)``, ``Verdict.fail(reason)`` or
    ``Verdict.inconclusive(reason)``.  ``bool(verdict)`` is refused (a verdict
    has three values): read ``verdict.passed``, ``verdict.failed`` or
    ``verdict.is_inconclusive``.

    Attributes
    ----------
    status : str
        ``'pass'``, ``'fail'`` or ``'inconclusive'`` (:data:`PASS`, :data:`FAIL`,
        :data:`INCONCLUSIVE`).
    reason : str
        Why, in words (the failing parameter, the noise floor, the kink...);
        may be empty for a pass.

    Raises
    ------
    ValueError
        If ``status`` is not one of the three statuses.
    TypeError
        If ``reason`` is not a str; also on ``bool(verdict)``, which is refused.
    """

    status: str
    reason: str = ""

    def __post_init__(self):
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, got {self.status!r}")
        if not isinstance(self.reason, str):
            raise TypeError(f"reason must be a str, got {type(self.reason).__name__}")

    @classmethod
    def pass_(cls, reason=""):
        """A PASS verdict.

        Parameters
        ----------
        reason : str, optional
            What was shown (may be empty).

        Returns
        -------
        Verdict
            ``status == 'pass'``.

        Raises
        ------
        TypeError
            If ``reason`` is not a str.
        """
        return cls(PASS, reason)

    @classmethod
    def fail(cls, reason):
        """A FAIL verdict.

        Parameters
        ----------
        reason : str
            What disagreed (parameter, index, analytic and numeric values).

        Returns
        -------
        Verdict
            ``status == 'fail'``.

        Raises
        ------
        TypeError
            If ``reason`` is not a str.
        """
        return cls(FAIL, reason)

    @classmethod
    def inconclusive(cls, reason):
        """An INCONCLUSIVE verdict: no evidence either way, never a pass.

        Parameters
        ----------
        reason : str
            Why there is no evidence (noise floor, kink, non-finite objective...).

        Returns
        -------
        Verdict
            ``status == 'inconclusive'``.

        Raises
        ------
        TypeError
            If ``reason`` is not a str.
        """
        return cls(INCONCLUSIVE, reason)

    @property
    def passed(self):
        """True only for PASS: inconclusive is not a pass."""
        return self.status == PASS

    @property
    def failed(self):
        """True only for FAIL: evidence that the gradient is wrong."""
        return self.status == FAIL

    @property
    def is_inconclusive(self):
        """True only for INCONCLUSIVE: no evidence either way."""
        return self.status == INCONCLUSIVE

    @property
    def label(self):
        """``pass``, ``FAIL`` or ``INCONCLUSIVE``: what the matrix prints."""
        return "pass" if self.passed else self.status.upper()

    def __bool__(self):
        raise TypeError("a Verdict has three values; use verdict.passed, verdict.failed or "
                        "verdict.is_inconclusive instead of its truth value")

    def __str__(self):
        return f"{self.label}: {self.reason}" if self.reason else self.label


def combine(verdicts, *, empty_reason="no check was made"):
    """One verdict from several: FAIL if any fails, else INCONCLUSIVE if any is, else PASS.

    The reasons of the deciding verdicts are joined; no verdicts at all is
    inconclusive (``empty_reason``), never a pass.

    Parameters
    ----------
    verdicts : iterable of Verdict
        The verdicts to combine; consumed once.
    empty_reason : str, optional
        The reason of the INCONCLUSIVE verdict returned when ``verdicts`` is empty.

    Returns
    -------
    Verdict
        The combined verdict, its reason the ``'; '``-joined reasons of the
        verdicts that decided it.

    Raises
    ------
    TypeError
        If ``verdicts`` is not iterable, or ``empty_reason`` is not a str.
    AttributeError
        If an element has no ``status`` (is not a Verdict).
    """
    verdicts = list(verdicts)
    if not verdicts:
        return Verdict.inconclusive(empty_reason)
    for status in (FAIL, INCONCLUSIVE):
        deciding = [v for v in verdicts if v.status == status]
        if deciding:
            return Verdict(status, "; ".join(v.reason for v in deciding if v.reason))
    return Verdict.pass_("; ".join(v.reason for v in verdicts if v.reason))


def as_verdict(value, reason=""):
    """A :class:`Verdict` from a Verdict, a report with ``.verdict``, or a bool (True PASS, False FAIL).

    Parameters
    ----------
    value : Verdict, report or bool
        A Verdict (returned as is), an object whose ``verdict`` attribute is a
        Verdict (a report), or a Python or NumPy bool.
    reason : str, optional
        The reason given to a verdict made from a bool; a False with no reason
        gets ``'check returned False'``.

    Returns
    -------
    Verdict
        The verdict ``value`` stands for.

    Raises
    ------
    TypeError
        If ``value`` is none of the three kinds, or ``reason`` is not a str.
    """
    if isinstance(value, Verdict):
        return value
    if isinstance(getattr(value, "verdict", None), Verdict):
        return value.verdict
    if isinstance(value, (bool,)) or type(value).__name__ == "bool_":
        return Verdict.pass_(reason) if bool(value) else Verdict.fail(reason or "check returned False")
    raise TypeError(f"a check's outcome must be a bool, a Verdict or a report with .verdict, "
                    f"got {type(value).__name__}")


class GradcheckError(AssertionError):
    """A gradient check did not pass; ``report`` holds the numbers, ``verdict`` its outcome.

    Subclasses AssertionError so that a check used inside a test fails the test.

    Parameters
    ----------
    message : str
        The error message (the check's title, the verdict's reason and the report's table).
    report : report
        The report of the check (:class:`~gradcheck.check.GradReport`,
        :class:`~gradcheck.check.TaylorReport`, ...), kept as ``self.report``.

    Raises
    ------
    TypeError
        Only if called with the wrong number of arguments; the constructor validates nothing.
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report

    @property
    def verdict(self):
        """The report's :class:`Verdict`, or None when the report has none."""
        return getattr(self.report, "verdict", None)


class InconclusiveError(GradcheckError):
    """A check found no evidence either way (its reason says why); raised unless ``allow_inconclusive``.

    Parameters
    ----------
    message : str
        The error message (the verdict's reason and the report's table).
    report : report
        The report of the inconclusive check, kept as ``self.report``.

    Raises
    ------
    TypeError
        Only if called with the wrong number of arguments; the constructor validates nothing.
    """


# Reports made while a matrix row runs, so that a row written before verdicts
# existed (returning ``report.passed``, a bool) still shows INCONCLUSIVE, not
# FAIL, when the report behind its False was inconclusive (gradcheck.matrix.common).
_recorders = []


@contextmanager
def recording():
    """Collect the verdict of every report made inside the ``with`` block (a list, yielded).

    Blocks may nest: a verdict is appended to every list open at the time.
    The matrix uses it to show a row that returned a bare False as
    INCONCLUSIVE when the report behind it was inconclusive.

    Yields
    ------
    list of Verdict
        Filled, in order, by every :func:`raise_for` called inside the block.

    Raises
    ------
    None
        Nothing of its own; an exception raised inside the block propagates
        after the list is unregistered.
    """
    seen = []
    _recorders.append(seen)
    try:
        yield seen
    finally:
        _recorders.remove(seen)


def _record(verdict):
    for seen in _recorders:
        seen.append(verdict)


def raise_for(report, title, *, raise_on_failure, allow_inconclusive):
    """Record ``report``'s verdict; raise GradcheckError on FAIL, InconclusiveError on INCONCLUSIVE.

    The one place every check of this package raises, so that the raising
    rule is the same for all of them.

    Parameters
    ----------
    report : report
        Any report with a ``verdict`` (:class:`Verdict`) and a ``table()`` method.
    title : str
        First words of the GradcheckError message (e.g. ``'gradient check failed'``).
    raise_on_failure : bool
        Whether to raise at all; False only records the verdict.
    allow_inconclusive : bool
        Whether an INCONCLUSIVE verdict returns the report instead of raising.

    Returns
    -------
    report
        ``report`` itself, when nothing is raised.

    Raises
    ------
    GradcheckError
        If ``raise_on_failure`` and the verdict is FAIL.
    InconclusiveError
        If ``raise_on_failure``, the verdict is INCONCLUSIVE and not ``allow_inconclusive``.
    AttributeError
        If ``report`` has no ``verdict``.
    """
    verdict = report.verdict
    _record(verdict)
    if raise_on_failure and verdict.failed:
        raise GradcheckError(f"{title}: {verdict.reason}\n{report.table()}", report)
    if raise_on_failure and verdict.is_inconclusive and not allow_inconclusive:
        raise InconclusiveError(f"inconclusive: {verdict.reason}\n{report.table()}\n"
                                f"(pass allow_inconclusive=True to get the report instead)", report)
    return report
