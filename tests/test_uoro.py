"""refnet.algorithms.uoro: UORO is unbiased for RTRL; the UORO paper's influence balancing test."""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest

import refnet
from gradcheck.matrix.rtrl import z_test
from refnet import heads
from refnet.algorithms.rtrl import rtrl, rtrl_update
from refnet.algorithms.uoro import uoro, uoro_gradient, uoro_init, uoro_update
from refnet.cells.base import Cell
from refnet.optim import SGD

from conftest import make_cell


def _problem(name, T, B, seed):
    r = refnet.rng(seed)
    cell = make_cell(name)
    head = refnet.Head(cell.n_out, 3)
    theta, beta = cell.init(r), head.init(r)
    return cell, theta, r.normal((T, B, 3)), r.normal((B, cell.n_state), 0.5), head, beta, r.integers(0, 3, (T, B))


@pytest.mark.parametrize("name", ["elman_tanh", "irnn"])
def test_uoro_estimates_average_to_the_rtrl_gradient(name):
    cell, theta, x, s0, head, beta, y = _problem(name, 4, 1, 0)
    exact = cell.flat_params(rtrl(cell, theta, x, s0, head, beta, y).dtheta)
    # 40 estimates, each the mean of 50 independent ones (the sequence repeated along the batch,
    # default weights: the mean over the copies), so the central limit theorem holds for each.
    copies = (np.tile(x, (1, 50, 1)), np.tile(s0, (50, 1)), head, beta, np.tile(y, (1, 50)))
    r = refnet.rng(1)
    samples = np.stack([cell.flat_params(uoro(cell, theta, *copies, rng=r).dtheta) for _ in range(40)])
    test = z_test(samples, exact)   # every coordinate within the Bonferroni bound at α = 1e-3
    assert test.passed, test


def _sensitivity_samples(cell, theta, x, s0, N, signs):
    """N estimates of M_T = s̃ θ̃ᵀ from one run with the sequence repeated N times, and M_T itself."""
    xN, s = np.tile(x, (1, N, 1)), np.tile(s0, (N, 1))
    state = uoro_init(cell, N, x)
    M = np.zeros((1, cell.n_state, state.theta_tilde.shape[1]))
    s_exact = s0
    for t in range(x.shape[0]):
        s, cache = cell.step(theta, s, xN[t])
        state = uoro_update(cell, theta, cache, state, signs((N, cell.n_state)))
        s_exact, cache = cell.step(theta, s_exact, x[t])
        M = rtrl_update(*cell.jacobians(theta, cache), M)
    samples = state.s_tilde[:, :, None] * state.theta_tilde[:, None, :]
    return samples.reshape(N, -1), M.reshape(-1)


def test_uoro_rank_one_product_is_an_unbiased_estimate_of_the_sensitivity():
    cell, theta, x, s0, *_ = _problem("elman_tanh", 4, 1, 2)
    r = np.random.default_rng(3)
    samples, M = _sensitivity_samples(cell, theta, x, s0, 4000, lambda shape: r.integers(0, 2, shape) * 2.0 - 1.0)
    assert z_test(samples, M).passed


def test_the_z_test_catches_uoro_with_biased_signs():
    # Signs with P(+1) = 0.8 keep E[ν νᵀ] = I but not E[ν] = 0: the cross terms no longer vanish.
    cell, theta, x, s0, *_ = _problem("elman_tanh", 4, 1, 2)
    r = np.random.default_rng(3)
    samples, M = _sensitivity_samples(cell, theta, x, s0, 4000, lambda shape: np.where(r.random(shape) < 0.8, 1.0, -1.0))
    test = z_test(samples, M)
    assert not test.passed and test.max_z > 2 * test.critical


def test_uoro_at_batch_size_two_equals_two_single_runs():
    # B > 1 reads b = νᵀ J_θ off the per-example J_θ; B = 1 takes one VJP: the same numbers.
    cell, theta, x, s0, *_ = _problem("lstm", 3, 2, 4)
    nu = refnet.rng(5).signs((3, 2, cell.n_state))
    both = uoro_init(cell, 2, x)
    single = [uoro_init(cell, 1, x) for _ in range(2)]
    s = s0
    for t in range(3):
        s_next, cache = cell.step(theta, s, x[t])
        both = uoro_update(cell, theta, cache, both, nu[t])
        for i in range(2):
            _, cache_i = cell.step(theta, s[i:i + 1], x[t, i:i + 1])
            single[i] = uoro_update(cell, theta, cache_i, single[i], nu[t, i:i + 1])
        s = s_next
    for i in range(2):
        np.testing.assert_allclose(both.s_tilde[i], single[i].s_tilde[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(both.theta_tilde[i], single[i].theta_tilde[0], rtol=1e-12, atol=1e-14)


def test_uoro_needs_a_refnet_rng():
    cell, theta, x, s0, head, beta, y = _problem("elman_tanh", 2, 1, 0)
    with pytest.raises(TypeError, match="rng must be a refnet.backend.Rng"):
        uoro(cell, theta, x, s0, head, beta, y, rng=np.random.default_rng(0))


# ---- influence balancing (Tallec & Ollivier 2018, §5) ----------------------

_A = 0.5 * np.eye(23) + 0.5 * np.eye(23, k=1)
_C = np.where(np.arange(23) < 10, 1.0, -1.0)


class _LinearCache(NamedTuple):
    x: object


@dataclass(frozen=True)
class _InfluenceBalancing(Cell):
    """s_t = A s_{t−1} + θ c: A = ½ I + ½ (superdiagonal), c = ten +1 then thirteen −1, θ scalar."""

    input_size: int = 1
    hidden_size: int = 23

    def param_shapes(self):
        return {"theta": (1,)}

    def step(self, params, s_prev, x, t=None):
        return s_prev @ _A.T + params["theta"] * _C, _LinearCache(x)

    def step_vjp(self, params, cache, ds):
        return ds @ _A, {"theta": (ds @ _C).sum(keepdims=True)}, np.zeros_like(cache.x)

    def step_jvp(self, params, cache, ds_prev=None, dparams=None, dx=None):
        ds = np.zeros((cache.x.shape[0], 23))
        if ds_prev is not None:
            ds = ds + ds_prev @ _A.T
        if dparams is not None:
            ds = ds + dparams["theta"] * _C
        return ds

    def jacobians(self, params, cache):
        B = cache.x.shape[0]
        return np.broadcast_to(_A, (B, 23, 23)), np.broadcast_to(_C[:, None], (B, 23, 1))


THETA_0, THETA_STAR = 0.5, -1.0 / 6.0   # s*[0] = θ · 2 Σ c = −6θ, so ℓ = 0 at θ = −1/6


def _online(gradient, steps=10_000, lr=1.5e-5):
    """θ after ``steps`` online SGD steps on ℓ_t = ½ (s_t[0] − 1)², the gradient by ``gradient``."""
    cell = _InfluenceBalancing()
    theta = {"theta": np.array([THETA_0])}
    opt = SGD(lr)
    state, s, x = opt.init(theta), np.zeros((1, 23)), np.zeros((1, 1))
    for _ in range(steps):
        s, cache = cell.step(theta, s, x)
        ds = np.zeros((1, 23))
        ds[0, 0] = s[0, 0] - 1.0
        state = opt.update(theta, {"theta": gradient(cell, theta, cache, ds)}, state)
    return float(theta["theta"][0])


def _truncated(k):
    caches = []

    def gradient(cell, theta, cache, ds):
        caches.append(cache)
        del caches[:-k]
        g = 0.0
        for c in reversed(caches):
            ds, dtheta, _ = cell.step_vjp(theta, c, ds)
            g = g + dtheta["theta"]
        return g
    return gradient


def _rtrl():
    M = [np.zeros((1, 23, 1))]

    def gradient(cell, theta, cache, ds):
        M[0] = rtrl_update(*cell.jacobians(theta, cache), M[0])
        return (ds @ M[0][0])[0]
    return gradient


def _uoro(seed, steps=10_000):
    signs = iter(refnet.rng(seed).signs((steps, 1, 23)))
    state = [uoro_init(_InfluenceBalancing(), 1, np.zeros((1, 1)))]

    def gradient(cell, theta, cache, ds):
        state[0] = uoro_update(cell, theta, cache, state[0], next(signs))
        return uoro_gradient(state[0], ds)
    return gradient


def test_influence_balancing_short_truncations_point_the_wrong_way():
    # At θ = 0.5 with the state settled: the first 10 steps of influence are positive (the +1
    # units are nearest s[0]), the whole sum is −6.  Truncation 1 and 10 see only the near part;
    # truncation 100 reaches past the influence horizon (A^τ c is below 1e-8 by τ = 100).
    cell = _InfluenceBalancing()
    theta, T = {"theta": np.array([THETA_0])}, 300
    head = refnet.Head(23, 1, heads.mse)
    beta = {"weight": np.eye(1, 23), "bias": np.zeros(1)}
    x, y, w = np.zeros((T, 1, 1)), np.ones((T, 1, 1)), heads.last_step(T, 1)
    exact = rtrl(cell, theta, x, None, head, beta, y, w).dtheta["theta"][0]
    assert exact > 0
    for k, sign in ((1, -1), (10, -1), (100, 1)):
        # k1 = k2 = k, k dividing T: the last loss goes back k steps, as in TBPTT(1, k) at step T.
        g = refnet.tbptt(cell, theta, x, None, head, beta, y, w, k1=k, k2=k).dtheta["theta"][0]
        assert np.sign(g) == sign, (k, g)


def test_influence_balancing_truncated_bptt_drifts_away_and_diverges():
    assert _online(_truncated(1)) > 1.0 > THETA_0        # still climbing after 10 000 steps
    assert _online(_truncated(10), steps=4000) > 10        # growing geometrically


@pytest.mark.parametrize("make", [_rtrl, lambda: _uoro(0)], ids=["rtrl", "uoro"])
def test_influence_balancing_rtrl_and_uoro_converge(make):
    # lr 1.5e-5: UORO's variance makes 3e-5 unstable for some seeds; RTRL is fine either way.
    # Both sit within 5e-3 of θ* after 10 000 steps (RTRL −0.1646 in a trial, UORO ±3e-3).
    assert _online(make()) == pytest.approx(THETA_STAR, abs=5e-3)
