"""gradcheck: the checks catch wrong gradients, say where, give pass / fail / inconclusive, and the CLI runs the matrix."""
import json
import subprocess
import sys

import numpy as np
import pytest

import gradcheck
from gradcheck import (FLOAT32_OBJECTIVE, GradcheckError, InconclusiveError, Verdict, check_directional,
                       check_grads, compare_grads, dot_product_test, taylor_test)
from gradcheck.verdict import combine

TIMEOUT = 300   # seconds: a subprocess that hangs fails the test instead of the suite


def f(p):
    """A smooth test function with a known gradient."""
    return float(np.sum(np.sin(p["a"]) * p["b"][0]) + np.sum(p["b"] ** 3))


def true_grad(p):
    return {"a": np.cos(p["a"]) * p["b"][0], "b": np.array([np.sum(np.sin(p["a"])) + 3 * p["b"][0] ** 2,
                                                           3 * p["b"][1] ** 2])}


POINT = {"a": np.array([[0.3, -1.2], [0.7, 2.0]]), "b": np.array([0.9, -0.4])}


def abs_plus(p):
    """|x_0| + x_1: a kink in x_0 at 0 (left derivative −1, right +1)."""
    return float(np.abs(p["x"][0]) + p["x"][1])


AT_KINK = {"x": np.array([0.0, 1.0])}


def objective_1000(q):
    return 1000.0 + float(q["w"].sum())


W32 = {"w": np.ones(3, np.float32)}


# ---- verdicts ------------------------------------------------------------------------------------

def test_a_correct_gradient_passes_with_a_small_error():
    report = check_grads(f, POINT, true_grad(POINT))
    assert report.passed and report.verdict.status == "pass" and report.max_rel_error < 1e-8


def test_a_wrong_entry_is_named_by_parameter_and_index():
    wrong = true_grad(POINT)
    wrong["a"][1, 0] += 1e-3
    with pytest.raises(GradcheckError) as info:
        check_grads(f, POINT, wrong)
    assert not isinstance(info.value, InconclusiveError)
    worst = info.value.report.params[0]
    assert (worst.name, worst.index) == ("a", (1, 0)) and info.value.report.verdict.failed
    assert "a[1, 0]" in str(info.value) and "gradient != finite differences" in str(info.value)


def test_a_verdict_has_no_truth_value():
    with pytest.raises(TypeError, match="three values"):
        bool(Verdict.inconclusive("no evidence"))


def test_combining_verdicts_fails_over_inconclusive_over_pass_and_nothing_is_inconclusive():
    p, i, x = Verdict.pass_("p"), Verdict.inconclusive("i"), Verdict.fail("x")
    assert combine([p, i, x]).failed and combine([p, i]).is_inconclusive and combine([p, p]).passed
    assert combine([]).is_inconclusive


def test_inconclusive_error_is_a_gradcheck_error_raised_unless_allowed():
    assert issubclass(InconclusiveError, GradcheckError)
    g = {"x": np.array([-1.0, 1.0])}
    with pytest.raises(InconclusiveError, match="kink"):
        check_grads(abs_plus, AT_KINK, g)
    report = check_grads(abs_plus, AT_KINK, g, allow_inconclusive=True)
    assert report.verdict.is_inconclusive and not report.passed and "kink" in report.reason


def test_nan_in_the_gradient_is_named_unless_equal_nan_lets_it_be_compared():
    bad = true_grad(POINT)
    bad["b"][0] = np.nan
    with pytest.raises(ValueError, match=r"grads\['b'\] must be finite, got nan at index \(0,\)"):
        check_grads(f, POINT, bad)
    report = check_grads(f, POINT, bad, equal_nan=True, raise_on_failure=False)
    assert report.verdict.failed and "b[0]" in report.reason     # the finite differences are not NaN there


def test_tolerances_follow_the_dtype_table():
    g32 = {k: v.astype(np.float32) for k, v in true_grad(POINT).items()}
    report = check_grads(f, POINT, g32, eps=1e-6)
    assert report.rtol == gradcheck.TOLERANCES[np.dtype("float32")]["rtol"]


def test_an_unknown_dtype_is_rejected_by_name():
    with pytest.raises(ValueError, match="dtype must be one of"):
        gradcheck.tolerances_for(np.float16)


# ---- kinks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("analytic, side", [(-1.0, "left"), (1.0, "right"), (0.0, "between")])
def test_a_kink_is_named_with_both_one_sided_derivatives_not_blamed_on_the_gradient(analytic, side):
    report = check_grads(abs_plus, AT_KINK, {"x": np.array([analytic, 1.0])}, raise_on_failure=False)
    (kink,) = report.kinks
    assert report.verdict.is_inconclusive and "not differentiable at θ (kink)" in report.reason
    assert kink.index == (0,) and kink.matches == side
    # second-order one-sided differences of a piecewise-linear f are exact up to rounding / ε ≈ 1e-10
    assert kink.left == pytest.approx(-1.0, abs=1e-8) and kink.right == pytest.approx(1.0, abs=1e-8)


def test_an_analytic_value_outside_both_one_sided_derivatives_is_reported_not_failed():
    # At a kink no finite difference can refute a value (several ReLU units at 0 legitimately give
    # a value outside both sides): INCONCLUSIVE, naming left, right, analytic and "matches neither".
    report = check_grads(abs_plus, AT_KINK, {"x": np.array([3.0, 1.0])}, raise_on_failure=False)
    assert report.verdict.is_inconclusive and "matches neither" in report.reason
    assert report.kinks[0].matches is None


def test_the_irnn_at_init_is_a_kink_whose_analytic_value_is_the_left_derivative():
    from gradcheck.matrix.verdicts import irnn_kink_problem
    objective, point, grads = irnn_kink_problem()
    report = check_grads(objective, point, grads, raise_on_failure=False)
    assert report.verdict.is_inconclusive and "gradient != finite differences" not in report.reason
    assert {k.name for k in report.kinks} == {"bias_ih", "bias_hh", "s0"}
    assert {k.matches for k in report.kinks} == {"left"}      # refnet's relu'(0) = 0 keeps the unit off


def test_a_kink_elsewhere_does_not_hide_a_wrong_gradient():
    from gradcheck.matrix.verdicts import irnn_kink_problem
    objective, point, grads = irnn_kink_problem()
    grads["weight_ih"] = grads["weight_ih"].copy()
    grads["weight_ih"][1, 2] += 1e-3
    report = check_grads(objective, point, grads, raise_on_failure=False)
    assert report.verdict.failed and "weight_ih[1, 2]" in report.reason


def test_refnets_relu_takes_the_derivative_zero_at_zero():
    from refnet.cells.activations import relu
    y = relu.fn(np.array([-1.0, 0.0, 2.0]))
    assert relu.grad(y).tolist() == [0.0, 0.0, 1.0]


def test_directional_mode_names_a_kink_too():
    report = check_directional(abs_plus, AT_KINK, {"x": np.array([-1.0, 1.0])}, raise_on_failure=False)
    assert report.verdict.is_inconclusive and report.kinks and {k.matches for k in report.kinks} <= {"left", "right"}


# ---- the objective's precision -------------------------------------------------------------------

def _sin_sum32(p):
    return np.float32(np.sum(np.sin(p["a"].astype(np.float32))))


def test_a_float32_objective_is_named_and_checked_with_the_float32_objective_row():
    report = check_grads(_sin_sum32, {"a": POINT["a"]}, {"a": np.cos(POINT["a"])})
    assert report.passed and report.rtol == FLOAT32_OBJECTIVE["rtol"] and report.eps == FLOAT32_OBJECTIVE["eps"]
    assert any("the objective is float32" in n for n in report.notes)


def test_a_float32_objective_still_catches_a_one_percent_error():
    report = check_grads(_sin_sum32, {"a": POINT["a"]}, {"a": 1.01 * np.cos(POINT["a"])}, raise_on_failure=False)
    assert report.verdict.failed


def test_a_hidden_float32_cast_is_found_by_the_measured_noise():
    def hidden(p):
        return float(np.sum(np.sin(p["a"].astype(np.float32))))
    report = check_grads(hidden, {"a": POINT["a"]}, {"a": np.cos(POINT["a"])})
    assert report.passed and any("measured noise" in n for n in report.notes)
    assert report.noise > 1e-9      # float32 rounding of |f| ≈ 1 is ≈ 6e-8; float64 would give ≈ 1e-16


def test_differences_below_the_objectives_noise_are_inconclusive_at_a_float64_step():
    report = check_grads(_sin_sum32, {"a": POINT["a"]}, {"a": np.cos(POINT["a"])}, eps=1e-6, rtol=1e-6,
                         atol=1e-9, raise_on_failure=False)
    assert report.verdict.is_inconclusive and "noise floor" in report.reason


def test_a_non_finite_objective_is_a_failure_naming_where():
    report = check_grads(lambda p: float("nan"), POINT, true_grad(POINT), raise_on_failure=False)
    assert report.verdict.failed and "f(θ) = nan" in report.reason

    def blows_up(p):
        return f(p) if p["a"][1, 0] <= 0.7 else float("inf")
    report = check_grads(blows_up, POINT, true_grad(POINT), raise_on_failure=False)
    assert report.verdict.failed and "params['a'][1, 0]" in report.reason


# ---- directional, Taylor, dot products, compare_grads ---------------------------------------------

def test_directional_mode_passes_correct_and_catches_wrong_gradients():
    assert check_directional(f, POINT, true_grad(POINT)).passed
    wrong = true_grad(POINT)
    wrong["b"] = -wrong["b"]
    assert check_directional(f, POINT, wrong, raise_on_failure=False).verdict.failed


def test_taylor_remainder_is_second_order_for_the_right_gradient_and_first_for_a_wrong_one():
    right = taylor_test(f, POINT, true_grad(POINT))
    assert right.passed and 1.8 < right.order < 2.2
    wrong = true_grad(POINT)
    wrong["a"] = wrong["a"] * 1.01
    bad = taylor_test(f, POINT, wrong, raise_on_failure=False)
    assert bad.verdict.failed and 0.8 < bad.order < 1.2


def test_taylor_fails_a_wrong_gradient_of_a_float32_objective_far_above_its_noise():
    # r(ε) = ε |Σ v| for the claimed g = 0, against a measured noise of float32 rounding of Σ w ≈ 3
    # (≈ 1e-7): FAIL, not the old "order inf, passed" from a floor of 1e3 u32 |f| ≈ 0.12.
    report = taylor_test(objective_1000, W32, {"w": np.zeros(3, np.float32)}, raise_on_failure=False)
    assert report.verdict.failed and report.dtype == "float32" and 0.8 < report.order < 1.2
    assert report.noise < 1e-6 and report.floor < 1e-4


def test_taylor_with_no_remainder_above_the_noise_floor_is_inconclusive():
    report = taylor_test(objective_1000, W32, {"w": np.ones(3, np.float32)}, raise_on_failure=False)
    assert report.verdict.is_inconclusive and not report.passed and np.isnan(report.order)
    assert "noise floor" in report.reason
    with pytest.raises(InconclusiveError):
        taylor_test(objective_1000, W32, {"w": np.ones(3, np.float32)})


def test_taylor_evaluates_float32_params_in_float32():
    seen = []
    taylor_test(lambda q: seen.append(q["w"].dtype) or objective_1000(q), W32, {"w": np.ones(3, np.float32)},
                allow_inconclusive=True)
    assert set(seen) == {np.dtype(np.float32)}


def test_taylor_with_a_nan_objective_fails_naming_where():
    report = taylor_test(lambda p: float("nan"), POINT, true_grad(POINT), raise_on_failure=False)
    assert report.verdict.failed and "f(θ) = nan" in report.reason

    def nan_away_from_theta(p):
        return f(p) if np.array_equal(p["a"], POINT["a"]) else float("nan")
    report = taylor_test(nan_away_from_theta, POINT, true_grad(POINT), raise_on_failure=False)
    assert report.verdict.failed and "not finite at θ + " in report.reason


def test_dot_product_with_both_sides_zero_is_inconclusive_and_non_finite_fails():
    assert dot_product_test(0.0, 0.0, rtol=1e-12, raise_on_failure=False).verdict.is_inconclusive
    with pytest.raises(InconclusiveError, match="both sides are exactly 0"):
        dot_product_test(0.0, 0.0, rtol=1e-12)
    assert dot_product_test(float("inf"), 1.0, rtol=1e-12, raise_on_failure=False).verdict.failed
    assert dot_product_test(1.0, 1.0 + 1e-14, rtol=1e-12).passed


def test_compare_grads_of_empty_arrays_is_inconclusive():
    report = compare_grads({"a": np.zeros(0)}, {"a": np.zeros(0)}, rtol=1e-6, raise_on_failure=False)
    assert report.verdict.is_inconclusive and "nothing was compared" in report.reason


def test_compare_with_zero_rtol_demands_exact_equality():
    g = true_grad(POINT)
    assert compare_grads(g, {k: v.copy() for k, v in g.items()}, rtol=0.0).passed
    nudged = {k: v.copy() for k, v in g.items()}
    nudged["b"][0] = np.nextafter(nudged["b"][0], np.inf)
    assert compare_grads(nudged, g, rtol=0.0, raise_on_failure=False).verdict.failed


# ---- the matrix and the CLI ----------------------------------------------------------------------

def test_gradcheck_package_does_not_import_refnet():
    code = ("import sys, gradcheck, gradcheck.check, gradcheck.finite_differences; "
            "print('refnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=TIMEOUT)
    assert out.stdout.strip() == "False"


def test_cli_runs_the_matrix_and_prints_json_rows():
    out = subprocess.run([sys.executable, "-m", "gradcheck", "--json", "--cell", "gru"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["algorithm"] for r in rows} >= {"bptt", "tbptt(1,2)", "sequence_vjp", "jvp/vjp", "taylor"}
    assert all(r["passed"] and r["verdict"] == "pass" and r["cell"] == "gru" for r in rows)


def test_the_verdict_rows_are_in_the_matrix_and_pass():
    out = subprocess.run([sys.executable, "-m", "gradcheck", "--cell", "gradcheck", "--cell", "irnn",
                          "--algorithm", "kink", "--algorithm", "taylor", "--algorithm", "dot",
                          "--algorithm", "compare"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kink detection" in out.stdout and "taylor, no evidence" in out.stdout
    assert "0 failed, 0 inconclusive" in out.stdout


def test_full_matrix_lists_every_cell_and_algorithm():
    from gradcheck.matrix import CELLS, checks
    pairs = {(c.cell, c.algorithm) for c in checks()}
    for cell in CELLS:
        for algorithm in ("bptt", "tbptt(1,2)", "tbptt(2,5)", "sequence_vjp", "jvp/vjp", "jacobians", "taylor"):
            assert (cell, algorithm) in pairs
    assert ("irnn", "kink detection") in pairs and ("gradcheck", "taylor, no evidence") in pairs


def _run_cli_with(monkeypatch, capsys, check, *argv):
    from gradcheck import __main__ as cli
    from gradcheck import matrix
    monkeypatch.setattr(matrix, "checks", lambda: [check])
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


def test_cli_exits_1_when_a_check_fails(monkeypatch, capsys):
    from gradcheck.matrix import Check
    code, out = _run_cli_with(monkeypatch, capsys, Check("fake", "bptt", "= FD", lambda: (1.0, 1e-6, False, "planted")))
    assert code == 1 and "FAIL" in out and "0 passed, 1 failed, 0 inconclusive" in out


def test_cli_exits_1_on_an_inconclusive_row_unless_allowed(monkeypatch, capsys):
    from gradcheck.matrix import Check
    row = Check("fake", "taylor", "= FD", lambda: (None, 1.8, Verdict.inconclusive("noise floor"), ""))
    code, out = _run_cli_with(monkeypatch, capsys, row)
    assert code == 1 and "INCONCLUSIVE" in out and "0 passed, 0 failed, 1 inconclusive" in out
    code, out = _run_cli_with(monkeypatch, capsys, row, "--allow-inconclusive")
    assert code == 0 and "1 inconclusive (allowed)" in out


def test_a_legacy_row_returning_false_from_an_inconclusive_report_is_inconclusive():
    from gradcheck.matrix import Check, run_check

    def legacy():
        report = taylor_test(objective_1000, W32, {"w": np.ones(3, np.float32)}, raise_on_failure=False)
        return None, report.min_order, report.passed, "legacy 4-tuple"
    row = run_check(Check("fake", "taylor", "= FD", legacy))
    assert row.verdict.is_inconclusive and not row.passed


@pytest.mark.parametrize("outcome, status", [
    (True, "pass"), (False, "fail"), (Verdict.inconclusive("x"), "inconclusive"), (Verdict.fail("y"), "fail")])
def test_a_row_takes_a_bool_or_a_verdict(outcome, status):
    from gradcheck.matrix import Check, run_check
    assert run_check(Check("fake", "a", "r", lambda: (0.0, 1.0, outcome, ""))).verdict.status == status


def test_a_row_takes_a_report_and_a_crash_is_a_failed_row():
    from gradcheck.matrix import Check, run_check
    report = dot_product_test(0.0, 0.0, rtol=1e-12, raise_on_failure=False)
    assert run_check(Check("fake", "a", "r", lambda: (0.0, 1.0, report, ""))).verdict.is_inconclusive

    def crash():
        raise RuntimeError("boom")
    row = run_check(Check("fake", "a", "r", crash))
    assert row.verdict.failed and "RuntimeError: boom" in row.detail


def test_a_row_that_raises_inconclusive_is_inconclusive():
    from gradcheck.matrix import Check, run_check
    row = run_check(Check("fake", "jvp/vjp", "r", lambda: (None, 1.0, dot_product_test(0.0, 0.0, rtol=1e-12), "")))
    assert row.verdict.is_inconclusive and "both sides are exactly 0" in row.verdict.reason


def test_a_passing_row_with_a_non_finite_error_fails():
    from gradcheck.matrix import Check, run_check
    assert run_check(Check("fake", "a", "r", lambda: (float("nan"), 1.0, True, ""))).verdict.failed


def test_cli_unknown_backend_value_is_refused():
    out = subprocess.run([sys.executable, "-m", "gradcheck", "--backend", "tpu"], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 2 and "invalid choice" in out.stderr


# ---- no false pass, as a property ----------------------------------------------------------------

from hypothesis import given, settings, strategies as st   # noqa: E402


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 10_000), where=st.integers(0, 5),
       size=st.sampled_from([1e-3, 1e-1, 10.0]))
def test_a_wrong_gradient_of_a_smooth_objective_is_never_a_pass(n, seed, where, size):
    # f = ½ xᵀ A x + bᵀ x has the exact gradient A x + b; an error of `size` × max(‖g‖∞, 1) in one
    # entry is 1e3× rtol at least, so check_grads must FAIL (not merely not pass) and taylor_test not PASS.
    r = np.random.default_rng(seed)
    A = r.standard_normal((n, n))
    A = A + A.T
    b, x = r.standard_normal(n), r.standard_normal(n)

    def quadratic(p):
        return float(0.5 * p["x"] @ A @ p["x"] + b @ p["x"])
    g = A @ x + b
    assert check_grads(quadratic, {"x": x}, {"x": g}).passed
    wrong = g.copy()
    wrong[where % n] += size * max(float(np.abs(g).max()), 1.0)
    assert check_grads(quadratic, {"x": x}, {"x": wrong}, raise_on_failure=False).verdict.failed
    assert not taylor_test(quadratic, {"x": x}, {"x": wrong}, raise_on_failure=False).passed
