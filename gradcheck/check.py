"""Gradient checks with a three-valued verdict (pass / fail / inconclusive) and a readable table.

Error measure.  For each parameter k with analytic gradient a and reference
n (finite differences, or another algorithm), the *normwise relative error* is

    err_k = max_i |a_i − n_i| / max(‖n‖_∞, atol / rtol)

and a coordinate is out of tolerance when its error exceeds rtol.  Measuring
against the gradient's own scale keeps near-zero entries from inflating the
error, while the floor atol / rtol turns the test absolute for a gradient
that is itself (almost) zero.  The report names the parameter and flat index
of the worst entry with both values.

Verdicts (``gradcheck.verdict``).  Against finite differences, a coordinate
out of tolerance is examined before it is blamed on the gradient:

* *noise floor* — ``|a − n|`` is within what the objective's measured noise σ
  (``estimate_noise``) lets a central difference resolve, 4σ/ε (≈ 5.7 standard
  deviations of the difference's noise σ/(√2 ε)): inconclusive;
* *kink* — the second-order one-sided derivatives (``one_sided_derivatives``)
  disagree beyond tolerance, so f is not differentiable at θ: inconclusive,
  whatever the analytic value, reported with left, right and analytic and
  whether it matches one side.  Where f has no derivative, finite
  differences can neither confirm nor refute a value: a convention such as
  refnet's relu′(0) = 0 (PyTorch's, taking the left derivative of a unit
  whose pre-activation rises with the coordinate) picks one side for one
  unit, but a coordinate (or direction) that moves several units sitting at
  0 with slopes of both signs legitimately gets a value that is neither one
  side nor between them (it mixes each unit's own side);
* otherwise the gradient is wrong: fail.

A kink the central difference averages away (|x| at 0 with analytic 0) is
found too: every coordinate whose first-order one-sided differences
(free: f(θ), f(θ ± ε e) are at hand) disagree beyond tolerance is examined
the same way, and reported, even when it agreed with the central difference.

A non-finite objective is a fail naming where (f(θ), or which step at
which coordinate).  A float32 objective (``f`` returns float32, or its
measured noise is beyond what float64 arithmetic gives) is named in the
report and checked with ``gradcheck.tolerances.FLOAT32_OBJECTIVE``.
"""
import math
import numbers
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .finite_differences import (Objective, as_float64, estimate_noise, one_sided_derivatives,
                                 unit_roundoff)
from .tolerances import FLOAT32_OBJECTIVE, tolerances_for
from .verdict import GradcheckError, InconclusiveError, Verdict, combine, raise_for

__all__ = ["GradcheckError", "InconclusiveError", "GradReport", "TaylorReport", "ParamError", "Kink",
           "check_grads", "check_directional", "compare_grads", "dot_product_test", "taylor_test"]

# Central-difference noise: f(θ ± ε e) each carry noise of std σ, so the
# quotient carries σ/(√2 ε); 4σ/ε is ≈ 5.7 of those standard deviations.
_CENTRAL_NOISE = 4.0
# Second-order one-sided quotients (−3, 4, −1)/2ε carry √26 σ/(2ε) ≈ 2.55 σ/ε;
# 10 σ/ε is ≈ 4 of those.
_ONE_SIDED_NOISE = 10.0
# A float64 evaluation of f near |f| carries ~u|f| of rounding (times a
# modest growth factor); noise 1000× above that means f is computed in less
# than float64 (a hidden float32 cast).
_FLOAT64_NOISE = 1e3


@dataclass(frozen=True)
class ParamError:
    """The worst entry of one parameter (or one direction).

    Attributes
    ----------
    name : str
        The parameter's key in ``params`` (or ``'direction j'``).
    rel_error : float
        Its normwise relative error (module docstring), dimensionless.
    index : tuple of int
        Multi-index of the worst entry in the parameter's shape; () for a direction.
    analytic : float
        The analytic gradient there.
    reference : float
        The reference value there (finite difference, or the other algorithm).
    """

    name: str
    rel_error: float
    index: tuple      # multi-index of the worst entry
    analytic: float
    reference: float


@dataclass(frozen=True)
class Kink:
    """A coordinate (or direction) where f is not differentiable at θ.

    Found when the second-order one-sided derivatives
    (:func:`~gradcheck.finite_differences.one_sided_derivatives`) disagree
    beyond tolerance and noise.

    Attributes
    ----------
    name : str
        The parameter's key (or ``'direction j'``, ``'direction v'``).
    index : tuple of int
        Multi-index of the coordinate in the parameter's shape; () for a direction.
    analytic : float
        The analytic derivative along that coordinate (or ⟨g, v⟩).
    left : float
        The left derivative (second-order one-sided difference).
    right : float
        The right derivative.
    central : float
        The central difference, (left + right) / 2 up to O(ε²).
    matches : {'left', 'right', 'between', None}
        Which side the analytic value equals within tolerance; 'between' when
        strictly between them (a convention such as sign'(0) = 0), None when outside.
    at_theta : bool
        True when the kink is at θ; False when a one-sided estimate changes
        with the step (the kink lies within (0, 2ε] of θ).
    """

    name: str
    index: tuple
    analytic: float
    left: float           # left derivative (second-order one-sided difference)
    right: float          # right derivative
    central: float        # the central difference, (left + right) / 2 up to O(ε²)
    matches: Optional[str]   # 'left', 'right', 'between' (strictly between them), or None (outside)
    at_theta: bool = True    # False: a one-sided estimate changes with the step (kink inside (0, 2ε])

    def describe(self):
        """One line naming the coordinate, left, right and analytic values, and the side matched.

        Returns
        -------
        str
            E.g. ``"W[0, 1] not differentiable at θ (kink): left ..., right ..., analytic ... (= left)"``.

        Raises
        ------
        KeyError
            If ``matches`` is not one of 'left', 'right', 'between', None
            (only for a Kink built by hand).
        """
        where = f"{self.name}{list(self.index)}" if self.index != () else self.name
        side = {"left": " (= left)", "right": " (= right)", None: " (matches neither)",
                "between": " (between them: a convention such as sign'(0) = 0)"}[self.matches]
        near = "" if self.at_theta else " within 2ε of θ"
        return (f"{where} not differentiable at θ (kink{near}): left {self.left:.6e}, "
                f"right {self.right:.6e}, analytic {self.analytic:.6e}{side}")


@dataclass(frozen=True)
class GradReport:
    """Outcome of a comparison: the verdict, and the worst entry per parameter (worst first).

    Returned by :func:`check_grads`, :func:`check_directional`,
    :func:`compare_grads` and :func:`dot_product_test`.

    Attributes
    ----------
    max_rel_error : float
        The largest normwise relative error over all parameters (inf when the
        objective was not finite), dimensionless.
    rtol : float
        The relative tolerance the errors were held to.
    atol : float
        The absolute floor: a gradient below atol / rtol in ∞-norm counts as zero.
    verdict : Verdict
        PASS, FAIL or INCONCLUSIVE, with its reason.
    params : list of ParamError
        The worst entry of each parameter (or direction), worst first.
    reference_name : str
        The reference's column title (``'numeric'`` for finite differences).
    kinks : list of Kink
        Every non-differentiable coordinate examined.
    notes : tuple of str
        Remarks on the check, e.g. the objective's precision.
    eps : float or None
        The central-difference step used (None when no finite difference was taken).
    noise : float or None
        The measured σ of f near θ, in f's units (finite differences only).
    """

    max_rel_error: float
    rtol: float
    atol: float
    verdict: Verdict
    params: list = field(default_factory=list)   # ParamError per parameter, worst first
    reference_name: str = "numeric"
    kinks: list = field(default_factory=list)    # Kink per non-differentiable coordinate examined
    notes: tuple = ()                            # e.g. the objective's precision
    eps: Optional[float] = None
    noise: Optional[float] = None                # measured σ of f (finite differences only)

    @property
    def passed(self):
        """True only for a PASS verdict (inconclusive is not a pass)."""
        return self.verdict.passed

    @property
    def status(self):
        """The verdict's status: ``'pass'``, ``'fail'`` or ``'inconclusive'``."""
        return self.verdict.status

    @property
    def reason(self):
        """The verdict's reason, in words."""
        return self.verdict.reason

    def table(self):
        """A readable table, one row per parameter, worst first, then kinks and notes.

        Returns
        -------
        str
            Lines of parameter, relative error, index, analytic and reference
            values (out-of-tolerance rows marked), each kink described, the
            notes, and a last line with the tolerance and the verdict.

        Raises
        ------
        TypeError
            If a numeric field holds None or another non-number (a report
            built by hand); the reports the checks return always format.
        ValueError
            If a numeric field holds a str (a report built by hand).
        """
        ref = self.reference_name
        lines = [f"{'parameter':<24} {'rel error':>10} {'index':>14} {'analytic':>14} {ref:>14}"]
        for p in self.params:
            mark = "  <-- out of tolerance" if p.rel_error > self.rtol else ""
            lines.append(f"{p.name:<24} {p.rel_error:10.2e} {str(p.index):>14} "
                         f"{p.analytic:14.6e} {p.reference:14.6e}{mark}")
        lines += ["  " + k.describe() for k in self.kinks]
        lines += ["note: " + n for n in self.notes]
        lines.append(f"tolerance: rel error <= rtol = {self.rtol:g} (floor atol = {self.atol:g}); "
                     f"max rel error {self.max_rel_error:.2e}: "
                     + (self.verdict.label if self.verdict.passed else str(self.verdict)))
        return "\n".join(lines)


def _floor(rtol, atol):
    """The scale below which a gradient counts as zero: atol / rtol (tiny when rtol = 0)."""
    return atol / rtol if rtol > 0 else max(atol, 1e-300)


def _check_tolerance(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return int(seed)


def _check_positive(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _least_precise(arrays):
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    if not floats:
        return np.dtype(np.float64)
    return max(floats, key=lambda d: np.finfo(d).eps)


def _as_numpy(value, where):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if type(value).__module__.split(".")[0] == "cupy" or type(value).__name__ == "StrictArray":
        value = value.get()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{where} must be a real array, got {type(value).__name__}") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{where} must be a real (bool, int or float) array, got dtype {array.dtype}")
    return array


def _check_grads_like(grads, params, name, equal_nan=False, nan_hint=False):
    """``grads`` as NumPy arrays with params' keys and shapes, finite (NaN allowed with equal_nan)."""
    if not isinstance(grads, dict):
        raise TypeError(f"{name} must be a dict {{name: array}}, got {type(grads).__name__}")
    missing, extra = sorted(set(params) - set(grads)), sorted(set(grads) - set(params))
    if missing or extra:
        raise ValueError(f"{name} must have the keys of params {sorted(params)}; missing {missing}, "
                         f"extra {extra}")
    out = {}
    for k in params:
        g = _as_numpy(grads[k], f"{name}[{k!r}]")
        if g.shape != np.shape(params[k]):
            raise ValueError(f"{name}[{k!r}] must have shape {np.shape(params[k])} like params[{k!r}], "
                             f"got {g.shape}")
        bad = ~np.isfinite(g) if g.dtype.kind == "f" else np.zeros(g.shape, bool)
        if equal_nan:
            bad &= ~np.isnan(g)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name}[{k!r}] must be finite, got {g[at]} at index {at}"
                             + (" (pass equal_nan=True to compare NaN with NaN)"
                                if np.isnan(g[at]) and nan_hint else ""))
        out[k] = g
    return out


def _tolerances(dtype, eps, rtol, atol, row=None):
    if row is None and None in (eps, rtol, atol):
        try:
            row = tolerances_for(dtype)
        except ValueError:
            raise ValueError(f"grads have dtype {dtype}, which has no default tolerances (rows: float64, "
                             f"float32); pass eps, rtol and atol") from None
    return (eps if eps is not None else row["eps"], row["rtol"] if rtol is None else rtol,
            row["atol"] if atol is None else atol)


def _compare(analytic, reference, rtol, atol, equal_nan, reference_name):
    """Per-parameter worst rows and every out-of-tolerance coordinate, worst first."""
    rows, out_of_tolerance, compared = [], [], 0
    for name in reference:
        a = np.asarray(analytic[name], dtype=np.float64)
        n = np.asarray(reference[name], dtype=np.float64)
        if a.size == 0:
            continue
        compared += a.size
        diff = np.abs(a - n)
        both_nan = np.isnan(a) & np.isnan(n)
        diff = np.where(both_nan, 0.0 if equal_nan else np.inf, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        finite_n = np.abs(n[np.isfinite(n)])
        scale = max(float(finite_n.max()) if finite_n.size else 0.0, _floor(rtol, atol))
        rel = diff / scale
        index = np.unravel_index(int(np.argmax(rel)), a.shape)
        rows.append(ParamError(name, float(rel[index]), tuple(int(i) for i in index),
                               float(a[index]), float(n[index])))
        for flat in np.flatnonzero(rel.reshape(-1) > rtol):
            idx = tuple(int(i) for i in np.unravel_index(int(flat), a.shape))
            out_of_tolerance.append((float(rel[idx]), name, idx, float(a[idx]), float(n[idx]), rtol * scale))
    rows.sort(key=lambda p: -p.rel_error)
    out_of_tolerance.sort(key=lambda item: -item[0])
    worst = rows[0].rel_error if rows else 0.0
    return rows, out_of_tolerance, worst, compared


def _classify(phi, f0, analytic, central, eps, bound, sigma, name, index, in_tolerance=False):
    """('noise' | 'wrong' | 'kink' | 'smooth', Kink or None) for one coordinate (module docstring).

    ``in_tolerance``: the coordinate agreed with its central difference and is
    examined only because its first-order one-sided differences disagree;
    'smooth' then means the second-order ones agree (curvature, not a kink).
    """
    if not in_tolerance and abs(analytic - central) <= bound + _CENTRAL_NOISE * sigma / eps:
        return "noise", None
    left, right, left_half, right_half = one_sided_derivatives(phi, f0, eps)
    if not all(math.isfinite(v) for v in (left, right, left_half, right_half)):
        return ("smooth" if in_tolerance else "wrong"), None
    one_sided = bound + _ONE_SIDED_NOISE * sigma / eps
    if abs(left - right) <= 2 * one_sided:
        return ("smooth" if in_tolerance else "wrong"), None
    # the half-step estimate carries twice the noise of the full-step one
    at_theta = abs(left - left_half) <= 3 * one_sided and abs(right - right_half) <= 3 * one_sided
    if abs(analytic - left) <= one_sided:
        matches = "left"
    elif abs(analytic - right) <= one_sided:
        matches = "right"
    elif min(left, right) < analytic < max(left, right):
        matches = "between"
    else:
        matches = None
    return "kink", Kink(name, index, analytic, left, right, central, matches, at_theta)


def _gap_persists(phi, f0, gap, eps, sigma):
    """Whether a first-order one-sided gap ``gap`` = (f(θ+ε) + f(θ−ε) − 2 f(θ)) / ε is a kink's.

    Curvature gives a gap ε f'' that shrinks with the step; a kink's gap is its
    jump in slope, whatever the step.  Two evaluations at h = ε/8 tell them
    apart (curvature leaves gap/8, a kink the whole gap): only a gap that
    keeps at least half its size, beyond the noise 6σ/h, goes on to the
    8-evaluation one-sided examination of :func:`_classify`.
    """
    h = eps / 8.0
    small = (phi(h) + phi(-h) - 2.0 * f0) / h
    if not math.isfinite(small):
        return True
    return abs(small) > 0.5 * abs(gap) and abs(small) > 6.0 * sigma / h


def _decides_fail(kind, kink):
    """Only a wrong coordinate at a differentiable point: no FD verdict can refute a value at a kink."""
    return kind == "wrong"


def _verdict_from(examined, worst, rtol, title):
    """The verdict from the examined coordinates [(kind, Kink, text)] ('smooth' ones are not listed)."""
    if not examined:
        return Verdict.pass_(f"max rel error {worst:.2e} <= rtol {rtol:g}")
    verdicts = []
    for kind, kink, text in examined:
        if kind == "wrong":
            verdicts.append(Verdict.fail(f"{title}: {text}"))
        elif kind == "kink":
            verdicts.append(Verdict.fail(kink.describe()) if _decides_fail(kind, kink)
                            else Verdict.inconclusive(kink.describe()))
        else:
            verdicts.append(Verdict.inconclusive(f"{text} is within the objective's noise floor: finite "
                                                 f"differences cannot resolve it (evaluate f in float64, "
                                                 f"or raise eps)"))
    verdict = combine(verdicts)
    if len(verdicts) > 3:
        shown = [v.reason for v in verdicts if v.status == verdict.status][:3]
        verdict = Verdict(verdict.status, "; ".join(shown) + f"; ({len(examined)} coordinates examined)")
    return verdict


def _objective_precision(objective, f0, sigma, params_dtypes):
    """(is the objective float32-or-less?, notes naming why)."""
    notes = []
    if any(d == np.float32 for d in params_dtypes):
        notes.append("params are float32: f was evaluated at their float64 copies (the same points)")
    low = objective.dtype is not None and np.finfo(objective.dtype).eps > np.finfo(np.float64).eps
    if low:
        notes.append(f"the objective is {objective.dtype}: f returned {objective.dtype}; checked with the "
                     f"float32-objective tolerances (gradcheck.tolerances.FLOAT32_OBJECTIVE); for a "
                     f"float64 check, compute f in float64 and return float(...)")
    elif math.isfinite(sigma) and sigma > _FLOAT64_NOISE * unit_roundoff(np.float64) * max(abs(f0), 1.0):
        low = True
        notes.append(f"the objective's measured noise σ = {sigma:.2e} is beyond float64 rounding of "
                     f"|f| = {abs(f0):.3g}: f computes in lower precision (float32?); checked with the "
                     f"float32-objective tolerances; for a float64 check, compute f in float64")
    return low, notes


def _fail_report(reason, rtol, atol, reference_name="numeric", notes=(), eps=None):
    return GradReport(float("inf"), rtol, atol, Verdict.fail(reason), [], reference_name, [], tuple(notes), eps)


def _direction(params, rng):
    v = {k: rng.standard_normal(np.shape(p)) for k, p in params.items()}
    norm = np.sqrt(sum(float((d * d).sum()) for d in v.values()))
    return {k: d / norm for k, d in v.items()}


def _measure_noise(objective, params, f0, seed=12345):
    """σ of f near θ along a random unit direction, at steps from 1e-9 · max(‖θ‖_∞, 1)."""
    v = _direction(params, np.random.default_rng(seed))
    size = max(max((float(np.abs(p).max()) for p in params.values() if p.size), default=0.0), 1.0)

    def phi(t):
        return objective({k: params[k] + t * v[k] for k in params}, f"f(θ + {t:.1e} v) (noise estimate)")
    sigma, _ = estimate_noise(phi, f0, 1e-9 * size)
    # f not finite near θ along v: the finite differences will name the coordinate where
    # it is not finite, if any; meanwhile assume no noise (the strictest tolerance).
    return sigma if math.isfinite(sigma) else 0.0


def check_grads(f, params, grads, *, eps=None, rtol=None, atol=None, equal_nan=False,
                raise_on_failure=True, allow_inconclusive=False):
    """Compare ``grads`` with central finite differences of ``f`` at ``params``, every coordinate.

    Parameters
    ----------
    f : callable
        The objective, dict {name: float64 array} -> real scalar; evaluated
        at float64 copies of ``params``, 2 evaluations per coordinate plus
        16 to 64 more to measure its noise.
    params : dict {name: array}
        The point θ; any real dtype (float32 params are checked at their float64 copies).
    grads : dict {name: array}
        The analytic gradient ∂f/∂θ, with params' keys and shapes; finite
        (NaN allowed with ``equal_nan``).
    eps : float, optional
        Central-difference step ε > 0, in the parameters' units; default from
        ``gradcheck.TOLERANCES`` for the dtype of ``grads`` (or
        ``FLOAT32_OBJECTIVE`` for a float32 objective).
    rtol : float, optional
        Relative tolerance (>= 0, dimensionless) of the normwise error
        (module docstring); default as ``eps``.
    atol : float, optional
        Absolute floor (>= 0, in the gradient's units): a gradient with
        ‖n‖_∞ < atol / rtol is compared absolutely; default as ``eps``.
    equal_nan : bool
        NaN in ``grads`` matches NaN in the finite differences.
    raise_on_failure : bool
        Raise :class:`GradcheckError` on FAIL, :class:`InconclusiveError` on
        INCONCLUSIVE (unless ``allow_inconclusive``).
    allow_inconclusive : bool
        Return an inconclusive report instead of raising.

    Returns
    -------
    GradReport
        ``verdict`` (pass / fail / inconclusive, with its reason), ``passed``,
        the worst entry per parameter, ``kinks``, ``notes``, the measured noise σ.

    Raises
    ------
    TypeError
        ``f`` not callable or not returning a real scalar; a non-dict or non-real params/grads.
    ValueError
        Empty params, key or shape mismatch, non-finite grads, eps <= 0, rtol/atol < 0,
        or ``grads`` of a dtype with no default tolerances while eps, rtol or atol is None.
    GradcheckError
        If ``raise_on_failure`` and the verdict is FAIL (including a non-finite objective).
    InconclusiveError
        If ``raise_on_failure``, the verdict is INCONCLUSIVE and not ``allow_inconclusive``.
    """
    objective = Objective(f)
    eps, rtol, atol = _check_positive(eps, "eps"), _check_tolerance(rtol, "rtol"), _check_tolerance(atol, "atol")
    point = as_float64(params)
    original_dtypes = [np.asarray(p).dtype for p in params.values() if hasattr(p, "dtype")]
    g = _check_grads_like(grads, point, "grads", equal_nan, nan_hint=True)
    if sum(p.size for p in point.values()) == 0:
        raise ValueError(f"params must hold at least one entry to perturb, got only empty arrays "
                         f"{ {k: p.shape for k, p in point.items()} }")
    grads_dtype = _least_precise(list(g.values()))
    f0 = objective(point, "f(θ)")
    if not math.isfinite(f0):
        e, r, a = _tolerances(grads_dtype, eps, rtol, atol)
        report = _fail_report(f"the objective is not finite at θ: f(θ) = {f0}", r, a, eps=e)
        return raise_for(report, "non-finite objective", raise_on_failure=raise_on_failure,
                         allow_inconclusive=allow_inconclusive)
    sigma = _measure_noise(objective, point, f0)
    low, notes = _objective_precision(objective, f0, sigma, original_dtypes)
    eps, rtol, atol = _tolerances(grads_dtype, eps, rtol, atol, FLOAT32_OBJECTIVE if low else None)

    numeric, left1, right1, non_finite = {}, {}, {}, None
    for name, value in point.items():
        n, lo, hi = np.empty_like(value), np.empty_like(value), np.empty_like(value)
        flat = value.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            f_plus = objective(point, f"f(θ + ε e) at params[{name!r}] flat index {i}")
            flat[i] = original - eps
            f_minus = objective(point, f"f(θ − ε e) at params[{name!r}] flat index {i}")
            flat[i] = original
            n.reshape(-1)[i] = (f_plus - f_minus) / (2.0 * eps)
            hi.reshape(-1)[i] = (f_plus - f0) / eps       # first-order one-sided: a free kink screen
            lo.reshape(-1)[i] = (f0 - f_minus) / eps
            if non_finite is None and not (math.isfinite(f_plus) and math.isfinite(f_minus)):
                index = tuple(int(j) for j in np.unravel_index(i, value.shape))
                side = "+" if not math.isfinite(f_plus) else "−"
                non_finite = (f"the objective is not finite at θ {side} ε e for params[{name!r}]{list(index)} "
                              f"(ε = {eps:g}): f = {f_plus if side == '+' else f_minus}")
        numeric[name], left1[name], right1[name] = n, lo, hi
    rows, out, worst, _ = _compare(g, numeric, rtol, atol, equal_nan, "numeric")
    if non_finite is not None:
        report = GradReport(worst, rtol, atol, Verdict.fail(non_finite), rows, "numeric", [], tuple(notes),
                            eps, sigma)
        return raise_for(report, "non-finite objective", raise_on_failure=raise_on_failure,
                         allow_inconclusive=allow_inconclusive)

    # Examine every out-of-tolerance coordinate (worst first), then every one whose
    # first-order one-sided differences disagree beyond tolerance (a kink the central
    # difference averaged away); first-order noise is √2 σ/ε per side, 6σ/ε ≈ 3 std of the gap.
    out_keys = {(name, index) for _, name, index, _, _, _ in out}
    suspects = []
    for name in point:
        scale = max(float(np.abs(numeric[name]).max()) if numeric[name].size else 0.0, _floor(rtol, atol))
        gap = np.abs(right1[name] - left1[name])
        for flat in np.flatnonzero(gap.reshape(-1) > rtol * scale + 6.0 * sigma / eps):
            index = tuple(int(i) for i in np.unravel_index(int(flat), point[name].shape))
            if (name, index) not in out_keys:
                suspects.append((name, index, float(g[name][index]), float(numeric[name][index]), rtol * scale,
                                 float((right1[name] - left1[name])[index])))
    candidates = ([(name, index, a, n, bound, False, rel) for rel, name, index, a, n, bound in out]
                  + [(name, index, a, n, bound, True, gap) for name, index, a, n, bound, gap in suspects])
    examined, kinks = [], []
    for name, index, a, n, bound, in_tolerance, rel in candidates:
        def phi(t, name=name, index=index):
            shifted = dict(point)
            shifted[name] = point[name].copy()
            shifted[name][index] += t
            return objective(shifted, f"f(θ {t:+.1e} e) at params[{name!r}]{list(index)} (one-sided)")
        if in_tolerance and not _gap_persists(phi, f0, rel, eps, sigma):
            continue          # the one-sided gap was curvature (it shrinks with the step), not a kink
        if in_tolerance:
            rel = None
        kind, kink = _classify(phi, f0, a, n, eps, bound, sigma, name, index, in_tolerance)
        if kind == "smooth":
            continue
        text = (f"{name}{list(index)}: analytic {a:.6e} vs numeric {n:.6e}"
                + (f" (rel error {rel:.2e} > rtol {rtol:g})" if rel is not None else ""))
        examined.append((kind, kink, text))
        if kink is not None:
            kinks.append(kink)
        if _decides_fail(kind, kink):
            break   # one wrong coordinate decides the verdict; the rest cost 6 evaluations each
    verdict = _verdict_from(examined, worst, rtol, "gradient != finite differences")
    report = GradReport(worst, rtol, atol, verdict, rows, "numeric", kinks, tuple(notes), eps, sigma)
    return raise_for(report, "gradient check", raise_on_failure=raise_on_failure,
                     allow_inconclusive=allow_inconclusive)


def compare_grads(grads, reference, *, rtol, atol=0.0, reference_name="reference",
                  raise_on_failure=True, allow_inconclusive=False, zeros_are_evidence=False):
    """Compare two analytic gradients (a relation such as RTRL = BPTT) with the same measure.

    Parameters
    ----------
    grads : dict {name: array}
        The gradient under test, with the keys and shapes of ``reference``; finite.
    reference : dict {name: array}
        The reference gradient (e.g. BPTT's), at least one array; finite.
    rtol : float
        Relative tolerance (>= 0, dimensionless) of the normwise error
        (module docstring); required, since the right bound depends on the relation.
    atol : float, optional
        Absolute floor (>= 0, in the gradient's units); 0 is read as 1e-300.
    reference_name : str, optional
        The reference's column title in the table and the failure message.
    raise_on_failure : bool, optional
        As :func:`check_grads`.
    allow_inconclusive : bool, optional
        As :func:`check_grads`.
    zeros_are_evidence : bool, default False
        Two gradients that are both identically zero agree about nothing (a
        loss with all weights 0, a detached head: any two algorithms give
        zeros), so by default that is INCONCLUSIVE, as :func:`dot_product_test`
        says of two exact zeros.  Pass True only when the relation itself is
        "this gradient is exactly zero" (e.g. a frozen or disconnected
        parameter): matching zeros then pass.

    Returns
    -------
    GradReport
        The worst entry per parameter and the verdict; INCONCLUSIVE when
        every array is empty, or when both sides are identically zero (unless
        ``zeros_are_evidence``): nothing that could differ was compared.

    Raises
    ------
    TypeError
        If ``grads`` or ``reference`` is not a dict of real arrays, or
        ``zeros_are_evidence`` is not a bool.
    ValueError
        If ``rtol`` or ``atol`` is not a finite number >= 0 (for ``rtol``,
        None included), ``reference`` is empty, the keys or shapes differ, or an array holds NaN/Inf.
    GradcheckError
        If ``raise_on_failure`` and the verdict is FAIL.
    InconclusiveError
        If ``raise_on_failure``, the verdict is INCONCLUSIVE and not ``allow_inconclusive``.
    """
    rtol, atol = _check_tolerance(rtol, "rtol"), _check_tolerance(atol, "atol")
    if rtol is None:
        raise ValueError("rtol must be a finite number >= 0, got None")
    if not isinstance(reference, dict):
        raise TypeError(f"reference must be a dict {{name: array}}, got {type(reference).__name__}")
    if not reference:
        raise ValueError("reference must hold at least one array, got an empty dict")
    ref = _check_grads_like(reference, {k: _as_numpy(v, f"reference[{k!r}]") for k, v in reference.items()},
                            "reference")
    a = _check_grads_like(grads, ref, "grads")
    atol = max(atol or 0.0, 1e-300)
    if not isinstance(zeros_are_evidence, bool):
        raise TypeError(f"zeros_are_evidence must be a bool, got {type(zeros_are_evidence).__name__}")
    rows, _, worst, compared = _compare(a, ref, rtol, atol, False, reference_name)
    all_zero = all(not np.any(v) for v in ref.values()) and all(not np.any(v) for v in a.values())
    if compared == 0:
        verdict = Verdict.inconclusive("every array is empty: nothing was compared")
    elif all_zero and not zeros_are_evidence:
        verdict = Verdict.inconclusive(
            f"both gradients are identically zero ({compared} entries): no evidence about either (a zero loss "
            "weight or a detached output gives zeros for any algorithm); make the loss depend on the "
            "parameters, or pass zeros_are_evidence=True if the relation is that the gradient vanishes")
    elif worst <= rtol:
        verdict = Verdict.pass_(f"max rel error {worst:.2e} <= rtol {rtol:g}")
    else:
        p = rows[0]
        verdict = Verdict.fail(f"gradient != {reference_name}: {p.name}{list(p.index)}: {p.analytic:.6e} vs "
                               f"{p.reference:.6e} (rel error {p.rel_error:.2e} > rtol {rtol:g})")
    report = GradReport(worst, rtol, atol, verdict, rows, reference_name)
    return raise_for(report, f"gradient != {reference_name}", raise_on_failure=raise_on_failure,
                     allow_inconclusive=allow_inconclusive)


def check_directional(f, params, grads, *, n_directions=3, seed=0, eps=None, rtol=None,
                      atol=None, raise_on_failure=True, allow_inconclusive=False):
    """Fast mode for big models: compare ⟨g, v⟩ with a central difference along random unit v.

    The error of each direction is |⟨g, v⟩ − D_v f| / max(‖g‖₂, atol / rtol),
    so the cost is 2 evaluations of f per direction instead of 2 per
    coordinate.  A direction out of tolerance is examined as in
    :func:`check_grads` (noise floor, kink, wrong).

    Parameters
    ----------
    f : callable
        The objective, dict {name: float64 array} -> real scalar; evaluated
        at float64 copies of ``params``.
    params : dict {name: array}
        The point θ; any real dtype.
    grads : dict {name: array}
        The analytic gradient g = ∂f/∂θ, with params' keys and shapes; finite.
    n_directions : int, optional
        How many random unit directions v (>= 1); 2 evaluations of f each.
    seed : int, optional
        Seed (>= 0) of the random directions.
    eps : float, optional
        Step ε > 0 along v; default as :func:`check_grads`.
    rtol : float, optional
        Relative tolerance (>= 0) of the directional error above; default as :func:`check_grads`.
    atol : float, optional
        Absolute floor (>= 0): a gradient with ‖g‖₂ < atol / rtol is compared absolutely.
    raise_on_failure : bool, optional
        As :func:`check_grads`.
    allow_inconclusive : bool, optional
        As :func:`check_grads`.

    Returns
    -------
    GradReport
        One row per direction (``'direction j'``, worst first), its kinks and notes.

    Raises
    ------
    TypeError
        As :func:`check_grads`.
    ValueError
        As :func:`check_grads`, and for ``n_directions`` not an int >= 1 or
        ``seed`` not an int >= 0.
    GradcheckError
        If ``raise_on_failure`` and the verdict is FAIL (including a non-finite objective).
    InconclusiveError
        If ``raise_on_failure``, the verdict is INCONCLUSIVE and not ``allow_inconclusive``.
    """
    if isinstance(n_directions, bool) or not isinstance(n_directions, numbers.Integral) or n_directions < 1:
        raise ValueError(f"n_directions must be an int >= 1, got {n_directions!r}")
    seed = _check_seed(seed)
    objective = Objective(f)
    eps, rtol, atol = _check_positive(eps, "eps"), _check_tolerance(rtol, "rtol"), _check_tolerance(atol, "atol")
    point = as_float64(params)
    original_dtypes = [np.asarray(p).dtype for p in params.values() if hasattr(p, "dtype")]
    g_in = _check_grads_like(grads, point, "grads")
    if sum(p.size for p in point.values()) == 0:
        raise ValueError("params must hold at least one entry to perturb, got only empty arrays")
    grads_dtype = _least_precise(list(g_in.values()))
    g = {k: v.astype(np.float64) for k, v in g_in.items()}
    f0 = objective(point, "f(θ)")
    if not math.isfinite(f0):
        e, r, a = _tolerances(grads_dtype, eps, rtol, atol)
        return raise_for(_fail_report(f"the objective is not finite at θ: f(θ) = {f0}", r, a, eps=e),
                         "non-finite objective", raise_on_failure=raise_on_failure,
                         allow_inconclusive=allow_inconclusive)
    sigma = _measure_noise(objective, point, f0)
    low, notes = _objective_precision(objective, f0, sigma, original_dtypes)
    eps, rtol, atol = _tolerances(grads_dtype, eps, rtol, atol, FLOAT32_OBJECTIVE if low else None)
    g_norm = math.sqrt(sum(float((v * v).sum()) for v in g.values()))
    scale = max(g_norm, _floor(rtol, atol))
    rng = np.random.default_rng(seed)
    rows, examined, kinks = [], [], []
    for j in range(n_directions):
        v = _direction(point, rng)

        def phi(t, v=v, j=j):
            return objective({k: point[k] + t * v[k] for k in point}, f"f(θ {t:+.1e} v) along direction {j}")
        analytic = sum(float((g[k] * v[k]).sum()) for k in point)
        f_plus, f_minus = phi(eps), phi(-eps)
        if not (math.isfinite(f_plus) and math.isfinite(f_minus)):
            report = _fail_report(f"the objective is not finite at θ ± ε v along direction {j} (ε = {eps:g}): "
                                  f"f(θ + ε v) = {f_plus}, f(θ − ε v) = {f_minus}", rtol, atol, notes=notes, eps=eps)
            return raise_for(report, "non-finite objective", raise_on_failure=raise_on_failure,
                             allow_inconclusive=allow_inconclusive)
        numeric = (f_plus - f_minus) / (2.0 * eps)
        rel = abs(analytic - numeric) / scale
        rows.append(ParamError(f"direction {j}", rel, (), analytic, numeric))
        gap = abs((f_plus - f0) - (f0 - f_minus)) / eps     # first-order one-sided disagreement
        if rel > rtol or gap > rtol * scale + 6.0 * sigma / eps:
            kind, kink = _classify(phi, f0, analytic, numeric, eps, rtol * scale, sigma, f"direction {j}", (),
                                   in_tolerance=rel <= rtol)
            if kind != "smooth":
                examined.append((kind, kink, f"direction {j}: ⟨g, v⟩ {analytic:.6e} vs numeric {numeric:.6e}"
                                             + (f" (rel error {rel:.2e} > rtol {rtol:g})" if rel > rtol else "")))
            if kink is not None:
                kinks.append(kink)
    rows.sort(key=lambda p: -p.rel_error)
    worst = rows[0].rel_error
    verdict = _verdict_from(examined, worst, rtol, "directional derivative != ⟨g, v⟩")
    report = GradReport(worst, rtol, atol, verdict, rows, "numeric", kinks, tuple(notes), eps, sigma)
    return raise_for(report, "directional check", raise_on_failure=raise_on_failure,
                     allow_inconclusive=allow_inconclusive)


def dot_product_test(u_Jv, JTu_v, *, rtol, raise_on_failure=True, allow_inconclusive=False):
    """Relative gap between ⟨u, J v⟩ (from a JVP) and ⟨Jᵀ u, v⟩ (from a VJP).

    For a correct pair of JVP and VJP the two are equal up to rounding, so
    ``rtol`` is the dtype's ``exact`` row (``gradcheck.TOLERANCES``).

    Parameters
    ----------
    u_Jv : float
        ⟨u, J v⟩, from the JVP; a real scalar (a number or 0-d array).
    JTu_v : float
        ⟨Jᵀ u, v⟩, from the VJP; a real scalar.
    rtol : float
        Bound (>= 0, dimensionless) on |lhs − rhs| / max(|lhs|, |rhs|).
    raise_on_failure : bool, optional
        As :func:`check_grads`.
    allow_inconclusive : bool, optional
        As :func:`check_grads`.

    Returns
    -------
    GradReport
        One row, the relative gap; FAIL when a side is not finite,
        INCONCLUSIVE when both are 0 (the test then says nothing about J:
        draw u, v with ⟨u, J v⟩ ≠ 0).

    Raises
    ------
    TypeError
        If a side is not a real scalar (an array of shape other than (), a str, None).
    ValueError
        If ``rtol`` is not a finite number >= 0 (None included).
    GradcheckError
        If ``raise_on_failure`` and the verdict is FAIL.
    InconclusiveError
        If ``raise_on_failure``, the verdict is INCONCLUSIVE and not ``allow_inconclusive``.
    """
    rtol = _check_tolerance(rtol, "rtol")
    if rtol is None:
        raise ValueError("rtol must be a finite number >= 0, got None")
    sides = []
    for name, value in (("u_Jv", u_Jv), ("JTu_v", JTu_v)):
        if tuple(getattr(value, "shape", ())) != () or isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"{name} must be a real scalar, got {type(value).__name__} "
                            f"{tuple(getattr(value, 'shape', ()))}")
        try:
            sides.append(float(value))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a real scalar, got {type(value).__name__}") from exc
    lhs, rhs = sides
    if not (math.isfinite(lhs) and math.isfinite(rhs)):
        rel = float("inf")
        verdict = Verdict.fail(f"a side is not finite: <u, J v> = {lhs}, <J^T u, v> = {rhs}")
    elif lhs == 0.0 and rhs == 0.0:
        rel = 0.0
        verdict = Verdict.inconclusive("both sides are exactly 0: no evidence about J (draw u, v with "
                                       "<u, J v> != 0)")
    else:
        rel = abs(lhs - rhs) / max(abs(lhs), abs(rhs))
        verdict = (Verdict.pass_(f"rel gap {rel:.2e} <= rtol {rtol:g}") if rel <= rtol else
                   Verdict.fail(f"JVP and VJP disagree: <u, J v> = {lhs:.17g}, <J^T u, v> = {rhs:.17g}, "
                                f"rel gap {rel:.2e} > rtol {rtol:g}"))
    report = GradReport(rel, rtol, 0.0, verdict, [ParamError("<u, J v> vs <J^T u, v>", rel, (), lhs, rhs)], "vjp")
    return raise_for(report, "JVP and VJP disagree", raise_on_failure=raise_on_failure,
                     allow_inconclusive=allow_inconclusive)


@dataclass(frozen=True)
class TaylorReport:
    """Remainders r(ε) = |f(θ + d_ε) − f(θ) − ⟨g, d_ε⟩| and their observed order, with the verdict.

    Returned by :func:`taylor_test`.

    Attributes
    ----------
    eps : tuple of float
        The steps ε swept, in order.
    remainders : tuple of float
        r(ε) for each step (in f's units).
    order : float
        The median of the 3 smallest-ε slopes of log r against log ε above
        the floor; NaN with fewer than 2 usable points.
    min_order : float
        The order a pass needs.
    verdict : Verdict
        PASS, FAIL or INCONCLUSIVE, with its reason.
    floor : float
        Remainders at or below it are noise: max(100 σ, 10 u |f(θ)|).
    noise : float
        The measured σ of f at θ, in the evaluation dtype.
    usable : tuple of float
        The ε whose remainder is above the floor.
    dtype : str
        The dtype f was evaluated in (``'float64'`` or ``'float32'``).
    kink : Kink or None
        Set when f is not differentiable at θ along v (the verdict is then INCONCLUSIVE).
    """

    eps: tuple
    remainders: tuple
    order: float        # median of the 3 smallest-ε slopes of log r against log ε above the floor; NaN if < 2 points
    min_order: float
    verdict: Verdict
    floor: float = 0.0          # remainders at or below it are noise
    noise: float = 0.0          # measured σ of f at θ, in the evaluation dtype
    usable: tuple = ()          # the ε whose remainder is above the floor
    dtype: str = "float64"      # the dtype f was evaluated in
    kink: Optional[Kink] = None  # f not differentiable at θ along v (then INCONCLUSIVE)

    @property
    def passed(self):
        """True only for a PASS verdict (inconclusive is not a pass)."""
        return self.verdict.passed

    @property
    def status(self):
        """The verdict's status: ``'pass'``, ``'fail'`` or ``'inconclusive'``."""
        return self.verdict.status

    @property
    def reason(self):
        """The verdict's reason, in words."""
        return self.verdict.reason

    def table(self):
        """One line per ε with its remainder (``(noise)`` below the floor), then the order and verdict.

        Returns
        -------
        str
            The readable table a failure message carries.

        Raises
        ------
        TypeError
            If a numeric field holds None or another non-number (a report
            built by hand); the reports :func:`taylor_test` returns always format.
        ValueError
            If a numeric field holds a str (a report built by hand).
        """
        rows = [f"  eps={e:.3e}  r={r:.3e}" + ("" if e in self.usable else "  (noise)")
                for e, r in zip(self.eps, self.remainders)]
        return "\n".join(rows + [f"evaluated in {self.dtype}; noise σ = {self.noise:.2e}, floor "
                                 f"{self.floor:.2e}; order {self.order:.2f} (min {self.min_order}): "
                                 f"{self.verdict}"])


def _kink_along(phi, f0, analytic, dtype, sigma):
    """A :class:`Kink` when φ(t) = f(θ + t v) has one-sided derivatives at 0 that disagree beyond noise, else None.

    Steps and tolerance from the evaluation dtype's row (``gradcheck.tolerances``), as
    :func:`check_directional` examines a direction.
    """
    row = tolerances_for(dtype)
    h = row["eps"]
    left, right, left_half, right_half = one_sided_derivatives(phi, f0, h)
    if not all(math.isfinite(x) for x in (left, right, left_half, right_half)):
        return None
    one_sided = row["rtol"] * max(abs(left), abs(right), abs(analytic), row["atol"] / row["rtol"]) \
        + _ONE_SIDED_NOISE * sigma / h
    if abs(left - right) <= 2 * one_sided:
        return None
    at_theta = abs(left - left_half) <= 3 * one_sided and abs(right - right_half) <= 3 * one_sided
    if abs(analytic - left) <= one_sided:
        matches = "left"
    elif abs(analytic - right) <= one_sided:
        matches = "right"
    elif min(left, right) < analytic < max(left, right):
        matches = "between"
    else:
        matches = None
    return Kink("direction v", (), analytic, left, right, 0.5 * (left + right), matches, at_theta)


def _evaluation_point(params):
    """θ in the dtype f is evaluated in: float32 params stay float32, every other param is float64."""
    out = {}
    for k, v in params.items():
        array = _as_numpy(v, f"params[{k!r}]")
        out[k] = array.copy() if array.dtype == np.float32 else array.astype(np.float64)
    return out


def taylor_test(f, params, grads, *, eps=None, seed=0, min_order=1.8, raise_on_failure=True,
                allow_inconclusive=False):
    """Taylor-remainder test: r(ε) falls as ε² for a correct gradient, as ε for a wrong one.

    f is evaluated in the params' own precision: float32 params stay float32
    (θ + εv is rounded to float32, and the remainder uses the displacement
    d_ε actually taken, r = |f(θ + d_ε) − f(θ) − ⟨g, d_ε⟩|); other params are
    float64.  The noise σ of f there is *measured* (``estimate_noise``), and
    a remainder counts only above the floor max(100 σ, 10 u |f(θ)|), u the
    unit roundoff of the dtype f returns.  Fewer than two usable ε is
    INCONCLUSIVE (the remainder is at the noise floor), never a pass; a
    non-finite f is a FAIL naming where; otherwise PASS when the observed
    order where ε is smallest (the median of the last three slopes) is at
    least ``min_order``.  A lower order is a FAIL unless f is not
    differentiable at θ along v — its left and right one-sided derivatives
    there disagree beyond noise (a kink, e.g. ReLU units at pre-activation
    0): the remainder then falls as ε whatever the gradient, and the verdict
    is INCONCLUSIVE, reporting left, right and ⟨g, v⟩ (``report.kink``).  The default sweep continues halving ε below 1e-3
    while the remainder stays 10× above the floor (at most 40 points): a
    small gradient error δ only shows once ε|δ| outweighs ε²|f''|.

    Parameters
    ----------
    f : callable
        The objective, dict {name: array} -> real scalar, evaluated in the
        params' own precision (above).
    params : dict {name: array}
        The point θ; float32 arrays stay float32, others become float64.
    grads : dict {name: array}
        The analytic gradient g, with params' keys and shapes; finite.
    eps : sequence of float, optional
        The sweep, at least two steps > 0 along a random unit direction v;
        default 0.1 · 2^-k, k = 0, 1, … (above).
    seed : int, optional
        Seed (>= 0) of the direction v.
    min_order : float, optional
        The observed order (> 0) a pass needs; a correct gradient gives 2, a wrong one 1.
    raise_on_failure : bool, optional
        As :func:`check_grads`.
    allow_inconclusive : bool, optional
        As :func:`check_grads`.

    Returns
    -------
    TaylorReport
        The sweep, remainders, observed order, noise floor and verdict.

    Raises
    ------
    TypeError
        As :func:`check_grads`, and for an ``eps`` that is not a sequence.
    ValueError
        As :func:`check_grads`; for ``eps`` with fewer than two steps or a step
        that is not a finite number > 0, ``min_order`` <= 0, ``seed`` not an int >= 0.
    GradcheckError
        If ``raise_on_failure`` and the verdict is FAIL (including a non-finite objective).
    InconclusiveError
        If ``raise_on_failure``, the verdict is INCONCLUSIVE and not ``allow_inconclusive``.
    """
    objective = Objective(f)
    _check_positive(min_order, "min_order")
    seed = _check_seed(seed)
    point64 = as_float64(params)
    at = _evaluation_point(params)
    g = {k: v.astype(np.float64) for k, v in _check_grads_like(grads, point64, "grads").items()}
    if sum(p.size for p in point64.values()) == 0:
        raise ValueError("params must hold at least one entry to perturb, got only empty arrays")
    default_sweep = eps is None
    if default_sweep:
        eps = tuple(0.1 * 2.0 ** -k for k in range(8))
    else:
        try:
            eps = tuple(eps)
        except TypeError:
            raise TypeError(f"eps must be a sequence of steps > 0, got {type(eps).__name__}") from None
        if len(eps) < 2:
            raise ValueError(f"eps must hold at least two steps > 0 (an order needs two), got {len(eps)}")
        eps = tuple(_check_positive(e, "eps") for e in eps)
    dtype = "float32" if any(v.dtype == np.float32 for v in at.values()) else "float64"
    v = _direction(point64, np.random.default_rng(seed))

    def displaced(t):
        """(point in the evaluation dtype, the displacement actually taken in float64)."""
        p = {k: (at[k] + t * v[k]).astype(at[k].dtype) for k in at}
        return p, {k: p[k].astype(np.float64) - at[k].astype(np.float64) for k in at}

    def remainder_at(e):
        p, d = displaced(e)
        value = objective(p, f"f(θ + ε v) at ε = {e:.3e}")
        return value, abs(value - f0 - sum(float((g[k] * d[k]).sum()) for k in g))

    def report_of(verdict, order=float("nan"), remainders=(), floor=0.0, sigma=0.0, usable=(), kink=None):
        return TaylorReport(eps, tuple(remainders), order, min_order, verdict, floor, sigma, tuple(usable), dtype,
                            kink)

    f0 = objective(at, "f(θ)")
    if not math.isfinite(f0):
        report = report_of(Verdict.fail(f"the objective is not finite at θ: f(θ) = {f0}"))
        return raise_for(report, "Taylor test", raise_on_failure=raise_on_failure,
                         allow_inconclusive=allow_inconclusive)
    size = max(max((float(np.abs(p).max()) for p in point64.values() if p.size), default=0.0), 1.0)
    sigma, t_bad = estimate_noise(lambda t: objective(displaced(t)[0], f"f(θ + {t:.1e} v) (noise estimate)"),
                                  f0, 1e-9 * size)
    if not math.isfinite(sigma):
        report = report_of(Verdict.fail(f"the objective is not finite at θ + t v, t = {t_bad:.3e} (while "
                                        f"measuring its noise)"))
        return raise_for(report, "Taylor test", raise_on_failure=raise_on_failure,
                         allow_inconclusive=allow_inconclusive)
    # 100 σ: the noise moves log r by < 1% there; 10 u|f(θ)|: f's result cannot resolve less.
    floor = max(100.0 * sigma, 10.0 * unit_roundoff(objective.dtype) * abs(f0))
    queue, swept, remainders, k = list(eps), [], [], len(eps)
    while queue:
        e = queue.pop(0)
        value, r = remainder_at(e)
        swept.append(e)
        remainders.append(r)
        if not math.isfinite(value):
            eps = tuple(swept)
            report = report_of(Verdict.fail(f"the objective is not finite at θ + ε v, ε = {e:.3e}: "
                                            f"f = {value}"), remainders=remainders)
            return raise_for(report, "Taylor test", raise_on_failure=raise_on_failure,
                             allow_inconclusive=allow_inconclusive)
        # The default sweep goes on halving ε while the remainder is well above the floor
        # (to ε ≈ 1e-13 at most): a gradient error δ shows as order 1 only once ε|δ|
        # outweighs ε²|f''|, so the order is read where ε is smallest.
        if default_sweep and not queue and r > 10.0 * floor and k < 40:
            queue.append(0.1 * 2.0 ** -k)
            k += 1
    eps = tuple(swept)
    usable = [(e, r) for e, r in zip(eps, remainders) if r > floor]
    if len(usable) < 2:
        verdict = Verdict.inconclusive(
            f"{len(usable)} of {len(eps)} ε give a remainder above the noise floor {floor:.2e} "
            f"(measured σ = {sigma:.2e} in {dtype}); at least 2 are needed to measure an order — the "
            f"remainder is at the noise floor (f is locally linear along v, or too noisy); try larger ε")
        report = report_of(verdict, remainders=remainders, floor=floor, sigma=sigma, usable=[e for e, _ in usable])
    else:
        orders = [math.log(r1 / r2) / math.log(e1 / e2) for (e1, r1), (e2, r2) in zip(usable, usable[1:])]
        order = float(np.median(orders[-3:]))     # the three smallest-ε slopes: the asymptotic regime
        kink = None
        if order >= min_order:
            verdict = Verdict.pass_(f"remainder order {order:.2f} >= {min_order} at the smallest of {len(usable)} ε")
        else:
            # At a kink along v the remainder falls as ε whatever the gradient: look before blaming it.
            kink = _kink_along(lambda t: objective(displaced(t)[0], f"f(θ {t:+.1e} v) (kink probe)"), f0,
                               sum(float((g[k] * v[k]).sum()) for k in g), dtype, sigma)
            if kink is not None:
                verdict = Verdict.inconclusive(
                    f"{kink.describe()}: the Taylor remainder falls with order {order:.2f} at a kink whatever "
                    "the gradient, so it cannot judge one there")
            else:
                verdict = Verdict.fail(f"Taylor remainder falls with order {order:.2f} < {min_order} at the "
                                       f"smallest of {len(usable)} ε above the noise floor {floor:.2e} (a wrong "
                                       "gradient gives ~1)")
        report = report_of(verdict, order, remainders, floor, sigma, [e for e, _ in usable], kink)
    return raise_for(report, "Taylor test", raise_on_failure=raise_on_failure,
                     allow_inconclusive=allow_inconclusive)
