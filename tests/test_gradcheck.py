"""gradcheck: the checks catch wrong gradients, say where, and the CLI runs the matrix."""
import json
import subprocess
import sys

import numpy as np
import pytest

import gradcheck
from gradcheck import GradcheckError, check_directional, check_grads, taylor_test


def f(p):
    """A smooth test function with a known gradient."""
    return float(np.sum(np.sin(p["a"]) * p["b"][0]) + np.sum(p["b"] ** 3))


def true_grad(p):
    return {"a": np.cos(p["a"]) * p["b"][0], "b": np.array([np.sum(np.sin(p["a"])) + 3 * p["b"][0] ** 2,
                                                           3 * p["b"][1] ** 2])}


POINT = {"a": np.array([[0.3, -1.2], [0.7, 2.0]]), "b": np.array([0.9, -0.4])}


def test_a_correct_gradient_passes_with_a_small_error():
    report = check_grads(f, POINT, true_grad(POINT))
    assert report.passed and report.max_rel_error < 1e-8


def test_a_wrong_entry_is_named_by_parameter_and_index():
    wrong = true_grad(POINT)
    wrong["a"][1, 0] += 1e-3
    with pytest.raises(GradcheckError) as info:
        check_grads(f, POINT, wrong)
    worst = info.value.report.params[0]
    assert (worst.name, worst.index) == ("a", (1, 0))
    assert "a" in str(info.value) and "(1, 0)" in str(info.value) and "FAIL" in str(info.value)


def test_nan_in_the_gradient_fails_unless_both_sides_are_nan_and_equal_nan_is_set():
    bad = true_grad(POINT)
    bad["b"][0] = np.nan
    assert not check_grads(f, POINT, bad, raise_on_failure=False).passed


def test_tolerances_follow_the_dtype_table():
    g32 = {k: v.astype(np.float32) for k, v in true_grad(POINT).items()}
    report = check_grads(f, POINT, g32, eps=1e-6)
    assert report.rtol == gradcheck.TOLERANCES[np.dtype("float32")]["rtol"]


def test_an_unknown_dtype_is_rejected_by_name():
    with pytest.raises(ValueError, match="dtype must be one of"):
        gradcheck.tolerances_for(np.float16)


def test_directional_mode_passes_correct_and_catches_wrong_gradients():
    assert check_directional(f, POINT, true_grad(POINT)).passed
    wrong = true_grad(POINT)
    wrong["b"] = -wrong["b"]
    assert not check_directional(f, POINT, wrong, raise_on_failure=False).passed


def test_taylor_remainder_is_second_order_for_the_right_gradient_and_first_for_a_wrong_one():
    right = taylor_test(f, POINT, true_grad(POINT))
    assert right.passed and 1.8 < right.order < 2.2
    wrong = true_grad(POINT)
    wrong["a"] = wrong["a"] * 1.01
    bad = taylor_test(f, POINT, wrong, raise_on_failure=False)
    assert not bad.passed and 0.8 < bad.order < 1.2


def test_gradcheck_package_does_not_import_refnet():
    code = ("import sys, gradcheck, gradcheck.check, gradcheck.finite_differences; "
            "print('refnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_cli_runs_the_matrix_and_prints_json_rows():
    out = subprocess.run([sys.executable, "-m", "gradcheck", "--json", "--cell", "gru"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["algorithm"] for r in rows} >= {"bptt", "tbptt(1,2)", "sequence_vjp", "jvp/vjp", "taylor"}
    assert all(r["passed"] and r["cell"] == "gru" for r in rows)


def test_full_matrix_lists_every_cell_and_algorithm():
    from gradcheck.matrix import CELLS, checks
    pairs = {(c.cell, c.algorithm) for c in checks()}
    for cell in CELLS:
        for algorithm in ("bptt", "tbptt(1,2)", "tbptt(2,5)", "sequence_vjp", "jvp/vjp", "jacobians", "taylor"):
            assert (cell, algorithm) in pairs


def test_cli_exits_1_when_a_check_fails(monkeypatch, capsys):
    from gradcheck import __main__ as cli
    from gradcheck import matrix
    failing = matrix.Check("fake", "bptt", "= FD", lambda: (1.0, 1e-6, False, "planted"))
    monkeypatch.setattr(matrix, "checks", lambda: [failing])
    assert cli.main([]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_unknown_backend_value_is_refused():
    out = subprocess.run([sys.executable, "-m", "gradcheck", "--backend", "tpu"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_compare_with_zero_rtol_demands_exact_equality():
    from gradcheck import compare_grads
    g = true_grad(POINT)
    assert compare_grads(g, {k: v.copy() for k, v in g.items()}, rtol=0.0).passed
    nudged = {k: v.copy() for k, v in g.items()}
    nudged["b"][0] = np.nextafter(nudged["b"][0], np.inf)
    assert not compare_grads(nudged, g, rtol=0.0, raise_on_failure=False).passed
