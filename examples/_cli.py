"""What every example shares: strict arguments, results that cannot be lost, figures that may fail.

Each example stays readable on its own; this module holds only the plumbing
that would otherwise be copied seven times:

- :func:`parser` — ``argparse`` with ``allow_abbrev=False``, so ``--seed 3`` is
  an error rather than ``--seeds 3``;
- argument types :func:`positive_int`, :func:`nonnegative_int`, :func:`seed`, :func:`positive_float`,
  :func:`probability` and the check :func:`check_grid`: a bad value is a usage
  error (exit status 2) whose message names the argument, what was expected
  and what came, never a silent fallback to a default or a traceback later;
- :func:`atomic_path`, :func:`write_json_lines`, :func:`write_text` — a result
  file is written to a temporary file in its own directory, flushed to disk
  (``fsync``) and renamed over the old one (``os.replace``), so a run that
  fails part-way leaves the previous results as they were;
- :func:`save_figure` — called after the results are written and printed; a
  figure that cannot be drawn or saved (no matplotlib, a bad ``--png`` path)
  is reported on stderr and the numbers stay where they are;
- :func:`pinned_blas` — NumPy's BLAS on one thread (threadpoolctl), so the same
  command and seed print the same numbers however many cores the machine
  has: a multi-threaded GEMM may sum in another order and the last bits of a
  product, then of a whole training run, change.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import traceback

__all__ = ["parser", "positive_int", "nonnegative_int", "seed", "positive_float", "probability", "check_grid", "atomic_path",
           "write_json_lines", "write_text", "save_figure", "pinned_blas", "blas_threads_note"]


def parser(description):
    """An ``argparse.ArgumentParser`` that refuses abbreviated options (``--seed`` is not ``--seeds``).

    Parameters
    ----------
    description : str
        The first line of the example's docstring.

    Returns
    -------
    argparse.ArgumentParser
    """
    return argparse.ArgumentParser(description=description, allow_abbrev=False)


def _integer(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text):
    """Argument type: an integer ≥ 1 (steps, epochs, sizes, seeds counts).

    Parameters
    ----------
    text : str
        The value as typed.

    Returns
    -------
    int

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not an integer ≥ 1; argparse prefixes the option's name.
    """
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text):
    """Argument type: an integer ≥ 0 (a count that may be zero, e.g. Neumann-RBP's K).

    Parameters
    ----------
    text : str
        The value as typed.

    Returns
    -------
    int

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not an integer ≥ 0.
    """
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def seed(text):
    """Argument type: a random seed, an integer ≥ 0 (NumPy's generators refuse negative seeds).

    Parameters
    ----------
    text : str
        The value as typed.

    Returns
    -------
    int

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not an integer ≥ 0.
    """
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed, an integer >= 0, got {text!r}")
    return value


def _finite(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text):
    """Argument type: a finite number > 0 (learning rates).

    Parameters
    ----------
    text : str
        The value as typed.

    Returns
    -------
    float

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not a finite number > 0.
    """
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def probability(text):
    """Argument type: a probability, a number in [0, 1].

    Parameters
    ----------
    text : str
        The value as typed.

    Returns
    -------
    float

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not a number in [0, 1].
    """
    value = _finite(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def check_grid(arguments, option, values):
    """A usage error unless ``values`` (a grid axis from the command line) is non-empty and has no repeats.

    Parameters
    ----------
    arguments : argparse.ArgumentParser
        The example's parser; its ``error`` prints the usage and exits with status 2.
    option : str
        The option's name as typed, e.g. ``"--truncations"``.
    values : sequence
        The axis.

    Returns
    -------
    list
        ``values`` as a list.

    Raises
    ------
    SystemExit
        Status 2 (through ``arguments.error``) if the axis is empty or repeats a value.
    """
    values = list(values)
    if not values:
        arguments.error(f"argument {option}: expected at least one value, got none")
    repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
    if repeated:
        arguments.error(f"argument {option}: expected distinct values, got {values} ({repeated} repeated)")
    return values


@contextlib.contextmanager
def atomic_path(path, *, keep_partial=False):
    """A temporary path beside ``path``; on success it replaces ``path``, on failure ``path`` is untouched.

    Write the results to the yielded path (``run_sweep`` may write it row by
    row); when the block ends normally the file is flushed to disk and renamed
    over ``path`` in one step (``os.replace`` within one directory), so a
    reader never sees a half-written file and a failed run never truncates the
    previous results.

    Parameters
    ----------
    path : str or os.PathLike
        The file the results belong in.
    keep_partial : bool
        On failure, keep what was written as ``path + ".partial"`` (rows of a
        long sweep that did finish) instead of deleting it.

    Yields
    ------
    str
        The temporary path, in ``path``'s directory.

    Raises
    ------
    OSError
        If ``path``'s directory does not exist or cannot be written (before the block runs).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if keep_partial and os.path.getsize(tmp) > 0:
            os.replace(tmp, path + ".partial")
            print(f"the run failed; the rows it finished are in {path}.partial, {path} is unchanged",
                  file=sys.stderr)
        else:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path : str or os.PathLike
    text : str

    Raises
    ------
    OSError
        If the directory cannot be written; ``path`` is then unchanged.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json_lines(path, rows):
    """Write one JSON object per line to ``path`` atomically; a row that cannot be serialised leaves ``path`` as it was.

    Parameters
    ----------
    path : str or os.PathLike
    rows : iterable of dict
        JSON-serialisable rows.

    Raises
    ------
    TypeError, ValueError
        If a row cannot be serialised (the old file is kept).
    OSError
        If the directory cannot be written (the old file is kept).
    """
    write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def save_figure(draw, path, *args, **kwargs):
    """Draw and save a figure after the results are safe; report a failure instead of raising it.

    Parameters
    ----------
    draw : callable
        ``draw(*args, path=path, **kwargs)`` imports matplotlib, draws and saves.
    path : str
        The figure's path (``--png``).
    *args, **kwargs
        Passed to ``draw``.

    Returns
    -------
    bool
        True if the figure was saved; False, with the reason on stderr (and
        the traceback unless it is an OSError), if matplotlib is missing, the
        file could not be written or the drawing failed.
    """
    try:
        draw(*args, path=path, **kwargs)
    except ImportError as exc:
        print(f"figure not saved ({exc}; pip install matplotlib); the results are complete", file=sys.stderr)
        return False
    except Exception as exc:   # a missing folder, no permission, an unknown extension, or a bug in the drawing
        if not isinstance(exc, OSError):
            traceback.print_exc()
        print(f"figure not saved to {path!r}: {type(exc).__name__}: {exc}; the results are complete",
              file=sys.stderr)
        return False
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    return True


def pinned_blas():
    """NumPy's BLAS on one thread while the block runs (threadpoolctl); a no-op where it is not installed.

    Returns
    -------
    context manager
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def blas_threads_note():
    """A line for the table's header: BLAS pinned to one thread, or why reruns may differ in the last digits.

    Returns
    -------
    str
    """
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return "BLAS threads not pinned (threadpoolctl missing): reruns may differ in the last digits"
    return "BLAS pinned to 1 thread"
