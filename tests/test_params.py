"""refnet.params: tree helpers on plain dicts."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refnet import params


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4))
def test_flatten_then_unflatten_is_the_identity(shapes):
    rng = np.random.default_rng(0)
    tree = {f"p{i}": rng.normal(size=s) for i, s in enumerate(shapes)}
    back = params.unflatten(params.flatten(tree), tree)
    assert list(back) == list(tree)
    for k in tree:
        np.testing.assert_array_equal(back[k], tree[k])


def test_flatten_follows_key_order_then_c_order():
    tree = {"b": np.array([[1.0, 2.0], [3.0, 4.0]]), "a": np.array([5.0])}
    np.testing.assert_array_equal(params.flatten(tree), [1, 2, 3, 4, 5])


def test_unflatten_rejects_a_wrong_length_naming_it():
    with pytest.raises(ValueError, match=r"vector must have shape \(3,\)"):
        params.unflatten(np.zeros(4), {"a": np.zeros(3)})


def test_axpy_vdot_zeros_like_and_size():
    x = {"a": np.ones(3), "b": np.full((2, 2), 2.0)}
    y = params.zeros_like(x)
    params.axpy(0.5, x, y)
    assert params.vdot(y, x) == pytest.approx(0.5 * 3 + 0.5 * 4 * 4)
    assert params.size(x) == 7
