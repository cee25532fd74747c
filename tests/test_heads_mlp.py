"""refnet.heads_mlp: the one-hidden-layer ReLU readout, its gradient, and BPTT through it."""
import numpy as np
import pytest

import refnet
from gradcheck import check_grads
from refnet import heads
from refnet.heads_mlp import MLPHead


@pytest.mark.parametrize("loss", list(heads.LOSSES.values()), ids=list(heads.LOSSES))
def test_mlp_head_gradient_equals_finite_differences(loss):
    r = refnet.rng(0)
    head = MLPHead(4, 3, loss, n_hidden=6)
    beta = head.init(r)
    h = r.normal((5, 4), 2.0)
    y = r.integers(0, 3, (5,)) if loss.label_target else r.uniform((5, 3))
    w = r.uniform((5,))
    _, dh, dbeta = head.loss_and_grad(beta, h, y, w)
    check_grads(lambda p: float(head.loss_value({k: p[k] for k in beta}, p["h"], y, w)),
                dict(beta, h=h), dict(dbeta, h=dh))


def test_mlp_head_loss_and_grad_returns_loss_value():
    r = refnet.rng(1)
    head = MLPHead(4, 3)
    beta, h, y, w = head.init(r), r.normal((5, 4)), r.integers(0, 3, (5,)), r.uniform((5,))
    assert float(head.loss_and_grad(beta, h, y, w)[0]) == float(head.loss_value(beta, h, y, w))


def test_mlp_head_is_a_linear_head_on_the_relu_hidden_layer():
    r = refnet.rng(2)
    head = MLPHead(4, 3, n_hidden=5)
    beta, h = head.init(r), r.normal((6, 4))
    u = np.maximum(h @ beta["hidden_weight"].T + beta["hidden_bias"], 0.0)
    linear = refnet.Head(5, 3)
    np.testing.assert_array_equal(head.forward(beta, h), linear.forward({"weight": beta["weight"],
                                                                          "bias": beta["bias"]}, u))


def test_default_is_ba_et_al_readout_of_100_relu_units():
    head = MLPHead(20, 10)
    assert head.param_shapes() == {"hidden_weight": (100, 20), "hidden_bias": (100,),
                                   "weight": (10, 100), "bias": (10,)}


def test_bptt_takes_the_mlp_head_unchanged_and_equals_finite_differences():
    r = refnet.rng(3)
    cell = refnet.ElmanRNN(3, 4, "tanh")
    head = MLPHead(4, 3, n_hidden=5)
    theta, beta = cell.init(r), head.init(r)
    x, y = r.normal((4, 2, 3)), r.integers(0, 3, (4, 2))
    w = refnet.last_step(4, 2)
    res = refnet.bptt(cell, theta, x, None, head, beta, y, w)

    def f(p):
        return refnet.loss(cell, {k: p[f"theta/{k}"] for k in theta}, x, None, head,
                           {k: p[f"beta/{k}"] for k in beta}, y, w)
    point = {**{f"theta/{k}": v for k, v in theta.items()}, **{f"beta/{k}": v for k, v in beta.items()}}
    grads = {**{f"theta/{k}": v for k, v in res.dtheta.items()}, **{f"beta/{k}": v for k, v in res.dbeta.items()}}
    check_grads(f, point, grads)


@pytest.mark.parametrize("n_hidden", [0, -1, 2.5, True])
def test_bad_hidden_width_is_named(n_hidden):
    with pytest.raises(ValueError, match="n_hidden must be a positive int"):
        MLPHead(4, 3, n_hidden=n_hidden)


def test_missing_hidden_parameters_are_named():
    head = MLPHead(4, 3)
    beta = head.init(refnet.rng(0))
    del beta["hidden_bias"]
    with pytest.raises(ValueError, match=r"missing \['hidden_bias'\]"):
        head.check_params(beta)
