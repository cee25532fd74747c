"""Keras/TensorFlow and EdgeML layouts (refnet/interop_keras.py, refnet/interop_edgeml.py).

Each conversion is tested against the other framework's formulas, written here
independently in NumPy from its documentation/source (Keras' LSTM/GRU/SimpleRNN
cells; EdgeML's FastRNNCell/FastGRNNCell ``forward``), not against refnet.
"""
import numpy as np
import pytest

from refnet.interop_edgeml import from_edgeml, to_edgeml
from refnet.interop_keras import from_keras, grads_from_keras, grads_to_keras, to_keras

R = np.random.default_rng(0)
B, I, H = 3, 2, 4
sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731


# --- the other frameworks' formulas ---------------------------------------------------------------

def keras_lstm(w, x, h, c):
    z = x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]
    zi, zf, zc, zo = np.split(z, 4, axis=1)
    c = sig(zf) * c + sig(zi) * np.tanh(zc)
    return sig(zo) * np.tanh(c), c


def keras_gru(w, x, h):
    """reset_after=True: bias (2, 3H) = [input; recurrent]; gate columns z, r, h."""
    xz, xr, xh = np.split(x @ w["kernel"] + w["bias"][0], 3, axis=1)
    rz, rr, rh = np.split(h @ w["recurrent_kernel"] + w["bias"][1], 3, axis=1)
    z, r = sig(xz + rz), sig(xr + rr)
    return z * h + (1 - z) * np.tanh(xh + r * rh)


def keras_gru_reset_before(w, x, h):
    """reset_after=False: bias (3H,); r multiplies h before the recurrent product."""
    U = w["recurrent_kernel"]
    xz, xr, xh = np.split(x @ w["kernel"] + w["bias"], 3, axis=1)
    z = sig(xz + h @ U[:, :H])
    r = sig(xr + h @ U[:, H:2 * H])
    return z * h + (1 - z) * np.tanh(xh + (r * h) @ U[:, 2 * H:])


def keras_simple_rnn(w, x, h):
    return np.tanh(x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"])


def edgeml_fastrnn(p, x, h, right):
    W, U = (p["W"], p["U"]) if right else (p["W"].T, p["U"].T)
    c = np.tanh(x @ W + h @ U + p["bias_update"])
    return sig(p["beta"]) * h + sig(p["alpha"]) * c


def edgeml_fastgrnn(p, x, h, right):
    W, U = (p["W"], p["U"]) if right else (p["W"].T, p["U"].T)
    pre = x @ W + h @ U
    z = sig(pre + p["bias_gate"])
    c = np.tanh(pre + p["bias_update"])
    return z * h + (sig(p["zeta"]) * (1.0 - z) + sig(p["nu"])) * c


def _keras_weights(G, gru=False):
    return {"kernel": R.normal(size=(I, G * H)), "recurrent_kernel": R.normal(size=(H, G * H)),
            "bias": R.normal(size=(2, G * H) if gru else (G * H,))}


# --- Keras ------------------------------------------------------------------------------------------

def test_keras_lstm_converts_to_refnet_and_back():
    w = _keras_weights(4)
    x, h, c = R.normal(size=(B, I)), R.normal(size=(B, H)), R.normal(size=(B, H))
    cell, theta = from_keras("LSTM", w)
    s, _ = cell.step(theta, np.concatenate([h, c], 1), x)
    h_k, c_k = keras_lstm(w, x, h, c)
    np.testing.assert_allclose(s, np.concatenate([h_k, c_k], 1), rtol=1e-13, atol=1e-14)
    back = to_keras(cell, theta)
    for k in w:
        np.testing.assert_allclose(back[k], w[k], rtol=0, atol=0)


def test_keras_gru_reset_after_converts_exactly_both_ways_with_both_biases():
    w = _keras_weights(3, gru=True)
    x, h = R.normal(size=(B, I)), R.normal(size=(B, H))
    cell, theta = from_keras("GRU", w)
    np.testing.assert_allclose(cell.step(theta, h, x)[0], keras_gru(w, x, h), rtol=1e-13, atol=1e-14)
    back = to_keras(cell, theta)
    for k in w:
        np.testing.assert_array_equal(back[k], w[k])


def test_keras_simple_rnn_and_a_layer_get_weights_list():
    w = _keras_weights(1)
    x, h = R.normal(size=(B, I)), R.normal(size=(B, H))
    cell, theta = from_keras("SimpleRNN", [w["kernel"], w["recurrent_kernel"], w["bias"]])
    np.testing.assert_allclose(cell.step(theta, h, x)[0], keras_simple_rnn(w, x, h), rtol=1e-13)


def test_keras_gru_reset_after_false_is_refused_by_name():
    with pytest.raises(ValueError, match="reset_after=False is a different GRU cell"):
        from_keras("GRU", _keras_weights(3), reset_after=False)
    with pytest.raises(ValueError, match=r"\(12,\), the layout of reset_after=False"):
        from_keras("GRU", _keras_weights(3))           # a (3H,) bias under the default reset_after=True


def test_the_two_gru_forms_are_different_functions():
    """Why reset_after=False is refused rather than converted: same shapes, another cell."""
    w = _keras_weights(3)
    w_after = dict(w, bias=np.stack([w["bias"], np.zeros(3 * H)]))
    x, h = R.normal(size=(B, I)), R.normal(size=(B, H))
    assert np.abs(keras_gru(w_after, x, h) - keras_gru_reset_before(w, x, h)).max() > 1e-3


def test_keras_kind_is_required_and_transposed_arrays_are_named():
    with pytest.raises(TypeError):
        from_keras(_keras_weights(4))                  # no kind: no default
    with pytest.raises(ValueError, match="kind must be one of"):
        from_keras("lstm", _keras_weights(4))
    w = _keras_weights(4)
    with pytest.raises(ValueError, match="looks transposed"):
        from_keras("LSTM", dict(w, recurrent_kernel=w["recurrent_kernel"].T))
    with pytest.raises(ValueError, match=r"missing \['recurrent_kernel'\]"):
        from_keras("LSTM", {"kernel": w["kernel"]})


def test_keras_check_step_catches_a_wrong_gate_order_with_the_right_shapes():
    w = _keras_weights(4)
    x, h, c = R.normal(size=(B, I)), R.normal(size=(B, H)), R.normal(size=(B, H))
    step = (x, [h, c], list(keras_lstm(w, x, h, c)))
    from_keras("LSTM", w, check=step)                  # the right weights pass the check
    swapped = {k: (np.concatenate(np.split(v, 4, axis=-1)[::-1], axis=-1)) for k, v in w.items()}  # o, c, f, i
    with pytest.raises(ValueError, match="does not reproduce the Keras step"):
        from_keras("LSTM", swapped, check=step)


def test_keras_gradients_map_the_merged_bias_to_one_side():
    cell, theta = from_keras("LSTM", _keras_weights(4))
    dtheta = {k: R.normal(size=v.shape) for k, v in theta.items()}
    dw = grads_to_keras(cell, dtheta)
    np.testing.assert_array_equal(dw["bias"], dtheta["bias_ih"])
    back = grads_from_keras("LSTM", dw)
    np.testing.assert_array_equal(back["bias_ih"], back["bias_hh"])
    np.testing.assert_array_equal(back["weight_hh"], dtheta["weight_hh"])


def test_keras_lstm_gradient_by_finite_differences_of_the_keras_formula():
    """dL/dkernel from refnet's BPTT (converted with grads_to_keras) = FD through keras_lstm."""
    import refnet
    w = _keras_weights(4)
    x, dout = R.normal(size=(3, B, I)), R.normal(size=(3, B, H))
    cell, theta = from_keras("LSTM", w)
    res = refnet.sequence_vjp(cell, theta, x, None, dout)
    dw = grads_to_keras(cell, res.dtheta)

    def pairing(wk):
        h = c = np.zeros((B, H))
        total = 0.0
        for t in range(3):
            h, c = keras_lstm(wk, x[t], h, c)
            total += float((h * dout[t]).sum())
        return total
    for key in ("kernel", "recurrent_kernel", "bias"):
        fd = np.zeros_like(w[key])
        for idx in np.ndindex(w[key].shape):
            up, down = {k: v.copy() for k, v in w.items()}, {k: v.copy() for k, v in w.items()}
            up[key][idx] += 1e-6
            down[key][idx] -= 1e-6
            fd[idx] = (pairing(up) - pairing(down)) / 2e-6
        np.testing.assert_allclose(dw[key], fd, rtol=1e-6, atol=1e-8)   # central differences, h = 1e-6


# --- EdgeML -----------------------------------------------------------------------------------------

def _edgeml(grnn, right):
    W = R.normal(size=(I, H) if right else (H, I))
    p = {"W": W, "U": R.normal(size=(H, H)), "bias_update": R.normal(size=(1, H))}
    if grnn:
        p.update(bias_gate=R.normal(size=(1, H)), zeta=np.array([[1.0]]), nu=np.array([[-4.0]]))
    else:
        p.update(alpha=np.array([[-3.0]]), beta=np.array([[3.0]]))
    return p


@pytest.mark.parametrize("grnn", [False, True])
@pytest.mark.parametrize("layout", ["right", "left"])
def test_edgeml_cells_convert_both_ways_in_either_layout(grnn, layout):
    p = _edgeml(grnn, layout == "right")
    x, h = R.normal(size=(B, I)), R.normal(size=(B, H))
    cell, theta = from_edgeml(p, layout=layout)
    formula = edgeml_fastgrnn if grnn else edgeml_fastrnn
    np.testing.assert_allclose(cell.step(theta, h, x)[0], formula(p, x, h, layout == "right"), rtol=1e-13)
    back = to_edgeml(cell, theta, layout=layout)
    assert sorted(back) == sorted(p)
    for k in p:
        np.testing.assert_array_equal(back[k], p[k])


def test_edgeml_layout_is_required_with_no_default():
    with pytest.raises(TypeError):
        from_edgeml(_edgeml(False, True))
    with pytest.raises(ValueError, match="there is no default"):
        from_edgeml(_edgeml(False, True), layout=None)


def test_edgeml_shapes_that_fit_the_other_layout_are_named():
    with pytest.raises(ValueError, match="it fits layout='left'"):
        from_edgeml(_edgeml(False, right=False), layout="right")


def test_a_square_edgeml_u_in_the_wrong_orientation_is_caught_by_the_check_step():
    """input = hidden: every shape fits both layouts; only a known step tells them apart."""
    p = {"W": R.normal(size=(H, H)), "U": R.normal(size=(H, H)), "bias_update": R.normal(size=(1, H)),
         "alpha": np.array([[0.5]]), "beta": np.array([[0.2]])}
    x, h = R.normal(size=(B, H)), R.normal(size=(B, H))
    step = (x, h, edgeml_fastrnn(p, x, h, right=True))
    from_edgeml(p, layout="right", check=step)
    with pytest.raises(ValueError, match="layout='right' does"):
        from_edgeml(p, layout="left", check=step)
    _, wrong = from_edgeml(p, layout="left")          # without the check it loads silently: the hazard
    _, right = from_edgeml(p, layout="right")
    assert not np.allclose(wrong["U"], right["U"])


def test_edgeml_low_rank_and_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="low-rank factors"):
        from_edgeml({"W1": np.zeros((I, 2)), "W2": np.zeros((2, H))}, layout="right")
    with pytest.raises(ValueError, match="must have exactly the keys"):
        from_edgeml(dict(_edgeml(False, True), extra=np.zeros(1)), layout="right")


def test_edgeml_with_torch_modules_written_as_edgeml_writes_them():
    """A torch module with EdgeML's FastRNNCell parameters and forward (x @ W + h @ U) loads with 'right'."""
    torch = pytest.importorskip("torch")

    class FastRNNCell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W = torch.nn.Parameter(0.1 * torch.randn(I, H, dtype=torch.float64))
            self.U = torch.nn.Parameter(0.1 * torch.randn(H, H, dtype=torch.float64))
            self.bias_update = torch.nn.Parameter(torch.ones(1, H, dtype=torch.float64))
            self.alpha = torch.nn.Parameter(-3.0 * torch.ones(1, 1, dtype=torch.float64))
            self.beta = torch.nn.Parameter(3.0 * torch.ones(1, 1, dtype=torch.float64))

        def forward(self, x, h):
            c = torch.tanh(x @ self.W + h @ self.U + self.bias_update)
            return torch.sigmoid(self.beta) * h + torch.sigmoid(self.alpha) * c

    torch.manual_seed(0)
    m = FastRNNCell()
    x, h = torch.randn(B, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    cell, theta = from_edgeml(m, layout="right", check=(x, h, m(x, h)))
    np.testing.assert_allclose(cell.step(theta, h.numpy(), x.numpy())[0], m(x, h).detach().numpy(), rtol=1e-13)
