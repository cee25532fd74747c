"""FPP in the matrix: the per-transition gradient = FD of state loss + target loss.

=========  ==================================================================
algorithm  relation
=========  ==================================================================
fpp        ∂(L_s + L_t) = FD in W, β, the stored s_{T−1} and s_{T+1} (λ = 1)
fpp(λ, v)  the same with the state loss weighted, λ = 0.3, and its own example weights v
=========  ==================================================================

The gradients in the stored states are what the states-as-variables
formulation uses; W and β are what Algorithm 1 uses.
"""
import refnet
from refnet import heads
from refnet.algorithms.fpp import fpp_grad, fpp_loss
from refnet.backend import rng, to_numpy

from .common import CELLS, B, Check, I, O, check_fd, f64, worst

__all__ = ["checks"]


def _fpp_fd(cell, state_weight, own_v):
    def run():
        r = rng(0)
        c = CELLS[cell]()
        theta, head = c.init(r), refnet.Head(c.n_out, O, heads.softmax_cross_entropy)
        beta = head.init(r)
        s_prev, s_next = r.normal((B, c.n_state), 0.5), r.normal((B, c.n_state), 0.5)
        x, x_next = r.normal((B, I)), r.normal((B, I))
        y = r.integers(0, O, (B,))
        w = r.uniform((B,), 0.2, 1.0)
        v = r.uniform((B,), 0.2, 1.0) if own_v else None
        g = fpp_grad(c, theta, head, beta, s_prev, x, x_next, s_next, y, w, v=v, state_weight=state_weight)
        x64, xn64, y64, w64 = f64(x), f64(x_next), f64(y), f64(w)
        v64 = None if v is None else f64(v)

        def pack(th, be, sp, sn):
            out = {f"theta/{k}": to_numpy(v) for k, v in th.items()}
            out.update({f"beta/{k}": to_numpy(v) for k, v in be.items()})
            out["s_prev"], out["s_next"] = to_numpy(sp), to_numpy(sn)
            return out

        def total(flat):
            th = {k: f64(flat[f"theta/{k}"]) for k in theta}
            be = {k: f64(flat[f"beta/{k}"]) for k in beta}
            return sum(fpp_loss(c, th, head, be, f64(flat["s_prev"]), x64, xn64, f64(flat["s_next"]), y64, w64,
                                v=v64, state_weight=state_weight))
        report = check_fd(total, pack(theta, beta, s_prev, s_next), pack(g.dtheta, g.dbeta, g.ds_prev, g.ds_next))
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def checks():
    """FPP's per-transition gradient against FD for every core cell."""
    out = []
    for name in CELLS:
        out.append(Check(name, "fpp", "= FD of L_s + L_t (W, beta, s_prev, s_next)", _fpp_fd(name, 1.0, False)))
        out.append(Check(name, "fpp(lambda=0.3, v)", "= FD of 0.3 L_s(v) + L_t(w) (W, beta, s_prev, s_next)",
                         _fpp_fd(name, 0.3, True)))
    return out
