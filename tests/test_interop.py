"""refnet.interop: PyTorch state_dicts, per-gate dicts and Flax trees <-> refnet params.

PyTorch and JAX/Flax agreement runs where they are installed (importorskip);
the layout tests need neither.  Relations between two exact float64
computations of one function are held to 1e-12 (summation order only) or
1e-10 through a whole sequence (as tests/test_torch_agreement.py).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import compare_grads
from refnet.algorithms.stacked import stacked_sequence_vjp
from refnet.interop import (Layers, carry_from_flax, carry_to_flax, from_flax, from_gate_dict, from_torch,
                            gate_names, grads_from_flax, grads_to_flax, state_from_torch, state_to_torch,
                            to_flax, to_gate_dict, to_torch)

CELLS = {"lstm": lambda I, H: refnet.LSTM(I, H), "gru": lambda I, H: refnet.GRU(I, H),
         "elman_tanh": lambda I, H: refnet.ElmanRNN(I, H, "tanh")}


def _state_dict(gates, I, H, layers, seed=0, bias=True):
    r = np.random.default_rng(seed)
    out = {}
    for k in range(layers):
        out[f"weight_ih_l{k}"] = r.normal(size=(gates * H, I if k == 0 else H))
        out[f"weight_hh_l{k}"] = r.normal(size=(gates * H, H))
        if bias:
            out[f"bias_ih_l{k}"] = r.normal(size=gates * H)
            out[f"bias_hh_l{k}"] = r.normal(size=gates * H)
    return out


# ---- PyTorch layout, no torch needed ------------------------------------------------------------

@pytest.mark.parametrize("gates, kind", [(4, refnet.LSTM), (3, refnet.GRU), (1, refnet.ElmanRNN)])
def test_a_state_dict_of_arrays_gives_one_cell_per_layer_of_the_gate_count_kind(gates, kind):
    layers = from_torch(_state_dict(gates, 3, 5, 2))
    assert len(layers) == 2 and all(type(c) is kind for c in layers.cells)
    assert [(c.input_size, c.hidden_size) for c in layers.cells] == [(3, 5), (5, 5)]


def test_to_torch_inverts_from_torch_exactly():
    sd = _state_dict(4, 3, 5, 3)
    back = to_torch(from_torch(sd), tensors=False)
    assert list(back) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])


def test_a_module_without_biases_reads_as_zero_biases():
    layers = from_torch(_state_dict(3, 2, 4, 1, bias=False))
    assert not layers.params[0]["bias_ih"].any() and not layers.params[0]["bias_hh"].any()


def test_an_rnn_state_dict_takes_its_nonlinearity_from_the_caller():
    assert from_torch(_state_dict(1, 2, 3, 1), nonlinearity="relu").cells[0].nonlinearity == "relu"
    assert from_torch(_state_dict(1, 2, 3, 1)).cells[0].nonlinearity == "tanh"


def test_float32_tensors_become_exact_float64_params_by_default():
    sd = {k: v.astype(np.float32) for k, v in _state_dict(4, 2, 3, 1).items()}
    theta = from_torch(sd).params[0]
    assert theta["weight_hh"].dtype == np.float64
    np.testing.assert_array_equal(theta["weight_hh"], sd["weight_hh_l0"].astype(np.float64))


@pytest.mark.parametrize("change, error, match", [
    (lambda sd: sd.update(weight_ih_l0_reverse=sd["weight_ih_l0"]), ValueError, "no refnet counterpart"),
    (lambda sd: sd.update(weight_hr_l0=np.zeros((2, 4))), ValueError, r"weight_hr_l0"),
    (lambda sd: sd.pop("weight_hh_l0"), ValueError, "missing weight_hh_l0"),
    (lambda sd: sd.pop("bias_ih_l0"), ValueError, "both bias_ih_l0 and bias_hh_l0 or neither"),
    (lambda sd: sd.update(weight_hh_l0=np.zeros((8, 4))), ValueError, "2 gate blocks of 4 rows"),
    (lambda sd: sd.update(weight_ih_l1=np.zeros((16, 3))), ValueError, "weight_ih_l1 must have 4 columns"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.endswith("l0")], ValueError,
     r"layers 0..L-1, got layers \[1\]"),
    (lambda sd: sd.update(bias_hh_l0=np.full(16, np.nan)), ValueError, "must be finite"),
])
def test_a_bad_state_dict_is_named(change, error, match):
    sd = _state_dict(4, 3, 4, 2)
    change(sd)
    with pytest.raises(error, match=match):
        from_torch(sd)


def test_to_torch_refuses_params_with_other_keys():
    with pytest.raises(ValueError, match="params of layer 0 must have exactly the keys"):
        to_torch({"weight_ih": np.zeros((4, 2))}, tensors=False)


def test_states_go_to_and_from_torch_layout():
    r = np.random.default_rng(0)
    h0, c0 = r.normal(size=(2, 3, 4)), r.normal(size=(2, 3, 4))
    layers = from_torch(_state_dict(4, 2, 4, 2))
    states = state_from_torch(h0, c0)
    assert states[1].shape == (3, 8)
    h, c = state_to_torch(layers, states)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, c0)
    np.testing.assert_array_equal(state_to_torch(from_torch(_state_dict(3, 2, 4, 2)), state_from_torch(h0)), h0)


def test_importing_refnet_and_the_oracle_modules_imports_neither_torch_nor_jax():
    code = ("import sys, refnet, refnet.interop, refnet.fixtures, refnet.algorithms.stacked, gradcheck, "
            "gradcheck.compare, gradcheck.fixture_io, gradcheck.cli_fixtures; "
            "bad = [m for m in ('torch', 'jax', 'flax') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1], timeout=60)


# ---- per-gate plain dicts ----------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(list(CELLS)), I=st.integers(1, 4), H=st.integers(1, 5), seed=st.integers(0, 99))
def test_gate_dict_round_trips_and_each_block_is_its_gate(name, I, H, seed):
    cell = CELLS[name](I, H)
    theta = cell.init(refnet.rng(seed))
    gates = to_gate_dict(cell, theta)
    back = from_gate_dict(cell, gates)
    for k in theta:
        np.testing.assert_array_equal(back[k], theta[k])
    last = gate_names(cell)[-1]
    np.testing.assert_array_equal(gates[f"W_h{last}"], theta["weight_hh"][-H:])


def test_gate_dict_uses_pytorchs_documented_names():
    assert sorted(to_gate_dict(refnet.GRU(2, 3), refnet.GRU(2, 3).init(refnet.rng(0)))) == sorted(
        ["W_ir", "W_iz", "W_in", "W_hr", "W_hz", "W_hn", "b_ir", "b_iz", "b_in", "b_hr", "b_hz", "b_hn"])
    assert sorted(to_gate_dict(refnet.ElmanRNN(2, 3), refnet.ElmanRNN(2, 3).init(refnet.rng(0)))) == [
        "W_hh", "W_ih", "b_hh", "b_ih"]


# ---- Flax layout: a NumPy transcription of flax/linen/recurrent.py (LSTMCell, GRUCell, SimpleCell) ----

def _dense(tree, name, x):
    y = x @ tree[name]["kernel"]
    return y + tree[name]["bias"] if "bias" in tree[name] else y


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _flax_step(cell, tree, carry, x):
    if isinstance(cell, refnet.LSTM):
        c, h = carry
        i, f = (_sigmoid(_dense(tree, f"i{g}", x) + _dense(tree, f"h{g}", h)) for g in "if")
        g = np.tanh(_dense(tree, "ig", x) + _dense(tree, "hg", h))
        o = _sigmoid(_dense(tree, "io", x) + _dense(tree, "ho", h))
        c = f * c + i * g
        return c, o * np.tanh(c)
    if isinstance(cell, refnet.GRU):
        h = carry
        r, z = (_sigmoid(_dense(tree, f"i{g}", x) + _dense(tree, f"h{g}", h)) for g in "rz")
        n = np.tanh(_dense(tree, "in", x) + r * _dense(tree, "hn", h))
        return (1 - z) * n + z * h
    return np.tanh(_dense(tree, "i", x) + _dense(tree, "h", carry))


@pytest.mark.parametrize("name", list(CELLS))
def test_the_flax_tree_computes_refnets_step(name):
    cell = CELLS[name](3, 4)
    r = refnet.rng(0)
    theta = cell.init(r)
    s, x = r.normal((2, cell.n_state)), r.normal((2, 3))
    flax_next = _flax_step(cell, to_flax(cell, theta), carry_to_flax(cell, s), x)
    # The merged biases are added in another order: rounding only.
    np.testing.assert_allclose(carry_from_flax(cell, flax_next), cell.step(theta, s, x)[0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", list(CELLS))
def test_from_flax_keeps_the_function_and_puts_a_merged_bias_on_one_side(name):
    cell = CELLS[name](3, 4)
    r = refnet.rng(1)
    theta = cell.init(r)
    back = from_flax(cell, to_flax(cell, theta))
    s, x = r.normal((2, cell.n_state)), r.normal((2, 3))
    np.testing.assert_allclose(cell.step(back, s, x)[0], cell.step(theta, s, x)[0], rtol=0, atol=1e-14)
    side = "bias_ih" if isinstance(cell, refnet.LSTM) else "bias_hh"
    H = cell.hidden_size
    assert not back[side][:2 * H if isinstance(cell, refnet.GRU) else None].any()


@pytest.mark.parametrize("name", list(CELLS))
def test_flax_gradients_map_merged_biases_to_both_sides_without_summing(name):
    cell = CELLS[name](3, 4)
    r = refnet.rng(2)
    theta = cell.init(r)
    x, s0 = r.normal((4, 2, 3)), r.normal((2, cell.n_state))
    res = refnet.sequence_vjp(cell, theta, x, s0, r.normal((4, 2, 4)))
    back = grads_from_flax(cell, grads_to_flax(cell, res.dtheta))
    compare_grads(back, res.dtheta, rtol=1e-15)


def test_a_flax_tree_missing_a_leaf_is_named():
    cell = refnet.LSTM(2, 3)
    tree = to_flax(cell, cell.init(refnet.rng(0)))
    del tree["hf"]["bias"]
    with pytest.raises(ValueError, match="hf/bias is missing"):
        from_flax(cell, tree)


def test_gate_names_refuse_a_cell_without_a_pytorch_layout():
    with pytest.raises(TypeError, match="cell must be a refnet ElmanRNN, IRNN, LSTM or GRU"):
        gate_names(object())


# ---- JAX and Flax themselves, where installed ---------------------------------------------------

def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_step(cell, p, s, x):
    """PyTorch's equations in jax.numpy from the per-gate dict."""
    import jax.numpy as jnp
    from jax.nn import sigmoid
    a = {g: x @ p[f"W_i{g}"].T + p[f"b_i{g}"] for g in gate_names(cell)}
    ah = {g: s[:, :cell.hidden_size] @ p[f"W_h{g}"].T + p[f"b_h{g}"] for g in gate_names(cell)}
    if isinstance(cell, refnet.LSTM):
        c = s[:, cell.hidden_size:]
        i, f, o = (sigmoid(a[g] + ah[g]) for g in "ifo")
        c = f * c + i * jnp.tanh(a["g"] + ah["g"])
        return jnp.concatenate([o * jnp.tanh(c), c], axis=1)
    if isinstance(cell, refnet.GRU):
        r, z = sigmoid(a["r"] + ah["r"]), sigmoid(a["z"] + ah["z"])
        n = jnp.tanh(a["n"] + r * ah["n"])
        return (1 - z) * n + z * s
    return jnp.tanh(a["h"] + ah["h"])


@settings(max_examples=4, deadline=None)     # JAX compiles every new shape: seconds per example
@given(name=st.sampled_from(list(CELLS)), T=st.integers(1, 5), B=st.integers(1, 3), I=st.integers(1, 4),
       H=st.integers(1, 5), seed=st.integers(0, 99))
def test_sequence_vjp_matches_jax_autodiff(name, T, B, I, H, seed):
    jax = _jax()
    import jax.numpy as jnp
    cell = CELLS[name](I, H)
    r = refnet.rng(seed)
    theta = cell.init(r)
    x, s0, dout = r.normal((T, B, I)), r.normal((B, cell.n_state), 0.5), r.normal((T, B, H))
    ours = refnet.sequence_vjp(cell, theta, x, s0, dout)

    def run(p, x, s0):
        s, outs = s0, []
        for t in range(T):
            s = _jax_step(cell, p, s, x[t])
            outs.append(s[:, :H])
        return jnp.stack(outs)
    gates = {k: jnp.asarray(v) for k, v in to_gate_dict(cell, theta).items()}
    _, pullback = jax.vjp(run, gates, jnp.asarray(x), jnp.asarray(s0))
    dgates, dx, ds0 = pullback(jnp.asarray(dout))
    theirs = dict(from_gate_dict(cell, {k: np.asarray(v) for k, v in dgates.items()}), x=np.asarray(dx),
                  s0=np.asarray(ds0))
    compare_grads(dict(ours.dtheta, x=ours.dx, s0=ours.ds0), theirs, rtol=1e-10, reference_name="jax")


@pytest.mark.parametrize("name", list(CELLS))
def test_flax_cells_match_refnet_forward_and_gradient(name):
    jax = _jax()
    nn = pytest.importorskip("flax.linen")
    import jax.numpy as jnp
    cell = CELLS[name](3, 4)
    r = refnet.rng(3)
    theta = cell.init(r)
    T, B = 4, 2
    x, s0, dout = r.normal((T, B, 3)), r.normal((B, cell.n_state), 0.5), r.normal((T, B, 4))
    flax_cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "elman_tanh": nn.SimpleCell}[name](
        features=4, param_dtype=jnp.float64)

    def run(tree):
        carry, outs = carry_to_flax(cell, jnp.asarray(s0)), []
        for t in range(T):
            carry, y = flax_cell.apply({"params": tree}, carry, jnp.asarray(x[t]))
            outs.append(y)
        return jnp.stack(outs)
    tree = jax.tree_util.tree_map(jnp.asarray, to_flax(cell, theta))
    outs, pullback = jax.vjp(run, tree)
    (dtree,) = pullback(jnp.asarray(dout))
    ours = refnet.sequence_vjp(cell, theta, x, s0, dout)
    np.testing.assert_allclose(np.asarray(outs), ours.outputs, rtol=0, atol=1e-13)
    mine = grads_to_flax(cell, ours.dtheta)
    flat = lambda t: {f"{m}/{n}": np.asarray(v) for m, sub in t.items() for n, v in sub.items()}  # noqa: E731
    compare_grads(flat(mine), flat(dtree), rtol=1e-10, reference_name="flax")


# ---- PyTorch modules, where installed -----------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"bidirectional": True}, "must not be bidirectional"),
    ({"proj_size": 2}, "proj_size=0"),
    ({"batch_first": True}, "batch_first=False"),
])
def test_torch_modules_refnet_cannot_mirror_are_refused(kwargs, match):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=match):
        from_torch(torch.nn.LSTM(3, 4, **kwargs))


def test_to_torch_tensors_load_into_the_module():
    torch = pytest.importorskip("torch")
    layers = from_torch(_state_dict(3, 3, 4, 2, seed=5))
    module = torch.nn.GRU(3, 4, num_layers=2).double()
    module.load_state_dict(to_torch(layers))
    np.testing.assert_array_equal(module.weight_hh_l1.detach().numpy(), layers.params[1]["weight_hh"])


def test_a_relu_module_gives_relu_cells_and_layers_run_stacked():
    torch = pytest.importorskip("torch")
    module = torch.nn.RNN(2, 3, num_layers=2, nonlinearity="relu").double()
    layers = from_torch(module)
    assert isinstance(layers, Layers) and {c.nonlinearity for c in layers.cells} == {"relu"}
    x = np.random.default_rng(0).normal(size=(4, 2, 2))
    out = stacked_sequence_vjp(layers.cells, layers.params, x, None, np.zeros((4, 2, 3))).outputs
    np.testing.assert_allclose(out, module(torch.tensor(x))[0].detach().numpy(), rtol=0, atol=1e-14)
