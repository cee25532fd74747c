"""refnet.fixtures (with gradcheck.fixture_io and the export CLI): golden fixtures and what they hold.

Oracles: refnet's own algorithms (the fixture's gradients are theirs, exactly),
the traces summed back into the gradient (rounding only: 1e-12), and the
save/load round trip (bit for bit).  The traces' meaning is checked against
finite differences in the matrix (gradcheck/matrix/interop.py) and against
PyTorch autograd in tests/test_torch_agreement.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import refnet
from gradcheck import compare_grads
from gradcheck.cli_fixtures import compare_main, export_main
from gradcheck.fixture_io import load_fixture, save_fixture
from refnet.fixtures import CELLS, EXPORTERS, KRONECKER_CELLS, bptt_fixture, sequence_vjp_fixture, tbptt_fixture

ROOT = Path(__file__).resolve().parents[1]


def _grads(fx, group="grads"):
    return {k.split("/", 1)[1]: v for k, v in fx.arrays.items() if k.startswith(group + "/")}


@pytest.mark.parametrize("algorithm", list(EXPORTERS))
@pytest.mark.parametrize("cell", list(CELLS))
def test_every_array_is_described_and_every_trace_is_time_major(cell, algorithm):
    if algorithm == "kfrtrl" and cell not in KRONECKER_CELLS:
        with pytest.raises(ValueError, match="kronecker_factors"):      # refused by name
            EXPORTERS[algorithm].function(cell, T=4, B=2)
        return
    static = EXPORTERS[algorithm].static      # no T: an equilibrium (RBP), or FPP's one transition
    rbp = static and "K" in EXPORTERS[algorithm].options     # RBP's trace's rows are K + 1 iterates, FPP's 2 steps
    if rbp and cell == "irnn":            # W_hh = I: no equilibrium to converge to, refused by name
        with pytest.raises(refnet.ConvergenceError, match="fixed_point"):
            EXPORTERS[algorithm].function(cell, B=2, K=3)
        return
    fx = (EXPORTERS[algorithm].function(cell, B=2, **({"K": 3} if rbp else {})) if static
          else EXPORTERS[algorithm].function(cell, T=4, B=2))
    assert set(fx.meta["arrays"]) == set(fx.arrays)
    assert all(entry["description"] for entry in fx.meta["arrays"].values())
    P = fx.meta["param_columns"][-1][1] + int(np.prod(fx.meta["param_columns"][-1][2])) \
        if "param_columns" in fx.meta else None
    # RTRL's sensitivity M_t is (T, B, n_state, P): one column per parameter entry; the estimators'
    # traces are (T, B, ...) with their own trailing shapes (refnet/fixtures/estimators.py)
    special = {"M": (4, 2, fx.meta.get("n_state"), P), "theta_tilde": (4, 2, P), "nu_J_theta": (4, 2, P)}
    for key, info in fx.meta["traces"].items():
        want = special.get(info["quantity"], (4, 2, 4) if algorithm not in ("uoro", "kfrtrl") else None)
        want = (4 if rbp else 2, 2, fx.meta["n_state"]) if static else want
        shape = fx.arrays[key].shape
        assert (shape == want if want else shape[:2] == (4, 2)) and info["direction"] == key.split("/")[0]
    json.dumps(fx.meta)


def test_bptt_fixture_gradients_are_refnets_bptt():
    fx = bptt_fixture("gru", T=5, B=3, seed=4)
    A = fx.arrays
    cell = refnet.GRU(3, 4)
    theta = {k: A[f"params/{k}_l0"] for k in cell.param_shapes()}
    head = refnet.Head(4, 3)
    beta = {"weight": A["params/head.weight"], "bias": A["params/head.bias"]}
    res = refnet.bptt(cell, theta, A["inputs/x"], A["inputs/h0"][0], head, beta, A["inputs/y"],
                      A["inputs/loss_weights"])
    for k, v in res.dtheta.items():
        np.testing.assert_array_equal(A[f"grads/{k}_l0"], v)
    np.testing.assert_array_equal(A["grads/h0"][0], res.ds0)
    assert float(A["forward/loss"]) == res.loss


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman_tanh"])
def test_gate_adjoint_traces_sum_to_the_gradient(cell):
    # dW_ih = Σ_t da_tᵀ x_t and db_ih = Σ_t Σ_b da_t: the traces and the gradient are one computation.
    fx = sequence_vjp_fixture(cell, T=5, B=3)
    A = fx.arrays
    names = {"lstm": ["a_i", "a_f", "a_g", "a_o"], "gru": ["a_r", "a_z", "a_n"], "elman_tanh": ["a"]}[cell]
    da = np.concatenate([A[f"backward/d{n}_l0"] for n in names], axis=2)       # (T, B, G·H)
    compare_grads({"weight_ih": np.einsum("tbg,tbi->gi", da, A["inputs/x"]), "bias_ih": da.sum(axis=(0, 1))},
                  {"weight_ih": A["grads/weight_ih_l0"], "bias_ih": A["grads/bias_ih_l0"]}, rtol=1e-12)


def test_each_gates_share_of_dh_prev_sums_to_the_carried_adjoint():
    # LSTM: ∂L/∂h_{t−1} = direct cotangent at t − 1 + Σ_q da_q W_hh[q]; at t = 1 that is grads/h0.
    fx = bptt_fixture("lstm", T=5, B=2)
    A = fx.arrays
    shares = sum(A[f"backward/dh_prev_from_a_{g}_l0"] for g in "ifgo")
    np.testing.assert_allclose(A["backward/dh_l0"][:-1], A["cotangents/output"][:-1] + shares[1:],
                               rtol=0, atol=1e-15)
    np.testing.assert_allclose(A["grads/h0"][0], shares[0], rtol=0, atol=1e-15)


def test_tbptt_reaching_back_to_the_start_has_bptts_traces_and_gradient():
    # With k2 >= T every window reaches s_0 and the summed window adjoints are BPTT's (linearity).
    full, trunc = bptt_fixture("lstm", T=6, B=2), tbptt_fixture("lstm", k1=2, k2=6, T=6, B=2)
    for key in full.arrays:
        if key.startswith(("backward/", "grads/")):
            np.testing.assert_allclose(trunc.arrays[key], full.arrays[key], rtol=1e-12, atol=1e-15)
    assert trunc.meta["windows"] == [[1, 2, 0], [3, 4, 0], [5, 6, 0]]


def test_tbptt_fixture_gradients_are_refnets_tbptt_and_its_window_traces_add():
    fx = tbptt_fixture("gru", k1=2, k2=3, T=7, B=2)
    A = fx.arrays
    cell, head = refnet.GRU(3, 4), refnet.Head(4, 3)
    theta = {k: A[f"params/{k}_l0"] for k in cell.param_shapes()}
    beta = {"weight": A["params/head.weight"], "bias": A["params/head.bias"]}
    res = refnet.tbptt(cell, theta, A["inputs/x"], A["inputs/h0"][0], head, beta, A["inputs/y"],
                       A["inputs/loss_weights"], k1=2, k2=3)
    for k, v in res.dtheta.items():
        np.testing.assert_array_equal(A[f"grads/{k}_l0"], v)
    da = np.concatenate([A[f"backward/da_{n}_l0"] for n in ("r", "z", "n")], axis=2)
    compare_grads({"bias_ih": da.sum(axis=(0, 1))}, {"bias_ih": res.dtheta["bias_ih"]}, rtol=1e-12)
    assert fx.meta["options"] == {"k1": 2, "k2": 3} and "held constant" in fx.meta["objective"]


def test_two_layer_fixtures_name_every_layer_in_pytorchs_layout():
    fx = sequence_vjp_fixture("lstm", T=3, B=2, num_layers=2)
    assert fx.arrays["inputs/h0"].shape == (2, 2, 4) and fx.arrays["grads/c0"].shape == (2, 2, 4)
    assert fx.arrays["params/weight_ih_l1"].shape == (16, 4) and "backward/da_f_l1" in fx.arrays
    assert fx.meta["traces"]["backward/da_f_l1"]["layer"] == 1


def test_a_seed_fixes_every_array():
    a, b, c = bptt_fixture("gru", seed=3), bptt_fixture("gru", seed=3), bptt_fixture("gru", seed=4)
    assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    assert not np.array_equal(a.arrays["inputs/x"], c.arrays["inputs/x"])


def test_float32_fixtures_follow_refnet_dtype(monkeypatch):
    monkeypatch.setenv("REFNET_DTYPE", "float32")
    fx = bptt_fixture("lstm")
    assert fx.meta["dtype"] == "float32" and fx.arrays["grads/weight_hh_l0"].dtype == np.float32
    assert fx.arrays["inputs/y"].dtype == np.int64


@pytest.mark.parametrize("call, error, match", [
    (lambda: bptt_fixture("transformer"), ValueError, "cell must be one of"),
    (lambda: bptt_fixture("lstm", T=0), ValueError, "T must be an int >= 1, got 0"),
    (lambda: sequence_vjp_fixture("lstm", hidden_size=2.5), TypeError, "hidden_size must be an int"),
    (lambda: tbptt_fixture("lstm", k1=3, k2=2), ValueError, "k2 must be >= k1"),
    (lambda: bptt_fixture("lstm", seed="zero"), TypeError, "seed must be an int"),
])
def test_bad_exporter_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- saving and loading -------------------------------------------------------------------------

def test_a_saved_fixture_loads_bit_for_bit_without_pickle(tmp_path):
    fx = tbptt_fixture("lstm", T=4)
    npz, sidecar = save_fixture(fx, tmp_path / "f")
    with np.load(npz, allow_pickle=False) as data:
        assert set(data.files) == set(fx.arrays)
    back = load_fixture(tmp_path / "f.json")
    for k, v in fx.arrays.items():
        assert np.array_equal(back.arrays[k], v) and back.arrays[k].dtype == v.dtype
    meta = json.loads(Path(sidecar).read_text())
    assert meta["arrays"]["forward/c_l0"]["shape"] == [4, 2, 4] and meta["tolerances"]["float64"]["rtol"] == 1e-10
    assert load_fixture(tmp_path).meta["windows"] == fx.meta["windows"]      # a folder of one fixture


def test_loading_refuses_what_is_not_a_fixture(tmp_path):
    save_fixture(bptt_fixture("gru", T=2), tmp_path / "a")
    save_fixture(bptt_fixture("gru", T=2), tmp_path / "b")
    with pytest.raises(ValueError, match="must hold exactly one fixture"):
        load_fixture(tmp_path)
    meta = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(dict(meta, version=99)))
    with pytest.raises(ValueError, match="version"):
        load_fixture(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="c.npz"):
        load_fixture(tmp_path / "c")


def test_saving_refuses_object_arrays(tmp_path):
    fx = bptt_fixture("gru", T=2)
    bad = type(fx)(fx.meta, dict(fx.arrays, extra=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(TypeError, match=r"fixture.arrays\['extra'\] must be a numeric array"):
        save_fixture(bad, tmp_path / "f")


# ---- the CLI ------------------------------------------------------------------------------------

def test_export_then_compare_with_itself_exits_0(tmp_path, capsys):
    assert export_main(["--cell", "gru", "--algorithm", "tbptt", "--out", str(tmp_path), "--k1", "1",
                        "--k2", "2", "--T", "4"]) == 0
    assert load_fixture(tmp_path / "gru_tbptt").meta["options"] == {"k1": 1, "k2": 2}
    assert compare_main([str(tmp_path / "gru_tbptt"), str(tmp_path / "gru_tbptt.npz")]) == 0
    assert "first backward divergence: none" in capsys.readouterr().out


def test_compare_cli_exits_1_and_names_the_divergence_for_a_different_run(tmp_path, capsys):
    export_main(["--cell", "lstm", "--algorithm", "bptt", "--out", str(tmp_path), "--name", "a"])
    export_main(["--cell", "lstm", "--algorithm", "bptt", "--out", str(tmp_path), "--name", "b", "--seed", "1"])
    capsys.readouterr()
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["first_forward"]["step"] == 1 and not report["passed"]


def test_export_refuses_layers_for_a_one_layer_algorithm(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        export_main(["--cell", "lstm", "--algorithm", "tbptt", "--out", str(tmp_path), "--num-layers", "2"])
    assert info.value.code == 2 and "tbptt fixtures have one layer" in capsys.readouterr().err


def test_export_with_dtype_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    monkeypatch.delenv("REFNET_DTYPE", raising=False)
    export_main(["--cell", "gru", "--algorithm", "bptt", "--out", str(tmp_path), "--dtype", "float32"])
    assert load_fixture(tmp_path / "gru_bptt").meta["dtype"] == "float32"
    assert "REFNET_DTYPE" not in os.environ


def test_the_module_runs_as_a_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gradcheck.cli_fixtures", "export", "--cell", "elman_relu",
                          "--algorithm", "sequence_vjp", "--out", str(tmp_path), "--num-layers", "2"],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == [str(tmp_path / "elman_relu_sequence_vjp.npz"),
                                  str(tmp_path / "elman_relu_sequence_vjp.json")]
