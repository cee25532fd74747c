"""refnet.cells.fast_weights: Ba et al.'s equations, the two memory forms, gradients, bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads, compare_grads, dot_product_test
from refnet.cells.fast_weights import W_INIT_SCALE, FastWeights, FastWeightsAttention

I, N = 3, 4


def _theta(cell, seed):
    """θ with W, gain and bias drawn (the init's W = 0.05·I, gain 1, bias 0 would test little)."""
    r = refnet.rng(seed)
    theta = cell.init(r)
    theta.update(weight_hh=r.normal((N, N), 0.5), ln_weight=r.uniform((N,), 0.5, 1.5), ln_bias=r.normal((N,), 0.3))
    return theta


def _zero_memory_state(cell, h0):
    return np.concatenate([h0, np.zeros((h0.shape[0], cell.n_state - N))], axis=1)


def _naive_trajectory(theta, x, h0, lam, eta, S, eps=1e-5):
    """Ba et al. one example at a time, in plain loops: h(1..T) and A(1..T)."""
    W, C, g, b = theta["weight_hh"], theta["weight_ih"], theta["ln_weight"], theta["ln_bias"]

    def f_ln(a):
        a_hat = (a - a.mean()) / np.sqrt(a.var() + eps)
        return np.maximum(g * a_hat + b, 0.0)

    hs, As = [], []
    for example in range(x.shape[1]):
        h, A, h_ex, A_ex = h0[example], np.zeros((N, N)), [], []
        for t in range(x.shape[0]):
            z = W @ h + C @ x[t, example]
            h_s = f_ln(z)
            for _ in range(S):
                h_s = f_ln(z + A @ h_s)          # A(t), which already holds h(t)
            h = h_s
            A = lam * A + eta * np.outer(h, h)
            h_ex.append(h)
            A_ex.append(A)
        hs.append(h_ex)
        As.append(A_ex)
    return np.array(hs).transpose(1, 0, 2), np.array(As).transpose(1, 0, 2, 3)


@settings(max_examples=10, deadline=None)
@given(S=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000))
def test_explicit_form_follows_the_equations_of_a_plain_loop(S, T, seed):
    cell = FastWeights(I, N, lam=0.9, eta=0.7, S=S)
    theta = _theta(cell, seed)
    r = refnet.rng(seed + 1)
    x, h0 = r.normal((T, 2, I)), r.normal((2, N))
    s = refnet.forward(cell, theta, x, _zero_memory_state(cell, h0)).s
    h_naive, A_naive = _naive_trajectory(theta, x, h0, 0.9, 0.7, S)
    # Same operations in another order: float64 rounding only.
    np.testing.assert_allclose(np.stack([cell.output(s_t) for s_t in s[1:]]), h_naive, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.stack([cell.fast_weight_matrix(s_t) for s_t in s[1:]]), A_naive,
                               rtol=1e-12, atol=1e-12)


def test_first_step_reads_the_zero_memory_whatever_S():
    # A(0) = 0, so h(1) = f(LN[W h(0) + C x(0)]) for every S: the inner loop of step t + 1 reads A(t).
    h1 = []
    for S in (1, 2, 5):
        cell = FastWeights(I, N, S=S)
        theta = _theta(cell, 0)
        s1, _ = cell.step(theta, _zero_memory_state(cell, np.ones((2, N))), np.ones((2, I)), 0)
        h1.append(cell.output(s1))
    np.testing.assert_array_equal(h1[0], h1[1])
    np.testing.assert_array_equal(h1[0], h1[2])


def test_memory_after_a_step_holds_the_new_state():
    cell = FastWeights(I, N, lam=0.9, eta=0.5)
    theta = _theta(cell, 1)
    r = refnet.rng(2)
    s0 = r.normal((2, cell.n_state))
    s1, _ = cell.step(theta, s0, r.normal((2, I)), 0)
    h1 = cell.output(s1)
    expected = 0.9 * cell.fast_weight_matrix(s0) + 0.5 * h1[:, :, None] * h1[:, None, :]
    np.testing.assert_allclose(cell.fast_weight_matrix(s1), expected, rtol=1e-15, atol=1e-15)


@settings(max_examples=10, deadline=None)
@given(S=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000))
def test_attention_form_equals_the_explicit_form_on_states_and_gradients(S, T, seed):
    explicit, attention = FastWeights(I, N, S=S), FastWeightsAttention(I, N, S=S, capacity=T)
    theta = _theta(explicit, seed)
    r = refnet.rng(seed + 1)
    x, h0 = r.normal((T, 2, I)), r.normal((2, N))
    head = refnet.Head(N, 3)
    beta, y = head.init(r), r.integers(0, 3, (T, 2))
    s_e = refnet.forward(explicit, theta, x, _zero_memory_state(explicit, h0)).s
    s_a = refnet.forward(attention, theta, x, _zero_memory_state(attention, h0)).s
    # The two forms sum the same terms in another order: rounding only, hence 1e-12.
    for t in range(T + 1):
        np.testing.assert_allclose(attention.output(s_a[t]), explicit.output(s_e[t]), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(attention.fast_weight_matrix(s_a[t], t), explicit.fast_weight_matrix(s_e[t]),
                                   rtol=1e-12, atol=1e-13)
    g_e = refnet.bptt(explicit, theta, x, _zero_memory_state(explicit, h0), head, beta, y)
    g_a = refnet.bptt(attention, theta, x, _zero_memory_state(attention, h0), head, beta, y)
    assert g_a.loss == pytest.approx(g_e.loss, rel=1e-13)
    compare_grads(dict(g_a.dtheta, dh0=g_a.ds0[:, :N]), dict(g_e.dtheta, dh0=g_e.ds0[:, :N]), rtol=1e-12)


@settings(max_examples=12, deadline=None)
@given(attention=st.booleans(), S=st.integers(1, 3), T=st.integers(1, 4), seed=st.integers(0, 1000))
def test_bptt_equals_finite_differences_through_memory_inner_loop_and_layer_norm(attention, S, T, seed):
    cell = FastWeightsAttention(I, N, S=S, capacity=T) if attention else FastWeights(I, N, S=S)
    theta = _theta(cell, seed)
    r = refnet.rng(seed + 1)
    x, s0 = r.normal((T, 2, I)), r.normal((2, cell.n_state), 0.5)
    head = refnet.Head(N, 3)
    beta, y = head.init(r), r.integers(0, 3, (T, 2))
    res = refnet.bptt(cell, theta, x, s0, head, beta, y)

    def f(p):
        return refnet.loss(cell, {k: p[k] for k in theta}, x, p["s0"], head, beta, y)
    check_grads(f, dict(theta, s0=s0), dict(res.dtheta, s0=res.ds0))


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("t", [0, 1, 3])
def test_jvp_and_vjp_pass_the_dot_product_test(attention, t):
    cell = FastWeightsAttention(I, N, S=2, capacity=4) if attention else FastWeights(I, N, S=2)
    theta = _theta(cell, t)
    r = refnet.rng(10 + t)
    s_prev, x = r.normal((3, cell.n_state)), r.normal((3, I))
    _, cache = cell.step(theta, s_prev, x, t)
    u, v, dx = r.normal((3, cell.n_state)), r.normal((3, cell.n_state)), r.normal((3, I))
    dtheta = {k: r.normal(w.shape) for k, w in theta.items()}
    ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
    # One Jacobian applied two ways: equal to rounding.
    dot_product_test(float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum()),
                     float((ds_prev * v).sum() + (dx_bar * dx).sum()) + refnet.params.vdot(dparams, dtheta),
                     rtol=1e-12)


def test_attention_form_ignores_the_initial_history():
    # A(0) = 0 whatever the slots of s_0 hold: their gradient is zero and the run does not change.
    cell = FastWeightsAttention(I, N, capacity=3)
    theta = _theta(cell, 3)
    r = refnet.rng(4)
    x, h0 = r.normal((3, 2, I)), r.normal((2, N))
    s0 = np.concatenate([h0, r.normal((2, 3 * N))], axis=1)
    dout = r.normal((3, 2, N))
    noisy = refnet.sequence_vjp(cell, theta, x, s0, dout)
    clean = refnet.sequence_vjp(cell, theta, x, _zero_memory_state(cell, h0), dout)
    np.testing.assert_array_equal(noisy.outputs, clean.outputs)
    np.testing.assert_array_equal(noisy.ds0[:, N:], 0.0)


def test_output_of_an_example_does_not_depend_on_the_rest_of_its_batch():
    # Layer norm over the hidden units, not over the batch (the public reimplementations' bug).
    cell = FastWeights(I, N)
    theta = _theta(cell, 5)
    x = refnet.rng(6).normal((4, 5, I))
    alone = refnet.forward(cell, theta, x[:, 2:3]).s[-1]
    in_batch = refnet.forward(cell, theta, x).s[-1]
    np.testing.assert_allclose(in_batch[2:3], alone, rtol=1e-14, atol=1e-15)


def test_state_widths_are_n_plus_n_squared_and_n_times_one_plus_capacity():
    assert FastWeights(I, 5).n_state == 5 + 25
    assert FastWeightsAttention(I, 5, capacity=7).n_state == 5 * 8


def test_init_is_ba_et_al_recurrence_and_unit_layer_norm():
    cell = FastWeights(I, N)
    theta = cell.init(refnet.rng(0))
    np.testing.assert_array_equal(theta["weight_hh"], W_INIT_SCALE * np.eye(N))
    np.testing.assert_array_equal(theta["ln_weight"], np.ones(N))
    np.testing.assert_array_equal(theta["ln_bias"], np.zeros(N))
    assert np.abs(theta["weight_ih"]).max() <= I ** -0.5


def test_attention_form_refuses_a_step_beyond_its_capacity():
    cell = FastWeightsAttention(I, N, capacity=2)
    with pytest.raises(ValueError, match=r"t must be < capacity = 2 .*got t = 2"):
        refnet.forward(cell, _theta(cell, 0), np.zeros((3, 1, I)))


def test_attention_form_refuses_a_step_without_its_index():
    cell = FastWeightsAttention(I, N, capacity=2)
    with pytest.raises(TypeError, match="t must be the step's 0-based index"):
        cell.step(_theta(cell, 0), cell.init_state(1), np.zeros((1, I)))


@pytest.mark.parametrize("kwargs, match", [
    ({"lam": 1.5}, r"lam must be a finite real number in \[0.0, 1.0\], got 1.5"),
    ({"lam": float("nan")}, "lam must be a finite real number"),
    ({"eta": float("inf")}, "eta must be a finite real number"),
    ({"S": 0}, "S must be an int >= 1"),
    ({"S": 1.0}, "S must be an int >= 1"),
    ({"ln_eps": 0.0}, "ln_eps must be a finite real number"),
    ({"capacity": 0}, "capacity must be an int >= 1"),
])
def test_bad_hyperparameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FastWeightsAttention(I, N, **{"capacity": 3, **kwargs})


def test_gradients_match_a_pytorch_autograd_implementation():
    torch = pytest.importorskip("torch")
    from refnet.bench.fastweights import torch_hidden_states
    for cell in (FastWeights(I, N, S=2), FastWeightsAttention(I, N, S=2, capacity=4)):
        theta = _theta(cell, 7)
        r = refnet.rng(8)
        x, h0, dout = r.normal((4, 2, I)), r.normal((2, N)), r.normal((4, 2, N))
        ours = refnet.sequence_vjp(cell, theta, x, _zero_memory_state(cell, h0), dout)
        leaves = {k: torch.tensor(v, requires_grad=True) for k, v in dict(theta, x=x, h0=h0).items()}
        hs = torch_hidden_states(torch, cell, leaves, leaves["x"], leaves["h0"])
        hs.backward(torch.tensor(dout))
        np.testing.assert_allclose(ours.outputs, hs.detach().numpy(), rtol=1e-12, atol=1e-13)
        # Same function, operations in another order: float64 rounding only.
        compare_grads(dict(ours.dtheta, x=ours.dx, h0=ours.ds0[:, :N]),
                      {k: v.grad.numpy() for k, v in leaves.items()}, rtol=1e-11, reference_name="torch")
