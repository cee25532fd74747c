"""Fixtures from the user's own model and data (refnet/fixtures/user.py, ``export --from``)."""
import numpy as np
import pytest

from gradcheck.cli_fixtures import EXIT_AGREE, EXIT_DIFFER, main
from gradcheck.compare import compare
from refnet.fixtures import (bptt_fixture, bptt_fixture_from, model_from, sequence_vjp_fixture,
                             sequence_vjp_fixture_from, tbptt_fixture, tbptt_fixture_from, user_arrays)
from refnet.interop import from_torch, to_flax, to_gate_dict, to_torch

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _seeded_arrays(fx):
    """The user's arrays of a seeded fixture: its θ, head and data."""
    A = fx.arrays
    model = {k.removeprefix("params/"): v for k, v in A.items()
             if k.startswith("params/") and not k.startswith("params/head")}
    return model, A


@pytest.mark.parametrize("cell", ["elman_tanh", "lstm", "gru"])
def test_a_seeded_problem_given_back_as_user_data_reproduces_its_fixture_exactly(cell):
    fx = bptt_fixture(cell, seed=3, T=4, B=2, num_layers=2)
    model, A = _seeded_arrays(fx)
    mine = bptt_fixture_from(model, A["inputs/x"], A["inputs/y"], h0=A["inputs/h0"], c0=A.get("inputs/c0"),
                             loss_weights=A["inputs/loss_weights"],
                             head={"weight": A["params/head.weight"], "bias": A["params/head.bias"]})
    assert sorted(mine.arrays) == sorted(fx.arrays)
    for key, value in fx.arrays.items():
        np.testing.assert_array_equal(mine.arrays[key], value, err_msg=key)
    assert mine.meta["source"] == "user" and mine.meta["seed"] is None


def test_user_tbptt_and_sequence_vjp_reproduce_the_seeded_fixtures():
    fx = tbptt_fixture("gru", k1=2, k2=3, T=5)
    model, A = _seeded_arrays(fx)
    mine = tbptt_fixture_from(model, A["inputs/x"], A["inputs/y"], k1=2, k2=3, h0=A["inputs/h0"],
                              head=(A["params/head.weight"], A["params/head.bias"]))
    for key, value in fx.arrays.items():
        np.testing.assert_array_equal(mine.arrays[key], value, err_msg=key)
    fx = sequence_vjp_fixture("lstm", num_layers=2)
    model, A = _seeded_arrays(fx)
    mine = sequence_vjp_fixture_from(model, A["inputs/x"], h0=A["inputs/h0"], c0=A["inputs/c0"],
                                     dout=A["cotangents/output"], h_n=A["cotangents/h_n"], c_n=A["cotangents/c_n"])
    for key, value in fx.arrays.items():
        np.testing.assert_array_equal(mine.arrays[key], value, err_msg=key)


def _trained_lstm(num_layers=2, steps=5):
    """An nn.LSTM and head with torch's own init, then trained ``steps`` SGD steps in torch (not refnet's seed)."""
    torch.manual_seed(1234)
    lstm = torch.nn.LSTM(3, 5, num_layers=num_layers).double()
    head = torch.nn.Linear(5, 4).double()
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (7, 3))
    opt = torch.optim.SGD([*lstm.parameters(), *head.parameters()], lr=0.5)
    before = lstm.weight_hh_l0.detach().clone()
    for _ in range(steps):
        opt.zero_grad()
        out, _ = lstm(x)
        F.cross_entropy(head(out).flatten(0, 1), y.flatten()).backward()
        opt.step()
    assert not torch.equal(before, lstm.weight_hh_l0)      # the weights did move
    return lstm, head, x, y


def test_readme_round_trip_of_a_trained_torch_lstm(tmp_path):
    """The README's five lines: dump the tensors, export, dump the gradients, compare (exit 0)."""
    lstm, head, x, y = _trained_lstm()
    h0 = 0.3 * torch.randn(2, 3, 5, dtype=torch.float64)
    mine, grads, out_dir = tmp_path / "mine.npz", tmp_path / "grads.npz", tmp_path / "fixtures"
    # 1. dump the model and data
    np.savez(mine, x=x, y=y, h0=h0, **lstm.state_dict(), **{f"head.{k}": v for k, v in head.state_dict().items()})
    # 2. export
    assert main(["export", "--algorithm", "bptt", "--from", str(mine), "--out", str(out_dir)]) == EXIT_AGREE
    # 3. your gradients
    lstm.zero_grad()
    head.zero_grad()
    h0.requires_grad_()
    out, _ = lstm(x, (h0, torch.zeros_like(h0)))
    F.cross_entropy(head(out).flatten(0, 1), y.flatten()).backward()
    np.savez(grads, **{f"grads/{k}": p.grad for k, p in [*lstm.named_parameters()]},
             **{"grads/head.weight": head.weight.grad, "grads/h0": h0.grad, "forward/h_l1": out.detach()})
    # 4. compare
    assert main(["compare", str(out_dir / "mine_bptt"), str(grads)]) == EXIT_AGREE
    report = compare(out_dir / "mine_bptt", grads)
    assert report.passed and len(report.arrays) == 11


def test_round_trip_catches_a_wrong_gradient(tmp_path):
    lstm, head, x, y = _trained_lstm(num_layers=1)
    np.savez(tmp_path / "mine.npz", x=x, y=y, **lstm.state_dict(), **{"head.weight": head.weight.detach(),
                                                                      "head.bias": head.bias.detach()})
    main(["export", "--algorithm", "bptt", "--from", str(tmp_path / "mine.npz"), "--out", str(tmp_path)])
    out, _ = lstm(x)
    F.cross_entropy(head(out).flatten(0, 1), y.flatten()).backward()
    wrong = lstm.weight_hh_l0.grad.clone()
    wrong[2 * 5] *= 1.01         # gate g, unit 0
    np.savez(tmp_path / "grads.npz", **{"grads/weight_hh_l0": wrong})
    assert main(["compare", str(tmp_path / "mine_bptt"), str(tmp_path / "grads.npz")]) == EXIT_DIFFER
    report = compare(tmp_path / "mine_bptt", tmp_path / "grads.npz")
    assert report.arrays[0].gate == "g" and report.arrays[0].unit == 0


@pytest.mark.parametrize("mode, bias", [("RNN_RELU", True), ("GRU", False), ("LSTM", False)])
def test_torch_module_any_layers_and_bias_with_the_users_cotangents(mode, bias):
    torch.manual_seed(5)
    kind = {"RNN_RELU": lambda: torch.nn.RNN(2, 3, 3, nonlinearity="relu", bias=bias),
            "GRU": lambda: torch.nn.GRU(2, 3, 3, bias=bias), "LSTM": lambda: torch.nn.LSTM(2, 3, 3, bias=bias)}
    module = kind[mode]().double()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    out, _ = module(x)
    dout = torch.randn_like(out)
    out.backward(dout)
    fx = sequence_vjp_fixture_from(module, x, dout=dout)
    cand = {f"grads/{k}": p.grad for k, p in module.named_parameters()}
    cand["grads/x"] = x.grad
    report = compare(fx, cand)
    assert report.passed, report
    assert len(report.arrays) == (4 if bias else 2) * 3 + 1


def test_flax_tree_gate_dict_plain_arrays_and_state_dict_give_one_function():
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 3).double()
    layers = from_torch(gru)
    cell, theta = layers.cells[0], layers.params[0]
    x = np.random.default_rng(0).normal(size=(3, 2, 2))
    dout = np.random.default_rng(1).normal(size=(3, 2, 3))
    ref = sequence_vjp_fixture_from(gru, x, dout=dout)
    plain = {k: to_torch(theta, tensors=False)[f"{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    for source in (gru.state_dict(), plain, to_gate_dict(cell, theta)):
        fx = sequence_vjp_fixture_from(source, x, dout=dout)
        for key in ("grads/weight_ih_l0", "grads/x", "forward/h_l0"):
            np.testing.assert_array_equal(fx.arrays[key], ref.arrays[key])
    # Flax keeps one merged bias for r and z: the function (h, dx) is the same, the bias split is not
    fx = sequence_vjp_fixture_from({"params": to_flax(cell, theta)}, x, dout=dout)
    for key in ("grads/x", "forward/h_l0", "grads/weight_hh_l0"):
        np.testing.assert_allclose(fx.arrays[key], ref.arrays[key], rtol=1e-13, atol=1e-15)  # merged-bias rounding


def test_a_float32_torch_model_is_checked_against_a_float64_reference_at_float32_tolerance():
    torch.manual_seed(2)
    rnn = torch.nn.RNN(3, 4)          # float32
    x = torch.randn(5, 2, 3, requires_grad=True)
    out, h_n = rnn(x)
    (out.sum() + h_n.sum()).backward()
    fx = sequence_vjp_fixture_from(rnn, x, dout=torch.ones_like(out), h_n=torch.ones_like(h_n))
    assert fx.meta["dtype"] == "float64"
    report = compare(fx, {f"grads/{k}": p.grad for k, p in rnn.named_parameters()} | {"grads/x": x.grad})
    assert report.passed and report.dtype == "float32"


# --- named errors --------------------------------------------------------------------------------

def _small():
    torch.manual_seed(0)
    return torch.nn.LSTM(3, 4).double(), torch.nn.Linear(4, 2).double()


@pytest.mark.parametrize("change, error, words", [
    (dict(x=np.zeros((5, 2, 4))), ValueError, "x must have shape (*, *, 3)"),
    (dict(x=np.zeros((5, 2, 3), dtype=np.int64)), TypeError, "x must be a floating array"),
    (dict(x=np.full((5, 2, 3), np.nan)), ValueError, "x must be finite, got nan at index (0, 0, 0)"),
    (dict(h0=np.zeros((2, 2, 4))), ValueError, "h0 must have shape (1, 2, 4)"),
    (dict(c0=np.zeros((1, 3, 4))), ValueError, "c0 must have shape (1, 2, 4)"),
    (dict(y=np.zeros((5, 2))), TypeError, "y must hold integer class labels"),
    (dict(y=np.full((5, 2), 2)), ValueError, "y must hold labels in [0, 2)"),
    (dict(y=np.zeros((5, 3), dtype=int)), ValueError, "y must have shape (5, 2)"),
    (dict(loss_weights=np.ones((5,))), ValueError, "loss_weights must have shape (5, 2)"),
    (dict(head={"weight": np.zeros((2, 5))}), ValueError, "head['weight'] must have shape (output_size, 4)"),
    (dict(head={"weight": np.zeros((2, 4)), "bias": np.zeros(3)}), ValueError, "head['bias'] must have shape (2)"),
])
def test_bad_user_data_is_refused_by_name(change, error, words):
    lstm, head = _small()
    kwargs = dict(x=np.zeros((5, 2, 3)), y=np.zeros((5, 2), dtype=int), head=head)
    kwargs.update(change)
    with pytest.raises(error, match=None) as info:
        bptt_fixture_from(lstm, **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize("model, error, words", [
    ({"weight_ih": np.zeros((4, 3)), "weight_hh": np.zeros((4, 5))}, ValueError, "weight_hh_l0 must have shape"),
    ({"weight_ih_l0": np.zeros((4, 3), dtype=int), "weight_hh_l0": np.zeros((4, 4), dtype=int)}, TypeError,
     "model['weight_ih_l0'] must be a floating array"),
    ({"weight_ih_l0": np.zeros((4, 3)), "Wx": np.zeros(3)}, ValueError, "no refnet counterpart: ['Wx']"),
    ({"ii": {"kernel": np.zeros((3, 4))}}, ValueError, "Flax params tree"),
    ({"W_ii": np.zeros((4, 3))}, ValueError, "gates must have exactly the keys"),
    ([1, 2], TypeError, "model must be a torch nn.RNN/LSTM/GRU"),
])
def test_bad_models_are_refused_by_name(model, error, words):
    with pytest.raises(error) as info:
        model_from(model)
    assert words in str(info.value)


def test_non_finite_weights_are_refused():
    w = np.zeros((4, 4))
    w[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"weight_hh.*finite"):
        model_from({"weight_ih": np.zeros((4, 3)), "weight_hh": w})


def test_cell_state_arguments_are_refused_for_cells_without_one():
    gru = torch.nn.GRU(3, 4).double()
    with pytest.raises(ValueError, match="c0 is the LSTM's cell state"):
        sequence_vjp_fixture_from(gru, np.zeros((2, 1, 3)), dout=np.ones((2, 1, 4)), c0=np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="c_n is the cotangent"):
        sequence_vjp_fixture_from(gru, np.zeros((2, 1, 3)), c_n=np.zeros((1, 1, 4)))


def test_a_sequence_vjp_with_no_cotangent_is_refused():
    with pytest.raises(ValueError, match="at least one cotangent"):
        sequence_vjp_fixture_from(torch.nn.GRU(3, 4), np.zeros((2, 1, 3)))


def test_user_arrays_splits_model_head_and_data_and_names_unknown_keys():
    model, data = user_arrays({"weight_ih_l0": 1, "params/weight_hh_l0": 2, "inputs/x": 3, "y": 4,
                               "head.weight": 5, "cotangents/output": 6})
    assert model == {"weight_ih_l0": 1, "weight_hh_l0": 2}
    assert data == {"x": 3, "y": 4, "dout": 6, "head": {"weight": 5}}
    with pytest.raises(ValueError, match=r"neither model parameters nor data: \['labels'\]"):
        user_arrays({"weight_ih_l0": 1, "labels": 2})
    with pytest.raises(ValueError, match="'x' twice"):
        user_arrays({"weight_ih_l0": 1, "x": 2, "inputs/x": 3})


def test_export_from_refuses_seed_and_shape_flags_and_a_contradicting_cell(tmp_path, capsys):
    lstm, head = _small()
    np.savez(tmp_path / "m.npz", x=np.zeros((2, 1, 3)), y=np.zeros((2, 1), dtype=int), **lstm.state_dict(),
             **{"head.weight": head.weight.detach()})
    base = ["export", "--algorithm", "bptt", "--from", str(tmp_path / "m.npz"), "--out", str(tmp_path)]
    for extra, words in ((["--T", "4"], "--T cannot be given"), (["--cell", "gru"], "--cell: gru contradicts"),
                         (["--output-size", "3"], "--output-size: with --from")):
        with pytest.raises(SystemExit) as info:
            main(base + extra)
        assert info.value.code == 2 and words in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--algorithm", "sequence_vjp", "--from", str(tmp_path / "m.npz"), "--out", str(tmp_path)])
    assert "does not use" in capsys.readouterr().err
    assert main(base + ["--cell", "lstm"]) == 0
