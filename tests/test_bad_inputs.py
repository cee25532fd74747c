"""The catalogue of bad inputs (issue 11, item 6): each gets a named error.

Every case calls one public entry point with one bad argument and asserts the
exception class and that the message names the argument (``match``).  Cases
are grouped by area; ``test_catalogue_counts`` keeps the per-area counts
honest.  Solver and gradcheck inputs have their own catalogues
(tests/test_bad_inputs_solvers.py, tests/test_bad_inputs_gradcheck.py).
"""
from collections import Counter

import numpy as np
import pytest

import refnet
from refnet import heads, interop, online, optim, sweep, tasks
from refnet.algorithms import (FPPBuffer, bptt, fpp_grad, fpp_loss, fpp_refresh, kfrtrl, loss, rtrl,
                               sequence_vjp, stacked_forward, stacked_sequence_vjp, tbptt, truncated_loss, uoro)
from refnet.algorithms.rtrl import rtrl_update
from refnet.algorithms.kfrtrl import kfrtrl_gradient, kfrtrl_init, kfrtrl_update
from refnet.algorithms.rflo import rflo_init
from refnet.algorithms.snap import snap_init, snap_pattern
from refnet.algorithms.uoro import uoro_gradient, uoro_init
from refnet.interop_keras import grads_from_keras
from refnet.fixtures import bptt_fixture, sequence_vjp_fixture, tbptt_fixture
from refnet.tasks.cycleworld import cycleworld

T, B, I, H, O = 4, 2, 3, 5, 3
CELL = refnet.ElmanRNN(I, H)
THETA = CELL.init(refnet.rng(0))
HEAD = refnet.Head(H, O)
BETA = HEAD.init(refnet.rng(1))
X = refnet.rng(2).normal((T, B, I))
Y = refnet.rng(3).integers(0, O, (T, B))
W1 = np.full(B, 1.0 / B)


def _with(d, **changes):
    out = dict(d)
    out.update(changes)
    return out


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


def _nan_at(a, index):
    a = np.array(a, dtype=float)
    a[index] = np.nan
    return a


def _run(**kw):
    """bptt with one argument replaced."""
    args = dict(cell=CELL, theta=THETA, x=X, s0=None, head=HEAD, beta=BETA, y=Y, weights=None)
    args.update(kw)
    return bptt(**args)


def _learner(cls=online.RTRLLearner, **kw):
    args = dict(cell=CELL, head=HEAD, theta=THETA, beta=BETA, optimiser=optim.SGD(0.1))
    args.update(kw)
    return cls(**args)


def _kf_update(c1, c2):
    """kfrtrl_update at B = 1 after one Elman step, with the given signs."""
    _, cache = CELL.step(THETA, np.zeros((1, H)), X[0, :1], 0)
    return kfrtrl_update(CELL, THETA, cache, kfrtrl_init(CELL, 1, X), c1, c2)


def _buffer():
    return FPPBuffer(3, np.zeros((1, H)), (1, I), (1,), "int64")


CASES = [
    # area, id, call, exception, match (a regex that names the argument)
    # ---- cells
    ("cells", "input_size 0", lambda: refnet.ElmanRNN(0, 4), ValueError, "input_size must be a positive int"),
    ("cells", "hidden_size str", lambda: refnet.LSTM(3, "4"), ValueError, "hidden_size must be a positive int"),
    ("cells", "elman nonlinearity", lambda: refnet.ElmanRNN(3, 4, "sigmoid"), ValueError, "nonlinearity must be"),
    ("cells", "ernn K 0", lambda: refnet.ERNN(3, 4, K=0), ValueError, "K must be a positive int"),
    ("cells", "ernn sequence_length 0", lambda: refnet.ERNN(3, 4, sequence_length=0), ValueError,
     "sequence_length must be None or a positive int"),
    ("cells", "fast weights lam 2", lambda: refnet.FastWeights(3, 4, lam=2.0), ValueError, "lam must be"),
    ("cells", "attention capacity 0", lambda: refnet.FastWeightsAttention(3, 4, capacity=0), ValueError,
     "capacity must be an int >= 1"),
    ("cells", "hopfield output_size 0", lambda: refnet.Hopfield(3, 4, 0), ValueError, "output_size must be"),
    ("cells", "irnn scale NaN", lambda: refnet.IRNN(3, 4, scale=float("nan")), ValueError,
     "scale must be a finite number"),
    ("cells", "irnn input_std < 0", lambda: refnet.IRNN(3, 4, input_std=-1.0), ValueError,
     r"input_std must be a finite number in \[0.0"),
    ("cells", "hopfield a 0", lambda: refnet.Hopfield(3, 4, 2, a=0.0), ValueError, r"a must be a finite number in \(0.0"),
    ("cells", "hopfield b a string", lambda: refnet.Hopfield(3, 4, 2, b="0.5"), TypeError, "b must be a real number"),
    ("cells", "hopfield init_std inf", lambda: refnet.Hopfield(3, 4, 2, init_std=float("inf")), ValueError,
     "init_std must be a finite number"),
    ("cells", "fastrnn alpha_init NaN", lambda: refnet.FastRNN(3, 4, alpha_init=float("nan")), ValueError,
     "alpha_init must be a finite number"),
    ("cells", "fastgrnn nu_init a string", lambda: refnet.FastGRNN(3, 4, nu_init="-4"), TypeError,
     "nu_init must be a real number"),
    ("cells", "ernn eta_init inf", lambda: refnet.ERNN(3, 4, eta_init=float("inf")), ValueError,
     "eta_init must be a finite number"),
    ("cells", "fast weights eta a string", lambda: refnet.FastWeights(3, 4, eta="0.5"), TypeError,
     "eta must be a finite real number"),
    ("cells", "fastrnn nonlinearity", lambda: refnet.FastRNN(3, 4, nonlinearity="gelu"), ValueError,
     "nonlinearity must be one of"),
    ("cells", "fastgrnn gate", lambda: refnet.FastGRNN(3, 4, gate_nonlinearity="x"), ValueError,
     "gate_nonlinearity must be one of"),
    ("cells", "check_params missing key", lambda: CELL.check_params(_without(THETA, "bias_hh")), ValueError,
     r"params must have exactly the keys .* missing \['bias_hh'\]"),
    # ---- bptt / tbptt / sequence_vjp / loss / stacked
    ("bptt", "T = 0", lambda: _run(x=np.zeros((0, B, I)), y=np.zeros((0, B), np.int64)), ValueError,
     r"x must hold at least one time step \(T >= 1\), got T = 0"),
    ("bptt", "B = 0", lambda: _run(x=np.zeros((T, 0, I)), y=np.zeros((T, 0), np.int64)), ValueError,
     r"x must hold at least one sequence \(B >= 1\), got B = 0"),
    ("bptt", "x integer", lambda: _run(x=np.ones((T, B, I), np.int64)), TypeError,
     "x must be a floating array, got dtype int64"),
    ("bptt", "x ragged list", lambda: _run(x=[[[1.0, 2.0, 3.0]], [[1.0]]]), ValueError,
     "x must be a rectangular array"),
    ("bptt", "x a string", lambda: _run(x="abc"), TypeError, "x must be an array"),
    ("bptt", "x NaN", lambda: _run(x=_nan_at(X, (2, 1, 0))), ValueError,
     r"x must be finite, got nan at index \(2, 1, 0\)"),
    ("bptt", "x wrong width", lambda: _run(x=np.zeros((T, B, I + 1))), ValueError,
     r"x must have shape \(\*, \*, 3\)"),
    ("bptt", "x float32 with float64 theta", lambda: _run(x=X.astype(np.float32)), TypeError,
     "mixed dtypes: x is float32"),
    ("bptt", "theta missing param", lambda: _run(theta=_without(THETA, "weight_hh")), ValueError,
     r"theta must have exactly the keys .* missing \['weight_hh'\]"),
    ("bptt", "theta extra param", lambda: _run(theta=_with(THETA, extra=np.zeros(2))), ValueError,
     r"unexpected \['extra'\]"),
    ("bptt", "theta not a dict", lambda: _run(theta=list(THETA.values())), TypeError,
     "theta must be a dict of arrays"),
    ("bptt", "theta wrong shape", lambda: _run(theta=_with(THETA, weight_hh=np.zeros((H, H + 1)))), ValueError,
     r"theta\['weight_hh'\] must have shape \(5, 5\)"),
    ("bptt", "theta integer", lambda: _run(theta=_with(THETA, bias_ih=np.zeros(H, np.int64))), TypeError,
     r"theta\['bias_ih'\] must be a floating array"),
    ("bptt", "cell not a cell", lambda: _run(cell="elman"), TypeError, "cell must be a refnet cell"),
    ("bptt", "head not a head", lambda: _run(head=object()), TypeError, "head must be a refnet.heads.Head"),
    ("bptt", "head n_in mismatch", lambda: _run(head=refnet.Head(H + 1, O),
                                                beta=refnet.Head(H + 1, O).init(refnet.rng(0))), ValueError,
     "head.n_in must equal cell.n_out = 5, got 6"),
    ("bptt", "labels out of range", lambda: _run(y=np.full((T, B), O, np.int64)), ValueError,
     r"y must hold labels in \[0, 3\)"),
    ("bptt", "float labels for cross-entropy", lambda: _run(y=Y.astype(float)), TypeError,
     "y must be integer class labels"),
    ("bptt", "weights wrong shape", lambda: _run(weights=np.ones((T, B + 1))), ValueError,
     r"weights must have shape \(4, 2\)"),
    ("bptt", "s0 wrong shape", lambda: _run(s0=np.zeros((B, H + 1))), ValueError, r"s0 must have shape \(2, 5\)"),
    ("bptt", "beta missing key", lambda: _run(beta=_without(BETA, "bias")), ValueError,
     r"beta must have exactly the keys"),
    ("bptt", "tbptt k1 0", lambda: tbptt(CELL, THETA, X, None, HEAD, BETA, Y, k1=0, k2=3), ValueError,
     "k1 must be an int >= 1, got 0"),
    ("bptt", "tbptt k2 < k1", lambda: tbptt(CELL, THETA, X, None, HEAD, BETA, Y, k1=3, k2=2), ValueError,
     "k2 must be >= k1"),
    ("bptt", "tbptt k2 float", lambda: tbptt(CELL, THETA, X, None, HEAD, BETA, Y, k1=1, k2=2.0), TypeError,
     "k2 must be an int >= 1, got float"),
    ("bptt", "truncated_loss fixed_states length",
     lambda: truncated_loss(CELL, THETA, X, None, HEAD, BETA, Y, k1=1, k2=1, fixed_states=[None]), ValueError,
     r"fixed_states must hold s\[0..T\] \(5 states\), got 1"),
    ("bptt", "loss with NaN weights",
     lambda: loss(CELL, THETA, X, None, HEAD, BETA, Y, _nan_at(np.ones((T, B)), (0, 0))),
     ValueError, "weights must be finite"),
    ("bptt", "sequence_vjp dout shape", lambda: sequence_vjp(CELL, THETA, X, None, np.zeros((T, B, H + 1))),
     ValueError, r"dout must have shape \(4, 2, 5\)"),
    ("bptt", "sequence_vjp ds_T shape", lambda: sequence_vjp(CELL, THETA, X, None, np.zeros((T, B, H)),
                                                             np.zeros((B + 1, H))),
     ValueError, r"ds_T must have shape \(2, 5\)"),
    ("bptt", "stacked cells not a list", lambda: stacked_forward(CELL, [THETA], X), TypeError,
     "cells must be a list"),
    ("bptt", "stacked widths", lambda: stacked_forward([CELL, refnet.ElmanRNN(I, H)], [THETA, THETA], X),
     ValueError, r"cells\[1\].input_size must be 5"),
    ("bptt", "stacked s0s length", lambda: stacked_forward([CELL], [THETA], X, [None, None]), ValueError,
     r"s0s must hold one initial state per layer \(1\), got 2"),
    ("bptt", "stacked ds_T shape", lambda: stacked_sequence_vjp([CELL], [THETA], X, None, np.zeros((T, B, H)),
                                                                [np.zeros((B, 1))]),
     ValueError, r"ds_T\[0\] must have shape \(2, 5\)"),
    # ---- rtrl / uoro / kfrtrl
    ("rtrl", "rtrl B = 0", lambda: rtrl(CELL, THETA, np.zeros((T, 0, I)), None, HEAD, BETA, np.zeros((T, 0), np.int64)),
     ValueError, "B >= 1"),
    ("rtrl", "uoro B = 0", lambda: uoro(CELL, THETA, np.zeros((T, 0, I)), None, HEAD, BETA, np.zeros((T, 0), np.int64),
                                        rng=refnet.rng(0)),
     ValueError, "B >= 1"),
    ("rtrl", "uoro rng int", lambda: uoro(CELL, THETA, X, None, HEAD, BETA, Y, rng=0), TypeError,
     "rng must be a refnet.backend.Rng"),
    ("rtrl", "uoro eps 0", lambda: uoro(CELL, THETA, X, None, HEAD, BETA, Y, rng=refnet.rng(0), eps=0.0),
     ValueError, r"eps must be a finite number in \(0.0"),
    ("rtrl", "kfrtrl on a GRU", lambda: kfrtrl(refnet.GRU(I, H), refnet.GRU(I, H).init(refnet.rng(0)), X, None,
                                               HEAD, BETA, Y, rng=refnet.rng(0)),
     TypeError, "kronecker_factors.*got GRU"),
    ("rtrl", "rtrl_update shapes", lambda: rtrl_update(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)), np.zeros((1, 2, 4))),
     ValueError, "J_s must have shape"),
    ("rtrl", "rtrl_update out is M", lambda: rtrl_update(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)),
                                                         *(2 * [np.zeros((1, 2, 3))])),
     ValueError, "out must be a new"),
    ("rtrl", "uoro_init batch 0", lambda: uoro_init(CELL, 0, X), ValueError, "batch must be an int >= 1, got 0"),
    ("rtrl", "uoro_gradient ds shape", lambda: uoro_gradient(uoro_init(CELL, 1, X), np.zeros((1, H + 1))),
     ValueError, r"ds must have shape \(1, 5\)"),
    ("rtrl", "kfrtrl_update c1 of length 3 at B = 1", lambda: _kf_update(np.ones(3), np.ones(1)), ValueError,
     r"c1 must have shape \(1,\), got \(3,\)"),
    ("rtrl", "kfrtrl_update c2 of length 1 at B = 2", lambda: kfrtrl_update(
        CELL, THETA, CELL.step(THETA, np.zeros((2, H)), X[0], 0)[1], kfrtrl_init(CELL, 2, X), np.ones(2),
        np.ones(1)), ValueError, r"c2 must have shape \(2,\)"),
    ("rtrl", "kfrtrl_gradient ds shape", lambda: kfrtrl_gradient(kfrtrl_init(CELL, 1, X), np.zeros((2, H)),
                                                                 CELL.param_shapes()),
     ValueError, r"ds must have shape \(1, 5\)"),
    ("rtrl", "rflo_init batch 0", lambda: rflo_init(refnet.LeakyRNN(I, H, alpha=0.5), 0, X), ValueError,
     "batch must be an int >= 1, got 0"),
    ("rtrl", "rflo_init like a list", lambda: rflo_init(refnet.LeakyRNN(I, H, alpha=0.5), 1, [0.0]), TypeError,
     "like must be an array"),
    ("rtrl", "snap_init batch -1", lambda: snap_init(snap_pattern(CELL, THETA, 1), -1, X), ValueError,
     "batch must be an int >= 1, got -1"),
    ("rtrl", "snap_init like a float", lambda: snap_init(snap_pattern(CELL, THETA, 1), 1, 0.0), TypeError,
     "like must be an array"),
    ("rtrl", "snap_init pattern a dict", lambda: snap_init({}, 1, X), TypeError, "pattern must be a SnApPattern"),
    ("rtrl", "kfrtrl_init like a list", lambda: kfrtrl_init(CELL, 1, [0.0]), TypeError, "like must be an array"),
    # ---- fpp
    ("fpp", "fpp_grad missing parameter",
     lambda: fpp_grad(CELL, _without(THETA, "weight_ih"), HEAD, BETA, np.zeros((B, H)), X[0], X[1],
                      np.zeros((B, H)), Y[0], W1),
     ValueError, r"theta must have exactly the keys .* missing \['weight_ih'\]"),
    ("fpp", "fpp_grad w shape", lambda: fpp_grad(CELL, THETA, HEAD, BETA, np.zeros((B, H)), X[0], X[1],
                                                 np.zeros((B, H)), Y[0], np.ones(B + 1)),
     ValueError, r"w must have shape \(2,\)"),
    ("fpp", "fpp_loss state_weight < 0", lambda: fpp_loss(CELL, THETA, HEAD, BETA, np.zeros((B, H)), X[0], X[1],
                                                           np.zeros((B, H)), Y[0], W1, state_weight=-1.0),
     ValueError, "state_weight must be a finite number"),
    ("fpp", "fpp_refresh t < 0", lambda: fpp_refresh(CELL, THETA, np.zeros((B, H)), X[0], X[1], t=-1), ValueError,
     "t must be an int >= 0"),
    ("fpp", "fpp_grad labels out of range", lambda: fpp_grad(CELL, THETA, HEAD, BETA, np.zeros((B, H)), X[0], X[1],
                                                             np.zeros((B, H)), np.full(B, 7), W1),
     ValueError, r"y must hold labels in \[0, 3\)"),
    ("fpp", "fpp_grad s_next NaN", lambda: fpp_grad(CELL, THETA, HEAD, BETA, np.zeros((B, H)), X[0], X[1],
                                                    _nan_at(np.zeros((B, H)), (1, 2)), Y[0], W1),
     ValueError, r"s_next must be finite, got nan at index \(1, 2\)"),
    ("fpp", "buffer capacity 0", lambda: FPPBuffer(0, np.zeros((1, H)), (1, I), (1,), "int64"), ValueError,
     "capacity must be an int >= 1, got 0"),
    ("fpp", "sampling an empty buffer", lambda: _buffer().uniform_index(0.5), ValueError,
     "the buffer holds no complete transition yet"),
    ("fpp", "prioritised sampling of an empty buffer", lambda: _buffer().prioritised_index(0.5), ValueError,
     "the buffer holds no complete transition yet"),
    ("fpp", "buffer push NaN", lambda: _buffer().push(np.full((1, I), np.nan), np.zeros((1, H))), ValueError,
     "x must be finite"),
    ("fpp", "buffer push wrong shape", lambda: _buffer().push(np.zeros((1, I)), np.zeros((2, H))), ValueError,
     r"s must have shape \(1, 5\)"),
    # ---- online learners
    ("learners", "optimiser None", lambda: _learner(optimiser=None), TypeError,
     "optimiser must be a refnet.optim optimiser.*got NoneType"),
    ("learners", "optimiser nested list", lambda: _learner(optimiser=[[optim.SGD(0.1)]]), TypeError,
     "optimiser must be a refnet.optim optimiser.*got list"),
    ("learners", "s0 batch 0", lambda: _learner(s0=np.zeros((0, H))), ValueError,
     r"s0 must hold at least one stream \(B >= 1\)"),
    ("learners", "batch 0", lambda: _learner(batch=0), ValueError, "batch must be an int >= 1, got 0"),
    ("learners", "FPP state_weight a string", lambda: _learner(online.FPPLearner, rng=refnet.rng(0), state_weight="x"),
     TypeError, "state_weight must be a finite number >= 0"),
    ("learners", "FPP state_lr NaN", lambda: _learner(online.FPPLearner, rng=refnet.rng(0), state_lr=float("nan")),
     ValueError, "state_lr must be a finite number >= 0"),
    ("learners", "FPP buffer_size 0", lambda: _learner(online.FPPLearner, rng=refnet.rng(0), buffer_size=0),
     ValueError, "buffer_size must be an int >= 1, got 0"),
    ("learners", "TBPTT k 0", lambda: _learner(online.TBPTTLearner, k=0), ValueError, "k must be an int >= 1"),
    ("learners", "UORO eps negative", lambda: _learner(online.UOROLearner, rng=refnet.rng(0), eps=-1.0),
     ValueError, "eps must be a finite number"),
    ("learners", "FPP prioritised not a bool", lambda: _learner(online.FPPLearner, rng=refnet.rng(0),
                                                                prioritised="yes"),
     TypeError, "prioritised must be a bool"),
    ("learners", "step x NaN", lambda: _learner().step(np.full((1, I), np.nan), np.zeros(1, np.int64)), ValueError,
     "x must be finite"),
    ("learners", "step y out of range", lambda: _learner().step(np.zeros((1, I)), np.full(1, 9)), ValueError,
     r"y must hold labels in \[0, 3\)"),
    ("learners", "step x float32", lambda: _learner().step(np.zeros((1, I), np.float32), np.zeros(1, np.int64)),
     TypeError, "x must have the learner's dtype float64"),
    ("learners", "learner cell not a cell", lambda: _learner(cell=None), TypeError, "cell must be a refnet cell"),
    # ---- optimisers
    ("optim", "SGD lr negative", lambda: optim.SGD(-0.1), ValueError, "lr must be a finite number >= 0"),
    ("optim", "SGD lr a string", lambda: optim.SGD("a"), TypeError, "lr must be a real number"),
    ("optim", "SGD momentum a bool", lambda: optim.SGD(0.1, momentum=True), TypeError, "momentum must be a real number"),
    ("optim", "Adam beta2 None", lambda: optim.Adam(beta2=None), TypeError, "beta2 must be a real number"),
    ("optim", "Adagrad eps a string", lambda: optim.Adagrad(eps="1e-10"), TypeError, "eps must be a real number"),
    ("optim", "Adam beta1 1", lambda: optim.Adam(beta1=1.0), ValueError, r"beta1 must be a number in \[0, 1\)"),
    ("optim", "Adagrad eps 0", lambda: optim.Adagrad(eps=0.0), ValueError, "eps must be a finite number > 0"),
    ("optim", "init of a list", lambda: optim.Adam().init([np.zeros(2)]), TypeError, "params must be a non-empty dict"),
    ("optim", "update grads missing key", lambda: optim.SGD(0.1).update({"w": np.zeros(2)}, {"v": np.zeros(2)},
                                                                        optim.SGD(0.1).init({"w": np.zeros(2)})),
     ValueError, r"grads must have the keys of params \['w'\]"),
    ("optim", "update NaN gradient", lambda: optim.Adagrad().update({"w": np.zeros(2)}, {"w": np.full(2, np.nan)},
                                                                    optim.Adagrad().init({"w": np.zeros(2)})),
     ValueError, r"grads\['w'\] must be finite"),
    ("optim", "update foreign state", lambda: optim.Adam().update({"w": np.zeros(2)}, {"w": np.zeros(2)},
                                                                  optim.SGD(0.1).init({"w": np.zeros(2)})),
     TypeError, "state must be the AdamState"),
    # ---- heads
    ("heads", "Head n_out 0", lambda: refnet.Head(3, 0), ValueError, "n_out must be a positive int"),
    ("heads", "Head loss a string", lambda: refnet.Head(3, 2, "mse"), TypeError, "loss must be one of"),
    ("heads", "MLPHead n_hidden 0", lambda: refnet.MLPHead(3, 2, n_hidden=0), ValueError,
     "n_hidden must be a positive int"),
    ("heads", "loss_and_grad h shape", lambda: HEAD.loss_and_grad(BETA, np.zeros((B, H + 1)), Y[0], W1), ValueError,
     r"h must have shape \(\*, 5\)"),
    ("heads", "loss_value w shape", lambda: HEAD.loss_value(BETA, np.zeros((B, H)), Y[0], np.ones(B + 1)), ValueError,
     r"w must have shape \(2,\)"),
    ("heads", "forward beta missing", lambda: HEAD.forward(_without(BETA, "weight"), np.zeros((B, H))), ValueError,
     r"beta must have exactly the keys"),
    ("heads", "mse target NaN", lambda: refnet.Head(H, 2, heads.mse).loss_value(
        refnet.Head(H, 2, heads.mse).init(refnet.rng(0)), np.zeros((1, H)), np.full((1, 2), np.nan), np.ones(1)),
     ValueError, "y must be finite"),
    ("heads", "every_step T 0", lambda: refnet.every_step(0, B), ValueError, "T must be an int >= 1, got 0"),
    ("heads", "last_step B 0", lambda: refnet.last_step(T, 0), ValueError, "B must be an int >= 1, got 0"),
    ("heads", "last_step T float", lambda: refnet.last_step(2.0, B), TypeError, "T must be an int >= 1"),
    ("heads", "masked all false", lambda: refnet.masked(np.zeros((T, B), bool)), ValueError,
     "mask must select at least one"),
    # ---- interop
    ("interop", "from_torch zero-width weight_hh", lambda: interop.from_torch(
        {"weight_ih_l0": np.zeros((0, 3)), "weight_hh_l0": np.zeros((0, 0))}), ValueError,
     "weight_hh_l0 and weight_ih_l0 must be non-empty"),
    ("interop", "from_torch unknown key", lambda: interop.from_torch({"weight_hr_l0": np.zeros((2, 2))}), ValueError,
     "source has keys with no refnet counterpart"),
    ("interop", "from_torch nonlinearity", lambda: interop.from_torch(
        {"weight_ih_l0": np.zeros((2, 3)), "weight_hh_l0": np.zeros((2, 2))}, nonlinearity="gelu"), ValueError,
     "nonlinearity must be 'tanh' or 'relu'"),
    ("interop", "from_torch NaN weight", lambda: interop.from_torch(
        {"weight_ih_l0": np.zeros((2, 3)), "weight_hh_l0": _nan_at(np.zeros((2, 2)), (0, 1))}), ValueError,
     r"source\['weight_hh_l0'\] must be finite"),
    ("interop", "grads_from_keras NaN kernel", lambda: grads_from_keras(
        "SimpleRNN", [_nan_at(np.zeros((3, 2)), (1, 0)), np.zeros((2, 2)), np.zeros(2)]), ValueError,
     r"dweights\['kernel'\] must be finite, got nan at index \(1, 0\)"),
    ("interop", "grads_from_keras overflow to float32", lambda: grads_from_keras(
        "SimpleRNN", [np.zeros((3, 2)), np.full((2, 2), 1e300), np.zeros(2)], dtype="float32"), ValueError,
     "dweights must be finite in float32.*'weight_hh'"),
    ("interop", "to_torch of an int", lambda: interop.to_torch(3, tensors=False), TypeError,
     "params must be a params dict"),
    ("interop", "state_from_torch 2-d h0", lambda: interop.state_from_torch(np.zeros((2, 3))), ValueError,
     r"h0 must have shape \(num_layers, B, H\)"),
    ("interop", "from_gate_dict missing keys", lambda: interop.from_gate_dict(CELL, {"W_ih": np.zeros((H, I))}),
     ValueError, "gates must have exactly the keys"),
    ("interop", "to_flax of a FastRNN", lambda: interop.to_flax(refnet.FastRNN(I, H),
                                                                refnet.FastRNN(I, H).init(refnet.rng(0))),
     TypeError, "cell must be a refnet ElmanRNN, IRNN, LSTM or GRU, got FastRNN"),
    ("interop", "to_gate_dict missing param", lambda: interop.to_gate_dict(CELL, _without(THETA, "bias_hh")),
     ValueError, r"theta must have exactly the keys"),
    ("interop", "carry_from_flax LSTM not a pair", lambda: interop.carry_from_flax(refnet.LSTM(I, H), np.zeros((1, H))),
     TypeError, r"carry must be Flax's LSTM carry \(c, h\)"),
    # ---- fixtures exporters
    ("fixtures", "unknown cell", lambda: bptt_fixture("rnn"), ValueError, "cell must be one of"),
    ("fixtures", "T 0", lambda: bptt_fixture("gru", T=0), ValueError, "T must be an int >= 1, got 0"),
    ("fixtures", "output_size 0", lambda: bptt_fixture("gru", output_size=0), ValueError,
     "output_size must be an int >= 1, got 0"),
    ("fixtures", "tbptt k1 0", lambda: tbptt_fixture("gru", k1=0), ValueError, "k1 must be an int >= 1, got 0"),
    ("fixtures", "seed a string", lambda: sequence_vjp_fixture("gru", seed="0"), TypeError, "seed must be an int"),
    ("fixtures", "num_layers 0", lambda: sequence_vjp_fixture("lstm", num_layers=0), ValueError,
     "num_layers must be an int >= 1, got 0"),
    # ---- tasks and sweeps
    ("tasks", "cycleworld p 1", lambda: cycleworld(1, 10), ValueError, "p must be an int >= 2, got 1"),
    ("tasks", "cycleworld phase >= p", lambda: cycleworld(3, 10, phase=3), ValueError, r"phase must be in \[0, p\)"),
    ("tasks", "cycleworld steps float", lambda: cycleworld(3, 10.0), TypeError, "steps must be an int"),
    ("tasks", "random_walks n_per_class 0", lambda: tasks.random_walks.random_walks(0), ValueError,
     "n_per_class must be an int >= 1"),
    ("tasks", "one_hot of floats", lambda: tasks.associative_retrieval.one_hot(np.zeros(3)), ValueError,
     "codes must have shape"),
    ("tasks", "sweep grid axis not a list", lambda: sweep.grid(seed=3), TypeError,
     "axis 'seed' must be a list of values"),
    ("tasks", "sweep points not dicts", lambda: sweep.run_sweep(dict, [1, 2], "/dev/null"), TypeError,
     "points must be a list of dicts"),
]

IDS = [f"{area}: {name}" for area, name, *_ in CASES]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("area, name, call, exception, match", CASES, ids=IDS)
def test_bad_input_is_named(area, name, call, exception, match):
    with pytest.raises(exception, match=match):
        call()


def test_catalogue_counts():
    counts = Counter(area for area, *_ in CASES)
    assert len(set(IDS)) == len(IDS), "every case has its own name"
    assert len(CASES) >= 50
    # every area of the brief has cases
    assert set(counts) == {"cells", "bptt", "rtrl", "fpp", "learners", "optim", "heads", "interop", "fixtures",
                           "tasks"}
    assert min(counts.values()) >= 5


@pytest.mark.parametrize("cls", [online.TBPTTLearner, online.RTRLLearner, online.UOROLearner, online.KFRTRLLearner,
                                 online.FPPLearner], ids=lambda c: c.__name__)
def test_learner_is_not_poisoned_by_a_bad_observation_or_target(cls):
    """good, bad (raises), good: the learner ends where one that never saw the bad one ends (item 4)."""
    def make():
        extra = {"k": 2} if cls is online.TBPTTLearner else {} if cls is online.RTRLLearner else \
            {"rng": refnet.rng(5)}
        return cls(CELL, HEAD, THETA, BETA, optim.Adam(0.01), batch=B, **extra)

    seen, clean = make(), make()
    for t in range(3):
        seen.step(X[t], Y[t])
        clean.step(X[t], Y[t])
    bad_inputs = [(_nan_at(X[3], (0, 1)), Y[3]), (X[3], np.full(B, O)), (np.full((B, I), np.inf), Y[3]),
                  (X[3], Y[3].astype(float))]
    for x_bad, y_bad in bad_inputs:
        with pytest.raises((ValueError, TypeError), match=r"\b[xy] must"):
            seen.step(x_bad, y_bad)
    with pytest.raises(ValueError, match="y must hold labels"):
        seen.learn(np.full(B, -1))        # learn() alone: rejected before the loss or the optimiser run
    fresh_seen, fresh_clean = seen.step(X[3], Y[3]), clean.step(X[3], Y[3])
    assert fresh_seen.loss == fresh_clean.loss
    np.testing.assert_array_equal(seen.w, clean.w)
    np.testing.assert_array_equal(seen.s, clean.s)
    assert seen.t == clean.t
