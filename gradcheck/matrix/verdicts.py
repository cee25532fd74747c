"""Rows that hold gradcheck's own verdicts to account: a kink is named, no evidence is not a pass.

=====================  ===================================================================
algorithm              the row passes when
=====================  ===================================================================
kink detection         check_grads on an iRNN at its standard init (W_hh = I, zero biases),
                       s_0 = 0 and x_1 = x_2 = 0 — every ReLU pre-activation of steps 1–2
                       is exactly 0 — reports the coordinates as kinks whose analytic value
                       is a one-sided derivative (the left one: refnet's relu′(0) = 0), and
                       the verdict is INCONCLUSIVE, not "gradient != finite differences"
taylor f32, g wrong    taylor_test of f(w) = 1000 + Σ w (w float32) with g = 0 is not PASS:
                       the remainder ε·|Σv| is far above f's measured float32 noise, so FAIL
taylor, no evidence    the same f with its exact g = 1: every remainder is rounding noise,
                       so INCONCLUSIVE ("noise floor"), never order = ∞, passed
taylor, NaN f          f(θ) = NaN is a FAIL naming f(θ)
dot product 0 = 0      ⟨u, J v⟩ = ⟨Jᵀ u, v⟩ = 0 is INCONCLUSIVE (no evidence about J)
compare, no overlap    a candidate sharing no key with the fixture is INCONCLUSIVE
kink, every check      check_directional and taylor_test on the iRNN kink problem are
                       INCONCLUSIVE naming the kink (no FD verdict refutes a value at a
                       kink), while a wrong gradient at a smooth point still FAILs them
compare_grads 0 = 0    two identically zero gradients are INCONCLUSIVE (no evidence)
compare, NaN reference a reference whose results are all NaN compares nothing: INCONCLUSIVE
=====================  ===================================================================
"""
import numpy as np

import refnet
from refnet import heads
from refnet.backend import get_dtype, rng, to_numpy

from ..check import check_directional, check_grads, compare_grads, dot_product_test, taylor_test
from ..compare import compare
from ..fixture_io import FORMAT, Fixture
from ..tolerances import tolerances_for
from ..verdict import Verdict
from .common import B, Check, H, I, O, T, f64

__all__ = ["checks", "irnn_kink_problem"]


def irnn_kink_problem(seed=0):
    """(objective, point, grads): an iRNN at init with s_0 = 0 and two zero input steps, BPTT's gradient.

    Every pre-activation of steps 1 and 2 is exactly 0 (W_ih · 0 + W_hh · 0 + 0),
    so L is not differentiable in the biases and s_0 there.  ``point`` and
    ``grads`` are float64 NumPy dicts over θ, β (``beta/…``) and ``s0``.

    Parameters
    ----------
    seed : int, optional
        Seed (>= 0) of the head, the inputs after step 2 and the labels.

    Returns
    -------
    objective : callable
        ``objective(point) -> float``, L evaluated in float64.
    point : dict {str: ndarray}
        θ (cell keys), ``beta/<k>`` and ``s0`` (B, H) = 0, in the active dtype.
    grads : dict {str: ndarray}
        BPTT's gradient at ``point``, same keys (refnet's relu′(0) = 0).

    Raises
    ------
    TypeError
        If ``seed`` is not an int.
    ValueError
        If ``seed`` is negative, or ``REFNET_BACKEND``/``REFNET_DTYPE`` hold an unknown value.
    """
    r = rng(seed)
    cell = refnet.IRNN(I, H)
    theta = cell.init(r)
    head = refnet.Head(cell.n_out, O, heads.softmax_cross_entropy)
    beta = head.init(r)
    x = to_numpy(r.normal((T, B, I)))
    x[:2] = 0.0
    y = r.integers(0, O, (T, B))
    weights = heads.every_step(T, B)
    x_active = f64(x).astype(theta["weight_ih"].dtype)
    s0 = f64(np.zeros((B, cell.n_state))).astype(theta["weight_ih"].dtype)
    res = refnet.bptt(cell, theta, x_active, s0, head, beta, y, weights)
    x64, y64, w64 = f64(x), f64(y), f64(weights)

    def objective(flat):
        th = {k: f64(flat[k]) for k in theta}
        be = {k: f64(flat[f"beta/{k}"]) for k in beta}
        return float(refnet.loss(cell, th, x64, f64(flat["s0"]), head, be, y64, w64))

    point = {k: to_numpy(v) for k, v in theta.items()}
    point.update({f"beta/{k}": to_numpy(v) for k, v in beta.items()})
    point["s0"] = to_numpy(s0)
    grads = {k: to_numpy(v) for k, v in res.dtheta.items()}
    grads.update({f"beta/{k}": to_numpy(v) for k, v in res.dbeta.items()})
    grads["s0"] = to_numpy(res.ds0)
    return objective, point, grads


def _kink_detection():
    objective, point, grads = irnn_kink_problem()
    row = tolerances_for(get_dtype())
    report = check_grads(objective, point, grads, eps=tolerances_for(np.float64)["eps"], rtol=row["rtol"],
                         atol=row["atol"], raise_on_failure=False)
    sides = sorted({k.matches for k in report.kinks}, key=str)
    if report.verdict.is_inconclusive and report.kinks and sides == ["left"]:
        verdict = Verdict.pass_(f"{len(report.kinks)} kinks named, analytic = left derivative (relu'(0) = 0)")
    else:
        verdict = Verdict.fail(f"expected INCONCLUSIVE with kinks matching the left derivative; got "
                               f"{report.verdict} with {len(report.kinks)} kinks, sides {sides}")
    return report.max_rel_error, report.rtol, verdict, f"{len(report.kinks)} kinks, sides {sides}"


def _objective_1000(q):
    return 1000.0 + float(q["w"].sum())


def _taylor_float32_wrong():
    report = taylor_test(_objective_1000, {"w": np.ones(3, np.float32)}, {"w": np.zeros(3, np.float32)},
                         raise_on_failure=False)
    verdict = (Verdict.fail(f"a wrong gradient passed the Taylor test: {report.verdict}") if report.passed
               else Verdict.pass_(f"not PASS: {report.verdict.status}"))
    return None, report.min_order, verdict, f"taylor verdict {report.verdict.label}, order {report.order:.2f}"


def _taylor_no_usable_points():
    report = taylor_test(_objective_1000, {"w": np.ones(3, np.float32)}, {"w": np.ones(3, np.float32)},
                         raise_on_failure=False)
    verdict = (Verdict.pass_("INCONCLUSIVE: every remainder at the noise floor") if report.verdict.is_inconclusive
               else Verdict.fail(f"expected INCONCLUSIVE (no usable eps), got {report.verdict}"))
    return None, report.min_order, verdict, f"taylor verdict {report.verdict.label}, {len(report.usable)} usable eps"


def _taylor_nan_objective():
    report = taylor_test(lambda q: float("nan"), {"w": np.ones(3)}, {"w": np.ones(3)}, raise_on_failure=False)
    verdict = (Verdict.pass_("FAIL naming f(θ)") if report.verdict.failed and "f(θ)" in report.reason
               else Verdict.fail(f"expected FAIL naming f(θ), got {report.verdict}"))
    return None, report.min_order, verdict, f"taylor verdict {report.verdict.label}"


def _dot_product_zero():
    report = dot_product_test(0.0, 0.0, rtol=1e-12, raise_on_failure=False)
    verdict = (Verdict.pass_("INCONCLUSIVE") if report.verdict.is_inconclusive
               else Verdict.fail(f"expected INCONCLUSIVE for 0 = 0, got {report.verdict}"))
    return report.max_rel_error, report.rtol, verdict, f"dot product verdict {report.verdict.label}"


def _compare_nothing_shared():
    fixture = Fixture({"format": FORMAT, "version": 1}, {"grads/weight": np.ones((2, 2))})
    report = compare(fixture, {"grads/other": np.ones((2, 2))})
    verdict = (Verdict.pass_("INCONCLUSIVE") if report.verdict.is_inconclusive
               else Verdict.fail(f"expected INCONCLUSIVE when nothing is shared, got {report.verdict}"))
    return None, report.rtol, verdict, f"compare verdict {report.verdict.label}"


def _kink_every_check():
    objective, point, grads = irnn_kink_problem()
    directional = check_directional(objective, point, grads, seed=0, raise_on_failure=False)
    taylor = taylor_test(objective, point, grads, raise_on_failure=False)
    # A gradient 10% off at a smooth point (f = Σ w², g = 2.2 w) must still FAIL: the kink rule
    # only applies where the one-sided derivatives disagree.
    smooth_wrong = taylor_test(lambda q: float((q["w"] ** 2).sum()), {"w": np.ones(3)}, {"w": 2.2 * np.ones(3)},
                               raise_on_failure=False)
    ok = (directional.verdict.is_inconclusive and directional.kinks and taylor.verdict.is_inconclusive
          and taylor.kink is not None and smooth_wrong.verdict.failed)
    verdict = (Verdict.pass_("kink INCONCLUSIVE in check_directional and taylor_test; smooth wrong g FAILs")
               if ok else Verdict.fail(f"directional {directional.verdict}; taylor {taylor.verdict}; smooth wrong "
                                       f"{smooth_wrong.verdict}"))
    return None, taylor.min_order, verdict, f"directional {directional.status}, taylor {taylor.status}"


def _compare_grads_zero():
    zeros = {"w": np.zeros((2, 3))}
    report = compare_grads(zeros, {"w": np.zeros((2, 3))}, rtol=1e-12, raise_on_failure=False)
    verdict = (Verdict.pass_("INCONCLUSIVE") if report.verdict.is_inconclusive
               else Verdict.fail(f"expected INCONCLUSIVE for two zero gradients, got {report.verdict}"))
    return report.max_rel_error, report.rtol, verdict, f"compare_grads verdict {report.verdict.label}"


def _compare_nan_reference():
    fixture = Fixture({"format": FORMAT, "version": 1}, {"grads/weight": np.full((2, 2), np.nan)})
    report = compare(fixture, {"grads/weight": np.random.default_rng(0).random((2, 2))})
    verdict = (Verdict.pass_("INCONCLUSIVE") if report.verdict.is_inconclusive
               else Verdict.fail(f"expected INCONCLUSIVE for an all-NaN reference, got {report.verdict}"))
    return None, report.rtol, verdict, f"compare verdict {report.verdict.label}"


def checks():
    """The verdict rows, in display order.

    One row per entry of the module docstring's table.

    Returns
    -------
    list of Check
        The rows, each with its cell, algorithm, relation and ``run``.

    Raises
    ------
    None
        Listing builds no problem: each row's problem is built when its
        ``run`` is called, and :func:`~gradcheck.matrix.common.run_check`
        turns whatever that raises into a FAIL row.
    """
    return [
        Check("irnn", "kink detection", "kink named at relu(0), not a wrong gradient", _kink_detection),
        Check("gradcheck", "taylor f32, g wrong", "not PASS (f = 1000 + sum w, w float32, g = 0)",
              _taylor_float32_wrong),
        Check("gradcheck", "taylor, no evidence", "INCONCLUSIVE, not pass (exact g of a linear f)",
              _taylor_no_usable_points),
        Check("gradcheck", "taylor, NaN f", "FAIL naming f(theta)", _taylor_nan_objective),
        Check("gradcheck", "dot product 0 = 0", "INCONCLUSIVE, not pass", _dot_product_zero),
        Check("gradcheck", "compare, no overlap", "INCONCLUSIVE, not pass", _compare_nothing_shared),
        Check("irnn", "kink, every check", "INCONCLUSIVE at a kink; wrong g at smooth point FAILs",
              _kink_every_check),
        Check("gradcheck", "compare_grads 0 = 0", "INCONCLUSIVE, not pass", _compare_grads_zero),
        Check("gradcheck", "compare, NaN reference", "INCONCLUSIVE, not pass", _compare_nan_reference),
    ]
