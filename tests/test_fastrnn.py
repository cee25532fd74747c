"""refnet.cells.fastrnn: FastRNN's step, VJP, JVP and Jacobians against FD, each other and EdgeML's form."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads, compare_grads
from refnet import params as P
from refnet.cells.fastrnn import FastRNN


def _point(cell, seed, B=3):
    r = refnet.rng(seed)
    theta = cell.init(r)
    # Logits away from EdgeML's ±3 so that both α and β carry weight in the checks.
    theta["alpha"], theta["beta"] = r.normal((1,)), r.normal((1,))
    return theta, r.normal((B, cell.n_state), 0.5), r.normal((B, cell.input_size)), r


def test_init_follows_edgeml():
    theta = FastRNN(3, 50).init(refnet.rng(0))
    assert {k: v.shape for k, v in theta.items()} == {
        "W": (50, 3), "U": (50, 50), "bias_update": (50,), "alpha": (1,), "beta": (1,)}
    np.testing.assert_array_equal(theta["bias_update"], 1.0)
    assert theta["alpha"][0] == -3.0 and theta["beta"][0] == 3.0
    assert 0.09 < np.std(theta["U"]) < 0.11   # 0.1·N(0, 1) over 2500 draws: std within ±10%


@settings(max_examples=30, deadline=None)
@given(nonlinearity=st.sampled_from(["tanh", "relu", "sigmoid"]), I=st.integers(1, 4),
       H=st.integers(1, 5), B=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_jvp_and_vjp_pass_the_dot_product_test_to_1e12(nonlinearity, I, H, B, seed):
    # Both sides are sums of the same float64 products: agreement to ~1e-15 is expected.
    cell = FastRNN(I, H, nonlinearity)
    theta, s_prev, x, r = _point(cell, seed, B)
    _, cache = cell.step(theta, s_prev, x)
    u, v = r.normal((B, H)), r.normal((B, H))
    dtheta, dx = {k: r.normal(w.shape) for k, w in theta.items()}, r.normal((B, I))
    lhs = float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum())
    ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
    rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + P.vdot(dparams, dtheta)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs), 1e-300)


def test_step_vjp_equals_finite_differences_of_one_step():
    cell = FastRNN(3, 4)
    theta, s_prev, x, r = _point(cell, 1)
    u = r.normal((3, 4))
    _, cache = cell.step(theta, s_prev, x)
    ds_prev, dtheta, dx = cell.step_vjp(theta, cache, u)

    def pairing(flat):
        s, _ = cell.step({k: flat[k] for k in theta}, flat["s_prev"], flat["x"])
        return float((u * s).sum())
    check_grads(pairing, dict(theta, s_prev=s_prev, x=x), dict(dtheta, s_prev=ds_prev, x=dx))


def test_closed_form_jacobians_equal_the_generic_ones():
    cell = FastRNN(3, 4)
    theta, s_prev, x, _ = _point(cell, 2)
    _, cache = cell.step(theta, s_prev, x)
    for closed, generic in zip(cell.jacobians(theta, cache), refnet.Cell.jacobians(cell, theta, cache)):
        np.testing.assert_allclose(closed, generic, rtol=0, atol=1e-15)   # same products, rounding only


def test_bptt_equals_finite_differences_of_the_loss():
    cell = FastRNN(3, 4)
    theta, _, _, r = _point(cell, 3)
    head = refnet.Head(4, 2)
    beta, x, s0, y = head.init(r), r.normal((6, 2, 3)), r.normal((2, 4), 0.5), r.integers(0, 2, (6, 2))
    res = refnet.bptt(cell, theta, x, s0, head, beta, y, refnet.last_step(6, 2))

    def f(flat):
        return refnet.loss(cell, {k: flat[k] for k in theta}, x, s0, head, beta, y, refnet.last_step(6, 2))
    check_grads(f, theta, res.dtheta)


def test_bptt_matches_torch_autograd_of_edgemls_fastrnn_forward():
    # EdgeML's FastRNNCell.forward, transcribed with its own layout (x @ W, h @ U with W (I, H)):
    # the transposes and the sigmoid-of-logit parametrisation are checked against autograd.
    torch = pytest.importorskip("torch")
    cell = FastRNN(3, 4)
    theta, _, _, r = _point(cell, 4)
    x, s0, dout = r.normal((5, 2, 3)), r.normal((2, 4), 0.5), r.normal((5, 2, 4))
    ours = refnet.sequence_vjp(cell, theta, x, s0, dout)

    W = torch.tensor(theta["W"].T.copy(), requires_grad=True)
    U = torch.tensor(theta["U"].T.copy(), requires_grad=True)
    b = torch.tensor(theta["bias_update"][None], requires_grad=True)
    alpha = torch.tensor(theta["alpha"][None], requires_grad=True)
    beta = torch.tensor(theta["beta"][None], requires_grad=True)
    h, total = torch.tensor(s0), 0.0
    for t in range(5):
        c = torch.tanh(torch.tensor(x[t]) @ W + h @ U + b)
        h = torch.sigmoid(beta) * h + torch.sigmoid(alpha) * c
        total = total + (h * torch.tensor(dout[t])).sum()
    total.backward()
    theirs = {"W": W.grad.numpy().T, "U": U.grad.numpy().T, "bias_update": b.grad.numpy()[0],
              "alpha": alpha.grad.numpy()[0], "beta": beta.grad.numpy()[0]}
    # Two exact float64 computations of one function, summed in different orders.
    compare_grads(ours.dtheta, theirs, rtol=1e-12, reference_name="torch")


def test_bad_nonlinearity_is_rejected_by_name():
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        FastRNN(2, 3, "softplus")
