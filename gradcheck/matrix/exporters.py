"""The exporters family: fixtures beyond PyTorch's cells (refnet/fixtures/steps.py) against finite differences.

=====================  ==========================================================================
algorithm              relation
=====================  ==========================================================================
fixture(bptt)          FastRNN/FastGRNN fixture: every step's dL/dh_t and dL/da_t (each
                       pre-activation of :data:`refnet.fixtures.STEP_CELLS`) = FD of L under a
                       kick to h_t, or to a_t of one example (a per-example bias at step t: the
                       table's bias enters a_t with coefficient 1)
fixture(rtrl)          every step's sensitivity M_t in an RTRL fixture: Σ_t Σ_b ⟨r_t[b], M_t[b]⟩ =
                       FD in θ of Σ_t ⟨r_t, s_t(θ)⟩ for random weights r_t (all t at once; a
                       wrong M at one step changes the sum)
=====================  ==========================================================================
"""
import numpy as np

import refnet
from refnet.algorithms.bptt import forward
from refnet.backend import rng, xp_of
from refnet.fixtures import CELLS as FIXTURE_CELLS
from refnet.fixtures import STEP_CELLS, cell_bptt_fixture, rtrl_fixture
from refnet.fixtures.steps import _problem

from .common import Check, O, check_fd, f64, worst

__all__ = ["checks"]

# Small: every (step, example, unit) of every traced quantity, or every θ coordinate, is differenced.
T, B, I, H = 3, 2, 2, 3


def _cell_traces_fd(name):
    def run():
        fx = cell_bptt_fixture(name, T=T, B=B, input_size=I, hidden_size=H, output_size=O)
        A = fx.arrays
        cell = STEP_CELLS[name].factory(I, H)
        biases = STEP_CELLS[name].biases
        theta = {k: f64(A[f"params/{k}"]) for k in cell.param_shapes()}
        head = refnet.Head(H, O)
        beta = {"weight": f64(A["params/head.weight"]), "bias": f64(A["params/head.bias"])}
        x, y, w, s0 = f64(A["inputs/x"]), f64(A["inputs/y"]), f64(A["inputs/loss_weights"]), f64(A["inputs/h0"][0])

        def kicked_loss(kick):
            kick = {n: f64(v) for n, v in kick.items()}
            xp = xp_of(s0)
            s, total = s0, 0.0
            for t in range(1, T + 1):
                theta_t = dict(theta)
                for q, bias in biases.items():          # one bias row per example: the step broadcasts it
                    theta_t[bias] = xp.broadcast_to(theta[bias], (B, H)) + kick["d" + q][t - 1]
                s, _ = cell.step(theta_t, s, x[t - 1], t - 1)
                s = s + kick["dh"][t - 1]
                total += float(head.loss_value(beta, cell.output(s), y[t - 1], w[t - 1]))
            return total
        names = ["dh"] + ["d" + q for q in biases]
        grads = {n: A[f"backward/{n}_l0"] for n in names}
        point = {n: np.zeros(grads[n].shape) for n in names}
        report = check_fd(kicked_loss, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _rtrl_sensitivities_fd(name):
    def run():
        fx = rtrl_fixture(name, T=T, B=B, input_size=I, hidden_size=H, output_size=O)
        c = _problem(name, 0, T, B, I, H, O)[0]
        A, suffix = fx.arrays, ("_l0" if name in FIXTURE_CELLS else "")
        theta = {k: A[f"params/{k}{suffix}"] for k in c.param_shapes()}         # the fixture's own θ and data
        x = A["inputs/x"]
        s0 = np.concatenate([A["inputs/h0"][0]] + ([A["inputs/c0"][0]] if "inputs/c0" in A else []), axis=1)
        M = fx.arrays["forward/M_l0"]                                   # (T, B, n, P)
        r = np.asarray(rng(1).normal(M.shape[:3]))                       # weights r_t (T, B, n)
        analytic = np.einsum("tbn,tbnp->p", r, M)
        columns = {k: (first, shape) for k, first, shape in fx.meta["param_columns"]}
        grads = {k: analytic[first:first + int(np.prod(shape))].reshape(shape) for k, (first, shape) in columns.items()}
        r64 = f64(r)

        def pairing(flat):
            s = forward(c, {k: f64(flat[k]) for k in theta}, f64(x), f64(s0)).s
            return float(sum((s[t] * r64[t - 1]).sum() for t in range(1, T + 1)))
        point = {k: np.asarray(theta[k]) for k in theta}
        report = check_fd(pairing, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def checks():
    """The exporters family's checks, in display order: one row per table entry."""
    out = [Check(name, "fixture(bptt)", "traces dh, da_* = FD of kicks at step t", _cell_traces_fd(name))
           for name in STEP_CELLS]
    out += [Check(name, "fixture(rtrl)", "sum_t <r_t, M_t> = FD of sum_t <r_t, s_t(theta)>",
                  _rtrl_sensitivities_fd(name)) for name in ("elman_tanh", "lstm", "gru", *STEP_CELLS)]
    return out
