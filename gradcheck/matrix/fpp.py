"""FPP in the matrix: the per-transition gradient = FD of state loss + target loss.

==================  ================================================================
algorithm           relation
==================  ================================================================
fpp                 ∂(L_s + L_t) = FD in W, β, the stored s_{T−1} and s_{T+1} (λ = 1)
fpp(lambda=0.3, v)  the same with the state loss weighted, λ = 0.3, and its own example weights v
fpp(t=2)            the same at time index T = 2, for the cells that read it: the ERNN with
                    a per-step η (row η_T, then η_{T+1}) and both fast-weight forms
                    (the attention form reads h(1..T), then h(1..T+1))
fpp_loss/refresh    ``fpp_loss`` and ``fpp_refresh`` = the objective and states written out
==================  ================================================================

The finite differences are of Algorithm 1's objective written out here from
``cell.step`` (s_T = f(s_{T−1}, o_T) at index T, s'_{T+1} = f(s_T, o_{T+1}) at
index T + 1), not of :func:`refnet.algorithms.fpp.fpp_loss`, so that a slip
shared by ``fpp_loss`` and ``fpp_grad`` (the second transition run at T
instead of T + 1) cannot pass.  With the time-free cells such a slip changes
nothing; the ``t=2`` rows are where it shows.  The gradients in the stored
states are what the states-as-variables formulation uses; W and β are what
Algorithm 1 uses.
"""
import numpy as np

import refnet
from refnet import heads
from refnet.algorithms.fpp import fpp_grad, fpp_loss, fpp_refresh
from refnet.backend import rng, to_numpy

from ..check import compare_grads
from . import ernn, fast_weights
from .common import CELLS, B, Check, I, O, check_fd, exact_tol, f64, worst

__all__ = ["TIMED_CELLS", "checks"]

TIME = 2   # T of the t=2 rows: both steps inside the per-step η (T = 5 rows) and the attention capacity (5)

# Cells whose transition reads its time index, and the explicit fast-weight form (which ignores it),
# the attention form's twin.
TIMED_CELLS = {
    "ernn_k2_tk": ernn.CELLS["ernn_k2_tk"],
    "fast_weights_s1": fast_weights.CELLS["fast_weights_s1"],
    "fast_weights_attention_s1": fast_weights.CELLS["fast_weights_attention_s1"],
    "fast_weights_attention_s2": fast_weights.CELLS["fast_weights_attention_s2"],
}


def _objective(c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v, state_weight, t):
    """(L_s, L_t) of Algorithm 1 from ``cell.step`` alone (module docstring)."""
    s_T, _ = c.step(theta, s_prev, x, t)
    s_pred, _ = c.step(theta, s_T, x_next, None if t is None else t + 1)
    r = s_pred - s_next
    L_s = state_weight * float((v * (r * r).sum(axis=1)).sum()) / c.n_state
    return L_s, float(head.loss_value(beta, c.output(s_T), y, w)), s_T, s_pred


def _transition(cell, own_v):
    r = rng(0)
    c = CELLS[cell]() if isinstance(cell, str) else cell()
    theta, head = c.init(r), refnet.Head(c.n_out, O, heads.softmax_cross_entropy)
    beta = head.init(r)
    s_prev, s_next = r.normal((B, c.n_state), 0.5), r.normal((B, c.n_state), 0.5)
    x, x_next = r.normal((B, I)), r.normal((B, I))
    y = r.integers(0, O, (B,))
    w = r.uniform((B,), 0.2, 1.0)
    v = r.uniform((B,), 0.2, 1.0) if own_v else None
    return c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v


def _fpp_fd(cell, state_weight, own_v, t=None):
    def run():
        c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v = _transition(cell, own_v)
        g = fpp_grad(c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v=v, state_weight=state_weight, t=t)
        x64, xn64, y64, w64 = f64(x), f64(x_next), f64(y), f64(w)
        v64 = w64 if v is None else f64(v)

        def pack(th, be, sp, sn):
            out = {f"theta/{k}": to_numpy(a) for k, a in th.items()}
            out.update({f"beta/{k}": to_numpy(a) for k, a in be.items()})
            out["s_prev"], out["s_next"] = to_numpy(sp), to_numpy(sn)
            return out

        def total(flat):
            th = {k: f64(flat[f"theta/{k}"]) for k in theta}
            be = {k: f64(flat[f"beta/{k}"]) for k in beta}
            L_s, L_t, _, _ = _objective(c, th, head, be, f64(flat["s_prev"]), x64, xn64, f64(flat["s_next"]),
                                        y64, w64, v64, state_weight, t)
            return L_s + L_t
        report = check_fd(total, pack(theta, beta, s_prev, s_next), pack(g.dtheta, g.dbeta, g.ds_prev, g.ds_next))
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _loss_and_refresh(cell, t):
    def run():
        c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v = _transition(cell, True)
        L_s, L_t, s_T, s_pred = _objective(c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v, 0.3, t)
        ours = fpp_loss(c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v=v, state_weight=0.3, t=t)
        refreshed = fpp_refresh(c, theta, s_prev, x, x_next, t=t)
        report = compare_grads({"L_s": np.array(ours[0]), "L_t": np.array(ours[1]), "s_T": to_numpy(refreshed[0]),
                                "s'_T+1": to_numpy(refreshed[1])},
                               {"L_s": np.array(L_s), "L_t": np.array(L_t), "s_T": to_numpy(s_T),
                                "s'_T+1": to_numpy(s_pred)},
                               rtol=exact_tol(), reference_name="written out", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def checks():
    """FPP's per-transition gradient against FD for every core cell and every cell that reads t.

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
        out.append(Check(name, "fpp", "= FD of L_s + L_t (W, beta, s_prev, s_next)", _fpp_fd(name, 1.0, False)))
        out.append(Check(name, "fpp(lambda=0.3, v)", "= FD of 0.3 L_s(v) + L_t(w) (W, beta, s_prev, s_next)",
                         _fpp_fd(name, 0.3, True)))
    out.append(Check("gru", "fpp_loss/refresh", "= Algorithm 1's losses and states written out",
                     _loss_and_refresh("gru", None)))
    for name, factory in TIMED_CELLS.items():
        out.append(Check(name, f"fpp(t={TIME})", f"= FD of L_s + L_t, steps at t={TIME} and {TIME + 1}",
                         _fpp_fd(factory, 1.0, False, TIME)))
        out.append(Check(name, "fpp_loss/refresh", f"= Algorithm 1's losses and states written out (t={TIME})",
                         _loss_and_refresh(factory, TIME)))
    return out
