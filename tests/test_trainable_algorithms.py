"""Freezing parameters (``trainable=``) in every gradient algorithm and learner beyond BPTT/RTRL.

For each algorithm: the frozen parameters are absent from ``dtheta``, the trainable ones equal the
unfrozen run's (exactly where the algorithm is deterministic: the restriction only drops entries;
for the random estimators UORO and KF-RTRL exactly at T = 1, where their estimate does not depend
on the balancing constants, and in the mean otherwise), and the estimators that carry a
sensitivity carry none for the frozen parameters.
"""
import numpy as np
import pytest

import refnet
from gradcheck.matrix.rtrl import z_test
from refnet.algorithms.bptt import sequence_vjp, tbptt
from refnet.algorithms.fpp import fpp_grad
from refnet.algorithms.kfrtrl import kfrtrl, kfrtrl_init
from refnet.algorithms.rbp import cg_rbp, gmres_rbp, implicit_vjp, neumann_rbp, rbp
from refnet.algorithms.rflo import rflo, rflo_init
from refnet.algorithms.rtrl import rtrl
from refnet.algorithms.snap import snap, snap_pattern
from refnet.algorithms.stacked import stacked_sequence_vjp
from refnet.algorithms.uoro import uoro, uoro_init
from refnet.backend import rng
from refnet.online import FPPLearner, KFRTRLLearner, RFLOLearner, SnApLearner, UOROLearner
from refnet.optim import SGD
from refnet.solvers import fixed_point, linear

T, B = 5, 2

# Each case: a cell factory and the parameters frozen in it (a fixed α in FastRNN form, a fixed W_hh).
CELLS = {
    "elman": (lambda: refnet.ElmanRNN(3, 4, "tanh"), {"weight_hh", "bias_hh"}),
    "fastrnn": (lambda: refnet.FastRNN(3, 4), {"alpha", "beta"}),
    "leaky": (lambda: refnet.LeakyRNN(3, 4, 0.3), {"weight_ih"}),
    "gru": (lambda: refnet.GRU(3, 4), {"weight_hh"}),
}


def _problem(name, seed=0):
    make, frozen = CELLS[name]
    cell = make()
    r = rng(seed)
    theta = cell.init(r)
    head = refnet.Head(cell.n_out, 3)
    beta = head.init(r)
    x = r.normal((T, B, cell.input_size))
    y = r.integers(0, 3, (T, B))
    return cell, theta, head, beta, x, y, set(theta) - frozen


def _assert_restricted(part, full, trainable, rtol=0.0):
    """Frozen parameters absent (not zero); trainable ones equal to the unfrozen run's."""
    assert set(part) == set(trainable)
    for k in trainable:
        np.testing.assert_allclose(part[k], full[k], rtol=rtol, atol=0.0, err_msg=k)


# ---- deterministic sequence algorithms ---------------------------------------------------------------
def _bptt(cell, theta, x, head, beta, y, trainable):
    return refnet.bptt(cell, theta, x, None, head, beta, y, trainable=trainable).dtheta


def _tbptt(cell, theta, x, head, beta, y, trainable):
    return tbptt(cell, theta, x, None, head, beta, y, k1=2, k2=3, trainable=trainable).dtheta


def _sequence_vjp(cell, theta, x, head, beta, y, trainable):
    dout = rng(3).normal((T, B, cell.n_out))
    return sequence_vjp(cell, theta, x, None, dout, trainable=trainable).dtheta


def _rflo(cell, theta, x, head, beta, y, trainable):
    return rflo(cell, theta, x, None, head, beta, y, trainable=trainable).dtheta


def _snap(cell, theta, x, head, beta, y, trainable):
    return snap(cell, theta, x, None, head, beta, y, n=1, trainable=trainable).dtheta


DETERMINISTIC = [(_bptt, c) for c in ("elman", "fastrnn", "gru")] + \
                [(_tbptt, c) for c in ("elman", "fastrnn", "gru")] + \
                [(_sequence_vjp, c) for c in ("elman", "fastrnn", "gru")] + \
                [(_rflo, "leaky"), (_snap, "elman"), (_snap, "gru"), (_snap, "leaky")]


@pytest.mark.parametrize("fused", ["1", "0"])
@pytest.mark.parametrize("algorithm, name", DETERMINISTIC, ids=[f"{a.__name__[1:]}-{c}" for a, c in DETERMINISTIC])
def test_deterministic_algorithm_drops_the_frozen_and_keeps_the_rest(algorithm, name, fused, monkeypatch):
    # The fused whole-sequence path (REFNET_FUSED=1, where the cell has one) and the per-step loop.
    # SnAp's restricted layout groups its columns differently (another summation order): rtol 1e-13.
    monkeypatch.setenv("REFNET_FUSED", fused)
    cell, theta, head, beta, x, y, trainable = _problem(name)
    full = algorithm(cell, theta, x, head, beta, y, None)
    part = algorithm(cell, theta, x, head, beta, y, trainable)
    _assert_restricted(part, full, [k for k in cell.param_shapes() if k in trainable],
                       rtol=1e-13 if algorithm is _snap else 0.0)


def test_stacked_sequence_vjp_freezes_per_layer_and_leaves_dx_unchanged():
    cells = [refnet.ElmanRNN(3, 4, "tanh"), refnet.GRU(4, 5)]
    r = rng(1)
    thetas = [c.init(r) for c in cells]
    x, dout = r.normal((T, B, 3)), r.normal((T, B, 5))
    full = stacked_sequence_vjp(cells, thetas, x, None, dout)
    part = stacked_sequence_vjp(cells, thetas, x, None, dout, trainable=[{"weight_ih"}, None])
    _assert_restricted(part.dtheta[0], full.dtheta[0], ["weight_ih"])
    _assert_restricted(part.dtheta[1], full.dtheta[1], list(cells[1].param_shapes()))
    np.testing.assert_array_equal(part.dx, full.dx)
    with pytest.raises(ValueError, match="one collection of names .* per layer"):
        stacked_sequence_vjp(cells, thetas, x, None, dout, trainable=[None])


# ---- sensitivity memory --------------------------------------------------------------------------
def test_rflo_trace_and_snap_entries_hold_the_trainable_parameters_only():
    cell, theta, *_ = _problem("leaky")
    like = np.zeros((1, 1))
    assert rflo_init(cell, 1, like).E.shape == (1, 4, 3 + 4 + 1 + 1)
    assert rflo_init(cell, 1, like, {"weight_hh", "bias_ih"}).E.shape == (1, 4, 4 + 1)
    full, part = snap_pattern(cell, theta, 1), snap_pattern(cell, theta, 1, {"weight_hh"})
    assert int(full.mask.sum()) == 4 * 3 + 16 + 4 + 4 and int(part.mask.sum()) == 16
    with pytest.raises(ValueError, match="no sensitivity entry"):
        snap_pattern(cell, theta, 1, ())


def test_uoro_and_kfrtrl_carry_no_sensitivity_for_frozen_parameters():
    cell = refnet.FastRNN(3, 4)
    like = np.zeros((1, 1))
    assert uoro_init(cell, 2, like).theta_tilde.shape == (2, 12 + 16 + 4 + 2)
    assert uoro_init(cell, 2, like, {"W", "alpha"}).theta_tilde.shape == (2, 12 + 1)
    full, part = kfrtrl_init(cell, 2, like), kfrtrl_init(cell, 2, like, {"U", "alpha"})
    assert full.u.shape == (2, 3 + 4 + 1) and full.M_rest.shape == (2, 4, 2)
    assert part.u.shape == (2, 4) and part.M_rest.shape == (2, 4, 1)
    assert list(part.blocks) == ["U"] and part.blocks["U"] == (0, 4) and list(part.rest) == ["alpha"]


# ---- random estimators ---------------------------------------------------------------------------
ESTIMATORS = [(uoro, "elman"), (uoro, "gru"), (uoro, "fastrnn"), (kfrtrl, "elman"), (kfrtrl, "fastrnn")]


@pytest.mark.parametrize("batch", [1, 3])     # UORO: the VJP path at B = 1, per-example J_θ at B > 1
@pytest.mark.parametrize("estimator, name", ESTIMATORS, ids=[f"{e.__name__}-{c}" for e, c in ESTIMATORS])
def test_estimator_at_one_step_equals_the_full_estimate_restricted(estimator, name, batch):
    # At t = 1 UORO's s̃θ̃ᵀ is ν νᵀ J_θ and KF-RTRL's A ⊗ u is diag(D) ⊗ ĥ whatever ρ0, ρ1, p1, p2:
    # the same signs give the same estimate to rounding (the constants cancel: rtol 1e-12).
    cell, theta, head, beta, x, y, trainable = _problem(name)
    x, y = x[:1, :1].repeat(batch, 1), y[:1, :1].repeat(batch, 1)
    full = estimator(cell, theta, x, None, head, beta, y, rng=rng(5)).dtheta
    part = estimator(cell, theta, x, None, head, beta, y, rng=rng(5), trainable=trainable).dtheta
    _assert_restricted(part, full, [k for k in cell.param_shapes() if k in trainable], rtol=1e-12)


@pytest.mark.parametrize("estimator, name", [(uoro, "elman"), (kfrtrl, "fastrnn")])
def test_restricted_estimator_stays_unbiased_for_the_trainable_columns(estimator, name):
    # Over T = 5 steps the restricted estimate is not the full one restricted (the balancing
    # constants see fewer entries), but its mean is RTRL's: the matrix's z-test (α = 1e-3,
    # Bonferroni over the coordinates) on 600 calls with fixed seeds.
    cell, theta, head, beta, x, y, trainable = _problem(name)
    x, y = x[:, :1], y[:, :1]
    reference = rtrl(cell, theta, x, None, head, beta, y, trainable=trainable).dtheta
    r = rng(11)
    samples = np.stack([np.concatenate([v.ravel() for v in estimator(cell, theta, x, None, head, beta, y, rng=r,
                                                                     trainable=trainable).dtheta.values()])
                        for _ in range(600)])
    g = np.concatenate([v.ravel() for v in reference.values()])
    test = z_test(samples, g)
    assert test.passed, (test.max_z, test.critical)


# ---- one transition, one equilibrium ---------------------------------------------------------------
def test_fpp_grad_drops_the_frozen_and_keeps_the_rest_and_the_state_gradients():
    cell, theta, head, beta, x, y, trainable = _problem("gru")
    r = rng(2)
    s_prev, s_next = r.normal((B, 4), 0.5), r.normal((B, 4), 0.5)
    args = (cell, theta, head, beta, s_prev, x[0], x[1], s_next, y[0], np.full(B, 0.5))
    full, part = fpp_grad(*args), fpp_grad(*args, trainable=trainable)
    _assert_restricted(part.dtheta, full.dtheta, [k for k in cell.param_shapes() if k in trainable])
    np.testing.assert_array_equal(part.ds_prev, full.ds_prev)
    assert part.loss == full.loss


@pytest.mark.parametrize("variant", [rbp, cg_rbp, gmres_rbp, neumann_rbp, "implicit_vjp"],
                         ids=["rbp", "cg_rbp", "gmres_rbp", "neumann_rbp", "implicit_vjp"])
def test_rbp_variants_drop_the_frozen_and_keep_the_rest(variant):
    cell = refnet.ElmanRNN(3, 4, "tanh")
    r = rng(0)
    theta, x = cell.init(r), r.normal((B, 3))
    h = fixed_point(cell, theta, x, tol=1e-14, maxiter=5000).h
    dh = r.normal((B, 4))
    if variant == "implicit_vjp":
        def run(**kw):
            return implicit_vjp(cell, theta, x, h, dh, solve=linear.gmres, **kw)
    else:
        def run(**kw):
            return variant(cell, theta, x, h, dh, **({"K": 50} if variant is neumann_rbp else {}), **kw)
    full, part = run(), run(trainable={"weight_ih"})
    _assert_restricted(part.dtheta, full.dtheta, ["weight_ih"])
    np.testing.assert_array_equal(part.z, full.z)
    np.testing.assert_array_equal(part.dx, full.dx)


# ---- learners ----------------------------------------------------------------------------------------
LEARNERS = {
    "uoro": (UOROLearner, "elman", lambda: {"rng": rng(4)}, lambda l: l.uoro.theta_tilde.shape[1]),
    "kfrtrl": (KFRTRLLearner, "fastrnn", lambda: {"rng": rng(4)},
               lambda l: l.kf.u.shape[1] + (0 if l.kf.M_rest is None else l.kf.M_rest.shape[2])),
    "snap": (SnApLearner, "gru", lambda: {"n": 1}, lambda l: int(l.pattern.mask.sum())),
    "rflo": (RFLOLearner, "leaky", lambda: {}, lambda l: l.rflo.E.shape[2]),
    "fpp": (FPPLearner, "elman", lambda: {"rng": rng(4), "buffer_size": 3}, None),
}


@pytest.mark.parametrize("kind", list(LEARNERS))
def test_learner_never_moves_frozen_parameters_and_carries_less(kind):
    cls, name, extra, carried = LEARNERS[kind]
    cell, theta, head, beta, x, y, trainable = _problem(name)
    full = cls(cell, head, theta, beta, SGD(lr=0.3), batch=B, **extra())
    part = cls(cell, head, theta, beta, SGD(lr=0.3), batch=B, trainable=trainable, **extra())
    for t in range(T):
        full.step(x[t], y[t])
        part.step(x[t], y[t])
    for k in cell.param_shapes():
        if k in trainable:
            assert not np.array_equal(part.theta[k], theta[k]), k
        else:
            np.testing.assert_array_equal(part.theta[k], theta[k], err_msg=k)
            assert not np.array_equal(full.theta[k], theta[k]), k      # the full learner does move them
    if carried is not None:
        assert carried(part) < carried(full)
