"""Verdicts with no evidence are never passes: kinks, zero gradients, NaN references, per-array dtypes, rtol = 0."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_directional, check_grads, compare_grads, taylor_test
from gradcheck.compare import compare
from gradcheck.fixture_io import save_fixture
from gradcheck.matrix.verdicts import irnn_kink_problem
from refnet.fixtures import bptt_fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gradcheck", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


# ---- kinks: INCONCLUSIVE in every check, wrong gradients at smooth points still FAIL ------------

def _relu_s0_problem(seed, nonlinearity="relu"):
    """ReLU Elman, zero biases, s0 = 0, x_1 = 0: every unit of step 1 sits at pre-activation 0."""
    T, B, I, H, O = 4, 1, 2, 4, 2
    r = refnet.rng(seed)
    cell = refnet.ElmanRNN(I, H, nonlinearity=nonlinearity)
    th = cell.init(r)
    th["bias_ih"][:] = 0
    th["bias_hh"][:] = 0
    head = refnet.Head(H, O)
    be = head.init(r)
    x = refnet.to_numpy(r.normal((T, B, I)))
    x[0] = 0
    y = r.integers(0, O, (T, B))
    s0 = np.zeros((B, H))
    res = refnet.bptt(cell, th, x, s0, head, be, y)
    return (lambda p: refnet.loss(cell, th, x, p["s0"], head, be, y)), {"s0": s0}, {"s0": res.ds0}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 200))
def test_a_correct_gradient_at_a_multi_unit_kink_is_never_failed(seed):
    f, p, g = _relu_s0_problem(seed)
    report = check_grads(f, p, g, raise_on_failure=False)
    assert not report.verdict.failed, report.reason
    if report.kinks:
        assert report.verdict.is_inconclusive and "kink" in report.reason


def test_check_directional_and_taylor_are_inconclusive_at_the_irnn_kink_naming_both_sides():
    f, p, g = irnn_kink_problem()
    for seed in range(3):
        report = check_directional(f, p, g, seed=seed, raise_on_failure=False)
        assert not report.verdict.failed, report.reason
    taylor = taylor_test(f, p, g, raise_on_failure=False)
    assert taylor.verdict.is_inconclusive and taylor.kink is not None
    assert "left" in taylor.reason and "right" in taylor.reason and "analytic" in taylor.reason
    assert abs(taylor.kink.left - taylor.kink.right) > 1e-3           # a real jump, not noise


def test_a_wrong_gradient_at_a_smooth_point_still_fails_every_check():
    # tanh cell at s0 = 0.3: smooth everywhere.  The gradient (central differences) off by 5% is far
    # above every tolerance (1e-6 relative), so all three checks must FAIL, not hide behind "kink".
    f, p, _ = _relu_s0_problem(3, nonlinearity="tanh")
    p = {"s0": p["s0"] + 0.3}
    h = 1e-6
    central = np.array([[(f({"s0": p["s0"] + h * e}) - f({"s0": p["s0"] - h * e})) / (2 * h)
                         for e in np.eye(4)]])
    wrong = {"s0": central * 1.05}
    assert check_grads(f, p, wrong, raise_on_failure=False).verdict.failed
    assert check_directional(f, p, wrong, raise_on_failure=False).verdict.failed
    assert taylor_test(f, p, wrong, raise_on_failure=False).verdict.failed


# ---- compare_grads: two zeros are no evidence ---------------------------------------------------

def test_compare_grads_of_two_zero_gradients_is_inconclusive_unless_zeros_are_the_claim():
    zeros = {"w": np.zeros((3, 2)), "b": np.zeros(3)}
    report = compare_grads(zeros, {k: v.copy() for k, v in zeros.items()}, rtol=1e-12, raise_on_failure=False)
    assert report.verdict.is_inconclusive and "identically zero" in report.reason
    claimed = compare_grads(zeros, {k: v.copy() for k, v in zeros.items()}, rtol=1e-12, zeros_are_evidence=True)
    assert claimed.passed
    # one nonzero entry anywhere is evidence again (and a zero candidate then fails)
    ref = {"w": np.zeros((3, 2)), "b": np.array([0.0, 1e-3, 0.0])}
    assert compare_grads(zeros, ref, rtol=1e-12, raise_on_failure=False).verdict.failed


def test_zeros_are_evidence_must_be_a_bool():
    with pytest.raises(TypeError, match="zeros_are_evidence"):
        compare_grads({"w": np.ones(2)}, {"w": np.ones(2)}, rtol=1e-12, zeros_are_evidence="yes")


# ---- compare: per-array dtype, NaN references, rtol = 0 -----------------------------------------

@pytest.fixture(scope="module")
def fx():
    return bptt_fixture("elman_tanh", T=5, B=2, input_size=3, hidden_size=4, output_size=3)


@pytest.mark.parametrize("setup_key", ["inputs/loss_weights", "inputs/x"])
def test_a_float32_setup_array_does_not_loosen_float64_results(fx, setup_key):
    cand = {k: v * (1 + 5e-5) for k, v in fx.arrays.items() if k.startswith("grads/")}
    cand[setup_key] = fx.arrays[setup_key].astype(np.float32)
    report = compare(fx, cand)
    assert report.verdict.failed
    by_key = {a.key: a for a in report.arrays}
    assert by_key["grads/weight_hh_l0"].dtype == "float64" and by_key["grads/weight_hh_l0"].rtol == 1e-10
    assert by_key[setup_key].dtype == "float32" and by_key[setup_key].passed


def test_a_float32_result_is_judged_by_the_float32_row(fx):
    cand = {k: v.astype(np.float32) for k, v in fx.arrays.items() if k.startswith("grads/")}
    report = compare(fx, cand)
    assert report.passed and report.dtype == "float32"


def test_the_cli_exits_1_for_float64_results_off_by_5e_5_beside_a_float32_input(fx, tmp_path):
    cand = {k: v * (1 + 5e-5) for k, v in fx.arrays.items() if k.startswith("grads/")}
    cand["inputs/loss_weights"] = fx.arrays["inputs/loss_weights"].astype(np.float32)
    save_fixture(fx, tmp_path / "ref")
    np.savez(tmp_path / "cand.npz", **cand)
    assert _cli("compare", str(tmp_path / "ref"), str(tmp_path / "cand.npz")).returncode == 1


def test_an_all_nan_reference_compares_nothing_and_is_inconclusive(fx, tmp_path):
    arrays = dict(fx.arrays)
    arrays.update({k: np.full_like(v, np.nan) for k, v in arrays.items() if k.startswith(("grads/", "forward/",
                                                                                          "backward/"))})
    ref = type(fx)(fx.meta, arrays)
    save_fixture(ref, tmp_path / "ref")
    rand = {k: np.random.default_rng(0).random(v.shape) for k, v in arrays.items() if k.startswith("grads/")}
    report = compare(str(tmp_path / "ref"), rand)
    assert report.verdict.is_inconclusive and "NaN" in report.reason and report.undefined
    np.savez(tmp_path / "cand.npz", **rand)
    assert _cli("compare", str(tmp_path / "ref"), str(tmp_path / "cand.npz")).returncode == 3


def test_a_partly_nan_reference_compares_its_defined_entries(fx):
    arrays = dict(fx.arrays)
    w = arrays["grads/weight_hh_l0"].copy()
    w[0] = np.nan
    arrays["grads/weight_hh_l0"] = w
    ref = type(fx)(fx.meta, arrays)
    cand = {k: v.copy() for k, v in fx.arrays.items() if k.startswith("grads/")}
    assert compare(ref, cand).passed
    cand["grads/weight_hh_l0"][1, 0] += 1.0                   # a defined entry off: found
    assert compare(ref, cand).verdict.failed


def test_rtol_zero_is_exact_up_to_atol(fx):
    cand = {k: v.copy() for k, v in fx.arrays.items() if k.startswith("grads/")}
    assert compare(fx, cand, rtol=0).passed
    assert compare(fx, cand, rtol=0, atol=0).passed                   # identical arrays: exact equality
    cand["grads/bias_ih_l0"] = cand["grads/bias_ih_l0"] + 1e-14
    assert compare(fx, cand, rtol=0, atol=0).verdict.failed
    assert compare(fx, cand, rtol=0, atol=1e-13).passed


@pytest.mark.parametrize("value, error", [(-1.0, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
                                          ("1e-3", TypeError), (True, TypeError)])
def test_a_bad_tolerance_is_named(fx, value, error):
    cand = {k: v for k, v in fx.arrays.items() if k.startswith("grads/")}
    with pytest.raises(error, match="rtol"):
        compare(fx, cand, rtol=value)
    with pytest.raises(error, match="atol"):
        compare(fx, cand, atol=value)


def test_the_cli_accepts_rtol_zero_and_names_a_negative_one(fx, tmp_path):
    save_fixture(fx, tmp_path / "ref")
    np.savez(tmp_path / "cand.npz", **{k: v for k, v in fx.arrays.items() if k.startswith("grads/")})
    assert _cli("compare", str(tmp_path / "ref"), str(tmp_path / "cand.npz"), "--rtol", "0").returncode == 0
    bad = _cli("compare", str(tmp_path / "ref"), str(tmp_path / "cand.npz"), "--rtol", "-1")
    assert bad.returncode == 2 and "--rtol" in bad.stderr


def test_a_symmetric_kink_that_the_central_difference_averages_away_is_still_named():
    """|w| at 0 with the convention 0: the central difference agrees, only the one-sided gap shows the kink,
    and it persists at ε/8, so it reaches the one-sided examination."""
    from gradcheck.check import check_grads
    report = check_grads(lambda p: float(np.abs(p["w"]).sum()), {"w": np.zeros(2)}, {"w": np.zeros(2)},
                         raise_on_failure=False)
    assert report.verdict.status == "inconclusive" and len(report.kinks) == 2


def test_strong_curvature_is_not_mistaken_for_a_kink():
    """1e4 w² has a first-order one-sided gap 2e4 ε above rtol · scale, but it shrinks at ε/8: a pass."""
    from gradcheck.check import check_grads
    w = np.array([0.3, -0.2])
    report = check_grads(lambda p: float((1e4 * p["w"] ** 2).sum() + p["w"].sum()), {"w": w},
                         {"w": 2e4 * w + 1}, raise_on_failure=False)
    assert report.passed and not report.kinks
