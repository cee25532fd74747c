"""refnet.cells.hopfield and refnet.tasks.hopfield_patterns: the continuous Hopfield network and its patterns."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads
from refnet import params as P
from refnet.cells.activations import sigmoid
from refnet.cells.hopfield import Hopfield
from refnet.tasks.hopfield_patterns import corrupt, digit_patterns


def _point(cell, seed, B=3):
    r = refnet.rng(seed)
    theta = {"U": r.normal((cell.n_units, cell.n_units))}
    return theta, r.normal((B, cell.n_state)), r.normal((B, cell.input_size)), r


cells = st.builds(Hopfield, input_size=st.integers(1, 4), hidden_size=st.integers(1, 4),
                  output_size=st.integers(1, 3), a=st.floats(0.1, 1.0), b=st.floats(0.1, 2.0))


@settings(max_examples=30, deadline=None)
@given(cell=cells, seed=st.integers(0, 10_000))
def test_W_is_symmetric_with_a_zero_diagonal_for_any_U(cell, seed):
    theta, *_ = _point(cell, seed)
    W = cell.weights(theta)
    np.testing.assert_array_equal(W, W.T)
    assert not np.diagonal(W).any()


@settings(max_examples=30, deadline=None)
@given(cell=cells, seed=st.integers(0, 10_000))
def test_step_is_the_euler_step_with_clamped_inputs(cell, seed):
    # s' = (1 − a) s + W[n_in:] σ(b [x, s]), written with the full W; the product-with-U form in
    # the cell sums the same terms in another order: rounding only.
    theta, s, x, _ = _point(cell, seed)
    W_s = cell.weights(theta)[cell.input_size:]
    expected = (1 - cell.a) * s + sigmoid.fn(cell.b * np.concatenate([x, s], 1)) @ W_s.T
    np.testing.assert_allclose(cell.step(theta, s, x)[0], expected, rtol=1e-13, atol=1e-13)


@settings(max_examples=30, deadline=None)
@given(cell=cells, B=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_jvp_and_vjp_pass_the_dot_product_test_to_1e12(cell, B, seed):
    theta, s, x, r = _point(cell, seed, B)
    _, cache = cell.step(theta, s, x)
    u, v = r.normal((B, cell.n_state)), r.normal((B, cell.n_state))
    dtheta, dx = {"U": r.normal(theta["U"].shape)}, r.normal((B, cell.input_size))
    lhs = float((u * cell.step_jvp(theta, cache, v, dtheta, dx)).sum())
    ds_prev, dparams, dx_bar = cell.step_vjp(theta, cache, u)
    rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + P.vdot(dparams, dtheta)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs))


def test_step_vjp_equals_finite_differences_of_one_step():
    cell = Hopfield(3, 2, 2, a=0.7)
    theta, s, x, r = _point(cell, 1)
    u = r.normal((3, cell.n_state))
    ds_prev, dtheta, dx = cell.step_vjp(theta, cell.step(theta, s, x)[1], u)

    def pairing(flat):
        return float((u * cell.step({"U": flat["U"]}, flat["s"], flat["x"])[0]).sum())
    check_grads(pairing, dict(theta, s=s, x=x), dict(dtheta, s=ds_prev, x=dx))


def test_the_gradient_for_U_is_symmetric_with_a_zero_diagonal():
    # dU = (dW + dWᵀ) ⊙ (1 − I): a step along −dU keeps W admissible, and the diagonal of U is inert.
    cell = Hopfield(2, 3, 2)
    theta, s, x, r = _point(cell, 2)
    dU = cell.step_vjp(theta, cell.step(theta, s, x)[1], r.normal((3, cell.n_state)))[1]["U"]
    np.testing.assert_array_equal(dU, dU.T)
    assert not np.diagonal(dU).any()


def test_closed_form_jacobians_equal_the_generic_ones_from_jvps():
    cell = Hopfield(2, 3, 2, a=0.6, b=0.8)
    theta, s, x, _ = _point(cell, 3)
    _, cache = cell.step(theta, s, x)
    J_s, J_theta = cell.jacobians(theta, cache)
    G_s, G_theta = refnet.Cell.jacobians(cell, theta, cache)
    np.testing.assert_allclose(J_s, G_s, rtol=0, atol=1e-15)
    np.testing.assert_allclose(J_theta, G_theta, rtol=0, atol=1e-15)


def test_output_is_the_output_units_and_output_vjp_places_their_cotangent():
    cell = Hopfield(2, 3, 2)
    s = np.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(cell.output(s), s[:, 3:])
    np.testing.assert_array_equal(cell.output_vjp(np.ones((2, 2))), [[0, 0, 0, 1, 1]] * 2)
    assert (cell.n_units, cell.n_state, cell.n_out) == (7, 5, 2)


def test_bptt_through_the_hopfield_network_equals_finite_differences():
    cell = Hopfield(3, 2, 2, init_std=0.5)
    r = refnet.rng(4)
    theta, head = cell.init(r), refnet.Head(2, 3)
    beta, x, s0, y = head.init(r), r.normal((4, 2, 3)), r.normal((2, 4)), r.integers(0, 3, (4, 2))
    res = refnet.bptt(cell, theta, x, s0, head, beta, y)
    check_grads(lambda f: refnet.loss(cell, {"U": f["U"]}, x, f["s0"], head, beta, y),
                dict(theta, s0=s0), dict(res.dtheta, s0=res.ds0))


def test_init_draws_U_with_the_given_standard_deviation():
    U = Hopfield(20, 30, 20).init(refnet.rng(0))["U"]
    assert U.shape == (70, 70) and abs(U.std() - 1e-3) < 5e-5


@pytest.mark.parametrize("kwargs, match", [
    ({"output_size": 0}, "output_size must be a positive int, got 0"),
    ({"hidden_size": 0}, "hidden_size must be a positive int, got 0"),
])
def test_bad_sizes_are_named(kwargs, match):
    args = dict(input_size=2, hidden_size=2, output_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Hopfield(**args)


# ---- refnet.tasks.hopfield_patterns ------------------------------------------------------------

def test_digit_patterns_are_ten_distinct_binary_images():
    pytest.importorskip("sklearn")
    p = digit_patterns(16)
    assert p.shape == (10, 256) and set(np.unique(p)) == {0.0, 1.0}
    assert len({row.tobytes() for row in p}) == 10 and (p.sum(axis=1) > 20).all()


def test_corrupt_switches_off_half_of_the_on_pixels_and_nothing_else():
    p = (refnet.rng(0).uniform((10, 50)) > 0.6).astype(float)
    c = corrupt(p, 0.5, seed=3)
    np.testing.assert_array_equal(c.sum(axis=1), p.sum(axis=1) - np.floor(0.5 * p.sum(axis=1)))
    assert (c <= p).all()
    np.testing.assert_array_equal(corrupt(p, 0.5, seed=3), c)


@pytest.mark.parametrize("call, match", [
    (lambda: corrupt(np.full((2, 3), 0.5)), "patterns must hold only 0 and 1"),
    (lambda: corrupt(np.zeros((2, 3)), 1.5), r"level must be in \[0, 1\], got 1.5"),
    (lambda: digit_patterns(4), "side must be an int >= 8, got 4"),
])
def test_bad_pattern_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
