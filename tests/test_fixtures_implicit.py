"""RBP fixtures (refnet/fixtures/implicit.py): h*, z, residuals, gradients; localisation; the matrix rows."""
import numpy as np
import pytest

import refnet
from refnet.solvers import DEFAULT_FP_RTOL
from gradcheck.cli_fixtures import main
from gradcheck.compare import compare
from gradcheck.fixture_io import load_fixture, save_fixture
from gradcheck.matrix import exporters, run_check
from refnet.algorithms.rbp import neumann_rbp
from refnet.fixtures import EXPORTERS, RBP_VARIANTS, implicit_fixture


@pytest.mark.parametrize("variant", sorted(RBP_VARIANTS))
def test_rbp_fixture_holds_the_variants_gradient_at_an_equilibrium_and_loads_back(variant, tmp_path):
    fx = EXPORTERS[variant].function("gru", seed=1)
    A = fx.arrays
    cell = refnet.GRU(3, 4)
    theta = {k: A[f"params/{k}"] for k in cell.param_shapes()}
    h = A["forward/h_star"]
    # the fixed point's rule, per example: ‖F(h) − h‖_∞ <= tol + rtol ‖h‖_∞ (refnet.solvers, float64 defaults)
    allowed = 1e-14 + DEFAULT_FP_RTOL[np.dtype(np.float64)] * np.abs(h).max(axis=1)
    assert (np.abs(cell.step(theta, h, A["inputs/x"])[0] - h).max(axis=1) <= allowed).all()
    assert A["forward/residuals"][-1] <= allowed.max() and fx.meta["variant"] == variant
    save_fixture(fx, tmp_path / "r")
    assert compare(fx, load_fixture(tmp_path / "r")).passed


def test_neumann_fixture_last_iterate_is_neumann_rbp_z():
    fx = implicit_fixture("elman_tanh", variant="neumann_rbp", K=7)
    A = fx.arrays
    cell = refnet.ElmanRNN(3, 4, "tanh")
    theta = {k: A[f"params/{k}"] for k in cell.param_shapes()}
    res = neumann_rbp(cell, theta, A["inputs/x"], A["forward/h_star"], A["cotangents/h_star"], K=7)
    np.testing.assert_allclose(A["backward/z_iterates_l0"][-1], res.z, rtol=1e-13, atol=1e-15)   # summation order
    np.testing.assert_array_equal(A["backward/z"], res.z)


def test_a_wrong_adjoint_iterate_is_localised_to_its_iteration_and_a_wrong_z_by_name():
    fx = implicit_fixture("elman_tanh", variant="rbp", K=10)
    Z = fx.arrays["backward/z_iterates_l0"].copy()
    Z[3:, 1, 2] += 1e-3                      # a wrong rule from iteration 4 on: every later iterate is off
    d = compare(fx, {"backward/z_iterates_l0": Z}).first_backward
    assert (d.quantity, d.step, d.batch, d.unit) == ("z_i", 4, 1, 2)
    z = fx.arrays["backward/z"].copy()
    z[0, 1] *= 1.001
    report = compare(fx, {"backward/z": z, "grads/x": fx.arrays["grads/x"]})
    assert report.failed and [d.key for d in report.arrays if not d.passed] == ["backward/z"]


def test_cli_exports_an_rbp_variant_without_t(tmp_path):
    assert main(["export", "--cell", "gru", "--algorithm", "gmres_rbp", "--out", str(tmp_path)]) == 0
    assert load_fixture(tmp_path / "gru_gmres_rbp").meta["converged"] is True
    with pytest.raises(SystemExit):
        main(["export", "--cell", "gru", "--algorithm", "cg_rbp", "--T", "3", "--out", str(tmp_path)])


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="variant must be one of"):
        implicit_fixture("gru", variant="deq")


@pytest.mark.parametrize("key", ["backward/z", "grads/weight_hh", "backward/z_iterates_l0"])
def test_rbp_matrix_row_fails_on_a_planted_error(monkeypatch, key):
    real = exporters.implicit_fixture

    def planted(*args, **kwargs):
        fx = real(*args, **kwargs)
        fx.arrays[key][(1,) * fx.arrays[key].ndim] *= 1.001
        return fx
    check = next(c for c in exporters.checks() if c.cell == "elman_tanh" and c.algorithm == "fixture(rbp)")
    assert run_check(check).passed
    monkeypatch.setattr(exporters, "implicit_fixture", planted)
    assert run_check(check).verdict.failed
