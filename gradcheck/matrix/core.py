"""refnet's verification matrix: every cell × every algorithm, with the relation it claims.

Each check builds a small random problem on the active backend and dtype
(``REFNET_BACKEND``, ``REFNET_DTYPE``), runs refnet, and measures one
relation (the README's capability matrix).  Finite differences always evaluate the objective
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

plus every head loss against FD.
"""
import refnet
from refnet import heads
from refnet.backend import rng, to_numpy

from ..check import compare_grads, dot_product_test, taylor_test
from .common import CELLS, B, Check, H, I, O, Problem, T, check_fd, exact_tol, f64, worst

__all__ = ["checks", "cell_checks"]


def _bptt_fd(cell, loss, weights):
    def run():
        p = Problem(cell, loss, weights)
        res = refnet.bptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        report = check_fd(p.loss, p.pack(p.theta, p.beta, p.s0), p.pack(res.dtheta, res.dbeta, res.ds0))
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _tbptt_fd(cell, k1, k2):
    def run():
        p = Problem(cell)
        res = refnet.tbptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, k1=k1, k2=k2)
        theta64, _, s0_64 = p.unpack(p.pack(p.theta, p.beta, p.s0))
        nominal = refnet.forward(p.cell, theta64, p.x64, s0_64).s

        def truncated(flat):
            theta, beta, s0 = p.unpack(flat)
            return refnet.truncated_loss(p.cell, theta, p.x64, s0, p.head, beta, p.y64, p.w64,
                                         k1=k1, k2=k2, fixed_states=nominal)
        report = check_fd(truncated, p.pack(p.theta, p.beta, p.s0), p.pack(res.dtheta, res.dbeta, res.ds0))
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _tbptt_equals_bptt(cell):
    def run():
        p = Problem(cell)
        full = refnet.bptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        trunc = refnet.tbptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, k1=2, k2=T)
        report = compare_grads(p.pack(trunc.dtheta, trunc.dbeta, trunc.ds0),
                               p.pack(full.dtheta, full.dbeta, full.ds0), rtol=exact_tol(),
                               reference_name="bptt", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _sequence_vjp_fd(cell):
    def run():
        p = Problem(cell)
        r = rng(1)
        dout = r.normal((T, B, p.cell.n_out))
        ds_T = r.normal((B, p.cell.n_state))
        res = refnet.sequence_vjp(p.cell, p.theta, p.x, p.s0, dout, ds_T)

        dout64, ds_T64 = f64(dout), f64(ds_T)

        def pairing(flat):
            theta = {k: f64(flat[f"theta/{k}"]) for k in p.theta}
            out = refnet.sequence_vjp(p.cell, theta, f64(flat["x"]), f64(flat["s0"]), dout64, ds_T64)
            return float((out.outputs * dout64).sum() + (out.s_T * ds_T64).sum())
        point = {f"theta/{k}": to_numpy(v) for k, v in p.theta.items()}
        point.update(x=to_numpy(p.x), s0=to_numpy(p.s0))
        grads = {f"theta/{k}": to_numpy(v) for k, v in res.dtheta.items()}
        grads.update(x=to_numpy(res.dx), s0=to_numpy(res.ds0))
        report = check_fd(pairing, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _step_problem(cell):
    """One transition at a random point, with random tangents/cotangents."""
    p = Problem(cell)
    r = rng(2)
    _, cache = p.cell.step(p.theta, p.s0, p.x[0], 0)
    u = r.normal((B, p.cell.n_state))
    v = r.normal((B, p.cell.n_state))
    dtheta = {k: r.normal(w.shape) for k, w in p.theta.items()}
    dx = r.normal((B, I))
    return p, cache, u, v, dtheta, dx


def _dot_product(cell):
    def run():
        p, cache, u, v, dtheta, dx = _step_problem(cell)
        Jv = p.cell.step_jvp(p.theta, cache, v, dtheta, dx)
        ds_prev, dparams, dx_bar = p.cell.step_vjp(p.theta, cache, u)
        lhs = float((u * Jv).sum())
        rhs = float((ds_prev * v).sum() + (dx_bar * dx).sum()) + refnet.params.vdot(dparams, dtheta)
        report = dot_product_test(lhs, rhs, rtol=exact_tol())
        return report.max_rel_error, report.rtol, report.passed, f"<u,Jv>={lhs:.6g}"
    return run


def _jacobians(cell):
    def run():
        p, cache, _, v, dtheta, _ = _step_problem(cell)
        J_s, J_theta = p.cell.jacobians(p.theta, cache)
        dense = (J_s @ v[:, :, None])[:, :, 0] + J_theta @ p.cell.flat_params(dtheta)
        jvp = p.cell.step_jvp(p.theta, cache, v, dtheta, None)
        report = compare_grads({"J v": to_numpy(dense)}, {"J v": to_numpy(jvp)}, rtol=exact_tol(),
                               reference_name="jvp", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, f"J_theta {tuple(J_theta.shape)}"
    return run


def _taylor(cell):
    def run():
        p = Problem(cell)
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

        w64 = f64(w)

        def value(flat):
            beta_ = {k: f64(flat[k]) for k in beta}
            return float(head.loss_value(beta_, f64(flat["h"]), f64(y), w64))
        point = {k: to_numpy(v) for k, v in beta.items()}
        point["h"] = to_numpy(h)
        grads = {k: to_numpy(v) for k, v in dbeta.items()}
        grads["h"] = to_numpy(dh)
        report = check_fd(value, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def cell_checks(name, cell):
    """The standard rows for one cell: every algorithm of this module and every relation.

    ``name`` labels the rows; ``cell`` is a name in :data:`CELLS` or a
    zero-argument factory returning any cell under the contract, so a new
    cell's module registers itself with ``cell_checks("mycell", lambda: MyCell(I, H))``
    (the problems feed inputs of width ``common.I``).

    Parameters
    ----------
    name : str
        The rows' cell label.
    cell : str or callable
        A name in :data:`~gradcheck.matrix.common.CELLS`, or a zero-argument
        factory returning a cell with input width ``common.I``.

    Returns
    -------
    list of Check
        The 11 rows of the module docstring's table: BPTT = FD (three losses
        and weightings), TBPTT(1, 2), (2, 3), (3, 3) = FD, TBPTT(2, T) = BPTT,
        sequence VJP = FD, the JVP/VJP dot product, Jacobians = JVP, Taylor order.

    Raises
    ------
    None
        Nothing is built here: a bad ``cell`` surfaces when a row's ``run``
        builds its :class:`~gradcheck.matrix.common.Problem` (KeyError for an
        unknown name, TypeError for a non-callable), and
        :func:`~gradcheck.matrix.common.run_check` reports it as a FAIL row.
    """
    return [
        Check(name, "bptt", "= FD of L (every step, CE)", _bptt_fd(cell, heads.softmax_cross_entropy, "every")),
        Check(name, "bptt", "= FD of L (last step, BCE)", _bptt_fd(cell, heads.sigmoid_bce, "last")),
        Check(name, "bptt", "= FD of L (masked, MSE)", _bptt_fd(cell, heads.mse, "mask")),
        Check(name, "tbptt(1,2)", "= FD of truncated objective", _tbptt_fd(cell, 1, 2)),
        Check(name, "tbptt(2,3)", "= FD of truncated objective", _tbptt_fd(cell, 2, 3)),
        Check(name, "tbptt(3,3)", "= FD of truncated objective", _tbptt_fd(cell, 3, 3)),
        Check(name, f"tbptt(2,{T})", "= bptt (k2 >= T)", _tbptt_equals_bptt(cell)),
        Check(name, "sequence_vjp", "= FD of <dout, outputs> + <ds_T, s_T>", _sequence_vjp_fd(cell)),
        Check(name, "jvp/vjp", "<u, J v> = <J^T u, v>", _dot_product(cell)),
        Check(name, "jacobians", "J_s v + J_theta p = jvp", _jacobians(cell)),
        Check(name, "taylor", "BPTT remainder falls as eps^2", _taylor(cell)),
    ]


def checks():
    """The core matrix: every core cell, then every head loss.

    The 11 rows of :func:`cell_checks` for every cell of :data:`~gradcheck.matrix.common.CELLS`,
    then one FD row per head loss.

    Returns
    -------
    list of Check
        The rows, each with its cell, algorithm, relation and ``run``.

    Raises
    ------
    None
        Listing builds no problem: each row's problem is built when its
        ``run`` is called, and :func:`~gradcheck.matrix.common.run_check`
        turns whatever that raises into a FAIL row.
    """
    out = []
    for name in CELLS:
        out += cell_checks(name, name)
    for loss in heads.LOSSES.values():
        out.append(Check("head", loss.name, "= FD of sum_b w_b l(W h_b + b, y_b)", _head_fd(loss)))
    return out
