"""refnet.heads: losses and their gradients, stability, targets and weights."""
import numpy as np
import pytest

import refnet
from gradcheck import check_grads
from refnet import heads


@pytest.mark.parametrize("loss", list(heads.LOSSES.values()), ids=list(heads.LOSSES))
def test_head_gradient_equals_finite_differences(loss):
    r = refnet.rng(0)
    head = refnet.Head(4, 3, loss)
    beta = head.init(r)
    h = r.normal((5, 4), 2.0)
    y = r.integers(0, 3, (5,)) if loss.label_target else r.uniform((5, 3))
    w = r.uniform((5,))
    _, dh, dbeta = head.loss_and_grad(beta, h, y, w)
    check_grads(lambda p: float(head.loss_value({"weight": p["weight"], "bias": p["bias"]}, p["h"], y, w)),
                dict(beta, h=h), dict(dbeta, h=dh))


@pytest.mark.parametrize("scale", [700.0, 1e4])
def test_softmax_cross_entropy_is_finite_and_exact_for_huge_logits(scale):
    z = np.array([[scale, -scale, 0.0], [-scale, -scale, scale]])
    loss, dz = heads.softmax_cross_entropy.value_and_grad(z, np.array([1, 2]))
    np.testing.assert_allclose(loss, [2 * scale, 0.0], rtol=1e-15)
    np.testing.assert_allclose(dz, [[1, -1, 0], [0, 0, 0]], atol=1e-15)


@pytest.mark.parametrize("scale", [700.0, 1e4])
def test_sigmoid_bce_is_finite_and_exact_for_huge_logits(scale):
    z = np.array([[scale, -scale]])
    loss, dz = heads.sigmoid_bce.value_and_grad(z, np.array([[0.0, 0.0]]))
    np.testing.assert_allclose(loss, [scale], rtol=1e-15)
    np.testing.assert_allclose(dz, [[1.0, 0.0]], atol=1e-15)


def test_mse_is_half_squared_error():
    loss, dz = heads.mse.value_and_grad(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]]))
    assert loss[0] == 2.5 and dz.tolist() == [[1.0, 2.0]]


def test_weights_helpers_make_means():
    assert heads.every_step(4, 5).sum() == pytest.approx(1.0)
    last = heads.last_step(4, 5)
    assert last[:-1].sum() == 0 and last[-1].sum() == pytest.approx(1.0)
    m = heads.masked(np.array([[True, False], [True, True]]))
    np.testing.assert_allclose(m, [[1 / 3, 0], [1 / 3, 1 / 3]])


def test_empty_mask_is_rejected():
    with pytest.raises(ValueError, match="mask must select at least one"):
        heads.masked(np.zeros((2, 2), dtype=bool))


def test_label_targets_out_of_range_are_named():
    head = refnet.Head(2, 3)
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\), got values in \[0, 3\]"):
        head.check_targets(np.array([[0, 3]]), (1, 2))


def test_float_labels_for_cross_entropy_are_a_type_error():
    with pytest.raises(TypeError, match="integer class labels"):
        refnet.Head(2, 3).check_targets(np.zeros((1, 2)), (1, 2))


def test_head_rejects_an_unknown_loss():
    with pytest.raises(TypeError, match="loss must be one of"):
        refnet.Head(2, 3, loss="hinge")
