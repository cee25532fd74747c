"""refnet's verification matrix: every cell × every algorithm, with the relation it claims.

Each check builds a small random problem on the active backend and dtype
(``REFNET_BACKEND``, ``REFNET_DTYPE``), runs refnet, and measures one
relation (DESIGN.md §4).  Finite differences always evaluate the objective
in float64 (at the same, possibly float32-rounded, point), so a float32 run
measures the float32 gradient's own error, not the noise of a float32
difference quotient; tolerances come from the analytic dtype's row.

=============  ===========================================================
algorithm      relation
=============  ===========================================================
bptt           = FD of L (every step; last step only; under a mask)
tbptt(k1,k2)   = FD of the truncated objective, truncation states fixed
tbptt(2,T)     = BPTT exactly (k2 >= T)
sequence_vjp   = FD of ⟨dout, outputs⟩ + ⟨ds_T, s_T⟩ in θ, x and s_0
jvp/vjp        ⟨u, J v⟩ = ⟨Jᵀ u, v⟩
jacobians      J_s v + J_θ p = JVP(v, p)
taylor         BPTT's Taylor remainder falls as ε²
=============  ===========================================================

plus every head loss against FD.  This module is the one place where
gradcheck imports refnet.
"""
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import refnet
from refnet import heads
from refnet.backend import asarray, get_dtype, rng, to_numpy

from .check import check_grads, compare_grads, dot_product_test, taylor_test
from .tolerances import tolerances_for

__all__ = ["CELLS", "Check", "Row", "checks", "run_check"]

T, B, I, H, O = 5, 3, 3, 4, 3

CELLS = {
    "elman_tanh": lambda: refnet.ElmanRNN(I, H, "tanh"),
    "elman_relu": lambda: refnet.ElmanRNN(I, H, "relu"),
    "irnn": lambda: refnet.IRNN(I, H, input_std=0.5),
    "lstm": lambda: refnet.LSTM(I, H),
    "gru": lambda: refnet.GRU(I, H),
}


@dataclass(frozen=True)
class Row:
    cell: str
    algorithm: str
    relation: str
    max_rel_error: Optional[float]   # None where the measure is not an error (Taylor order)
    tolerance: float
    passed: bool
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Check:
    cell: str
    algorithm: str
    relation: str
    run: Callable   # () -> (max_rel_error or None, tolerance, passed, detail)


class Problem:
    """A seeded random problem for one cell: θ, β, x, s_0, targets and weights."""

    def __init__(self, cell_name, loss=heads.softmax_cross_entropy, weights="every", seed=0):
        r = rng(seed)
        self.cell = CELLS[cell_name]()
        self.theta = self.cell.init(r)
        self.head = refnet.Head(self.cell.n_out, O, loss)
        self.beta = self.head.init(r)
        self.x = r.normal((T, B, I))
        self.s0 = r.normal((B, self.cell.n_state), 0.5)
        if loss.label_target:
            self.y = r.integers(0, O, (T, B))
        else:
            self.y = r.uniform((T, B, O))
        if weights == "every":
            self.weights = heads.every_step(T, B)
        elif weights == "last":
            self.weights = heads.last_step(T, B)
        else:
            self.weights = heads.masked(r.uniform((T, B)) > 0.4)

        self.x64, self.y64, self.w64 = _f64(self.x), _f64(self.y), _f64(self.weights)

    def pack(self, theta, beta, s0):
        """One float64 NumPy dict for gradcheck: theta/…, beta/…, s0."""
        out = {f"theta/{k}": to_numpy(v) for k, v in theta.items()}
        out.update({f"beta/{k}": to_numpy(v) for k, v in beta.items()})
        out["s0"] = to_numpy(s0)
        return out

    def unpack(self, flat):
        """float64 θ, β, s_0 on the active backend, from a gradcheck dict."""
        theta = {k: _f64(flat[f"theta/{k}"]) for k in self.theta}
        beta = {k: _f64(flat[f"beta/{k}"]) for k in self.beta}
        return theta, beta, _f64(flat["s0"])

    def loss(self, flat):
        """L in float64 at the point ``flat``."""
        theta, beta, s0 = self.unpack(flat)
        return refnet.loss(self.cell, theta, self.x64, s0, self.head, beta, self.y64, self.w64)


def _f64(a):
    """``a`` on the active backend in float64 (integer labels stay integers)."""
    a_np = to_numpy(a)
    return asarray(a_np, dtype=a_np.dtype if a_np.dtype.kind in "iu" else np.float64)


def _check_fd(f, point, grads):
    """check_grads with a float64 step and the tolerances of the analytic dtype."""
    row = tolerances_for(get_dtype())
    return check_grads(f, point, grads, eps=tolerances_for(np.float64)["eps"], rtol=row["rtol"],
                       atol=row["atol"], raise_on_failure=False)


def _exact_tol():
    return tolerances_for(get_dtype())["exact"]


def _bptt_fd(cell_name, loss, weights):
    def run():
        p = Problem(cell_name, loss, weights)
        res = refnet.bptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        report = _check_fd(p.loss, p.pack(p.theta, p.beta, p.s0), p.pack(res.dtheta, res.dbeta, res.ds0))
        return report.max_rel_error, report.rtol, report.passed, _worst(report)
    return run


def _tbptt_fd(cell_name, k1, k2):
    def run():
        p = Problem(cell_name)
        res = refnet.tbptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, k1=k1, k2=k2)
        theta64, _, s0_64 = p.unpack(p.pack(p.theta, p.beta, p.s0))
        nominal = refnet.forward(p.cell, theta64, p.x64, s0_64).s

        def truncated(flat):
            theta, beta, s0 = p.unpack(flat)
            return refnet.truncated_loss(p.cell, theta, p.x64, s0, p.head, beta, p.y64, p.w64,
                                         k1=k1, k2=k2, fixed_states=nominal)
        report = _check_fd(truncated, p.pack(p.theta, p.beta, p.s0), p.pack(res.dtheta, res.dbeta, res.ds0))
        return report.max_rel_error, report.rtol, report.passed, _worst(report)
    return run


def _tbptt_equals_bptt(cell_name):
    def run():
        p = Problem(cell_name)
        full = refnet.bptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        trunc = refnet.tbptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, k1=2, k2=T)
        report = compare_grads(p.pack(trunc.dtheta, trunc.dbeta, trunc.ds0),
                               p.pack(full.dtheta, full.dbeta, full.ds0), rtol=_exact_tol(),
                               reference_name="bptt", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, _worst(report)
    return run


def _sequence_vjp_fd(cell_name):
    def run():
        p = Problem(cell_name)
        r = rng(1)
        dout = r.normal((T, B, p.cell.n_out))
        ds_T = r.normal((B, p.cell.n_state))
        res = refnet.sequence_vjp(p.cell, p.theta, p.x, p.s0, dout, ds_T)

        dout64, ds_T64 = _f64(dout), _f64(ds_T)

        def pairing(flat):
            theta = {k: _f64(flat[f"theta/{k}"]) for k in p.theta}
            out = refnet.sequence_vjp(p.cell, theta, _f64(flat["x"]), _f64(flat["s0"]), dout64, ds_T64)
            return float((out.outputs * dout64).sum() + (out.s_T * ds_T64).sum())
        point = {f"theta/{k}": to_numpy(v) for k, v in p.theta.items()}
        point.update(x=to_numpy(p.x), s0=to_numpy(p.s0))
        grads = {f"theta/{k}": to_numpy(v) for k, v in res.dtheta.items()}
        grads.update(x=to_numpy(res.dx), s0=to_numpy(res.ds0))
        report = _check_fd(pairing, point, grads)
        return report.max_rel_error, report.rtol, report.passed, _worst(report)
    return run


def _step_problem(cell_name):
    """One transition at a random point, with random tangents/cotangents."""
    p = Problem(cell_name)
    r = rng(2)
    _, cache = p.cell.step(p.theta, p.s0, p.x[0], 0)
    u = r.normal((B, p.cell.n_state))
    v = r.normal((B, p.cell.n_state))
    dtheta = {k: r.normal(w.shape) for k, w in p.theta.items()}
    dx = r.normal((B, I))
    return p, cache, u, v, dtheta, dx


def _dot_product(cell_name):
    def run():
        p, cache, u, v, dtheta, dx = _step_problem(cell_name)
        Jv = p.cell.step_jvp(p.theta, cache, v, dtheta, dx)
        ds_prev, dparams, dx_bar = p.cell.step_vjp(p.theta, cache, u)
        lhs = float((u * Jv).sum())
        rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + refnet.params.vdot(dparams, dtheta)
        report = dot_product_test(lhs, rhs, rtol=_exact_tol())
        return report.max_rel_error, report.rtol, report.passed, f"<u,Jv>={lhs:.6g}"
    return run


def _jacobians(cell_name):
    def run():
        p, cache, _, v, dtheta, _ = _step_problem(cell_name)
        J_s, J_theta = p.cell.jacobians(p.theta, cache)
        dense = (J_s @ v[:, :, None])[:, :, 0] + J_theta @ p.cell.flat_params(dtheta)
        jvp = p.cell.step_jvp(p.theta, cache, v, dtheta, None)
        report = compare_grads({"J v": to_numpy(dense)}, {"J v": to_numpy(jvp)}, rtol=_exact_tol(),
                               reference_name="jvp", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, f"J_theta {tuple(J_theta.shape)}"
    return run


def _taylor(cell_name):
    def run():
        p = Problem(cell_name)
        res = refnet.bptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        report = taylor_test(p.loss, p.pack(p.theta, p.beta, p.s0), p.pack(res.dtheta, res.dbeta, res.ds0),
                             raise_on_failure=False)
        return None, report.min_order, report.passed, f"order {report.order:.2f} >= {report.min_order}"
    return run


def _head_fd(loss):
    def run():
        r = rng(3)
        head = refnet.Head(H, O, loss)
        beta = head.init(r)
        h = r.normal((B, H), 3.0)
        y = r.integers(0, O, (B,)) if loss.label_target else r.uniform((B, O))
        w = r.uniform((B,))
        _, dh, dbeta = head.loss_and_grad(beta, h, y, w)

        w64 = _f64(w)

        def value(flat):
            beta_ = {k: _f64(flat[k]) for k in beta}
            return float(head.loss_value(beta_, _f64(flat["h"]), _f64(y), w64))
        point = {k: to_numpy(v) for k, v in beta.items()}
        point["h"] = to_numpy(h)
        grads = {k: to_numpy(v) for k, v in dbeta.items()}
        grads["h"] = to_numpy(dh)
        report = _check_fd(value, point, grads)
        return report.max_rel_error, report.rtol, report.passed, _worst(report)
    return run


def _worst(report):
    if not report.params:
        return ""
    p = report.params[0]
    return f"worst {p.name}{list(p.index)}"


def checks():
    """The registered matrix, in display order."""
    out = []
    for name in CELLS:
        out += [
            Check(name, "bptt", "= FD of L (every step, CE)",
                  _bptt_fd(name, heads.softmax_cross_entropy, "every")),
            Check(name, "bptt", "= FD of L (last step, BCE)", _bptt_fd(name, heads.sigmoid_bce, "last")),
            Check(name, "bptt", "= FD of L (masked, MSE)", _bptt_fd(name, heads.mse, "mask")),
            Check(name, "tbptt(1,2)", "= FD of truncated objective", _tbptt_fd(name, 1, 2)),
            Check(name, "tbptt(2,3)", "= FD of truncated objective", _tbptt_fd(name, 2, 3)),
            Check(name, "tbptt(3,3)", "= FD of truncated objective", _tbptt_fd(name, 3, 3)),
            Check(name, f"tbptt(2,{T})", "= bptt (k2 >= T)", _tbptt_equals_bptt(name)),
            Check(name, "sequence_vjp", "= FD of <dout, outputs> + <ds_T, s_T>", _sequence_vjp_fd(name)),
            Check(name, "jvp/vjp", "<u, J v> = <J^T u, v>", _dot_product(name)),
            Check(name, "jacobians", "J_s v + J_theta p = jvp", _jacobians(name)),
            Check(name, "taylor", "BPTT remainder falls as eps^2", _taylor(name)),
        ]
    for loss in heads.LOSSES.values():
        out.append(Check("head", loss.name, "= FD of sum_b w_b l(W h_b + b, y_b)", _head_fd(loss)))
    return out


def run_check(check):
    """Run one check and time it; an exception becomes a failed row carrying its message."""
    start = time.perf_counter()
    try:
        err, tol, passed, detail = check.run()
    except Exception as exc:  # a crash is a failed check, reported, not a dead CLI
        err, tol, passed, detail = None, float("nan"), False, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    if err is not None:
        err = float(err)
        passed = bool(passed) and bool(np.isfinite(err))
    return Row(check.cell, check.algorithm, check.relation, err, float(tol), bool(passed), seconds, detail)
