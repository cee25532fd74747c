"""gradcheck.compare: per-array errors, and the first step and gate where a candidate leaves the reference.

The planted bugs are the classic hand-derivation mistakes, put into a copy of
an LSTM and a GRU written from the equations (tests/planted_bugs.py); each
must be named at the step and gate where it was planted.  T = 5 and h_0 ≠ 0,
so a bug in step t's forward shows at step 1 and one in the backward at step
T (or T − 1 for the carry, which step T does not use: a BPTT fixture has no
cotangent on the final state).
"""
import json

import numpy as np
import pytest

from gradcheck.compare import COMPARE_TOLERANCES, compare, compare_tolerances
from gradcheck.tolerances import TOLERANCES
from refnet.fixtures import bptt_fixture, sequence_vjp_fixture

from planted_bugs import GRU_BUGS, LSTM_BUGS, gru_candidate, lstm_candidate

T = 5
COPIES = {"lstm": lstm_candidate, "gru": gru_candidate}

#             cell    bug                      direction   step   quantity             gate
PLANTED = [("lstm", "wrong_gate_bias",       "forward",  1,     "a_i",               "i"),
           ("lstm", "missing_sigmoid_grad",  "backward", T,     "da_f",              "f"),
           ("lstm", "no_dh_next_carry",      "backward", T - 1, "dh",                None),
           ("lstm", "transposed_weight",     "backward", T,     "dh_prev_from_a_o",  "o"),
           ("gru",  "wrong_gate_bias",       "forward",  1,     "a_z",               "z"),
           ("gru",  "missing_sigmoid_grad",  "backward", T,     "da_z",              "z"),
           ("gru",  "no_dh_next_carry",      "backward", T - 1, "dh",                None),
           ("gru",  "transposed_weight",     "backward", T,     "dh_prev_from_a_r",  "r"),
           ("gru",  "reset_before_matmul",   "forward",  1,     "a_hn",              "n")]


@pytest.fixture(scope="module", params=["lstm", "gru"])
def reference(request):
    return request.param, bptt_fixture(request.param, T=T, B=3, seed=0)


def test_every_planted_bug_is_in_the_table():
    assert {(c, b) for c, b, *_ in PLANTED} == {("lstm", b) for b in LSTM_BUGS} | {("gru", b) for b in GRU_BUGS}


@pytest.mark.parametrize("cell, bug, direction, step, quantity, gate", PLANTED)
def test_a_planted_bug_is_named_at_its_step_and_gate(cell, bug, direction, step, quantity, gate):
    fx = bptt_fixture(cell, T=T, B=3, seed=0)
    report = compare(fx, COPIES[cell](fx.arrays, bug))
    first = report.first_divergence
    assert not report.passed
    assert (first.direction, first.step, first.quantity, first.gate) == (direction, step, quantity, gate)
    if direction == "backward":
        assert report.first_forward is None       # the forward is clean: the backward rule is to blame


def test_the_unplanted_copy_agrees_to_float64_tolerance(reference):
    cell, fx = reference
    report = compare(fx, COPIES[cell](fx.arrays))
    assert report.passed and report.dtype == "float64" and report.first_divergence is None
    assert max(a.max_rel for a in report.arrays) <= 1e-13


def test_the_copy_also_agrees_on_a_sequence_vjp_fixture_with_final_state_cotangents():
    fx = sequence_vjp_fixture("lstm", T=T, B=2, seed=2)
    assert compare(fx, lstm_candidate(fx.arrays)).passed


def test_a_float32_copy_is_held_to_the_float32_row(reference):
    cell, fx = reference
    report = compare(fx, COPIES[cell](fx.arrays, dtype=np.float32))
    assert report.passed and report.dtype == "float32" and report.rtol == 1e-4
    assert max(a.max_rel for a in report.arrays) > 1e-9      # really float32 rounding, within 1e-4


def test_a_fixture_agrees_with_itself_exactly(reference):
    _, fx = reference
    report = compare(fx, fx)
    assert report.passed and all(a.max_abs == 0.0 for a in report.arrays) and not report.missing


def test_a_different_seed_shows_as_different_set_up():
    report = compare(bptt_fixture("gru", seed=0), bptt_fixture("gru", seed=1))
    assert "inputs/x" in report.failed and "params/weight_ih_l0" in report.failed


def test_a_nested_dict_of_torch_tensors_is_read(reference):
    torch = pytest.importorskip("torch")
    cell, fx = reference
    cand = COPIES[cell](fx.arrays)
    nested = {"grads": {k.split("/", 1)[1]: torch.tensor(v, requires_grad=True)
                        for k, v in cand.items() if k.startswith("grads/")}}
    report = compare(fx, nested)
    assert report.passed and "grads/weight_hh_l0" in [a.key for a in report.arrays]
    assert "forward/h_l0" in report.missing and not any(k.startswith("inputs/") for k in report.missing)


def test_nan_in_the_candidate_diverges_at_its_step():
    fx = bptt_fixture("lstm", T=T, B=2)
    cand = lstm_candidate(fx.arrays)
    cand["forward/c_l0"][2, 1, 3] = np.nan
    first = compare(fx, cand).first_forward
    assert (first.step, first.quantity, first.batch, first.unit) == (3, "c", 1, 3)


def test_each_step_is_measured_against_its_own_scale():
    # An error of 1e-9 where the adjoint has decayed to 1e-6 is a bug, though tiny beside step T's adjoint.
    fx = bptt_fixture("gru", T=T, B=2)
    arrays = dict(fx.arrays)
    arrays["backward/dh_l0"] = arrays["backward/dh_l0"].copy()
    arrays["backward/dh_l0"][0] *= 1e-6
    ref = type(fx)(fx.meta, arrays)
    cand = {"backward/dh_l0": arrays["backward/dh_l0"].copy()}
    cand["backward/dh_l0"][0, 0, 0] += 1e-9
    first = compare(ref, cand).first_backward
    assert (first.step, first.batch, first.unit) == (1, 0, 0)


def test_explicit_tolerances_override_the_dtype_row(reference):
    cell, fx = reference
    cand = COPIES[cell](fx.arrays, "missing_sigmoid_grad")
    assert compare(fx, cand, rtol=10.0, atol=10.0).passed


def test_the_report_reads_and_serialises(reference):
    cell, fx = reference
    report = compare(fx, COPIES[cell](fx.arrays, "no_dh_next_carry"))
    text = str(report)
    assert f"first backward divergence: step {T - 1} of {T}, layer 0, dh" in text and "FAILED" in text
    assert json.loads(json.dumps(report.to_dict()))["first_backward"]["step"] == T - 1


def test_parameter_rows_are_named_by_gate_and_unit():
    fx = bptt_fixture("lstm", T=T, B=2)
    cand = {"grads/bias_hh_l0": fx.arrays["grads/bias_hh_l0"].copy()}
    cand["grads/bias_hh_l0"][2 * 4 + 1] += 1.0            # gate g (third block of H = 4), unit 1
    (row,) = compare(fx, cand).arrays
    assert (row.gate, row.unit, row.passed) == ("g", 1, False)


def test_a_candidate_of_the_wrong_shape_is_named():
    with pytest.raises(ValueError, match=r"candidate\['grads/weight_ih_l0'\] must have shape \(16, 3\)"):
        compare(bptt_fixture("lstm", T=2), {"grads/weight_ih_l0": np.zeros((3, 3))})


def test_a_candidate_sharing_nothing_is_inconclusive_not_0_of_0_passed():
    report = compare(bptt_fixture("lstm", T=2), {"something": np.zeros(3)})
    assert report.verdict.is_inconclusive and not report.passed and "shares no key" in report.reason
    assert "INCONCLUSIVE" in str(report) and report.to_dict()["verdict"] == "inconclusive"


def test_a_candidate_holding_only_set_up_arrays_is_inconclusive():
    fx = bptt_fixture("lstm", T=2)
    report = compare(fx, {"inputs/x": fx.arrays["inputs/x"].copy()})
    assert report.verdict.is_inconclusive and "none of the reference's results" in report.reason


def test_nan_in_the_candidate_fails_naming_the_array_and_index():
    fx = bptt_fixture("lstm", T=T, B=2)
    cand = lstm_candidate(fx.arrays)
    cand["grads/bias_hh_l0"] = cand["grads/bias_hh_l0"].copy()
    cand["grads/bias_hh_l0"][5] = np.nan
    report = compare(fx, cand)
    assert report.verdict.failed and "candidate['grads/bias_hh_l0'] is nan at index [5]" in report.reason


def test_tolerances_follow_the_arrays_dtype_not_the_sidecars_claim():
    fx = bptt_fixture("gru", T=2)
    claims_float32 = type(fx)(dict(fx.meta, dtype="float32"), fx.arrays)
    report = compare(claims_float32, {k: v.copy() for k, v in fx.arrays.items()})
    assert report.dtype == "float64" and report.rtol == COMPARE_TOLERANCES[np.dtype("float64")]["rtol"]


def test_tolerance_rows_come_from_gradchecks_table():
    assert compare_tolerances("float64") == {"rtol": 100 * TOLERANCES[np.dtype("float64")]["exact"],
                                             "atol": TOLERANCES[np.dtype("float64")]["exact"]}
    assert COMPARE_TOLERANCES[np.dtype("float32")]["rtol"] == TOLERANCES[np.dtype("float32")]["rtol"]
    with pytest.raises(ValueError, match="dtype must be one of"):
        compare_tolerances("float16")
