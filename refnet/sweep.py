"""Parameter sweeps: a grid of runs through joblib, results as one JSON-lines file.

A sweep is a function ``run(**point) -> dict`` and a grid ``{name: values}``;
every point of the product (seeds × N × n × T …) is one call.  The calls go
through ``joblib.Parallel`` — the loky process backend on one machine, or a
Dask cluster when a scheduler address is given (joblib's ``dask`` backend on a
``dask.distributed.Client``; dask is imported only then) — so the same code
runs on a laptop and on a cluster, and there is no process pool of our own.
Each result is the point merged with what ``run`` returned, written as one
JSON line as soon as it arrives (a tidy file: one row per run, one column
per field), which the plotting reads back with :func:`read_results`.
"""
import contextlib
import itertools
import json

__all__ = ["grid", "run_sweep", "read_results"]


def grid(**axes):
    """The points of the product of ``axes`` ({name: values}), as a list of dicts, in row-major order.

    ``grid(seed=[0, 1], n=[1, 2])`` is ``[{'seed': 0, 'n': 1}, {'seed': 0, 'n': 2}, {'seed': 1, 'n': 1},
    {'seed': 1, 'n': 2}]``: the last axis varies fastest.

    Parameters
    ----------
    **axes : iterables
        ``name=values``: each an iterable of the values that argument of ``run`` takes (not a str).

    Returns
    -------
    list of dict
        One ``{name: value}`` per point; ``[{}]`` when no axis is given, ``[]`` when an axis is empty.

    Raises
    ------
    TypeError
        If an axis's values are a str/bytes or not iterable (names the axis).
    """
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"axis {name!r} must be a list of values, got {type(values).__name__} {values!r}")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(axes[k]) for k in names))]


def _backend(scheduler):
    """joblib's backend context: loky locally, dask on the cluster at ``scheduler``."""
    from joblib import parallel_config
    if scheduler is None:
        return contextlib.nullcontext(None), parallel_config(backend="loky")
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise ImportError(f"scheduler={scheduler!r} needs dask.distributed (pip install 'dask[distributed]'); "
                          f"importing it failed: {exc}") from exc
    return Client(scheduler), parallel_config(backend="dask")


def run_sweep(run, points, path, *, n_jobs=1, scheduler=None, progress=None):
    """Run ``run(**point)`` for every point and write one JSON line per result to ``path``.

    Parameters
    ----------
    run : callable
        A picklable module-level function ``run(**point) -> dict``, the dict JSON-serialisable.
    points : list of dict
        The points, e.g. from :func:`grid`.
    path : str or os.PathLike
        File written anew (JSON lines): each line is ``{**point, **run(**point)}``.
    n_jobs : int
        Worker processes on this machine (loky), non-zero (joblib's convention: -1 for every core);
        ignored on a cluster, where every worker takes tasks.
    scheduler : str or None
        None, or the address of a Dask scheduler ("tcp://host:8786").
    progress : callable or None
        None, or ``progress(row)`` called as each result arrives (a tqdm update).

    Returns
    -------
    list of dict
        The rows in the order they finished.

    Raises
    ------
    TypeError
        If ``run`` is not callable, ``points`` is not a list/tuple of dicts, ``run`` returns something
        that is not a mapping, or a row is not JSON-serialisable.
    ValueError
        If ``n_jobs`` is not a non-zero int (local runs).
    ImportError
        If ``scheduler`` is given and dask.distributed (or joblib) is not installed.
    OSError
        If ``path`` cannot be opened for writing.
    Exception
        Whatever ``run`` raises for a point propagates (the rows before it are written).
    """
    from joblib import Parallel, delayed
    if not callable(run):
        raise TypeError(f"run must be callable, got {type(run).__name__}")
    if not isinstance(points, (list, tuple)) or not all(isinstance(p, dict) for p in points):
        raise TypeError(f"points must be a list of dicts (e.g. from grid), got {type(points).__name__}")
    if scheduler is None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0):
        raise ValueError(f"n_jobs must be a non-zero int (joblib's convention; -1 for every core), got {n_jobs!r}")
    points = [dict(p) for p in points]
    client, config = _backend(scheduler)
    rows = []
    with client, config, open(path, "w") as out:
        jobs = n_jobs if scheduler is None else -1
        results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(_one)(run, point) for point in points)
        for row in results:
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def _one(run, point):
    return {**point, **run(**point)}


def read_results(path):
    """The rows of a sweep file, a list of dicts.

    Parameters
    ----------
    path : str or os.PathLike
        A JSON-lines file written by :func:`run_sweep`; blank lines are skipped.

    Returns
    -------
    list
        One parsed JSON value (a dict for :func:`run_sweep`'s rows) per non-blank line, in file order.

    Raises
    ------
    ValueError
        If a line is not JSON (names the file and line).
    OSError
        If ``path`` cannot be opened (``FileNotFoundError`` when it does not exist).
    """
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {number} is not a JSON row ({exc.msg})") from None
    return rows
