"""RTRL's approximations in the matrix: the leaky RNN, SnAp-n, RFLO, KF-RTRL beyond Elman.

==================  ==========================================================================
algorithm           relation
==================  ==========================================================================
(leaky cells)       every standard row of ``core.cell_checks``; RTRL = BPTT; UORO and KF-RTRL
                    unbiased (z-test, :mod:`gradcheck.matrix.rtrl`)
kfrtrl (FastRNN)    unbiased for RTRL, W/U/b factored and α̂, β̂ carried exactly
kfrtrl(B=3)         FastRNN's α̂, β̂ (RTRL's recursion on their columns) = RTRL exactly, one call
snap(n)             = its dense twin M̃ = (J_s M̃ + J_θ) ⊙ 𝟙_n (n = 1, 2): sensitivity and dθ
snap mask           𝟙_n = the reach of the numerical nonzeros of jacobians(), computed here
                    (n = 1, 2, 3, ring W_hh; smooth cells, where structural = numerical)
snap2               = RTRL, W_hh as drawn (dense; the iRNN's I: the mask is closed at n = 2)
snap1 (snap2 LSTM)  = RTRL, diagonal W_hh (any α; the LSTM's o rows reach c_i in a second step)
snap(d+1), snap(d)  = RTRL once n = d + 1, d the diameter of a ring W_hh (by breadth-first
                    search, apart from the closure); ≠ RTRL at n = d (error > 1e-6)
rflo                = RTRL at W_hh = 0 (every parameter, W_hh's own columns included);
                    with random feedback B, = Σ_t (B e_t)ᵀ M_t with RTRL's M_t there;
                    = its dense twin M̃ = (1 − α) M̃ + J_θ at W_hh ≠ 0
kernel twins        SnAp-1's and RFLO's trace kernel at batch 1 = REFNET_NUMBA=0, NumPy only,
                    the kernel watched: it ran at every step, the twin ran none
==================  ==========================================================================

The exact relations are held to the dtype's ``exact`` tolerance; the
statistical one (KF-RTRL on FastRNN) to the z-test of :mod:`gradcheck.matrix.rtrl`.
"""
import numpy as np
from scipy.sparse.csgraph import shortest_path

from refnet.algorithms.kfrtrl import kfrtrl
from refnet.algorithms.rflo import rflo
from refnet.algorithms.rtrl import rtrl, rtrl_update
from refnet.algorithms.snap import (snap, snap_gradient, snap_init, snap_masked_update, snap_pattern,
                                    snap_sensitivity, snap_update)
from refnet.backend import backend_name, rng, to_numpy, xp_of
from refnet.cells.fastrnn import FastRNN
from refnet.cells.leaky import LeakyRNN

from ..check import compare_grads
from .common import CELLS as CORE_CELLS
from .common import B, Check, H, I, Problem, T, exact_tol, worst
from .core import cell_checks
from .paths import kernel_path
from .rtrl import ALPHA, N_ESTIMATES, estimates, rtrl_checks, z_test

__all__ = ["CELLS", "SNAP_CELLS", "checks"]

CELLS = {
    "leaky_tanh": lambda: LeakyRNN(I, H, alpha=0.3),
    "leaky_relu": lambda: LeakyRNN(I, H, alpha=0.6, nonlinearity="relu"),
}
SNAP_CELLS = {**{k: CORE_CELLS[k] for k in ("elman_tanh", "elman_relu", "irnn", "gru", "lstm")}, **CELLS}
RFLO_CELLS = {**CELLS, "leaky_alpha1": lambda: LeakyRNN(I, H, alpha=1.0)}
GATES = {"gru": 3, "lstm": 4}


def _relative(ours, reference, name="dtheta"):
    report = compare_grads({name: to_numpy(ours)}, {name: to_numpy(reference)}, rtol=exact_tol(),
                           reference_name="reference", raise_on_failure=False)
    return report


def _flat(p, dtheta):
    return p.cell.flat_params(dtheta)


def _with_recurrence(p, mask_of):
    """θ with W_hh ~ N(0, 0.5²) on the (H, H) 0/1 pattern ``mask_of(H)`` in every gate block, 0 elsewhere
    (fresh values: the iRNN's own W_hh = I would vanish on a ring)."""
    theta = dict(p.theta)
    W = theta["weight_hh"]
    gates = W.shape[0] // p.cell.hidden_size
    mask = xp_of(W).asarray(np.tile(mask_of(p.cell.hidden_size), (gates, 1)), dtype=W.dtype)
    theta["weight_hh"] = rng(13, W.dtype).normal(W.shape, 0.5) * mask
    return theta


def _ring(n):
    """W_hh's pattern of a directed ring, unit i − 1 → unit i, no self-loops."""
    return np.roll(np.eye(n), 1, axis=0)


def _snap_equals_twin(cell):
    def run():
        p = Problem(cell)
        worst_err, detail = 0.0, ""
        for n in (1, 2):
            pattern = snap_pattern(p.cell, p.theta, n)
            state = snap_init(pattern, B, p.x)
            M = xp_of(p.x).zeros((B,) + pattern.mask.shape, dtype=p.x.dtype)
            s = p.s0
            for t in range(T):
                s, cache = p.cell.step(p.theta, s, p.x[t], t)
                state = snap_update(p.cell, p.theta, cache, state, pattern)
                M = snap_masked_update(*p.cell.jacobians(p.theta, cache), M, pattern.mask)
            ds = rng(5).normal(s.shape)
            for ours, ref in ((snap_sensitivity(state, pattern), M),
                              (snap_gradient(state, ds, pattern), (ds[:, None, :] @ M)[:, 0, :].sum(axis=0))):
                report = _relative(ours, ref)
                if report.max_rel_error >= worst_err:
                    worst_err, detail = report.max_rel_error, f"n={n}: kept {int(pattern.mask.sum())} of {pattern.mask.size}"
        return worst_err, exact_tol(), worst_err <= exact_tol(), detail
    return run


def _snap_equals_rtrl(cell, n, mask_of=None, label=""):
    def run():
        p = Problem(cell)
        theta = p.theta if mask_of is None else _with_recurrence(p, mask_of)
        pattern = snap_pattern(p.cell, theta, n)
        ours = snap(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, n=n)
        exact = rtrl(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        report = _relative(_flat(p, ours.dtheta), _flat(p, exact.dtheta))
        passed = report.passed and pattern.exact
        return report.max_rel_error, report.rtol, passed, f"{label}mask closed: {pattern.exact}; {worst(report)}"
    return run


def _snap_mask(cell, orders=(1, 2, 3)):
    """SnAp-n's mask = the reach of the numerical nonzeros of J_s and J_θ, computed here (ring W_hh).

    The patterns are read off the cell's dense ``jacobians`` over every step and example of the
    problem (a generic point: no structural nonzero is numerically zero for these smooth cells), and
    𝟙_1 = Θ, 𝟙_{k+1} = 𝟙_k ∨ (S 𝟙_k) by integer matrix products; on a ring, unlike a dense or
    diagonal W_hh, a transposed pattern or a reversed edge changes the mask at n = 2, 3.
    """
    def run():
        p = Problem(cell)
        theta = _with_recurrence(p, _ring)
        S = np.zeros((p.cell.n_state,) * 2, dtype=bool)
        Theta = np.zeros((p.cell.n_state, _flat(p, theta).size), dtype=bool)
        s = p.s0
        for t in range(T):
            s, cache = p.cell.step(theta, s, p.x[t], t)
            J_s, J_theta = (to_numpy(J) != 0 for J in p.cell.jacobians(theta, cache))
            S, Theta = S | J_s.any(axis=0), Theta | J_theta.any(axis=0)
        mask, wrong, details = Theta, 0, []
        for n in range(1, max(orders) + 1):
            if n > 1:
                mask = mask | ((S.astype(np.int64) @ mask.astype(np.int64)) > 0)
            if n in orders:
                ours = np.asarray(snap_pattern(p.cell, theta, n).mask, dtype=bool)
                differ = int((ours != mask).sum())
                wrong += differ
                details.append(f"n={n}: {int(mask.sum())} kept, {differ} differ")
        return float(wrong), 0.0, wrong == 0, "ring W_hh; " + ", ".join(details)
    return run


def _diameter(S):
    """Longest shortest path (edges j → i where S[i, j]) between reachable pairs, by BFS."""
    dist = shortest_path(np.asarray(S, dtype=float).T, method="D", unweighted=True)
    return int(dist[np.isfinite(dist)].max())


def _snap_diameter(cell, strict=True):
    """``strict``: also require SnAp-d ≠ RTRL; not for ReLU cells, where a silent unit (φ' = 0) on
    the ring can cut every long path, so that the entries SnAp-d drops are zero in fact."""
    def run():
        p = Problem(cell)
        theta = _with_recurrence(p, _ring)
        d = _diameter(p.cell.jacobian_pattern(theta)[0])
        exact = _flat(p, rtrl(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights).dtheta)
        at = _relative(_flat(p, snap(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, n=d + 1).dtheta),
                       exact)
        below = _relative(_flat(p, snap(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, n=d).dtheta),
                          exact)
        # T = 5 steps carry paths of length up to 4 >= d = 3, so SnAp-d drops entries RTRL has
        passed = at.passed and (below.max_rel_error > 1e-6 or not strict)
        return at.max_rel_error, at.rtol, passed, (f"ring W_hh, diameter d={d} (BFS); snap{d} differs by "
                                                   f"{below.max_rel_error:.2e} "
                                                   + ("(> 1e-6 required)" if strict else "(ReLU: not required)"))
    return run


def _zero_recurrence(p):
    theta = dict(p.theta)
    theta["weight_hh"] = xp_of(theta["weight_hh"]).zeros_like(theta["weight_hh"])
    return theta


def _rflo_equals_rtrl(cell):
    def run():
        p = Problem(cell)
        theta = _zero_recurrence(p)
        ours = rflo(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        exact = rtrl(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        report = compare_grads(p.pack(ours.dtheta, ours.dbeta, p.s0), p.pack(exact.dtheta, exact.dbeta, p.s0),
                               rtol=exact_tol(), reference_name="rtrl", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, f"W_hh = 0; {worst(report)}"
    return run


def _rflo_feedback(cell):
    """Random B at W_hh = 0 against Σ_t δ_tᵀ M_t with RTRL's M_t and δ_t = B e_t, written out here."""
    def run():
        p = Problem(cell)
        theta = _zero_recurrence(p)
        feedback = rng(11).normal((p.cell.n_out, p.head.n_out))
        ours = rflo(p.cell, theta, p.x, p.s0, p.head, p.beta, p.y, p.weights, feedback=feedback)
        xp = xp_of(p.x)
        M = xp.zeros((B, p.cell.n_state, _flat(p, theta).size), dtype=p.x.dtype)
        g, s = 0.0, p.s0
        for t in range(T):
            s, cache = p.cell.step(theta, s, p.x[t], t)
            M = rtrl_update(*p.cell.jacobians(theta, cache), M)
            _, error = p.head.loss.value_and_grad(p.head.forward(p.beta, s), p.y[t])
            delta = (error * p.weights[t][:, None]) @ feedback.T
            g = g + (delta[:, None, :] @ M)[:, 0, :].sum(axis=0)
        report = _relative(_flat(p, ours.dtheta), g)
        return report.max_rel_error, report.rtol, report.passed, f"random B; {worst(report)}"
    return run


def _rflo_equals_twin(cell):
    def run():
        p = Problem(cell)
        ours = rflo(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        xp = xp_of(p.x)
        M = xp.zeros((B, p.cell.n_state, _flat(p, p.theta).size), dtype=p.x.dtype)
        g, s = 0.0, p.s0
        for t in range(T):
            s, cache = p.cell.step(p.theta, s, p.x[t], t)
            M = p.cell.leak * M + p.cell.jacobians(p.theta, cache)[1]          # M̃ = (1 − α) M̃ + J_θ
            _, dh, _ = p.head.loss_and_grad(p.beta, s, p.y[t], p.weights[t])
            g = g + (dh[:, None, :] @ M)[:, 0, :].sum(axis=0)
        report = _relative(_flat(p, ours.dtheta), g)
        return report.max_rel_error, report.rtol, report.passed, f"W_hh dense; {worst(report)}"
    return run


def _kernel_twin(cell, algorithm):
    """The same batch-1 run with REFNET_NUMBA=1 and =0: SnAp-1's or RFLO's trace kernel against its twin.

    Passing also needs the trace kernel to have run at every step on the one side and no kernel on
    the other (watched at ``refnet.kernels.load``), so the row never compares the array code with itself.
    """
    def run():
        p = Problem(cell)
        x, s0, y, w = p.x[:, :1], p.s0[:1], p.y[:, :1], p.weights[:, :1]
        results, calls = {}, {}
        for flag in ("1", "0"):
            with kernel_path(flag) as called:
                if algorithm == "snap1":
                    res = snap(p.cell, p.theta, x, s0, p.head, p.beta, y, w, n=1)
                else:
                    res = rflo(p.cell, p.theta, x, s0, p.head, p.beta, y, w)
            results[flag], calls[flag] = _flat(p, res.dtheta), list(called)
        report = _relative(results["1"], results["0"])
        ran = calls["1"].count("_trace_update")
        took = ran == T and not calls["0"]
        detail = (f"batch 1, numba vs NumPy; _trace_update ran {ran} times (of {T} steps), "
                  f"REFNET_NUMBA=0 ran {calls['0'] or 'no kernel'}")
        return report.max_rel_error, report.rtol, report.passed and took, detail
    return run


def _fastrnn_kfrtrl_exact_columns(batch=B, seed=3):
    """One public kfrtrl() call on FastRNN at batch > 1: α̂ and β̂, carried by RTRL's own recursion
    (not factored), get RTRL's gradient to rounding, whatever the random signs."""
    def run():
        p = Problem(lambda: FastRNN(I, H))
        r0 = rng(17, p.x.dtype)            # the lively point of _fastrnn_kfrtrl: J_s far from beta I
        p.theta.update(U=r0.normal((H, H), 0.5), alpha=r0.normal((1,), 1.0), beta=r0.normal((1,), 1.0))
        x, s0, y, w = p.x[:, :batch], p.s0[:batch], p.y[:, :batch], p.weights[:, :batch]
        ours = kfrtrl(p.cell, p.theta, x, s0, p.head, p.beta, y, w, rng=rng(seed, p.x.dtype)).dtheta
        exact = rtrl(p.cell, p.theta, x, s0, p.head, p.beta, y, w).dtheta
        names = ("alpha", "beta")
        report = compare_grads({k: to_numpy(ours[k]) for k in names}, {k: to_numpy(exact[k]) for k in names},
                               rtol=exact_tol(), reference_name="rtrl", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, f"B={batch}; {worst(report)}"
    return run


def _fastrnn_kfrtrl(seed=7):
    def run():
        p = Problem(lambda: FastRNN(I, H))
        # EdgeML's init (α ≈ 0.05, β ≈ 0.95, U ~ 0.1·N(0, 1)) leaves J_s ≈ β I; draw a livelier point
        r0 = rng(17, p.x.dtype)
        p.theta.update(U=r0.normal((H, H), 0.5), alpha=r0.normal((1,), 1.0), beta=r0.normal((1,), 1.0))
        x, s0, y, w = p.x[:, :1], p.s0[:1], p.y[:, :1], p.weights[:, :1]
        g = to_numpy(p.cell.flat_params(rtrl(p.cell, p.theta, x, s0, p.head, p.beta, y, w).dtheta))
        G = estimates(p, kfrtrl, N_ESTIMATES, seed=seed)      # the public kfrtrl(), batch 1
        test = z_test(G, g, rtol=exact_tol())
        return test.max_z, test.critical, test.passed, (f"max|z| over P={test.p} at N={test.n}, Bonferroni "
                                                        f"crit {test.critical:.2f} (alpha={ALPHA:g}); alpha, "
                                                        f"beta carried exactly; var/|g|^2 = {test.rel_variance:.3g}")
    return run


def checks():
    """The family's checks, in display order.

    For each leaky cell: :func:`~gradcheck.matrix.core.cell_checks` and
    :func:`~gradcheck.matrix.rtrl.rtrl_checks`; then FastRNN's KF-RTRL rows, the
    SnAp-n and RFLO rows, and (NumPy backend only) their kernels = twins.

    Returns
    -------
    list of Check
        The rows, each with its cell, algorithm, relation and ``run``.

    Raises
    ------
    ValueError
        If ``REFNET_BACKEND`` names no backend (read to decide whether the
        kernel rows apply).
    """
    out = []
    for name, factory in CELLS.items():
        out += cell_checks(name, factory)
        out += rtrl_checks(name, factory)            # RTRL = BPTT; UORO and KF-RTRL z-tests
    out.append(Check("fastrnn", "kfrtrl", f"mean of N={N_ESTIMATES} public calls -> rtrl (z-test; alpha, beta exact)", _fastrnn_kfrtrl()))
    out.append(Check("fastrnn", f"kfrtrl(B={B})", "alpha, beta (not factored) = rtrl exactly, one public call",
                     _fastrnn_kfrtrl_exact_columns()))
    for name, factory in SNAP_CELLS.items():
        out.append(Check(name, "snap(1,2)", "= dense masked twin (sensitivity, dtheta)", _snap_equals_twin(factory)))
        out.append(Check(name, "snap2", "= rtrl (W_hh as drawn, dense but iRNN: mask closed at n = 2)", _snap_equals_rtrl(factory, 2)))
        n_diag = 2 if name == "lstm" else 1
        out.append(Check(name, f"snap{n_diag}", "= rtrl (diagonal W_hh)",
                         _snap_equals_rtrl(factory, n_diag, lambda n: np.eye(n), "diagonal W_hh; ")))
        if "relu" not in name and name != "irnn":   # a silent ReLU unit zeroes structural nonzeros
            out.append(Check(name, "snap mask", "= reach of the jacobians' nonzeros, n = 1, 2, 3 (ring)",
                             _snap_mask(factory)))
        if name != "lstm":
            out.append(Check(name, "snap(d+1)", "= rtrl at n = diameter + 1, != at n = diameter (ring)",
                             _snap_diameter(factory, strict="relu" not in name and name != "irnn")))
    for name, factory in RFLO_CELLS.items():
        out.append(Check(name, "rflo", "= rtrl (W_hh = 0; dtheta, dbeta)", _rflo_equals_rtrl(factory)))
        out.append(Check(name, "rflo(B)", "= sum_t (B e_t)^T M_t, RTRL's M (W_hh = 0)", _rflo_feedback(factory)))
        out.append(Check(name, "rflo", "= dense twin (1 - alpha) M + J_theta (W_hh != 0)", _rflo_equals_twin(factory)))
    if backend_name() == "numpy":                   # the kernels run on NumPy arrays only
        out.append(Check("elman_tanh", "snap1 kernel", "numba = plain twin (batch 1)",
                         _kernel_twin(SNAP_CELLS["elman_tanh"], "snap1")))
        out.append(Check("leaky_tanh", "rflo kernel", "numba = plain twin (batch 1)",
                         _kernel_twin(CELLS["leaky_tanh"], "rflo")))
    return out
