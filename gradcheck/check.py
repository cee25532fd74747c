"""Gradient checks that return a report and raise a readable table on failure.

Error measure.  For each parameter k with analytic gradient a and reference
n (finite differences, or another algorithm), the *normwise relative error* is

    err_k = max_i |a_i − n_i| / max(‖n‖_∞, atol / rtol)

and the check passes when max_k err_k <= rtol.  Measuring against the
gradient's own scale keeps near-zero entries from inflating the error, while
the floor atol / rtol turns the test absolute for a gradient that is itself
(almost) zero.  The report names the parameter and flat index of the worst
entry with both values.
"""
from dataclasses import dataclass, field

import numpy as np

from .finite_differences import as_float64, directional_derivative, numerical_gradient
from .tolerances import tolerances_for

__all__ = ["GradcheckError", "GradReport", "TaylorReport", "check_grads", "check_directional",
           "compare_grads", "dot_product_test", "taylor_test"]


class GradcheckError(AssertionError):
    """A gradient check failed; ``report`` holds the numbers."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ParamError:
    name: str
    rel_error: float
    index: tuple      # multi-index of the worst entry
    analytic: float
    reference: float


@dataclass(frozen=True)
class GradReport:
    """Outcome of a comparison: the worst parameter first in ``params``."""

    max_rel_error: float
    rtol: float
    atol: float
    passed: bool
    params: list = field(default_factory=list)   # ParamError per parameter, worst first
    reference_name: str = "numeric"

    def table(self):
        """A readable table, one row per parameter, worst first."""
        ref = self.reference_name
        lines = [f"{'parameter':<24} {'rel error':>10} {'index':>14} {'analytic':>14} {ref:>14}"]
        for p in self.params:
            mark = "  <-- FAIL" if p.rel_error > self.rtol else ""
            lines.append(f"{p.name:<24} {p.rel_error:10.2e} {str(p.index):>14} "
                         f"{p.analytic:14.6e} {p.reference:14.6e}{mark}")
        lines.append(f"tolerance: rel error <= rtol = {self.rtol:g} (floor atol = {self.atol:g}); "
                     f"max rel error {self.max_rel_error:.2e}: {'passed' if self.passed else 'FAILED'}")
        return "\n".join(lines)


def _floor(rtol, atol):
    """The scale below which a gradient counts as zero: atol / rtol (tiny when rtol = 0)."""
    return atol / rtol if rtol > 0 else max(atol, 1e-300)


def _tolerances(grads, eps, rtol, atol):
    dtype = next(iter(grads.values())).dtype
    row = tolerances_for(dtype)
    return (row["eps"] if eps is None else eps, row["rtol"] if rtol is None else rtol,
            row["atol"] if atol is None else atol)


def _compare(analytic, reference, rtol, atol, equal_nan, reference_name):
    if set(analytic) != set(reference):
        raise ValueError(f"grads must have the keys {sorted(reference)}, got {sorted(analytic)}")
    rows = []
    for name in reference:
        a = np.asarray(analytic[name], dtype=np.float64)
        n = np.asarray(reference[name], dtype=np.float64)
        if a.shape != n.shape:
            raise ValueError(f"grads[{name!r}] must have shape {n.shape}, got {a.shape}")
        if a.size == 0:
            continue
        diff = np.abs(a - n)
        both_nan = np.isnan(a) & np.isnan(n)
        diff = np.where(both_nan, 0.0 if equal_nan else np.inf, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        scale = max(float(np.nanmax(np.abs(n))) if not np.isnan(n).all() else 0.0, _floor(rtol, atol))
        index = np.unravel_index(int(np.argmax(diff)), a.shape)
        rows.append(ParamError(name, float(diff[index] / scale), tuple(int(i) for i in index),
                               float(a[index]), float(n[index])))
    rows.sort(key=lambda p: -p.rel_error)
    worst = rows[0].rel_error if rows else 0.0
    return GradReport(worst, rtol, atol, bool(worst <= rtol), rows, reference_name)


def _raise_on_failure(report, title, raise_on_failure):
    if raise_on_failure and not report.passed:
        raise GradcheckError(f"{title}\n{report.table()}", report)
    return report


def check_grads(f, params, grads, *, eps=None, rtol=None, atol=None, equal_nan=False,
                raise_on_failure=True):
    """Compare ``grads`` with central finite differences of ``f`` at ``params``, every coordinate.

    f : dict of float64 arrays -> float.  Tolerances default to the row of
    ``gradcheck.TOLERANCES`` for the dtype of ``grads``.  Returns a
    :class:`GradReport`; raises :class:`GradcheckError` with its table on failure.
    """
    eps, rtol, atol = _tolerances(grads, eps, rtol, atol)
    numeric = numerical_gradient(f, params, eps=eps)
    report = _compare(grads, numeric, rtol, atol, equal_nan, "numeric")
    return _raise_on_failure(report, "gradient != finite differences", raise_on_failure)


def compare_grads(grads, reference, *, rtol, atol=0.0, reference_name="reference",
                  raise_on_failure=True):
    """Compare two analytic gradients (a relation such as RTRL = BPTT) with the same measure."""
    report = _compare(grads, reference, rtol, max(atol, 1e-300), False, reference_name)
    return _raise_on_failure(report, f"gradient != {reference_name}", raise_on_failure)


def _random_direction(params, rng):
    v = {k: rng.standard_normal(np.shape(p)) for k, p in params.items()}
    norm = np.sqrt(sum(float((d * d).sum()) for d in v.values()))
    return {k: d / norm for k, d in v.items()}


def check_directional(f, params, grads, *, n_directions=3, seed=0, eps=None, rtol=None,
                      atol=None, raise_on_failure=True):
    """Fast mode for big models: compare ⟨g, v⟩ with a central difference along random unit v.

    The error of each direction is |⟨g, v⟩ − D_v f| / max(‖g‖₂, atol / rtol),
    so the cost is 2 evaluations of f per direction instead of 2 per coordinate.
    """
    eps, rtol, atol = _tolerances(grads, eps, rtol, atol)
    params = as_float64(params)
    g = as_float64(grads)
    g_norm = np.sqrt(sum(float((v * v).sum()) for v in g.values()))
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n_directions):
        v = _random_direction(params, rng)
        analytic = sum(float((g[k] * v[k]).sum()) for k in params)
        numeric = directional_derivative(f, params, v, eps=eps)
        rel = abs(analytic - numeric) / max(g_norm, _floor(rtol, atol))
        rows.append(ParamError(f"direction {j}", rel, (), analytic, numeric))
    rows.sort(key=lambda p: -p.rel_error)
    report = GradReport(rows[0].rel_error, rtol, atol, rows[0].rel_error <= rtol, rows, "numeric")
    return _raise_on_failure(report, "directional derivative != ⟨g, v⟩", raise_on_failure)


def dot_product_test(u_Jv, JTu_v, *, rtol):
    """Relative gap between ⟨u, J v⟩ (from a JVP) and ⟨Jᵀ u, v⟩ (from a VJP)."""
    rel = abs(u_Jv - JTu_v) / max(abs(u_Jv), abs(JTu_v), 1e-300)
    report = GradReport(rel, rtol, 0.0, rel <= rtol,
                        [ParamError("<u, J v> vs <J^T u, v>", rel, (), u_Jv, JTu_v)], "vjp")
    return _raise_on_failure(report, "JVP and VJP disagree", True)


@dataclass(frozen=True)
class TaylorReport:
    """Remainders r(ε) = |f(θ + εv) − f(θ) − ε⟨g, v⟩| and their observed order."""

    eps: tuple
    remainders: tuple
    order: float        # median slope of log r against log ε over the usable points
    min_order: float
    passed: bool


def taylor_test(f, params, grads, *, eps=None, seed=0, min_order=1.8, raise_on_failure=True):
    """Taylor-remainder test: r(ε) falls as ε² for a correct gradient, as ε for a wrong one.

    ``eps`` is the sweep (default 0.1 · 2^-k, k = 0..7, along a random unit
    direction).  Points whose remainder is within 1e3 unit roundoffs of |f|
    are dropped as noise.  Passes when the median observed order is at least
    ``min_order``: a verdict that hinges on no single tolerance.
    """
    params = as_float64(params)
    g = as_float64(grads)
    if eps is None:
        eps = tuple(0.1 * 2.0 ** -k for k in range(8))
    v = _random_direction(params, np.random.default_rng(seed))
    f0 = f(params)
    slope = sum(float((g[k] * v[k]).sum()) for k in params)
    remainders = tuple(abs(f({k: params[k] + e * v[k] for k in params}) - f0 - e * slope) for e in eps)
    floor = 1e3 * np.finfo(next(iter(grads.values())).dtype).eps * max(abs(f0), 1.0)
    usable = [(e, r) for e, r in zip(eps, remainders) if r > floor]
    if len(usable) < 2:
        order = float("inf")   # the remainder is at the noise floor for every ε: f is locally linear
    else:
        orders = [np.log(r1 / r2) / np.log(e1 / e2) for (e1, r1), (e2, r2) in zip(usable, usable[1:])]
        order = float(np.median(orders))
    report = TaylorReport(tuple(eps), remainders, order, min_order, order >= min_order)
    if raise_on_failure and not report.passed:
        rows = "\n".join(f"  eps={e:.3e}  r={r:.3e}" for e, r in zip(eps, remainders))
        raise GradcheckError(f"Taylor remainder falls with order {order:.2f} < {min_order}"
                             f" (a wrong gradient gives ~1):\n{rows}", report)
    return report
