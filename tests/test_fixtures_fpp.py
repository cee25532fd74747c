"""FPP fixtures (refnet/fixtures/fpp.py): one transition's gradient, its two steps, the written-back state."""
import numpy as np
import pytest

import refnet
from gradcheck.cli_fixtures import main
from gradcheck.compare import compare
from gradcheck.fixture_io import load_fixture, save_fixture
from gradcheck.matrix import exporters, run_check
from refnet.algorithms.fpp import fpp_grad, fpp_refresh
from refnet.fixtures import EXPORTERS, fpp_fixture


def test_fpp_fixture_holds_fpp_grad_and_the_state_written_back_after_one_sgd_step():
    fx = EXPORTERS["fpp"].function("gru", seed=3, state_weight=0.5, lr=0.2)
    A = fx.arrays
    cell, head = refnet.GRU(3, 4), refnet.Head(4, 3)
    theta = {k: A[f"params/{k}_l0"] for k in cell.param_shapes()}
    beta = {"weight": A["params/head.weight"], "bias": A["params/head.bias"]}
    g = fpp_grad(cell, theta, head, beta, A["inputs/s_prev"], A["inputs/x"], A["inputs/x_next"],
                 A["inputs/s_next"], A["inputs/y"], A["inputs/loss_weights"], v=A["inputs/state_weights"],
                 state_weight=0.5)
    for k in theta:
        np.testing.assert_array_equal(A[f"grads/{k}_l0"], g.dtheta[k])      # the same computation
    np.testing.assert_array_equal(A["grads/s_prev"], g.ds_prev)
    updated = {k: theta[k] - 0.2 * g.dtheta[k] for k in theta}
    np.testing.assert_array_equal(A["forward/refreshed"][1],
                                  fpp_refresh(cell, updated, A["inputs/s_prev"], A["inputs/x"], A["inputs/x_next"])[1])
    assert A["forward/loss"] == g.loss and fx.meta["options"] == {"state_weight": 0.5, "lr": 0.2}


def test_fpp_fixture_saves_loads_and_compares_equal(tmp_path):
    fx = fpp_fixture("fastgrnn")
    save_fixture(fx, tmp_path / "f")
    assert compare(fx, load_fixture(tmp_path / "f")).passed


def test_a_wrong_second_step_is_localised_to_step_2_and_a_wrong_adjoint_of_s_T_to_step_1():
    fx = fpp_fixture("lstm")
    s = fx.arrays["forward/s_l0"].copy()
    s[1, 1, 3] += 1e-4                          # s'_(T+1) of example 1, unit 3 (an LSTM state is [h, c])
    d = compare(fx, {"forward/s_l0": s}).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("s", 2, 1, 3)
    ds = fx.arrays["backward/ds_l0"].copy()
    ds[0, 0, 2] *= 1.01                         # dL/ds_T only: the second step's adjoint is right
    d = compare(fx, {"backward/ds_l0": ds}).first_backward
    assert (d.quantity, d.step, d.batch, d.unit) == ("ds", 1, 0, 2)


def test_a_wrong_write_back_fails_by_name_with_the_steps_right():
    fx = fpp_fixture("gru")
    fresh = fx.arrays["forward/refreshed"].copy()
    fresh[1, 0, 1] += 1e-6
    report = compare(fx, {"forward/s_l0": fx.arrays["forward/s_l0"], "forward/refreshed": fresh})
    assert report.failed == ["forward/refreshed"] and report.first_forward is None


def test_cli_exports_fpp_with_its_options_and_without_t(tmp_path):
    assert main(["export", "--cell", "elman_tanh", "--algorithm", "fpp", "--lr", "0.5", "--state-weight", "0.25",
                 "--out", str(tmp_path)]) == 0
    assert load_fixture(tmp_path / "elman_tanh_fpp").meta["options"] == {"state_weight": 0.25, "lr": 0.5}
    with pytest.raises(SystemExit):
        main(["export", "--cell", "gru", "--algorithm", "fpp", "--T", "3", "--out", str(tmp_path)])


@pytest.mark.parametrize("bad, match", [({"cell": "hopfield_x"}, "cell must be one of"),
                                        ({"lr": -1.0}, "lr"), ({"state_weight": -0.1}, "state_weight")])
def test_bad_arguments_are_named(bad, match):
    kwargs = {"cell": "gru", **bad}
    with pytest.raises(ValueError, match=match):
        fpp_fixture(kwargs.pop("cell"), **kwargs)


@pytest.mark.parametrize("key", ["backward/ds_l0", "grads/weight_hh_l0", "grads/s_next", "forward/refreshed"])
def test_fpp_matrix_row_fails_on_a_planted_error(monkeypatch, key):
    real = exporters.fpp_fixture

    def planted(*args, **kwargs):
        fx = real(*args, **kwargs)
        fx.arrays[key][(1,) * fx.arrays[key].ndim] *= 1.001
        return fx
    check = next(c for c in exporters.checks() if c.cell == "gru" and c.algorithm == "fixture(fpp)")
    assert run_check(check).passed
    monkeypatch.setattr(exporters, "fpp_fixture", planted)
    assert run_check(check).verdict.failed
