"""refnet.algorithms.stacked: multi-layer forward and sequence VJP against finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads
from refnet.algorithms.stacked import stacked_forward, stacked_sequence_vjp

from conftest import CELL_FACTORIES, SMOOTH_CELLS


def _stack(names, T, B, seed, I=2, H=3):
    r = refnet.rng(seed)
    cells = [CELL_FACTORIES[name](I if k == 0 else H, H) for k, name in enumerate(names)]
    thetas = [c.init(r) for c in cells]
    x = r.normal((T, B, I))
    s0s = [r.normal((B, c.n_state), 0.5) for c in cells]
    dout = r.normal((T, B, H))
    ds_T = [r.normal((B, c.n_state)) for c in cells]
    return cells, thetas, x, s0s, dout, ds_T


@settings(max_examples=4, deadline=None)
@given(names=st.lists(st.sampled_from(SMOOTH_CELLS), min_size=1, max_size=2), T=st.integers(1, 3),
       B=st.integers(1, 2), seed=st.integers(0, 1000))
def test_stacked_sequence_vjp_equals_finite_differences_of_the_pairing(names, T, B, seed):
    # Cells of different kinds may be stacked: each layer only reads the output of the one below.
    cells, thetas, x, s0s, dout, ds_T = _stack(names, T, B, seed)
    res = stacked_sequence_vjp(cells, thetas, x, s0s, dout, ds_T)
    L = len(cells)

    def f(flat):
        th = [{k: flat[f"{l}/{k}"] for k in thetas[l]} for l in range(L)]
        runs = stacked_forward(cells, th, flat["x"], [flat[f"s0_{l}"] for l in range(L)])
        top = sum(float((cells[-1].output(s) * dout[t]).sum()) for t, s in enumerate(runs[-1].s[1:]))
        return top + sum(float((run.s[-1] * d).sum()) for run, d in zip(runs, ds_T))
    point, grads = {"x": x}, {"x": res.dx}
    for l in range(L):
        point.update({f"{l}/{k}": v for k, v in thetas[l].items()}, **{f"s0_{l}": s0s[l]})
        grads.update({f"{l}/{k}": v for k, v in res.dtheta[l].items()}, **{f"s0_{l}": res.ds0[l]})
    check_grads(f, point, grads)


@pytest.mark.parametrize("name", list(CELL_FACTORIES))
def test_one_layer_is_the_sequence_vjp(name):
    cells, thetas, x, s0s, dout, ds_T = _stack([name], 4, 2, 0)
    stacked = stacked_sequence_vjp(cells, thetas, x, s0s, dout, ds_T)
    single = refnet.sequence_vjp(cells[0], thetas[0], x, s0s[0], dout, ds_T[0])
    # The same calls in the same order: equal to the last bit.
    for ours, theirs in [(stacked.dx, single.dx), (stacked.ds0[0], single.ds0), (stacked.outputs, single.outputs),
                         *((stacked.dtheta[0][k], single.dtheta[k]) for k in thetas[0])]:
        np.testing.assert_array_equal(ours, theirs)


def test_forward_feeds_each_layer_the_outputs_of_the_one_below():
    cells, thetas, x, s0s, *_ = _stack(["lstm", "gru"], 4, 2, 0)
    runs = stacked_forward(cells, thetas, x, s0s)
    below = np.stack([cells[0].output(s) for s in runs[0].s[1:]])
    np.testing.assert_array_equal(runs[1].s[-1], refnet.forward(cells[1], thetas[1], below, s0s[1]).s[-1])


def test_missing_initial_states_and_final_cotangents_are_zeros():
    cells, thetas, x, s0s, dout, _ = _stack(["gru", "gru"], 3, 2, 0)
    zeros = [np.zeros_like(s) for s in s0s]
    a = stacked_sequence_vjp(cells, thetas, x, None, dout)
    b = stacked_sequence_vjp(cells, thetas, x, zeros, dout, zeros)
    np.testing.assert_array_equal(a.dx, b.dx)
    for k in thetas[0]:
        np.testing.assert_array_equal(a.dtheta[0][k], b.dtheta[0][k])


@pytest.mark.parametrize("mutate, error, match", [
    (lambda a: a.update(thetas=a["thetas"][:1]), ValueError, "2 cells and 1 params dicts"),
    (lambda a: a.update(cells=[refnet.LSTM(2, 3), refnet.LSTM(4, 3)]), ValueError,
     r"cells\[1\].input_size must be 3"),
    (lambda a: a.update(s0s=a["s0s"][:1]), ValueError, r"one initial state per layer \(2\), got 1"),
    (lambda a: a.update(ds_T=a["ds_T"][:1]), ValueError, r"one cotangent per layer \(2\), got 1"),
    (lambda a: a["thetas"][1].pop("bias_hh"), ValueError, r"thetas\[1\] must have exactly the keys"),
    (lambda a: a.update(x=np.zeros((3, 2, 5))), ValueError, r"x must have shape \(\*, \*, 2\)"),
])
def test_bad_input_is_named(mutate, error, match):
    cells, thetas, x, s0s, dout, ds_T = _stack(["lstm", "lstm"], 3, 2, 0)
    args = dict(cells=cells, thetas=thetas, x=x, s0s=s0s, dout=dout, ds_T=ds_T)
    mutate(args)
    with pytest.raises(error, match=match):
        stacked_sequence_vjp(**args)
