"""What a benchmark case returns, and plain-text tables for the CLI.

A case returns a :class:`Report`: ``rows`` are flat dicts (one JSON line each
under ``--json``), ``table`` is the same result laid out for a person.  Cases
never print; the CLI chooses which of the two to write.
"""
from dataclasses import dataclass

__all__ = ["Report", "BenchmarkError", "format_table"]


class BenchmarkError(RuntimeError):
    """A benchmark refused to report, e.g. because two implementations disagree.

    A timing of two implementations that compute different things would be
    meaningless, so a case raises this instead of printing it.

    Parameters
    ----------
    *args : object
        The message (one str naming the case, the quantity and the disagreement).
    **kwargs : object
        None are accepted (as for RuntimeError).

    Raises
    ------
    TypeError
        If keyword arguments are given.
    """


@dataclass(frozen=True)
class Report:
    """A case's result: ``rows`` (tuple of JSON-ready dicts) and ``table`` (text).

    Attributes
    ----------
    rows : tuple of dict
        One flat, JSON-ready dict per measurement (``--json`` writes one per line);
        times in seconds, memory in bytes, as each key names.
    table : str
        The same result laid out for a person (:func:`format_table`).
    """

    rows: tuple
    table: str


def format_table(header, rows, *, text_columns=1):
    """Lay out ``rows`` (sequences of str) under ``header`` in aligned columns.

    The first ``text_columns`` columns are left-aligned (they name the row),
    the others right-aligned (they hold numbers).

    Parameters
    ----------
    header : sequence of str
        The column titles.
    rows : sequence of sequence of str
        One sequence per row, as many cells as ``header``, already formatted.
    text_columns : int, optional
        How many leading columns are left-aligned.

    Returns
    -------
    str
        The header and rows, columns separated by two spaces, trailing blanks
        stripped, lines joined by newlines.

    Raises
    ------
    ValueError
        If a row has not as many cells as ``header``.
    TypeError
        If a cell is not a str.
    """
    lines = [tuple(header)] + [tuple(row) for row in rows]
    if any(len(line) != len(header) for line in lines):
        raise ValueError(f"every row must have {len(header)} cells like header {tuple(header)}, "
                         f"got lengths {sorted({len(line) for line in lines})}")
    widths = [max(len(line[j]) for line in lines) for j in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if j < text_columns else cell.rjust(w)
                  for j, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines)
