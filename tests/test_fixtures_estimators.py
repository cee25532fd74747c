"""UORO and KF-RTRL fixtures (refnet/fixtures/estimators.py): stored signs, exact reproduction, localisation, rows."""
import numpy as np
import pytest

import refnet
from gradcheck.cli_fixtures import main
from gradcheck.compare import compare
from gradcheck.fixture_io import load_fixture, save_fixture
from gradcheck.matrix import exporters, run_check
from refnet.algorithms.kfrtrl import kfrtrl, kfrtrl_gradient, kfrtrl_init, kfrtrl_update
from refnet.algorithms.uoro import uoro, uoro_gradient, uoro_init, uoro_update
from refnet.fixtures import EXPORTERS, kfrtrl_fixture, uoro_fixture
from refnet.fixtures.steps import _problem


def _setup(fx, cell):
    """The fixture's own problem, read back from its arrays (the seeded draw is not used)."""
    c, *_ = _problem(cell, 0, 5, 2, 3, 4, 3)
    A = fx.arrays
    suffix = "_l0" if f"params/{next(iter(c.param_shapes()))}_l0" in A else ""
    theta = {k: A[f"params/{k}{suffix}"] for k in c.param_shapes()}
    head = refnet.Head(c.n_out, 3)
    beta = {"weight": A["params/head.weight"], "bias": A["params/head.bias"]}
    s0 = np.concatenate([A["inputs/h0"][0]] + ([A["inputs/c0"][0]] if "inputs/c0" in A else []), axis=1)
    return c, theta, A["inputs/x"], s0, head, beta, A["inputs/y"], A["inputs/loss_weights"], suffix


def _replay_uoro(fx, cell):
    """UORO's estimate made again from the fixture's arrays and its *stored* signs ν (no rng)."""
    c, theta, x, s, head, beta, y, w, suffix = _setup(fx, cell)
    nu = fx.arrays["inputs/nu"]
    state, g = uoro_init(c, x.shape[1], x), 0.0
    for t in range(1, x.shape[0] + 1):
        s, cache = c.step(theta, s, x[t - 1], t - 1)
        state = uoro_update(c, theta, cache, state, nu[t - 1])
        _, dh, _ = head.loss_and_grad(beta, c.output(s), y[t - 1], w[t - 1])
        g = g + uoro_gradient(state, c.output_vjp(dh))
    return {f"grads/{k}{suffix}": v for k, v in refnet.params.unflatten(g, theta).items()}


def _replay_kfrtrl(fx, cell):
    c, theta, x, s, head, beta, y, w, suffix = _setup(fx, cell)
    signs = fx.arrays["inputs/c"]
    state, g = kfrtrl_init(c, x.shape[1], x), {k: np.zeros_like(v) for k, v in theta.items()}
    for t in range(1, x.shape[0] + 1):
        s, cache = c.step(theta, s, x[t - 1], t - 1)
        state = kfrtrl_update(c, theta, cache, state, signs[t - 1, 0], signs[t - 1, 1])
        _, dh, _ = head.loss_and_grad(beta, c.output(s), y[t - 1], w[t - 1])
        for k, v in kfrtrl_gradient(state, c.output_vjp(dh), c.param_shapes()).items():
            g[k] = g[k] + v
    return {f"grads/{k}{suffix}": v for k, v in g.items()}


@pytest.mark.parametrize("cell", ["elman_tanh", "lstm", "fastgrnn"])
def test_uoro_estimate_is_reproduced_exactly_from_the_stored_signs_after_a_reload(cell, tmp_path):
    fx = uoro_fixture(cell, seed=3, sign_seed=9)
    save_fixture(fx, tmp_path / "u")
    loaded = load_fixture(tmp_path / "u")
    replayed = _replay_uoro(loaded, cell)
    for key, v in replayed.items():
        np.testing.assert_array_equal(v, loaded.arrays[key], err_msg=key)   # the same operations: bit for bit
    assert compare(loaded, replayed).passed


def test_uoro_fixture_is_the_public_estimate_with_that_sign_seed():
    fx = uoro_fixture("gru", sign_seed=4)
    c, theta, x, s0, head, beta, y, w, _ = _setup(fx, "gru")
    res = uoro(c, theta, x, s0, head, beta, y, w, rng=refnet.rng(4))
    for k, v in res.dtheta.items():
        np.testing.assert_array_equal(fx.arrays[f"grads/{k}_l0"], v)
    other = uoro(c, theta, x, s0, head, beta, y, w, rng=refnet.rng(5))
    assert not np.allclose(other.dtheta["weight_hh"], res.dtheta["weight_hh"])   # the signs matter


@pytest.mark.parametrize("cell", ["elman_tanh", "fastrnn"])
def test_kfrtrl_estimate_is_reproduced_exactly_from_the_stored_signs_after_a_reload(cell, tmp_path):
    fx = kfrtrl_fixture(cell, seed=2, sign_seed=6)
    save_fixture(fx, tmp_path / "k")
    loaded = load_fixture(tmp_path / "k")
    replayed = _replay_kfrtrl(loaded, cell)
    for key, v in replayed.items():
        np.testing.assert_array_equal(v, loaded.arrays[key], err_msg=key)
    c, theta, x, s0, head, beta, y, w, suffix = _setup(fx, cell)
    res = kfrtrl(c, theta, x, s0, head, beta, y, w, rng=refnet.rng(6))
    for k, v in res.dtheta.items():
        np.testing.assert_array_equal(fx.arrays[f"grads/{k}{suffix}"], v)


def test_a_wrong_theta_tilde_is_localised_to_its_step_example_and_column():
    fx = uoro_fixture("lstm")
    cand = {k: v.copy() for k, v in fx.arrays.items() if k.startswith("forward/")}
    cand["forward/theta_tilde_l0"][2, 1, 17] += 1e-3          # step 3, example 1, column 17
    d = compare(fx, cand).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("theta_tilde", 3, 1, 17)


def test_a_wrong_kfrtrl_factor_is_localised_before_the_update_it_feeds():
    # A wrong ĥ at step 2 makes u_2 wrong too; the first divergence is ĥ (order: h, J_s A, D, ĥ, A, u).
    fx = kfrtrl_fixture("fastrnn")
    cand = {k: v.copy() for k, v in fx.arrays.items() if k.startswith("forward/")}
    cand["forward/h_hat_l0"][1, 0, 4] += 1e-3
    cand["forward/u_l0"][1, 0, 4] += 1e-3
    cand["forward/A_l0"][3, 1, 2, 0] += 1e-3
    d = compare(fx, cand).first_forward
    assert (d.quantity, d.step, d.batch, d.unit) == ("h_hat", 2, 0, 4)


def test_estimator_exporters_are_in_the_one_registry_and_the_cli():
    assert {"uoro", "kfrtrl"} <= set(EXPORTERS)
    with pytest.raises(ValueError, match="kronecker_factors"):
        kfrtrl_fixture("gru")


def test_cli_exports_uoro_with_a_sign_seed(tmp_path):
    assert main(["export", "--cell", "fastrnn", "--algorithm", "uoro", "--sign-seed", "3", "--T", "3",
                 "--out", str(tmp_path)]) == 0
    fx = load_fixture(tmp_path / "fastrnn_uoro")
    assert fx.meta["sign_seed"] == 3 and fx.arrays["inputs/nu"].shape == (3, 2, 4)
    np.testing.assert_array_equal(fx.arrays["inputs/nu"], refnet.rng(3).signs((3, 2, 4)))


@pytest.mark.parametrize("algorithm, key", [("fixture(uoro)", "forward/theta_tilde_l0"),
                                            ("fixture(kfrtrl)", "forward/A_l0")])
def test_estimator_matrix_row_fails_on_a_wrong_carried_state(monkeypatch, algorithm, key):
    """The rows can fail: one entry of θ̃ (or A) off by 1 % breaks the paper's update written out."""
    name = "uoro_fixture" if "uoro" in algorithm else "kfrtrl_fixture"
    real = getattr(exporters, name)

    def planted(*args, **kwargs):
        fx = real(*args, **kwargs)
        fx.arrays[key][1, 0, 1] *= 1.01
        return fx
    check = next(c for c in exporters.checks() if c.cell == "elman_tanh" and c.algorithm == algorithm)
    assert run_check(check).passed
    monkeypatch.setattr(exporters, name, planted)
    assert run_check(check).verdict.failed
