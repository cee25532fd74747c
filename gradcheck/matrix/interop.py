"""The oracle family: stacked layers (refnet/algorithms/stacked.py) and the traces of golden fixtures.

=================  ============================================================
algorithm          relation
=================  ============================================================
stacked_vjp(L=2)   = FD of ⟨dout, outputs⟩ + Σ_l ⟨ds_T^l, s_T^l⟩ in θ_l, x, s_0^l
stacked_vjp(L=1)   = sequence_vjp exactly
fixture(bptt)      every step's dL/dh_t and dL/da_t (each gate pre-activation) in
                   a BPTT fixture = FD of L under a kick to h_t, or to a_t of one
                   example (a per-example bias at step t: the bias enters a_t
                   with coefficient 1)
=================  ============================================================
"""
import numpy as np

import refnet
from refnet.algorithms.stacked import stacked_forward, stacked_sequence_vjp
from refnet.backend import rng, to_numpy, xp_of
from refnet.fixtures import bptt_fixture
from refnet.fixtures.common import CELLS as FIXTURE_CELLS
from refnet.fixtures.gates import layout

from ..check import compare_grads
from .common import Check, O, check_fd, exact_tol, f64, worst

__all__ = ["checks"]

# Smaller than common's problem: these checks difference every coordinate of two layers, or every
# (step, example, unit) of every traced quantity, and must stay within a second or so each.
T, B, I, H = 3, 2, 2, 3
_LAYERS = 2


def _stack(cell_name, layers):
    """``layers`` cells of one kind (layer k > 0 reads H inputs), their θ, x and initial states."""
    r = rng(0)
    make = FIXTURE_CELLS[cell_name][0]
    cells = [make(I if k == 0 else H, H) for k in range(layers)]
    thetas = [c.init(r) for c in cells]
    x = r.normal((T, B, I))
    s0s = [r.normal((B, c.n_state), 0.5) for c in cells]
    dout = r.normal((T, B, H))
    ds_T = [r.normal((B, c.n_state)) for c in cells]
    return cells, thetas, x, s0s, dout, ds_T


def _stacked_fd(cell_name):
    def run():
        cells, thetas, x, s0s, dout, ds_T = _stack(cell_name, _LAYERS)
        res = stacked_sequence_vjp(cells, thetas, x, s0s, dout, ds_T)
        dout64, ds_T64 = f64(dout), [f64(d) for d in ds_T]

        def pairing(flat):
            th = [{k: f64(flat[f"theta{l}/{k}"]) for k in thetas[l]} for l in range(_LAYERS)]
            s0 = [f64(flat[f"s0_{l}"]) for l in range(_LAYERS)]
            runs = stacked_forward(cells, th, f64(flat["x"]), s0)
            top = runs[-1].s[1:]
            outputs = sum(float((cells[-1].output(s_t) * dout64[t]).sum()) for t, s_t in enumerate(top))
            return outputs + sum(float((run.s[-1] * d).sum()) for run, d in zip(runs, ds_T64))
        point = {"x": to_numpy(x)}
        grads = {"x": to_numpy(res.dx)}
        for l in range(_LAYERS):
            point.update({f"theta{l}/{k}": to_numpy(v) for k, v in thetas[l].items()},
                         **{f"s0_{l}": to_numpy(s0s[l])})
            grads.update({f"theta{l}/{k}": to_numpy(v) for k, v in res.dtheta[l].items()},
                         **{f"s0_{l}": to_numpy(res.ds0[l])})
        report = check_fd(pairing, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _one_layer_is_sequence_vjp(cell_name):
    def run():
        cells, thetas, x, s0s, dout, ds_T = _stack(cell_name, 1)
        stacked = stacked_sequence_vjp(cells, thetas, x, s0s, dout, ds_T)
        single = refnet.sequence_vjp(cells[0], thetas[0], x, s0s[0], dout, ds_T[0])
        pack = lambda dtheta, dx, ds0: {**{k: to_numpy(v) for k, v in dtheta.items()},  # noqa: E731
                                        "x": to_numpy(dx), "s0": to_numpy(ds0)}
        report = compare_grads(pack(stacked.dtheta[0], stacked.dx, stacked.ds0[0]),
                               pack(single.dtheta, single.dx, single.ds0), rtol=exact_tol(),
                               reference_name="sequence_vjp", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _fixture_traces_fd(cell_name):
    def run():
        fx = bptt_fixture(cell_name, T=T, B=B, input_size=I, hidden_size=H, output_size=O)
        A = fx.arrays
        cell = FIXTURE_CELLS[cell_name][0](I, H)
        theta = {k: f64(A[f"params/{k}_l0"]) for k in cell.param_shapes()}
        head = refnet.Head(H, O)
        beta = {"weight": f64(A["params/head.weight"]), "bias": f64(A["params/head.bias"])}
        x, y, w = f64(A["inputs/x"]), f64(A["inputs/y"]), f64(A["inputs/loss_weights"])
        parts = [A["inputs/h0"][0]] + ([A["inputs/c0"][0]] if "inputs/c0" in A else [])
        s0 = f64(np.concatenate(parts, axis=1))
        pre = layout(cell)

        def kicked_loss(kick):
            kick = {n: f64(v) for n, v in kick.items()}
            s, total = s0, 0.0
            xp = xp_of(s0)
            for t in range(1, T + 1):
                # one bias row per example, (B, G·H): the step broadcasts it like the shared one
                theta_t = {k: xp.broadcast_to(v, (B,) + v.shape).copy() if k.startswith("bias") else v
                           for k, v in theta.items()}
                for q in pre:
                    theta_t[q.bias][:, q.block * H:(q.block + 1) * H] += kick["d" + q.name][t - 1]
                s, _ = cell.step(theta_t, s, x[t - 1], t - 1)
                s = s.copy()
                s[:, :H] += kick["dh"][t - 1]
                total += float(head.loss_value(beta, cell.output(s), y[t - 1], w[t - 1]))
            return total
        names = ["dh"] + ["d" + q.name for q in pre]
        grads = {n: A[f"backward/{n}_l0"] for n in names}
        point = {n: np.zeros(grads[n].shape) for n in names}
        report = check_fd(kicked_loss, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def checks():
    """The oracle family's checks, in display order.

    Per cell (Elman tanh, LSTM, GRU): the stacked VJP = FD, one layer = the
    sequence VJP, and the BPTT fixture's traces = FD.

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
    for name in ("elman_tanh", "lstm", "gru"):
        out += [
            Check(name, f"stacked_vjp(L={_LAYERS})", "= FD of <dout, out> + sum <ds_T, s_T>",
                  _stacked_fd(name)),
            Check(name, "stacked_vjp(L=1)", "= sequence_vjp exactly", _one_layer_is_sequence_vjp(name)),
            Check(name, "fixture(bptt)", "traces dh, da_* = FD of kicks at step t", _fixture_traces_fd(name)),
        ]
    return out
