"""Compare a candidate with a reference fixture and say where it first goes wrong.  NumPy only.

``compare(reference, candidate)`` takes a reference fixture (a path, or an
object with ``meta`` and ``arrays``) and a candidate: another fixture, or a
dict of arrays from any framework under the fixture's keys
(``{'grads/weight_ih_l0': lstm.weight_ih_l0.grad, 'forward/h_l0': out, …}``;
torch tensors, JAX, CuPy and NumPy arrays are all read as NumPy).  Only the
keys both hold are compared (set-up arrays too: a differing ``inputs/x``
means the problem was not reproduced); the report lists the results
(``forward/``, ``backward/``, ``grads/``) the candidate lacks.

Measures
--------
Per array: the max absolute error ``max|a − r|`` and the normwise relative
error ``max|a − r| / max(‖r‖_∞, atol / rtol)`` of ``gradcheck.check``; an
array passes when every entry has ``|a − r| <= max(rtol ‖r‖_∞, atol)``, i.e.
the relative error is at most ``rtol``.  ``rtol = 0`` is an exact comparison
up to ``atol`` (and ``rtol = atol = 0`` exact equality), as in ``gradcheck.check``.  A trace (T, B, H) is measured
step by step, each step against its own scale ``‖r_t‖_∞``, so an error in an
adjoint that has decayed is not hidden by a large adjoint elsewhere: entry
(t, b, j) *diverges* when ``|a − r| > max(rtol · ‖r_t‖_∞, atol)`` or ``a`` is
NaN.  NaN in the reference means "not defined" and is skipped; a result
array whose reference is NaN everywhere compares nothing (listed as
undefined), and when no result entry at all was defined the verdict is
INCONCLUSIVE (a reference that is all NaN — a diverged run — is evidence of
nothing), never PASS.

Localisation
------------
The first forward divergence is searched in the order the forward computes:
layer 0 up, step t = 1..T, and within a step in the fixture's order (gate
pre-activations, then states).  The first backward divergence in the order
back-propagation computes: top layer down, t = T..1 (a trace whose rows are a
solve's iterations, ``rows: 'ascending'`` in its meta, i = 1 up), within a step the state
adjoints (dh, dc), the gate adjoints (da_o … da_i), then each gate's share of
∂L/∂h_{t−1} (dh_prev_from_a_o …).  The report names the step (1-based, as
s_t), the quantity, its gate, and the batch element and unit with the largest
error there.  A forward divergence explains every later difference, so read
it first; with a clean forward, the first backward divergence points at the
derivative rule that is wrong.

Verdict: PASS when every compared array agrees; FAIL naming the worst
array (and the first non-finite candidate entry, by array and index);
INCONCLUSIVE when the candidate holds none of the reference's results, or
the reference defines none of their entries (nothing was compared), never
"0 of 0 agree: passed".

Tolerances by dtype (:data:`COMPARE_TOLERANCES`), **per array**: each array
is judged by the row of the less precise real dtype of its own two versions
(reference and candidate; never a sidecar's claim, never another array's
dtype: a float32 copy of a set-up array such as ``inputs/x`` does not loosen
the float64 gradients).  The report's ``dtype``/``rtol``/``atol`` are those of
the least precise result array; each :class:`ArrayDiff` carries its own:

=========  ===========  ==========================================================
dtype      rtol / atol  why
=========  ===========  ==========================================================
float64    1e-10/1e-12  two exact float64 computations of one function differ only
                        in summation order; 100 × the exact-relation tolerance of
                        ``gradcheck.TOLERANCES`` leaves room for T steps of it
float32    1e-4/1e-6    ``gradcheck.TOLERANCES``' float32 row: float32 rounding
                        measured against a float64 reference
=========  ===========  ==========================================================
"""
import os
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from .fixture_io import as_fixture, fixture_paths, load_fixture, load_npz
from .tolerances import TOLERANCES
from .verdict import Verdict

__all__ = ["COMPARE_TOLERANCES", "compare_tolerances", "ArrayDiff", "Divergence", "CompareReport",
           "compare", "candidate_arrays"]

COMPARE_TOLERANCES = {
    np.dtype("float64"): {"rtol": 100 * TOLERANCES[np.dtype("float64")]["exact"],
                          "atol": TOLERANCES[np.dtype("float64")]["exact"]},
    np.dtype("float32"): {"rtol": TOLERANCES[np.dtype("float32")]["rtol"],
                          "atol": TOLERANCES[np.dtype("float32")]["atol"]},
}


def compare_tolerances(dtype):
    """The :data:`COMPARE_TOLERANCES` row for ``dtype``; ValueError for a dtype with no row.

    Parameters
    ----------
    dtype : dtype-like
        Anything ``np.dtype`` accepts.

    Returns
    -------
    dict
        ``{'rtol': float, 'atol': float}`` (the table in the module docstring),
        the very dict stored in :data:`COMPARE_TOLERANCES` (do not mutate it).

    Raises
    ------
    TypeError
        If ``np.dtype`` does not understand ``dtype``.
    ValueError
        If it is a dtype with no row (only float64 and float32 have one).
    """
    dtype = np.dtype(dtype)
    if dtype not in COMPARE_TOLERANCES:
        raise ValueError(f"dtype must be one of {[str(d) for d in COMPARE_TOLERANCES]}, got {dtype}")
    return COMPARE_TOLERANCES[dtype]


@dataclass(frozen=True)
class ArrayDiff:
    """One compared array: its errors and where the worst entry is.

    Attributes
    ----------
    key : str
        The fixture key (``'grads/weight_ih_l0'``, ``'forward/h_l0'`` ...).
    max_abs : float
        max |a − r| over the entries the reference defines (inf where the candidate is NaN).
    max_rel : float
        The normwise relative error of the worst entry (module docstring), dimensionless.
    passed : bool
        Whether every entry is within its bound.
    index : tuple of int
        Multi-index of the worst entry (traces: (t − 1, b, unit)).
    candidate : float
        The candidate's value there (NaN for an empty array).
    reference : float
        The reference's value there.
    gate : str or None
        The gate of the worst row, for an array with gate blocks of more than one gate.
    unit : int or None
        The unit of the worst entry (within its gate block, or a trace's last axis).
    step : int or None
        Traces: t of the worst entry, 1-based.
    batch : int or None
        Traces: its batch element.
    dtype : str or None
        The dtype whose :data:`COMPARE_TOLERANCES` row judged this array.
    rtol : float or None
        The relative tolerance this array was held to.
    atol : float or None
        The absolute floor this array was held to.
    defined : int or None
        Entries the reference defines (not NaN); 0 means nothing was compared.
    """

    key: str
    max_abs: float
    max_rel: float
    passed: bool
    index: tuple              # multi-index of the worst entry (traces: (t − 1, b, unit))
    candidate: float
    reference: float
    gate: Optional[str] = None
    unit: Optional[int] = None
    step: Optional[int] = None    # traces: t of the worst entry (1-based)
    batch: Optional[int] = None   # traces: its batch element
    dtype: Optional[str] = None   # the dtype whose row judged this array
    rtol: Optional[float] = None
    atol: Optional[float] = None
    defined: Optional[int] = None  # entries the reference defines (not NaN): 0 means nothing compared

    def where(self):
        """The worst entry in words: ``step 3 batch 1 unit 2``, ``[5, 1] gate f unit 1``.

        Returns
        -------
        str
            The step, batch element and unit for a trace; otherwise the
            multi-index, with the gate and unit where the array has gate blocks.

        Raises
        ------
        TypeError
            If ``index`` is not iterable (only for an ArrayDiff built by hand).
        """
        if self.step is not None:
            return f"step {self.step} batch {self.batch} unit {self.unit}"
        return (str(list(self.index)) + (f" gate {self.gate}" if self.gate else "")
                + (f" unit {self.unit}" if self.unit is not None else ""))


@dataclass(frozen=True)
class Divergence:
    """The first place where a trace leaves the reference.

    Attributes
    ----------
    direction : {'forward', 'backward'}
        Which pass the trace belongs to.
    key : str
        The trace's fixture key.
    quantity : str
        What the trace holds: ``'a_i'``, ``'h'``, ``'dc'``, ``'da_f'``, ``'dh_prev_from_a_o'`` ...
    gate : str or None
        The gate the quantity belongs to, if any.
    layer : int
        The layer, 0 at the bottom.
    step : int
        t, 1-based (the trace's row t − 1; a solve's iteration for ``rows: 'ascending'``).
    batch : int
        The batch element with the largest excess over the bound at that step.
    unit : int
        Its unit.
    candidate : float
        The candidate's value there.
    reference : float
        The reference's value there.
    abs_error : float
        |candidate − reference|.
    bound : float
        max(rtol ‖r_t‖_∞, atol), the bound it exceeded.
    count : int
        Diverging entries of this quantity at this step.
    size : int
        Entries of this quantity at this step.
    """

    direction: str            # 'forward' or 'backward'
    key: str
    quantity: str             # 'a_i', 'h', 'dc', 'da_f', 'dh_prev_from_a_o', …
    gate: Optional[str]
    layer: int
    step: int                 # t, 1-based (the trace's row t − 1)
    batch: int
    unit: int
    candidate: float
    reference: float
    abs_error: float
    bound: float              # max(rtol ‖r_t‖_∞, atol)
    count: int                # diverging entries of this quantity at this step
    size: int                 # entries of this quantity at this step

    def describe(self, T=None):
        """One line: step, layer, quantity, gate, batch, unit, both values, the bound and how many diverge.

        Parameters
        ----------
        T : int, optional
            The sequence length, shown as ``step t of T`` when given.

        Returns
        -------
        str
            The divergence in words.

        Raises
        ------
        TypeError
            If a numeric field holds None or another non-number (only for a
            Divergence built by hand).
        ValueError
            If a numeric field holds a str (only for a Divergence built by hand).
        """
        of = f" of {T}" if T else ""
        gate = f" (gate {self.gate})" if self.gate else ""
        return (f"step {self.step}{of}, layer {self.layer}, {self.quantity}{gate}, batch {self.batch}, "
                f"unit {self.unit}: candidate {self.candidate:.6e}, reference {self.reference:.6e}, "
                f"|diff| {self.abs_error:.2e} > {self.bound:.2e}; {self.count} of {self.size} entries diverge")


@dataclass(frozen=True)
class CompareReport:
    """The outcome of :func:`compare`; ``str(report)`` is a readable table.

    ``verdict`` is PASS (every compared array agrees), FAIL (one does not;
    the reason names it, and a non-finite candidate entry by its index) or
    INCONCLUSIVE (no result array in common: nothing was compared).

    Attributes
    ----------
    verdict : Verdict
        PASS, FAIL or INCONCLUSIVE, with its reason.
    dtype : str
        The least precise dtype among the result arrays compared.
    rtol : float
        The relative tolerance of that dtype (or the caller's override).
    atol : float
        The absolute floor of that dtype (or the caller's override).
    arrays : list of ArrayDiff
        One per shared key, in the reference's key order.
    first_forward : Divergence or None
        The first forward divergence, in the order the forward computes.
    first_backward : Divergence or None
        The first backward divergence, in the order back-propagation computes.
    missing : list of str
        Result keys (``forward/``, ``backward/``, ``grads/``) the candidate lacks.
    ignored : list of str
        Candidate keys the reference lacks.
    context : dict
        Cell, algorithm and sizes (T, B, hidden_size, num_layers) from the reference's meta.
    undefined : list of str
        Result keys whose reference is NaN everywhere (nothing compared).
    """

    verdict: Verdict
    dtype: str
    rtol: float
    atol: float
    arrays: list = field(default_factory=list)     # ArrayDiff, reference key order
    first_forward: Optional[Divergence] = None
    first_backward: Optional[Divergence] = None
    missing: list = field(default_factory=list)    # result keys (forward/, backward/, grads/) the candidate lacks
    ignored: list = field(default_factory=list)    # candidate keys the reference lacks
    context: dict = field(default_factory=dict)    # cell, algorithm, sizes from the reference's meta
    undefined: list = field(default_factory=list)  # result keys whose reference is NaN everywhere (nothing compared)

    @property
    def passed(self):
        """True only for a PASS verdict (inconclusive is not a pass)."""
        return self.verdict.passed

    @property
    def reason(self):
        """The verdict's reason, in words."""
        return self.verdict.reason

    @property
    def failed(self):
        """Keys of the arrays that did not pass."""
        return [a.key for a in self.arrays if not a.passed]

    @property
    def first_divergence(self):
        """The forward divergence if there is one (it explains the rest), else the backward one."""
        return self.first_forward or self.first_backward

    def table(self):
        """The readable report: context, first divergences, one row per array, what was not compared.

        Returns
        -------
        str
            What ``str(report)`` and ``print(report)`` show.

        Raises
        ------
        KeyError
            If ``verdict.status`` is unknown (only for a report built by hand).
        """
        c = self.context
        T = c.get("T")
        head = " ".join(f"{k} {c[k]}" for k in ("cell", "algorithm") if k in c)
        sizes = ", ".join(f"{k} = {c[k]}" for k in ("T", "B", "hidden_size", "num_layers") if k in c)
        forward = self.first_forward.describe(T) if self.first_forward else "none"
        backward = self.first_backward.describe(T) if self.first_backward else "none"
        lines = [f"compare {head} ({sizes}) in {self.dtype}: rtol {self.rtol:g}, atol {self.atol:g}",
                 "first forward divergence:  " + forward,
                 "first backward divergence: " + backward,
                 f"{'array':<30} {'max abs':>9} {'max rel':>9}  {'worst at':<26} result"]
        for a in self.arrays:
            lines.append(f"{a.key:<30} {a.max_abs:9.2e} {a.max_rel:9.2e}  {a.where():<26} "
                         f"{'pass' if a.passed else 'FAIL'}")
        if self.missing:
            lines.append(f"not compared (absent from the candidate): {', '.join(self.missing)}")
        if self.undefined:
            lines.append(f"not compared (the reference is NaN everywhere): {', '.join(self.undefined)}")
        if self.ignored:
            lines.append(f"ignored (not in the reference): {', '.join(self.ignored)}")
        lines.append(f"{len(self.arrays) - len(self.failed)} of {len(self.arrays)} arrays agree: "
                     + {"pass": "passed", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}[self.verdict.status]
                     + (f" ({self.verdict.reason})" if self.verdict.reason and not self.passed else ""))
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        """A JSON-able dict of the whole report.

        Returns
        -------
        dict
            ``passed``, ``verdict`` (the status), ``reason``, ``dtype``,
            ``rtol``, ``atol``, ``first_forward`` and ``first_backward`` (dicts
            or None), ``arrays`` (one dict per ArrayDiff, ``index`` as a
            list), ``missing``, ``undefined``, ``ignored``, ``context``.

        Raises
        ------
        TypeError
            If a divergence or array entry is not a dataclass instance (only
            for a report built by hand).
        """
        return {"passed": self.passed, "verdict": self.verdict.status, "reason": self.verdict.reason,
                "dtype": self.dtype, "rtol": self.rtol, "atol": self.atol,
                "first_forward": None if self.first_forward is None else asdict(self.first_forward),
                "first_backward": None if self.first_backward is None else asdict(self.first_backward),
                "arrays": [dict(asdict(a), index=list(a.index)) for a in self.arrays],
                "missing": self.missing, "undefined": self.undefined, "ignored": self.ignored,
                "context": self.context}


_RESULTS = ("forward", "backward", "grads")   # the groups a candidate computes; the rest is set-up


def _to_numpy(value, key):
    """A NumPy array from a NumPy, torch (detached, on the CPU), JAX or CuPy array, or a number."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if type(value).__module__.split(".")[0] == "cupy" or type(value).__name__ == "StrictArray":
        value = value.get()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"candidate[{key!r}] must be an array, got {type(value).__name__}") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(f"candidate[{key!r}] must be a real (bool, int, float) array, got dtype {array.dtype} "
                        f"from {type(value).__name__}")
    return array


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = _to_numpy(value, name)
    return out


def candidate_arrays(candidate):
    """The candidate's arrays {key: NumPy array}: from a fixture, a path, or a (nested) dict.

    A path with a sidecar is loaded (and validated) as a fixture; a path
    without one is read as a plain ``.npz`` of arrays (no pickle).  Torch
    tensors (detached, on the CPU), JAX and CuPy arrays are read as NumPy.

    Parameters
    ----------
    candidate : dict, Fixture, str or os.PathLike
        A (possibly nested) dict {key: array or tensor}, nested keys joined by
        ``/`` (``{'grads': {'weight_ih_l0': g}}`` -> ``'grads/weight_ih_l0'``);
        anything with ``arrays``; or a fixture or ``.npz`` path.

    Returns
    -------
    dict {key: ndarray}
        Flat keys, NumPy arrays.

    Raises
    ------
    TypeError
        If ``candidate`` is none of these, or an entry is not a real (bool,
        int, float) array.
    FixtureError
        Naming the file, for a path that is missing, unreadable, or (with a
        sidecar) not a valid fixture.
    """
    if isinstance(candidate, dict):
        return _flatten(candidate)
    if hasattr(candidate, "arrays"):
        return {k: _to_numpy(v, k) for k, v in candidate.arrays.items()}
    if not isinstance(candidate, (str, os.PathLike)):
        raise TypeError(f"candidate must be a fixture, a path or a dict of arrays, got {type(candidate).__name__}")
    npz_path, json_path = fixture_paths(candidate)
    if os.path.exists(json_path):
        return dict(load_fixture(candidate).arrays)
    return load_npz(npz_path)


def _less_precise(dtypes):
    floats = [np.dtype(d) for d in dtypes if np.dtype(d).kind == "f"]
    if not floats:
        return np.dtype("float64")
    return max(floats, key=lambda d: np.finfo(d).eps)


def _measure(a, r, rtol, atol, trace):
    """|a − r| with NaN in a as ∞ and NaN in r as 0 (undefined), and each entry's bound."""
    a, r = a.astype(np.float64), r.astype(np.float64)
    defined = ~np.isnan(r)
    diff = np.where(defined, np.abs(a - r), 0.0)
    diff = np.where(defined & np.isnan(a), np.inf, diff)
    r0 = np.where(defined, np.abs(r), 0.0)
    if trace:
        scale = r0.reshape(r0.shape[0], -1).max(axis=1) if r0.size else np.zeros(r0.shape[0])
        scale = scale.reshape((-1,) + (1,) * (r0.ndim - 1))
    else:
        scale = np.asarray(r0.max() if r0.size else 0.0)
    if rtol > 0:
        scale = np.maximum(scale, atol / rtol)
        bound = rtol * scale                         # = max(rtol ‖r‖, atol)
    else:                                            # exact up to atol (module docstring)
        scale = np.maximum(scale, np.finfo(np.float64).tiny)
        bound = np.full(scale.shape, float(atol))
    return diff, scale, np.broadcast_to(bound, diff.shape)


def _array_diff(key, a, r, rtol, atol, trace, blocks, dtype=None):
    diff, scale, bound = _measure(a, r, rtol, atol, trace)
    defined = int((~np.isnan(r.astype(np.float64))).sum())
    tol = {"dtype": None if dtype is None else str(dtype), "rtol": rtol, "atol": atol, "defined": defined}
    if diff.size == 0:
        return ArrayDiff(key, 0.0, 0.0, True, (), float("nan"), float("nan"), **tol)
    rel = diff / scale
    index = np.unravel_index(int(np.argmax(rel)), rel.shape)
    gate = unit = step = batch = None
    if blocks is not None:
        row = int(index[blocks["axis"]])
        unit = row % blocks["size"]
        gate = blocks["gates"][row // blocks["size"]] if len(blocks["gates"]) > 1 else None
    elif trace:
        step, batch, unit = int(index[0]) + 1, int(index[1]), int(index[-1])
    max_rel = float(rel[index])
    return ArrayDiff(key, float(diff.max()), max_rel, bool((diff <= bound).all()), tuple(int(i) for i in index),
                     float(a[index]), float(r[index]), gate, unit, step, batch, **tol)


def _first_divergence(key, info, a, r, rtol, atol):
    """The (sort key, Divergence) of the trace's first diverging step, or None."""
    diff, _, bound = _measure(a, r, rtol, atol, True)
    over = diff > bound
    steps = np.flatnonzero(over.reshape(over.shape[0], -1).any(axis=1))
    if steps.size == 0:
        return None
    # rows in the order they were computed: forward traces, and backward ones whose rows are iterations
    # of a solve (meta traces[key]['rows'] == 'ascending', e.g. RBP's z_i) rather than steps back in time
    forward = info["direction"] == "forward" or info.get("rows") == "ascending"
    row = int(steps[0] if forward else steps[-1])
    excess = np.where(over[row], diff[row] - bound[row], -np.inf)
    where = np.unravel_index(int(np.argmax(excess)), excess.shape)
    batch, unit = int(where[0]), int(where[-1])     # a step of a trace is (B, H)
    divergence = Divergence(info["direction"], key, info["quantity"], info.get("gate"), int(info["layer"]),
                            row + 1, batch, unit, float(a[row][where]), float(r[row][where]),
                            float(diff[row][where]), float(bound[row][where]), int(over[row].sum()),
                            int(over[row].size))
    layer, order = int(info["layer"]), int(info.get("order", 0))
    sort_key = (layer, row, order) if info["direction"] == "forward" else (-layer, -row if not forward else row, order)
    return sort_key, divergence


def _first_non_finite(key, a, r):
    """'candidate[key] is nan at index [...]' for the first non-finite candidate entry the reference defines."""
    if a.dtype.kind != "f":
        return None
    bad = ~np.isfinite(a) & ~np.isnan(r.astype(np.float64))
    if not bad.any():
        return None
    index = [int(i) for i in np.argwhere(bad)[0]]
    return f"candidate[{key!r}] is {a[tuple(index)]} at index {index} (reference {r[tuple(index)]:.6e})"


def compare(reference, candidate, *, rtol=None, atol=None):
    """Compare ``candidate`` with the ``reference`` fixture (module docstring).

    Parameters
    ----------
    reference : str, os.PathLike, Fixture or object
        A fixture path, or an object with ``meta`` and ``arrays``.
    candidate : dict, Fixture, str or os.PathLike
        Another fixture (or its path, or a plain ``.npz`` path), or a
        (possibly nested) dict {key: array or tensor} under the fixture's keys,
        e.g. ``{'grads': {'weight_ih_l0': …}}`` (see :func:`candidate_arrays`).
    rtol : float, optional
        Relative tolerance (>= 0, dimensionless) overriding, for every array,
        the :data:`COMPARE_TOLERANCES` row of the less precise real dtype of
        that array's two versions (what the arrays are, not what a sidecar
        says).  ``rtol = 0`` compares exactly up to ``atol``.
    atol : float, optional
        Absolute floor (>= 0, in each array's units) overriding the row's;
        ``rtol = atol = 0`` asks for exact equality.

    Returns
    -------
    CompareReport
        ``report.verdict`` (PASS / FAIL / INCONCLUSIVE: no result array in
        common, or none of their entries defined), ``report.passed``,
        ``report.first_divergence``; ``print(report)`` shows the table.

    Raises
    ------
    FixtureError
        (a ValueError) naming the file, for a missing, unreadable or
        inconsistent fixture or candidate file, and for a sidecar field of the
        wrong type or range.
    ValueError
        If a shared key's shapes differ, a tolerance is negative or not
        finite, or an array compared has a float dtype with no tolerance row
        (float16, say) -- even when both ``rtol`` and ``atol`` are given.
    TypeError
        If a tolerance is not a number, ``reference`` is not a fixture, or
        ``candidate`` is not arrays.
    """
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a finite number >= 0 or None, got {type(value).__name__} {value!r}")
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    ref = as_fixture(reference)
    ref_arrays = {k: _to_numpy(v, k) for k, v in ref.arrays.items()}
    cand = candidate_arrays(candidate)
    shared = [k for k in ref_arrays if k in cand]
    for k in shared:
        if np.shape(cand[k]) != np.shape(ref_arrays[k]):
            raise ValueError(f"candidate[{k!r}] must have shape {np.shape(ref_arrays[k])}, "
                             f"got {np.shape(cand[k])}")
    # Tolerances from each array's own real dtypes (module docstring): a sidecar's 'dtype' is a claim,
    # the arrays are the fact, and a float32 set-up array says nothing about float64 results.
    def tolerances(k):
        dtype = _less_precise([ref_arrays[k].dtype, cand[k].dtype])
        row = compare_tolerances(dtype)
        return (dtype, row["rtol"] if rtol is None else float(rtol),
                row["atol"] if atol is None else float(atol))
    per_array = {k: tolerances(k) for k in shared}
    summary = [k for k in shared if k.split("/")[0] in _RESULTS] or shared
    dtype = _less_precise([per_array[k][0] for k in summary]) if summary else np.dtype("float64")
    row = compare_tolerances(dtype)
    report_rtol = row["rtol"] if rtol is None else float(rtol)
    report_atol = row["atol"] if atol is None else float(atol)
    context = {k: ref.meta[k] for k in ("cell", "algorithm", "T", "B", "hidden_size", "num_layers")
               if k in ref.meta}
    missing = [k for k in ref_arrays if k not in cand and k.split("/")[0] in _RESULTS]
    ignored = [k for k in cand if k not in ref_arrays]
    results = [k for k in shared if k.split("/")[0] in _RESULTS]
    if not results:
        reason = (f"the candidate holds none of the reference's results ({', '.join(_RESULTS)}): nothing was "
                  f"compared" if shared else
                  f"the candidate shares no key with the reference (e.g. {sorted(ref_arrays)[:4]}; got "
                  f"{sorted(cand)[:8]}): nothing was compared")
        return CompareReport(Verdict.inconclusive(reason), str(dtype), report_rtol, report_atol, [], None, None,
                             missing, ignored=ignored, context=context)

    traces = ref.meta.get("traces", {})
    blocks = ref.meta.get("gate_blocks", {})
    diffs, firsts = [], {"forward": [], "backward": []}
    non_finite = []
    for k in shared:
        a, r = np.asarray(cand[k]), np.asarray(ref_arrays[k])
        is_trace = k in traces and r.ndim >= 2
        k_dtype, k_rtol, k_atol = per_array[k]
        diffs.append(_array_diff(k, a, r, k_rtol, k_atol, is_trace, blocks.get(k), k_dtype))
        if is_trace:
            found = _first_divergence(k, traces[k], a, r, k_rtol, k_atol)
            if found is not None:
                firsts[traces[k]["direction"]].append(found)
        bad = _first_non_finite(k, a, r)
        if bad:
            non_finite.append(bad)
    first = {d: min(found, key=lambda item: item[0])[1] if found else None for d, found in firsts.items()}
    failed = [d for d in diffs if not d.passed]
    undefined = [d.key for d in diffs if d.key in results and d.defined == 0 and np.size(ref_arrays[d.key])]
    compared = sum(d.defined for d in diffs if d.key in results)
    if non_finite:
        verdict = Verdict.fail("; ".join(non_finite[:3]))
    elif failed:
        d = max(failed, key=lambda d: d.max_rel / max(d.rtol, np.finfo(np.float64).tiny))
        verdict = Verdict.fail(f"{len(failed)} of {len(diffs)} arrays differ; worst {d.key} at {d.where()}: "
                               f"candidate {d.candidate:.6e}, reference {d.reference:.6e} "
                               f"(rel error {d.max_rel:.2e} > rtol {d.rtol:g}, {d.dtype}"
                               + (f", atol {d.atol:g}" if d.rtol == 0 else "") + ")")
    elif compared == 0:
        verdict = Verdict.inconclusive(
            f"nothing was compared: the reference defines no entry of its results ({', '.join(undefined[:4])}"
            f"{', …' if len(undefined) > 4 else ''} are NaN everywhere); a reference whose results are all NaN "
            "(e.g. a diverged run) is evidence of nothing")
    else:
        verdict = Verdict.pass_(f"{len(diffs)} arrays agree ({len(results)} results) to rtol {report_rtol:g}"
                                + (f" ({len(undefined)} result arrays undefined in the reference, not compared)"
                                   if undefined else ""))
    return CompareReport(verdict, str(dtype), report_rtol, report_atol, diffs, first["forward"], first["backward"],
                         missing, ignored, context, undefined)
