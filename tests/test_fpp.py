"""refnet.algorithms.fpp: the per-transition FPP objective and its hand-written gradient."""
import numpy as np
import pytest

import refnet
from gradcheck import check_grads
from refnet import heads
from refnet.algorithms.fpp import fpp_grad, fpp_loss, fpp_refresh

from conftest import make_cell

B = 3


def _transition(name, seed=0):
    r = refnet.rng(seed)
    cell = make_cell(name)
    head = refnet.Head(cell.n_out, 2, heads.softmax_cross_entropy)
    theta, beta = cell.init(r), head.init(r)
    s_prev, s_next = r.normal((B, cell.n_state), 0.5), r.normal((B, cell.n_state), 0.5)
    x, x_next = r.normal((B, 3)), r.normal((B, 3))
    return cell, head, theta, beta, s_prev, x, x_next, s_next, r.integers(0, 2, (B,)), np.full(B, 1.0 / B)


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru"])
def test_fpp_grad_matches_finite_differences_in_weights_head_and_stored_states(name):
    cell, head, theta, beta, s_prev, x, x_next, s_next, y, w = _transition(name)
    g = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, state_weight=0.7)

    def total(p):
        th = {k: p[f"t/{k}"] for k in theta}
        be = {k: p[f"b/{k}"] for k in beta}
        return sum(fpp_loss(cell, th, head, be, p["s_prev"], x, x_next, p["s_next"], y, w, state_weight=0.7))
    point = {**{f"t/{k}": v for k, v in theta.items()}, **{f"b/{k}": v for k, v in beta.items()},
             "s_prev": s_prev, "s_next": s_next}
    grads = {**{f"t/{k}": v for k, v in g.dtheta.items()}, **{f"b/{k}": v for k, v in g.dbeta.items()},
             "s_prev": g.ds_prev, "s_next": g.ds_next}
    # float64 central differences with gradcheck's default step: 1e-6 relative is rounding, not bias.
    check_grads(total, point, grads, rtol=1e-6, atol=1e-9)


def test_fpp_grad_without_state_loss_is_one_step_bptt_of_the_target_loss():
    cell, head, theta, beta, s_prev, x, x_next, s_next, y, w = _transition("elman_tanh")
    g = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, state_weight=0.0)
    ref = refnet.bptt(cell, theta, x[None], s_prev, head, beta, y[None], w[None])
    for k in theta:
        np.testing.assert_allclose(g.dtheta[k], ref.dtheta[k], rtol=1e-12, atol=1e-15)  # same products, reordered
    np.testing.assert_allclose(g.ds_prev, ref.ds0, rtol=1e-12, atol=1e-15)
    assert g.state_loss == 0.0 and np.all(g.ds_next == 0.0)


def test_fpp_head_gradient_is_the_target_losses_whatever_the_state_weight():
    cell, head, theta, beta, s_prev, x, x_next, s_next, y, w = _transition("lstm")
    a = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, state_weight=0.0)
    b = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, state_weight=5.0)
    for k in beta:
        np.testing.assert_array_equal(a.dbeta[k], b.dbeta[k])
    assert b.state_loss > 0 and a.target_loss == b.target_loss


def test_fpp_state_loss_vanishes_at_the_refreshed_state():
    cell, head, theta, beta, s_prev, x, x_next, _, y, w = _transition("gru")
    s_T, s_refreshed = fpp_refresh(cell, theta, s_prev, x, x_next)
    np.testing.assert_array_equal(s_T, cell.step(theta, s_prev, x)[0])
    g = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_refreshed, y, w)
    assert g.state_loss == 0.0 and np.all(g.ds_next == 0.0)
    assert g.loss == g.target_loss


def test_fpp_state_weights_v_default_to_w_and_zero_v_removes_the_state_loss():
    cell, head, theta, beta, s_prev, x, x_next, s_next, y, w = _transition("elman_tanh")
    a = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w)
    b = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, v=w)
    c = fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, v=np.zeros(B))
    assert a.state_loss == b.state_loss > 0 and c.state_loss == 0.0


def test_fpp_grad_rejects_a_misshapen_state_by_name():
    cell, head, theta, beta, s_prev, x, x_next, s_next, y, w = _transition("elman_tanh")
    with pytest.raises(ValueError, match=r"s_next must have shape \(3, 4\), got \(3, 5\)"):
        fpp_grad(cell, theta, head, beta, s_prev, x, x_next, np.zeros((3, 5)), y, w)
    with pytest.raises(ValueError, match=r"w must have shape \(3,\)"):
        fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, np.ones(2))
