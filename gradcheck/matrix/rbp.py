"""Recurrent back-propagation at an equilibrium: RBP, CG-RBP, GMRES-RBP, Neumann-RBP (Liao et al. 2018).

Each convergent model is a cell iterated on a static input x (B, I), with a
readout loss at its equilibrium: L(θ, x) = Σ_b w_b ℓ(head(output(h*_b)), y_b),
h* = F(θ, x, h*).  Relations (Liao et al. 2018, Algs. 1–2, Props 1–3):

=================  ===========================================================
rbp                = FD of L(h*(θ, x)) in every coordinate of θ and x (Elman,
                   Hopfield) or along 6 random directions (LSTM, GRU), h* re-solved
                   by fixed-point iteration to ‖F(h) − h‖_∞ <= 1e-14 at every FD point
cg_rbp, gmres_rbp  the same along 4 random directions (each FD point costs a solve;
                   they share rbp's linear system, not its iteration)
neumann_rbp(K)     = TBPTT through K + 1 applications of F on a trajectory
                   converged for its last steps, exactly (Prop. 2; the K + 1
                   is the README's Reference-section index convention)
neumann_rbp(T−1)   = BPTT through a T-step trajectory that converged to h*,
                   exactly up to the transient's ρ^(T − t) terms (Prop. 1)
operators          linearise(...)'s A = I − Jᵀ, Aᵀ = I − J, J and Jᵀ = the dense J_s of the
                   cell's ``jacobians`` at h* (elman_tanh, hopfield_leak)
claims             a solve's reported residual = ‖∂L/∂h* − (I − Jᵀ) z‖₂ measured from the
                   cell's step_vjp, and converged ⇔ it meets the tolerance (rbp, cg_rbp,
                   gmres_rbp, neumann_rbp(300) given an rtol; on elman_tanh and hopfield_leak)
prop 3             ‖g_K − z*‖ <= ‖(I − Jᵀ)^{-1}‖ ‖J‖^{K+1} ‖∂L/∂h*‖ per example,
                   K = 0..8, on random contractive cells (ratio <= 1)
=================  ===========================================================

plus the standard cell rows (:func:`gradcheck.matrix.core.cell_checks`) for
the continuous Hopfield network, at a = 1 (Liao et al.) and at a = 0.5, where
the leak term (1 − a) s is nonzero.  The FD tolerance 1e-14 is tighter than the
1e-12 the issue asks for: a central difference with ε = 1e-6 divides the
solve error by ε, so 1e-12 would already cost 1e-6 of relative accuracy.
"""
import numpy as np

import refnet
from refnet.algorithms.rbp import cg_rbp, gmres_rbp, neumann_rbp, rbp
from refnet.backend import get_dtype, rng, to_numpy
from refnet.cells.hopfield import Hopfield
from refnet.solvers import fixed_point
from refnet.solvers.operators import linearise

from ..check import check_directional, compare_grads
from ..tolerances import tolerances_for
from .common import B, Check, H, I, O, check_fd, exact_tol, f64, worst
from .core import cell_checks

__all__ = ["checks", "CONVERGENT"]


def _contractive_elman():
    return refnet.ElmanRNN(I, H, "tanh")


CONVERGENT = {
    "elman_tanh": _contractive_elman,       # W_hh rescaled to ‖W_hh‖₂ = 0.9 in _theta
    "lstm": lambda: refnet.LSTM(I, H),
    "gru": lambda: refnet.GRU(I, H),
    "hopfield": lambda: Hopfield(I, 3, 2, init_std=0.5),
    # a = 0.5: the leak (1 − a) s of the Euler step is nonzero (at a = 1, Liao et al.'s setting,
    # it vanishes), so its VJP/JVP terms are checked too.
    "hopfield_leak": lambda: Hopfield(I, 3, 2, a=0.5, init_std=0.5),
}

# ‖F(h) − h‖_∞ for the h* under finite differences: near the rounding floor of each dtype.
SOLVE_TOL = {np.dtype("float64"): 1e-14, np.dtype("float32"): 1e-6}
STEPS = 400     # trajectory length: ρ(J) <= 0.9 here, so the first ~350 steps converge to rounding
K = 3
# Cells small enough for a central difference in every coordinate within the matrix's time budget
# (each FD point re-solves h*: ~100 fixed-point steps); LSTM and GRU get random directions.
FULL_FD = ("elman_tanh", "hopfield", "hopfield_leak")


def _theta(cell, r):
    theta = cell.init(r)
    if isinstance(cell, refnet.ElmanRNN):
        W = to_numpy(theta["weight_hh"])
        theta["weight_hh"] = theta["weight_hh"] * (0.9 / np.linalg.norm(W, 2))
    return theta


class _Problem:
    """A convergent cell on a static input, its equilibrium and a readout loss there."""

    def __init__(self, name, seed=0):
        r = rng(seed)
        self.cell = CONVERGENT[name]()
        self.theta = _theta(self.cell, r)
        self.x = r.normal((B, I))
        self.head = refnet.Head(self.cell.n_out, O)
        self.beta = self.head.init(r)
        self.y = r.integers(0, O, (B,))
        self.w = refnet.heads.every_step(1, B)[0]
        self.h_star = fixed_point(self.cell, self.theta, self.x, tol=SOLVE_TOL[get_dtype()],
                                  maxiter=5000).h
        _, dy, _ = self.head.loss_and_grad(self.beta, self.cell.output(self.h_star), self.y, self.w)
        self.dh = self.cell.output_vjp(dy)
        self.beta64 = {k: f64(v) for k, v in self.beta.items()}
        self.y64, self.w64, self.h64 = f64(self.y), f64(self.w), f64(self.h_star)

    def point(self, dtheta=None, dx=None):
        """θ and x (or their gradients) as one float64 NumPy dict."""
        theta, x = (self.theta, self.x) if dtheta is None else (dtheta, dx)
        out = {f"theta/{k}": to_numpy(v) for k, v in theta.items()}
        out["x"] = to_numpy(x)
        return out

    def loss(self, flat):
        """L(h*(θ, x)) in float64, h* re-solved to 1e-14 from the nominal h*."""
        theta = {k: f64(flat[f"theta/{k}"]) for k in self.theta}
        x = f64(flat["x"])
        h = fixed_point(self.cell, theta, x, self.h64, tol=1e-14, maxiter=5000).h
        return float(self.head.loss_value(self.beta64, self.cell.output(h), self.y64, self.w64))


def _fd(name, solver, directions=None):
    """Every coordinate of (θ, x) against FD, or ``directions`` random directions (2 solves each)."""
    def run():
        p = _Problem(name)
        res = solver(p.cell, p.theta, p.x, p.h_star, p.dh)
        grads = p.point(res.dtheta, res.dx)
        if directions is None:
            report = check_fd(p.loss, p.point(), grads)
        else:
            row = tolerances_for(get_dtype())
            report = check_directional(p.loss, p.point(), grads, n_directions=directions,
                                       eps=tolerances_for(np.float64)["eps"], rtol=row["rtol"],
                                       atol=row["atol"], raise_on_failure=False)
        where = worst(report) if directions is None else f"worst {report.params[0].name}"
        return report.max_rel_error, report.rtol, report.passed, (
            f"{where}; {res.iterations} iterations, linear residual {res.residual:.1e}")
    return run


def _last_step_run(p, s0, T):
    """(x repeated T times, s0, labels and weights of a loss at step T only)."""
    xp_x = p.x[None].repeat(T, axis=0)
    y = p.y[None].repeat(T, axis=0)
    return xp_x, s0, y, refnet.heads.last_step(T, B, like=p.x)


def _neumann_equals_tbptt(name):
    def run():
        p = _Problem(name)
        x, s0, y, w = _last_step_run(p, rng(1).normal((B, p.cell.n_state), 0.5), STEPS)
        # Only step T carries a loss, so of the windows of TBPTT(K + 1, K + 1) only the last,
        # back through K + 1 applications of F from s_T, contributes.
        trunc = refnet.tbptt(p.cell, p.theta, x, s0, p.head, p.beta, y, w, k1=K + 1, k2=K + 1)
        s_T = trunc.s_T
        _, dy, _ = p.head.loss_and_grad(p.beta, p.cell.output(s_T), p.y, p.w)
        res = neumann_rbp(p.cell, p.theta, p.x, s_T, p.cell.output_vjp(dy), K=K)
        report = compare_grads({k: to_numpy(v) for k, v in res.dtheta.items()},
                               {k: to_numpy(v) for k, v in trunc.dtheta.items()}, rtol=exact_tol(),
                               reference_name=f"tbptt(k2={K + 1})", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, (
            f"{worst(report)}; ‖F(s_T) − s_T‖_∞ = {res.fixed_point_residual:.1e}")
    return run


def _neumann_equals_bptt(name):
    def run():
        p = _Problem(name)
        x, s0, y, w = _last_step_run(p, rng(1).normal((B, p.cell.n_state), 0.5), STEPS)
        full = refnet.bptt(p.cell, p.theta, x, s0, p.head, p.beta, y, w)
        _, dy, _ = p.head.loss_and_grad(p.beta, p.cell.output(full.s_T), p.y, p.w)
        res = neumann_rbp(p.cell, p.theta, p.x, full.s_T, p.cell.output_vjp(dy), K=STEPS - 1)
        report = compare_grads({k: to_numpy(v) for k, v in res.dtheta.items()},
                               {k: to_numpy(v) for k, v in full.dtheta.items()}, rtol=exact_tol(),
                               reference_name="bptt", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, (
            f"{worst(report)}; Neumann residual {res.residual:.1e}")
    return run


def _prop3(name, seeds=5, K_max=8):
    """max over seeds, examples and K of ‖g_K − z*‖ / (‖(I − Jᵀ)^{-1}‖ ‖J‖^{K+1} ‖g‖), 2-norms."""
    def run():
        worst_ratio, where = 0.0, ""
        for seed in range(seeds):
            p = _Problem(name, seed)
            _, cache = p.cell.step(p.theta, p.h_star, p.x)
            J = to_numpy(p.cell.jacobians(p.theta, cache)[0]).astype(np.float64)
            g = to_numpy(p.dh).astype(np.float64)
            A = np.eye(J.shape[1])[None] - J.transpose(0, 2, 1)                 # I − Jᵀ per example
            z_star = np.linalg.solve(A, g[:, :, None])[:, :, 0]
            scale = np.linalg.norm(np.linalg.inv(A), 2, axis=(1, 2)) * np.linalg.norm(g, axis=1)
            norm_J = np.linalg.norm(J, 2, axis=(1, 2))
            for k in range(K_max + 1):
                g_K = to_numpy(neumann_rbp(p.cell, p.theta, p.x, p.h_star, p.dh, K=k).z)
                ratio = np.linalg.norm(g_K - z_star, axis=1) / (scale * norm_J ** (k + 1))
                b = int(ratio.argmax())
                if ratio[b] > worst_ratio:
                    worst_ratio = float(ratio[b])
                    where = f"seed {seed}, example {b}, K = {k}, ‖J‖₂ = {norm_J[b]:.2f}"
        return worst_ratio, 1.0, worst_ratio <= 1.0, f"error / bound, worst at {where}"
    return run


def _operators():
    """``linearise(...).adjoint_system()`` A = I − Jᵀ and its Aᵀ = I − J, and the Jacobian operators,
    against the dense J_s of the cell's ``jacobians`` at h*, on elman_tanh and hopfield_leak (J not symmetric)."""
    def run():
        worst_err, details = 0.0, []
        for name in ("elman_tanh", "hopfield_leak"):
            p = _Problem(name)
            lin = linearise(p.cell, p.theta, p.x, p.h_star)
            J = p.cell.jacobians(p.theta, lin.cache)[0]                      # (B, n, n)
            v = rng(3).normal(p.h_star.shape)
            Jv, JTv = (J @ v[:, :, None])[:, :, 0], (v[:, None, :] @ J)[:, 0, :]
            A = lin.adjoint_system()
            ours = {"A v": A.matvec(v), "A^T v": A.rmatvec(v), "A v (flat)": A.matvec(v.reshape(-1)),
                    "J v": lin.jacobian().matvec(v), "J^T v": lin.jacobian_transpose().matvec(v)}
            dense = {"A v": v - JTv, "A^T v": v - Jv, "A v (flat)": (v - JTv).reshape(-1), "J v": Jv, "J^T v": JTv}
            report = compare_grads({k: to_numpy(a) for k, a in ours.items()},
                                   {k: to_numpy(a) for k, a in dense.items()},
                                   rtol=exact_tol(), reference_name="jacobians", raise_on_failure=False)
            worst_err = max(worst_err, report.max_rel_error)
            details.append(f"{name}: {worst(report) or 'all agree'}")
        return worst_err, exact_tol(), worst_err <= exact_tol(), "; ".join(details)
    return run


CLAIM_RTOL = {np.dtype("float64"): 1e-6, np.dtype("float32"): 1e-3}


def _claims(solver, **kwargs):
    """What a solve claims against what it returned, on elman_tanh (J not symmetric) and hopfield_leak:
    its ``residual`` = ‖∂L/∂h* − (I − Jᵀ) z‖₂, measured here from the cell's own step_vjp (not the
    solver's operator), and ``converged`` ⇔ that is <= max(rtol ‖∂L/∂h*‖₂, 0) = ``info.tolerance``.

    rtol (CLAIM_RTOL) is loose so that the residual left is far above rounding: the reported and
    the measured residual then agree to ~1e-9 relative, while a residual of another system (the
    normal equations', (I − J)'s) differs by O(1).  Rounding of b − A z, up to 10 ε ‖b‖, is
    allowed for, for a solver that overshoots to rounding (GMRES in B·n steps, CG here).
    """
    def run():
        worst_err, details, ok = 0.0, [], True
        for name in ("elman_tanh", "hopfield_leak"):
            p = _Problem(name)
            rtol = CLAIM_RTOL[np.dtype(get_dtype())]
            res = solver(p.cell, p.theta, p.x, p.h_star, p.dh, rtol=rtol, **kwargs)
            _, cache = p.cell.step(p.theta, p.h_star, p.x)
            r = p.dh - res.z + p.cell.step_vjp(p.theta, cache, res.z)[0]
            measured = float(np.linalg.norm(to_numpy(r).astype(np.float64)))
            b_norm = float(np.linalg.norm(to_numpy(p.dh).astype(np.float64)))
            # relative error, against at least 1e7 ε ‖b‖: a difference of 10 ε ‖b‖ (rounding) passes
            err = abs(res.residual - measured) / max(measured, 1e7 * float(np.finfo(get_dtype()).eps) * b_norm)
            # the solver's ‖b‖ is summed in the active dtype: its threshold agrees with ours to its rounding
            threshold = rtol * b_norm
            claimed = (res.converged == (measured <= res.info.tolerance)
                       and abs(res.info.tolerance - threshold) <= 1e-5 * threshold)
            ok = ok and claimed
            worst_err = max(worst_err, err)
            details.append(f"{name}: reported {res.residual:.3e}, measured {measured:.3e}, converged "
                           f"{res.converged}" + ("" if claimed else " (wrong claim)"))
        tol = 1e-6
        return worst_err, tol, ok and worst_err <= tol, "; ".join(details)
    return run


def checks():
    """The RBP family: implicit gradients against FD, Neumann-RBP against (T)BPTT, Prop. 3; Hopfield rows.

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
    for name in CONVERGENT:
        out += [
            Check(name, "rbp", "= FD of L(h*(theta, x)), h* to 1e-14", _fd(name, rbp))
            if name in FULL_FD else
            Check(name, "rbp", "= FD of L(h*) along 6 random directions", _fd(name, rbp, 6)),
            Check(name, "cg_rbp", "= FD of L(h*) along 4 random directions", _fd(name, cg_rbp, 4)),
            Check(name, "gmres_rbp", "= FD of L(h*) along 4 random directions", _fd(name, gmres_rbp, 4)),
            Check(name, f"neumann_rbp({K})", f"= tbptt through K+1 = {K + 1} steps (Prop. 2)",
                  _neumann_equals_tbptt(name)),
            Check(name, f"neumann_rbp({STEPS - 1})", f"= bptt, {STEPS} converged steps (Prop. 1)",
                  _neumann_equals_bptt(name)),
        ]
    out += [Check(name, "neumann_rbp(0..8)", "Prop. 3 error bound holds (ratio <= 1)", _prop3(name))
            for name in ("elman_tanh", "hopfield", "hopfield_leak")]
    out.append(Check("elman,hopfield", "operators", "A = I - J^T, A^T = I - J, J, J^T = dense jacobians()",
                     _operators()))
    out += [Check("elman,hopfield", f"{algorithm} claims", "residual = |dL/dh* - (I - J^T) z| measured, "
                  "converged <=> <= tolerance", _claims(solver, **kwargs))
            for algorithm, solver, kwargs in (("rbp", rbp, {}), ("cg_rbp", cg_rbp, {}), ("gmres_rbp", gmres_rbp, {}),
                                              ("neumann_rbp(300)", neumann_rbp, {"K": 300}))]
    out += cell_checks("hopfield", CONVERGENT["hopfield"])
    out += cell_checks("hopfield_leak", CONVERGENT["hopfield_leak"])
    return out
