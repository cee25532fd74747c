"""Fixtures of FastRNN/FastGRNN under BPTT and RTRL's sensitivities (refnet/fixtures/steps.py), their matrix rows."""
import numpy as np
import pytest

import refnet
from gradcheck.cli_fixtures import main
from gradcheck.compare import compare
from gradcheck.fixture_io import load_fixture, save_fixture
from gradcheck.matrix import exporters, run_check
from refnet.fixtures import EXPORTERS, STEP_CELLS, bptt_fixture, cell_bptt_fixture, rtrl_fixture


@pytest.mark.parametrize("cell", sorted(STEP_CELLS))
def test_cell_bptt_fixture_holds_refnets_bptt_gradient_and_loads_back(cell, tmp_path):
    fx = cell_bptt_fixture(cell, seed=1)
    A = fx.arrays
    c = STEP_CELLS[cell].factory(3, 4)
    theta = {k: A[f"params/{k}"] for k in c.param_shapes()}
    head = refnet.Head(4, 3)
    beta = {"weight": A["params/head.weight"], "bias": A["params/head.bias"]}
    res = refnet.bptt(c, theta, A["inputs/x"], A["inputs/h0"][0], head, beta, A["inputs/y"], A["inputs/loss_weights"])
    for k, v in res.dtheta.items():
        np.testing.assert_array_equal(A[f"grads/{k}"], v)
    save_fixture(fx, tmp_path / "f")
    assert compare(fx, load_fixture(tmp_path / "f")).passed


def test_a_wrong_fastgrnn_gate_adjoint_is_localised_to_its_step_and_quantity():
    fx = cell_bptt_fixture("fastgrnn")
    bad = fx.arrays["backward/da_z_l0"].copy()
    bad[1, 0, 2] += 1e-3                            # step 2, example 0, unit 2
    report = compare(fx, {"backward/da_z_l0": bad, "backward/da_h_l0": fx.arrays["backward/da_h_l0"]})
    d = report.first_backward
    assert (d.step, d.quantity, d.batch, d.unit) == (2, "da_z", 0, 2)


def test_rtrl_fixture_gradient_equals_the_bptt_fixtures_and_m_is_localised():
    fr, fb = rtrl_fixture("gru", seed=2), bptt_fixture("gru", seed=2)
    for key in ("grads/weight_hh_l0", "grads/bias_ih_l0", "grads/head.weight"):
        np.testing.assert_allclose(fr.arrays[key], fb.arrays[key], rtol=1e-12, atol=1e-15)  # forward vs reverse sums
    M = fr.arrays["forward/M_l0"].copy()
    M[3, 1, 0, 7] += 1e-3
    d = compare(fr, {"forward/M_l0": M}).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("M", 4, 1, 7)
    name, first, shape = fr.meta["param_columns"][0]
    assert (name, first, shape) == ("weight_ih", 0, [12, 3])


def test_cli_exports_the_new_cells_and_rtrl(tmp_path):
    assert main(["export", "--cell", "fastrnn", "--algorithm", "bptt", "--out", str(tmp_path)]) == 0
    assert main(["export", "--cell", "fastgrnn", "--algorithm", "rtrl", "--T", "3", "--out", str(tmp_path)]) == 0
    assert load_fixture(tmp_path / "fastgrnn_rtrl").arrays["forward/M_l0"].shape[0] == 3
    with pytest.raises(SystemExit):
        main(["export", "--cell", "fastrnn", "--algorithm", "bptt", "--num-layers", "2", "--out", str(tmp_path)])


def test_every_step_cell_and_rtrl_is_in_the_one_registry():
    assert "rtrl" in EXPORTERS
    with pytest.raises(ValueError, match="cell must be one of"):
        cell_bptt_fixture("lstm")
    with pytest.raises(ValueError, match="cell must be one of"):
        rtrl_fixture("ernn")


def test_exporter_matrix_rows_pass():
    rows = [run_check(c) for c in exporters.checks()]
    assert rows and all(r.passed for r in rows), [(r.cell, r.algorithm, r.verdict) for r in rows]


def test_exporter_matrix_row_fails_on_a_wrong_trace(monkeypatch):
    """The relation can fail: a fixture whose da_h is off at one entry fails its FD row."""
    real = exporters.cell_bptt_fixture

    def planted(*args, **kwargs):
        fx = real(*args, **kwargs)
        fx.arrays["backward/da_h_l0"][1, 1, 1] *= 1.01
        return fx
    monkeypatch.setattr(exporters, "cell_bptt_fixture", planted)
    check = next(c for c in exporters.checks() if c.cell == "fastgrnn" and c.algorithm == "fixture(bptt)")
    assert run_check(check).verdict.failed
