"""Fixtures of the cells with structure inside the step (refnet/fixtures/inner.py): ERNN (k), fast weights
(s, A(t)h), Hopfield (u, σ(b u)), exact ERNN (h*, residual, z)."""
import numpy as np
import pytest

from gradcheck.cli_fixtures import main
from gradcheck.compare import compare
from gradcheck.fixture_io import load_fixture, save_fixture
from gradcheck.matrix import exporters, run_check
from refnet.fixtures import EXPORTERS, INNER_CELLS, inner_bptt_fixture


@pytest.mark.parametrize("cell", sorted(k for k, row in INNER_CELLS.items() if row.inner))
def test_last_inner_iterate_is_the_state_and_the_fixture_loads_back(cell, tmp_path):
    fx = EXPORTERS["bptt"].function(cell, inner_steps=2)
    last = "h_k2" if cell == "ernn" else "h_s2"
    dlast = "dh_k2" if cell == "ernn" else "dh_s2"
    assert fx.meta["traces"][f"forward/{last}_l0"]["inner"] == 2
    # the last inner iterate of step 1 feeds step 2: its pull-back dh_(k,s)=0 at step 2 is nonzero
    assert np.abs(fx.arrays[f"backward/{dlast}_l0"]).max() > 0
    save_fixture(fx, tmp_path / "f")
    assert compare(fx, load_fixture(tmp_path / "f")).passed


def test_ernn_wrong_inner_iteration_is_localised_to_step_and_k():
    fx = inner_bptt_fixture("ernn", inner_steps=3)
    phi = fx.arrays["forward/phi_k2_l0"].copy()
    phi[2, 1, 0] += 1e-6                       # step 3, inner iteration 2; everything after it is off too
    later = fx.arrays["forward/h_k3_l0"].copy()
    later[2:, :, :] += 1e-3
    d = compare(fx, {"forward/phi_k2_l0": phi, "forward/h_k3_l0": later}).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("phi_k2", 3, 1, 0)


def test_ernn_wrong_inner_adjoint_is_localised_in_backprop_order():
    fx = inner_bptt_fixture("ernn", inner_steps=2)
    da1, dh0 = fx.arrays["backward/da_k1_l0"].copy(), fx.arrays["backward/dh_k0_l0"].copy()
    da1[3, 0, 2] *= 1.01                      # step 4, k = 1: computed before dh_k0 of step 4
    dh0[:4] *= 1.01                           # and what it propagates into: steps 4 down to 1
    d = compare(fx, {"backward/da_k1_l0": da1, "backward/dh_k0_l0": dh0}).first_backward
    assert (d.quantity, d.step, d.batch, d.unit) == ("da_k1", 4, 0, 2)


def test_fast_weights_wrong_memory_read_is_localised_to_its_inner_step():
    fx = inner_bptt_fixture("fast_weights_attention", inner_steps=2)
    read = fx.arrays["forward/read_s2_l0"].copy()
    read[1, 0, 3] += 1e-6                      # A(t) h_1 at step 2
    h = fx.arrays["forward/h_s2_l0"].copy()
    h[1:] += 1e-3
    d = compare(fx, {"forward/read_s2_l0": read, "forward/h_s2_l0": h,
                     "forward/h_s1_l0": fx.arrays["forward/h_s1_l0"]}).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("read_s2", 2, 0, 3)


def test_cli_exports_inner_cells_and_refuses_inner_steps_elsewhere(tmp_path):
    assert main(["export", "--cell", "ernn", "--algorithm", "bptt", "--inner-steps", "3", "--out",
                 str(tmp_path)]) == 0
    assert load_fixture(tmp_path / "ernn_bptt").meta["options"] == {"inner_steps": 3}
    with pytest.raises(SystemExit):
        main(["export", "--cell", "gru", "--algorithm", "bptt", "--inner-steps", "2", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["export", "--cell", "ernn", "--algorithm", "bptt", "--num-layers", "2", "--out", str(tmp_path)])


def test_bad_cell_and_inner_steps_are_named():
    with pytest.raises(ValueError, match="cell must be one of"):
        inner_bptt_fixture("lstm")
    with pytest.raises(ValueError, match="inner_steps"):
        inner_bptt_fixture("ernn", inner_steps=0)


@pytest.mark.parametrize("cell, key", [("ernn", "backward/da_k1_l0"), ("ernn", "forward/phi_k1_l0"),
                                       ("fast_weights", "backward/dh_s1_l0"), ("fast_weights", "forward/read_s1_l0")])
def test_inner_matrix_row_fails_on_a_planted_error(monkeypatch, cell, key):
    real = exporters.inner_bptt_fixture

    def planted(*args, **kwargs):
        fx = real(*args, **kwargs)
        fx.arrays[key][1, 1, 1] += 1e-3 * np.abs(fx.arrays[key]).max()   # an entry may be 0 (ReLU)
        return fx
    check = next(c for c in exporters.checks() if c.cell == cell and c.algorithm.startswith("fixture(bptt,"))
    assert run_check(check).passed
    monkeypatch.setattr(exporters, "inner_bptt_fixture", planted)
    assert run_check(check).verdict.failed


@pytest.mark.parametrize("cell", ["hopfield", "exact_ernn"])
def test_cells_without_inner_count_export_load_back_and_refuse_inner_steps(cell, tmp_path):
    fx = EXPORTERS["bptt"].function(cell)
    assert all(info["inner"] is None for info in fx.meta["traces"].values())
    save_fixture(fx, tmp_path / "f")
    assert compare(fx, load_fixture(tmp_path / "f")).passed
    with pytest.raises(ValueError, match="inner_steps"):
        EXPORTERS["bptt"].function(cell, inner_steps=2)


def test_hopfield_fixture_records_the_leak_and_every_free_unit():
    fx = inner_bptt_fixture("hopfield", hidden_size=4, output_size=3)
    assert fx.meta["options"] == {"a": 0.5, "b": 0.5}
    assert fx.arrays["inputs/h0"].shape == fx.arrays["grads/h0"].shape == (1, 2, 7)   # hidden + output units
    assert fx.arrays["forward/u_l0"].shape == fx.arrays["backward/dbu_l0"].shape == (5, 2, 3 + 7)


def test_hopfield_wrong_sigma_is_localised_to_step_and_quantity():
    fx = inner_bptt_fixture("hopfield")
    sig = fx.arrays["forward/sig_l0"].copy()
    sig[1, 0, 5] += 1e-6                      # step 2; s of step 2 and everything after it is off too
    s = fx.arrays["forward/s_l0"].copy()
    s[1:] += 1e-3
    d = compare(fx, {"forward/sig_l0": sig, "forward/s_l0": s, "forward/u_l0": fx.arrays["forward/u_l0"]}).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("sig", 2, 0, 5)


def test_hopfield_wrong_sigma_argument_adjoint_is_localised_in_backprop_order():
    fx = inner_bptt_fixture("hopfield")
    dbu, ds = fx.arrays["backward/dbu_l0"].copy(), fx.arrays["backward/ds_l0"].copy()
    dbu[3, 1, 8] *= 1.01                      # step 4, after ds of step 4
    ds[:3] *= 1.01                            # and what it propagates into: steps 3 down to 1
    d = compare(fx, {"backward/dbu_l0": dbu, "backward/ds_l0": ds}).first_backward
    assert (d.quantity, d.step, d.batch, d.unit) == ("dbu", 4, 1, 8)


def test_exact_ernn_residuals_are_within_the_solve_tolerance():
    fx = inner_bptt_fixture("exact_ernn")
    residual = fx.arrays["forward/residual_l0"]
    assert residual.shape == (5, 2, 1)
    assert residual.max() <= 1e-10            # DEFAULT_TOL of float64, what the cell certifies


def test_exact_ernn_wrong_equilibrium_is_localised_to_its_step():
    fx = inner_bptt_fixture("exact_ernn")
    h = fx.arrays["forward/h_l0"].copy()
    h[2, 1, 3] += 1e-6                        # step 3; the residual of that step would show it too
    residual = fx.arrays["forward/residual_l0"].copy()
    residual[2:] += 1e-6
    d = compare(fx, {"forward/h_l0": h, "forward/residual_l0": residual}).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("h", 3, 1, 3)


def test_exact_ernn_wrong_implicit_adjoint_is_localised_in_backprop_order():
    fx = inner_bptt_fixture("exact_ernn")
    z, dg, dh = (fx.arrays[f"backward/{q}_l0"].copy() for q in ("z", "dg", "dh"))
    z[2, 0, 1] *= 1.01                        # step 3's solve: computed after dh of step 3, before its dg
    dg[:3] *= 1.01
    dh[:2] *= 1.01                            # the earlier steps it propagates into
    d = compare(fx, {"backward/z_l0": z, "backward/dg_l0": dg, "backward/dh_l0": dh}).first_backward
    assert (d.quantity, d.step, d.batch, d.unit) == ("z", 3, 0, 1)


@pytest.mark.parametrize("cell, key", [("hopfield", "backward/dbu_l0"), ("hopfield", "backward/ds_l0"),
                                       ("hopfield", "forward/sig_l0"), ("exact_ernn", "backward/z_l0"),
                                       ("exact_ernn", "backward/dg_l0"), ("exact_ernn", "forward/h_l0")])
def test_step_matrix_row_fails_on_a_planted_error(monkeypatch, cell, key):
    real = exporters.inner_bptt_fixture

    def planted(*args, **kwargs):
        fx = real(*args, **kwargs)
        fx.arrays[key][1, 1, 1] += 1e-3 * np.abs(fx.arrays[key]).max()
        return fx
    check = next(c for c in exporters.checks() if c.cell == cell and c.algorithm == "fixture(bptt)")
    assert run_check(check).passed
    monkeypatch.setattr(exporters, "inner_bptt_fixture", planted)
    assert run_check(check).verdict.failed
