"""refnet.cells.fastgrnn: FastGRNN's step, VJP, JVP and Jacobians against FD, each other and EdgeML's form."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads, compare_grads
from refnet import params as P
from refnet.cells.fastgrnn import FastGRNN


def _point(cell, seed, B=3):
    r = refnet.rng(seed)
    theta = cell.init(r)
    # Logits and biases away from EdgeML's constants so every term carries weight.
    for k in ("zeta", "nu", "bias_gate", "bias_update"):
        theta[k] = r.normal(theta[k].shape)
    return theta, r.normal((B, cell.n_state), 0.5), r.normal((B, cell.input_size)), r


def test_init_follows_edgeml():
    theta = FastGRNN(3, 50).init(refnet.rng(0))
    assert {k: v.shape for k, v in theta.items()} == {
        "W": (50, 3), "U": (50, 50), "bias_gate": (50,), "bias_update": (50,), "zeta": (1,), "nu": (1,)}
    np.testing.assert_array_equal(theta["bias_gate"], 1.0)
    np.testing.assert_array_equal(theta["bias_update"], 1.0)
    assert theta["zeta"][0] == 1.0 and theta["nu"][0] == -4.0
    assert 0.09 < np.std(theta["U"]) < 0.11   # 0.1·N(0, 1) over 2500 draws: std within ±10%


@settings(max_examples=30, deadline=None)
@given(gate=st.sampled_from(["sigmoid", "tanh"]), update=st.sampled_from(["tanh", "relu"]),
       I=st.integers(1, 4), H=st.integers(1, 5), B=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_jvp_and_vjp_pass_the_dot_product_test_to_1e12(gate, update, I, H, B, seed):
    # Both sides are sums of the same float64 products: agreement to ~1e-15 is expected.
    cell = FastGRNN(I, H, gate, update)
    theta, s_prev, x, r = _point(cell, seed, B)
    _, cache = cell.step(theta, s_prev, x)
    u, v = r.normal((B, H)), r.normal((B, H))
    dtheta, dx = {k: r.normal(w.shape) for k, w in theta.items()}, r.normal((B, I))
    lhs = float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum())
    ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
    rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + P.vdot(dparams, dtheta)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs), 1e-300)


def test_step_vjp_equals_finite_differences_of_one_step():
    cell = FastGRNN(3, 4)
    theta, s_prev, x, r = _point(cell, 1)
    u = r.normal((3, 4))
    _, cache = cell.step(theta, s_prev, x)
    ds_prev, dtheta, dx = cell.step_vjp(theta, cache, u)

    def pairing(flat):
        s, _ = cell.step({k: flat[k] for k in theta}, flat["s_prev"], flat["x"])
        return float((u * s).sum())
    check_grads(pairing, dict(theta, s_prev=s_prev, x=x), dict(dtheta, s_prev=ds_prev, x=dx))


def test_step_jvp_with_no_tangents_is_zero():
    cell = FastGRNN(3, 4)
    theta, s_prev, x, _ = _point(cell, 2)
    _, cache = cell.step(theta, s_prev, x)
    out = cell.step_jvp(theta, cache)
    assert out.shape == (3, 4) and not out.any()


def test_jacobians_reproduce_the_jvp():
    cell = FastGRNN(3, 4)
    theta, s_prev, x, r = _point(cell, 3)
    _, cache = cell.step(theta, s_prev, x)
    J_s, J_theta = cell.jacobians(theta, cache)
    v, dtheta = r.normal((3, 4)), {k: r.normal(w.shape) for k, w in theta.items()}
    dense = np.einsum("bij,bj->bi", J_s, v) + J_theta @ cell.flat_params(dtheta)
    np.testing.assert_allclose(dense, cell.step_jvp(theta, cache, v, dtheta), rtol=0, atol=1e-13)


def test_bptt_matches_torch_autograd_of_edgemls_fastgrnn_forward():
    # EdgeML's FastGRNNCell.forward, transcribed (x @ Wᵀ, h @ Uᵀ, (1, H) biases, (1, 1) ζ̂ and ν̂).
    torch = pytest.importorskip("torch")
    cell = FastGRNN(3, 4)
    theta, _, _, r = _point(cell, 4)
    x, s0, dout = r.normal((5, 2, 3)), r.normal((2, 4), 0.5), r.normal((5, 2, 4))
    ours = refnet.sequence_vjp(cell, theta, x, s0, dout)

    W = torch.tensor(theta["W"], requires_grad=True)
    U = torch.tensor(theta["U"], requires_grad=True)
    b_g = torch.tensor(theta["bias_gate"][None], requires_grad=True)
    b_u = torch.tensor(theta["bias_update"][None], requires_grad=True)
    zeta = torch.tensor(theta["zeta"][None], requires_grad=True)
    nu = torch.tensor(theta["nu"][None], requires_grad=True)
    h, total = torch.tensor(s0), 0.0
    for t in range(5):
        pre = torch.tensor(x[t]) @ W.T + h @ U.T
        z, c = torch.sigmoid(pre + b_g), torch.tanh(pre + b_u)
        h = z * h + (torch.sigmoid(zeta) * (1.0 - z) + torch.sigmoid(nu)) * c
        total = total + (h * torch.tensor(dout[t])).sum()
    total.backward()
    theirs = {"W": W.grad.numpy(), "U": U.grad.numpy(), "bias_gate": b_g.grad.numpy()[0],
              "bias_update": b_u.grad.numpy()[0], "zeta": zeta.grad.numpy()[0], "nu": nu.grad.numpy()[0]}
    # Two exact float64 computations of one function, summed in different orders.
    compare_grads(ours.dtheta, theirs, rtol=1e-12, reference_name="torch")


@pytest.mark.parametrize("kwargs, match", [
    ({"gate_nonlinearity": "step"}, "gate_nonlinearity must be one of"),
    ({"update_nonlinearity": "gelu"}, "update_nonlinearity must be one of"),
])
def test_bad_nonlinearity_is_rejected_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FastGRNN(2, 3, **kwargs)
