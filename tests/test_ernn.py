"""refnet.cells.ernn: ERNN's inner iterations, their backward, and its special cases (FastRNN, Elman)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads, compare_grads
from refnet import params as P
from refnet.cells.ernn import ERNN
from refnet.cells.fastrnn import FastRNN


def _theta(cell, r):
    """Cell params with U and η drawn (init has U = 0, η = 1e-2); η may be negative (not constrained)."""
    theta = cell.init(r)
    theta["U"] = r.normal(theta["U"].shape, 0.3)
    theta["eta"] = r.uniform(theta["eta"].shape, -0.3, 0.9)
    return theta


def _sequence(cell, r, T=5, B=2):
    head = refnet.Head(cell.n_out, 3)
    return head, head.init(r), r.normal((T, B, cell.input_size)), r.normal((B, cell.n_state), 0.5), \
        r.integers(0, 3, (T, B))


def test_init_is_the_papers():
    theta = ERNN(3, 4, K=2, sequence_length=7).init(refnet.rng(0))
    assert {k: v.shape for k, v in theta.items()} == {
        "W": (4, 3), "V": (4, 4), "U": (4, 4), "b": (4,), "eta": (7, 2)}
    np.testing.assert_array_equal(theta["eta"], 1e-2)
    assert not theta["U"].any()


def test_with_U_zero_and_K_1_ernn_is_fastrnn_with_alpha_eta_and_beta_one_minus_eta():
    r = refnet.rng(1)
    eta = 0.3
    ernn, fast = ERNN(3, 4, K=1, nonlinearity="tanh"), FastRNN(3, 4, "tanh")
    theta = ernn.init(r)
    theta["eta"] = np.array([eta])
    logit = np.log(eta / (1.0 - eta))        # sigmoid(α̂) = η and sigmoid(−α̂) = 1 − η
    fast_theta = {"W": theta["W"], "U": theta["V"], "bias_update": theta["b"],
                  "alpha": np.array([logit]), "beta": np.array([-logit])}
    head, beta, x, s0, y = _sequence(ernn, r, T=8)
    ours = refnet.bptt(ernn, theta, x, s0, head, beta, y)
    theirs = refnet.bptt(fast, fast_theta, x, s0, head, beta, y)
    # h + η(φ − h) and α φ + β h with α, β = sigmoid(±logit): equal up to rounding (a few ulps).
    np.testing.assert_allclose(ours.s_T, theirs.s_T, rtol=0, atol=1e-15)
    assert ours.loss == pytest.approx(theirs.loss, rel=1e-14)
    # dL/dη = dL/dα − dL/dβ, with dL/dα = dL/dα̂ / α(1 − α) (and likewise β).
    s = eta * (1.0 - eta)
    deta = theirs.dtheta["alpha"] / s - theirs.dtheta["beta"] / s
    compare_grads({"W": ours.dtheta["W"], "V": ours.dtheta["V"], "b": ours.dtheta["b"], "eta": ours.dtheta["eta"]},
                  {"W": theirs.dtheta["W"], "V": theirs.dtheta["U"], "b": theirs.dtheta["bias_update"],
                   "eta": deta}, rtol=1e-12, reference_name="fastrnn")


def test_with_eta_one_the_inner_loop_is_plain_fixed_point_iteration():
    # η = 1: h^(k) = φ(h^(k−1)), Eq. 4's space recursion; K = 1 and U = 0 is then a ReLU Elman RNN.
    r = refnet.rng(2)
    cell = ERNN(3, 4, K=1)
    theta = cell.init(r)
    theta["eta"] = np.ones(1)
    theta["b"] = r.normal((4,))
    elman = {"weight_ih": theta["W"], "weight_hh": theta["V"], "bias_ih": theta["b"], "bias_hh": np.zeros(4)}
    x, s0 = r.normal((6, 2, 3)), r.normal((2, 4))
    ours = refnet.forward(cell, theta, x, s0).s[-1]
    theirs = refnet.forward(refnet.ElmanRNN(3, 4, "relu"), elman, x, s0).s[-1]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)   # rounding only: h + 1·(φ − h) vs φ


def test_with_eta_one_K_iterations_apply_phi_K_times():
    r = refnet.rng(3)
    three, one = ERNN(3, 4, K=3, nonlinearity="tanh"), ERNN(3, 4, K=1, nonlinearity="tanh")
    theta = _theta(three, r)
    theta["eta"] = np.ones(3)
    single = dict(theta, eta=np.ones(1))
    h_prev, x = r.normal((2, 4)), r.normal((2, 3))
    h = h_prev
    for _ in range(3):
        h, _ = one.step(single, h, x)
    # φ(h^(k−1)) with V on the inner iterate: three single steps from h_prev on the same x_t.
    np.testing.assert_allclose(three.step(theta, h_prev, x)[0], h, rtol=0, atol=1e-15)


@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("steps", [None, 5])
def test_bptt_equals_finite_differences_through_the_inner_iterations(K, steps):
    r = refnet.rng(10 + K)
    cell = ERNN(3, 4, K=K, nonlinearity="tanh", sequence_length=steps)
    theta = _theta(cell, r)
    head, beta, x, s0, y = _sequence(cell, r)
    res = refnet.bptt(cell, theta, x, s0, head, beta, y)

    def f(flat):
        return refnet.loss(cell, {k: flat[k] for k in theta}, x, flat["s0"], head, beta, y)
    check_grads(f, dict(theta, s0=s0), dict(res.dtheta, s0=res.ds0))


@settings(max_examples=30, deadline=None)
@given(K=st.integers(1, 4), nonlinearity=st.sampled_from(["relu", "tanh"]), per_step=st.booleans(),
       I=st.integers(1, 4), H=st.integers(1, 5), B=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_jvp_and_vjp_pass_the_dot_product_test_to_1e12(K, nonlinearity, per_step, I, H, B, seed):
    # Both sides are sums of the same float64 products: agreement to ~1e-15 is expected.
    r = refnet.rng(seed)
    cell = ERNN(I, H, K=K, nonlinearity=nonlinearity, sequence_length=4 if per_step else None)
    theta = _theta(cell, r)
    _, cache = cell.step(theta, r.normal((B, H), 0.5), r.normal((B, I)), 2)
    u, v = r.normal((B, H)), r.normal((B, H))
    dtheta, dx = {k: r.normal(w.shape) for k, w in theta.items()}, r.normal((B, I))
    lhs = float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum())
    ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
    rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + P.vdot(dparams, dtheta)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs), 1e-300)


def test_per_step_eta_reads_row_t_and_its_gradient_touches_only_that_row():
    r = refnet.rng(4)
    per_step, shared = ERNN(3, 4, K=2, sequence_length=6), ERNN(3, 4, K=2)
    theta = _theta(per_step, r)
    h_prev, x = r.normal((2, 4)), r.normal((2, 3))
    s, cache = per_step.step(theta, h_prev, x, 4)
    s_shared, _ = shared.step(dict(theta, eta=theta["eta"][4]), h_prev, x)
    np.testing.assert_array_equal(s, s_shared)
    deta = per_step.step_vjp(theta, cache, r.normal((2, 4)))[1]["eta"]
    assert deta.shape == (6, 2) and not np.delete(deta, 4, axis=0).any() and deta[4].all()


@pytest.mark.parametrize("t", [None, -1, 6])
def test_per_step_eta_refuses_a_missing_or_out_of_range_t(t):
    cell = ERNN(3, 4, sequence_length=6)
    with pytest.raises(ValueError, match=r"t must be a time index in \[0, 6\)"):
        cell.step(cell.init(refnet.rng(0)), np.zeros((1, 4)), np.zeros((1, 3)), t)


def test_bptt_matches_torch_autograd_through_the_inner_iterations():
    # The module docstring's equations transcribed into torch; autograd is the independent backward.
    torch = pytest.importorskip("torch")
    r = refnet.rng(5)
    cell = ERNN(3, 4, K=3, nonlinearity="relu", sequence_length=5)
    theta = _theta(cell, r)
    x, s0, dout = r.normal((5, 2, 3)), r.normal((2, 4), 0.5), r.normal((5, 2, 4))
    ours = refnet.sequence_vjp(cell, theta, x, s0, dout)

    th = {k: torch.tensor(v, requires_grad=True) for k, v in theta.items()}
    eye = torch.eye(4, dtype=torch.float64)
    h, total = torch.tensor(s0), 0.0
    for t in range(5):
        for k in range(3):
            phi = torch.relu((h @ th["V"].T + torch.tensor(x[t]) @ th["W"].T + th["b"]) @ (eye + th["U"]).T)
            h = h + th["eta"][t, k] * (phi - h)
        total = total + (h * torch.tensor(dout[t])).sum()
    total.backward()
    # Two exact float64 computations of one function, summed in different orders.
    compare_grads(ours.dtheta, {k: v.grad.numpy() for k, v in th.items()}, rtol=1e-12, reference_name="torch")


@pytest.mark.parametrize("kwargs, match", [
    ({"K": 0}, "K must be a positive int, got 0"),
    ({"sequence_length": 0}, r"sequence_length must be None or a positive int \(T\), got 0"),
    ({"nonlinearity": "sigmoid"}, "nonlinearity must be 'relu' or 'tanh'"),
])
def test_bad_configuration_is_rejected_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ERNN(3, 4, **kwargs)
