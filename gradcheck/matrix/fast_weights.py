"""Fast weights (Ba et al. 2016) in the matrix: both memory forms, S = 1 and 2; layer norm; the MLP head.

Each of the four cells (explicit A or attention form, S = 1 or 2 inner
steps) gets these of :func:`gradcheck.matrix.core.cell_checks`' standard rows
(:data:`STANDARD`; the other loss and truncation variants add little here and
would double the family's time): BPTT = FD through A, the inner loop and the
layer norms; TBPTT(1, 2) = FD of the truncated objective; TBPTT(k2 >= T) =
BPTT; sequence VJP = FD; the JVP/VJP dot product; Jacobians = JVP; Taylor
order.  The cell's own init (W = 0.05·I, gain 1, bias 0) would leave much
of the recurrence and the layer norm's parameters barely exercised, so these
problems draw W ~ N(0, 0.5²), gain ~ U(0.5, 1.5) and bias ~ N(0, 0.3²).

Then the relations of this family:

- explicit = attention: from h_0 and a zero memory, BPTT's loss and every
  gradient (θ, β, ∂L/∂h_0) agree, and so do the states h(t) and A(t) (A(t)
  built from the attention form's history), exactly (rounding only);
- layer norm: ``ln_vjp`` = FD, and ``ln_jvp``/``ln_vjp`` pass the dot-product test;
- the MLP head (:class:`refnet.heads_mlp.MLPHead`): ∂L/∂β and ∂L/∂h = FD.
"""
import numpy as np

import refnet
from refnet.backend import rng, to_numpy
from refnet.cells.fast_weights import FastWeights, FastWeightsAttention
from refnet.cells.layer_norm import ln, ln_jvp, ln_vjp
from refnet.heads_mlp import MLPHead

from ..check import compare_grads, dot_product_test
from .common import B, Check, H, I, O, Problem, T, check_fd, exact_tol, f64, worst
from .core import cell_checks

__all__ = ["CELLS", "STANDARD", "checks"]

STANDARD = {("bptt", "= FD of L (every step, CE)"), ("tbptt(1,2)", "= FD of truncated objective"),
            (f"tbptt(2,{T})", "= bptt (k2 >= T)"), ("sequence_vjp", "= FD of <dout, outputs> + <ds_T, s_T>"),
            ("jvp/vjp", "<u, J v> = <J^T u, v>"), ("jacobians", "J_s v + J_theta p = jvp"),
            ("taylor", "BPTT remainder falls as eps^2")}


def _drawn(form):
    """``form`` whose init draws W, the gain and the bias (module docstring)."""

    class Drawn(form):
        def init(self, rng_):
            theta = super().init(rng_)
            theta["weight_hh"] = rng_.normal((self.hidden_size, self.hidden_size), 0.5)
            theta["ln_weight"] = rng_.uniform((self.hidden_size,), 0.5, 1.5)
            theta["ln_bias"] = rng_.normal((self.hidden_size,), 0.3)
            return theta

    Drawn.__name__ = Drawn.__qualname__ = f"Drawn{form.__name__}"
    return Drawn


_DrawnFastWeights = _drawn(FastWeights)
_DrawnFastWeightsAttention = _drawn(FastWeightsAttention)

CELLS = {
    **{f"fast_weights_s{S}": (lambda S=S: _DrawnFastWeights(I, H, S=S)) for S in (1, 2)},
    **{f"fast_weights_attention_s{S}": (lambda S=S: _DrawnFastWeightsAttention(I, H, S=S, capacity=T))
       for S in (1, 2)},
}


def _explicit_equals_attention(S):
    def run():
        explicit = Problem(CELLS[f"fast_weights_s{S}"])
        attention = FastWeightsAttention(I, H, S=S, capacity=T)
        p = explicit
        h0 = p.s0[:, :H]
        xp = refnet.xp_of(h0)
        s0_explicit = xp.concatenate([h0, xp.zeros((B, H * H), dtype=h0.dtype)], axis=1)
        s0_attention = xp.concatenate([h0, xp.zeros((B, H * T), dtype=h0.dtype)], axis=1)
        a = refnet.bptt(p.cell, p.theta, p.x, s0_explicit, p.head, p.beta, p.y, p.weights)
        b = refnet.bptt(attention, p.theta, p.x, s0_attention, p.head, p.beta, p.y, p.weights)
        s_a = refnet.forward(p.cell, p.theta, p.x, s0_explicit).s
        s_b = refnet.forward(attention, p.theta, p.x, s0_attention).s
        ours = {"loss": np.array(a.loss), "dh0": to_numpy(a.ds0[:, :H]),
                "h(t)": np.stack([to_numpy(p.cell.output(s)) for s in s_a]),
                "A(t)": np.stack([to_numpy(p.cell.fast_weight_matrix(s)) for s in s_a]),
                **{f"theta/{k}": to_numpy(v) for k, v in a.dtheta.items()},
                **{f"beta/{k}": to_numpy(v) for k, v in a.dbeta.items()}}
        theirs = {"loss": np.array(b.loss), "dh0": to_numpy(b.ds0[:, :H]),
                  "h(t)": np.stack([to_numpy(attention.output(s)) for s in s_b]),
                  "A(t)": np.stack([to_numpy(attention.fast_weight_matrix(s, t)) for t, s in enumerate(s_b)]),
                  **{f"theta/{k}": to_numpy(v) for k, v in b.dtheta.items()},
                  **{f"beta/{k}": to_numpy(v) for k, v in b.dbeta.items()}}
        report = compare_grads(ours, theirs, rtol=exact_tol(), reference_name="attention",
                               raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _ln_point():
    r = rng(4)
    return r.normal((B, H), 2.0), r.uniform((H,), 0.5, 1.5), r.normal((H,), 0.3), r


def _ln_fd():
    def run():
        a, gain, bias, r = _ln_point()
        dy = r.normal((B, H))
        _, cache = ln(a, gain, bias)
        da, dgain, dbias = ln_vjp(cache, gain, dy)
        dy64 = f64(dy)

        def pairing(flat):
            y, _ = ln(f64(flat["a"]), f64(flat["gain"]), f64(flat["bias"]))
            return float((y * dy64).sum())
        point = {"a": to_numpy(a), "gain": to_numpy(gain), "bias": to_numpy(bias)}
        grads = {"a": to_numpy(da), "gain": to_numpy(dgain), "bias": to_numpy(dbias)}
        report = check_fd(pairing, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _ln_dot_product():
    def run():
        a, gain, bias, r = _ln_point()
        u, da = r.normal((B, H)), r.normal((B, H))
        dgain, dbias = r.normal((H,)), r.normal((H,))
        _, cache = ln(a, gain, bias)
        Jv = ln_jvp(cache, gain, da, dgain, dbias)
        ua, ugain, ubias = ln_vjp(cache, gain, u)
        lhs = float((u * Jv).sum())
        rhs = float((ua * da).sum() + (ugain * dgain).sum() + (ubias * dbias).sum())
        report = dot_product_test(lhs, rhs, rtol=exact_tol())
        return report.max_rel_error, report.rtol, report.passed, f"<u,Jv>={lhs:.6g}"
    return run


def _mlp_head_fd():
    def run():
        r = rng(5)
        head = MLPHead(H, O, n_hidden=6)
        beta = head.init(r)
        h = r.normal((B, H), 2.0)
        y = r.integers(0, O, (B,))
        w = r.uniform((B,))
        _, dh, dbeta = head.loss_and_grad(beta, h, y, w)
        w64 = f64(w)

        def value(flat):
            return float(head.loss_value({k: f64(flat[k]) for k in beta}, f64(flat["h"]), f64(y), w64))
        point = {k: to_numpy(v) for k, v in beta.items()}
        point["h"] = to_numpy(h)
        grads = {k: to_numpy(v) for k, v in dbeta.items()}
        grads["h"] = to_numpy(dh)
        report = check_fd(value, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def checks():
    """The family's checks, in display order.

    The :data:`STANDARD` rows for each of the four cells, explicit = attention
    for S = 1 and 2, then the layer-norm and MLP-head rows.

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
    out = [check for name, factory in CELLS.items() for check in cell_checks(name, factory)
           if (check.algorithm, check.relation) in STANDARD]
    out += [Check(f"fast_weights_s{S}", "explicit/attention", "= each other (loss, grads, h(t), A(t))",
                  _explicit_equals_attention(S)) for S in (1, 2)]
    out += [
        Check("layer_norm", "ln_vjp", "= FD of <dy, LN(a)> in a, gain, bias", _ln_fd()),
        Check("layer_norm", "ln_jvp/ln_vjp", "<u, J v> = <J^T u, v>", _ln_dot_product()),
        Check("head_mlp", "softmax_cross_entropy", "= FD of sum_b w_b l(MLP(h_b), y_b)", _mlp_head_fd()),
    ]
    return out
