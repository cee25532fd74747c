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
fixture(uoro)          the products UORO takes at every step = FD of kicks: a_t = J_s s̃_{t−1} =
                       FD of the step along s̃_{t−1} (one kick per step and example), b_t = ν_tᵀ J_θ
                       = FD in θ of Σ_t Σ_b q_t[b] ⟨ν_t[b], s_t⟩; and s̃_t, θ̃_t = Alg. 1 written out
                       from the recorded a_t, b_t and stored signs ν_t (to rounding)
fixture(kfrtrl)        J_s A_{t−1} = FD of the step along A_{t−1}'s columns (a kick per step, example
                       and column); diag(D_t) ⊗ ĥ_t = FD in θ of the step on the factored blocks;
                       M_rest as fixture(rtrl) on its columns; A_t, u_t = Eq. 5 with Lemma 1's p1,
                       p2 written out from the recorded products and stored signs c1, c2
fixture(<rbp variant>) z = FD of L = ⟨g, h*⟩ under a kick ε to the map, h* = F(h*) + ε (each
                       evaluation re-solves the equilibrium to 1e-14); dθ, dx = FD of L(h*(θ, x));
                       Neumann-RBP(K): the same through K + 1 applications of F from h* (Prop. 2);
                       h* an equilibrium; RBP/Neumann's iterates z_i = Jᵀ z_{i−1} + g with Jᵀ z
                       by FD of ⟨z, F(h*)⟩ in h (the last iterate: Neumann-RBP's z)
fixture(bptt) inner    ERNN and both fast-weight forms (refnet/fixtures/inner.py): every step's
                       inner adjoints (ERNN: dh_k, da_k per inner iteration k; fast weights:
                       dh_s, da_s per inner step s, and dz) = FD of L under a kick to that inner
                       quantity at step t of one example (the step written out here from Eq. 9/12,
                       resp. Eq. 2 with the cell's memory read and write); the forward inner
                       traces = that write-out (to rounding).  Hopfield (leak a = 0.5): ds and
                       ∂L/∂(b u) = FD of kicks after the step and to σ's argument (W formed from
                       U explicitly); u, σ(b u), s written out.  Exact ERNN: dh, the implicit
                       adjoint z and ∂L/∂g = D z = FD of kicks after the step, to the map
                       (h = T(h) + ε) and to g, the equilibrium re-solved by Newton to rounding;
                       h* written out, its residual ‖T(h*) − h*‖ to an absolute 1e-12
fixture(fpp)           FPP transition (Algorithm 1): ∂L/∂s_T and ∂L/∂s'_{T+1} = FD of L = L_s + L_t
                       under a kick to the state after step 1 and after step 2 (one per example and
                       unit); grads = FD of L in θ, β, s_{T−1}, s_{T+1}; s_T, s'_{T+1}, the losses and
                       the written-back state (both steps re-run under θ − lr ∂L/∂θ) = written out
                       from ``cell.step`` and the head (to rounding)
=====================  ==========================================================================

The "written out" parts replay the paper's update independently of
:mod:`refnet.algorithms`; the worst of a row's parts (error over its bound) is its result.
"""
import numpy as np

import refnet
from refnet.algorithms.bptt import forward
from refnet.backend import rng, to_numpy, xp_of
from refnet.fixtures import CELLS as FIXTURE_CELLS
from refnet.cells.activations import relu
from refnet.cells.layer_norm import ln
from refnet.fixtures import (INNER_CELLS, RBP_VARIANTS, STEP_CELLS, cell_bptt_fixture, fpp_fixture,
                             implicit_fixture, inner_bptt_fixture, kfrtrl_fixture, rtrl_fixture, uoro_fixture)
from refnet.solvers.nonlinear import fixed_point as map_fixed_point
from refnet.fixtures.steps import _problem

from .common import Check, O, check_fd, exact_tol, f64, worst

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
        r = to_numpy(rng(1).normal(M.shape[:3]))                         # weights r_t (T, B, n)
        analytic = np.einsum("tbn,tbnp->p", r, M)
        columns = {k: (first, shape) for k, first, shape in fx.meta["param_columns"]}
        grads = {k: analytic[first:first + int(np.prod(shape))].reshape(shape) for k, (first, shape) in columns.items()}
        r64 = f64(r)

        def pairing(flat):
            s = forward(c, {k: f64(flat[k]) for k in theta}, f64(x), f64(s0)).s
            return float(sum((s[t] * r64[t - 1]).sum() for t in range(1, T + 1)))
        point = {k: to_numpy(theta[k]) for k in theta}
        report = check_fd(pairing, point, grads)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _replayed(fx, name):
    """The fixture's cell, θ (float64), x and the states s[0..T] re-run from its own data."""
    c = _problem(name, 0, T, B, I, H, O)[0]
    A, suffix = fx.arrays, ("_l0" if name in FIXTURE_CELLS else "")
    theta = {k: f64(A[f"params/{k}{suffix}"]) for k in c.param_shapes()}
    x = f64(A["inputs/x"])
    s0 = np.concatenate([A["inputs/h0"][0]] + ([A["inputs/c0"][0]] if "inputs/c0" in A else []), axis=1)
    return c, theta, x, forward(c, theta, x, f64(s0)).s


def _split(flat, columns, names=None):
    """A flat (P,) vector as a params dict by ``meta['param_columns']`` ([name, first, shape])."""
    return {k: flat[first:first + int(np.prod(shape))].reshape(shape) for k, first, shape in columns
            if names is None or k in names}


def _previous(trace):
    """The trace shifted by one step: row t − 1 holds the value before step t (zeros before step 1)."""
    return np.concatenate([np.zeros_like(trace[:1]), trace[:-1]])


def _relative(ours, recorded):
    """max |ours − recorded| / max(‖recorded‖_∞, tiny) over a list of pairs."""
    return max(float(np.abs(a - r).max() / max(np.abs(r).max(), 1e-300)) for a, r in zip(ours, recorded))


def _worst_of(parts):
    """One row's result from its parts [(label, error, bound, passed, detail)]: the largest error/bound."""
    label, error, bound, passed, detail = max(parts, key=lambda p: p[1] / max(p[2], 1e-300))
    return error, bound, all(p[3] for p in parts), f"{label}: {detail}" if detail else label


def _fd_part(label, f, point, grads):
    report = check_fd(f, point, grads)
    return label, report.max_rel_error, report.rtol, report.passed, worst(report)


def _uoro_fd(name):
    def run():
        fx = uoro_fixture(name, T=T, B=B, input_size=I, hidden_size=H, output_size=O)
        c, theta, x, s = _replayed(fx, name)
        A = fx.arrays
        a, b, nu = A["forward/J_s_s_tilde_l0"], A["forward/nu_J_theta_l0"], A["inputs/nu"]
        s_tilde, theta_tilde = A["forward/s_tilde_l0"], A["forward/theta_tilde_l0"]
        before = f64(_previous(s_tilde))
        r, q = to_numpy(rng(1).normal(a.shape)), to_numpy(rng(2).normal(a.shape[:2]))
        r64, q64, nu64 = f64(r), f64(q), f64(nu)

        def along(point):                  # a kick ε_{t,b} along s̃_{t−1}[b] at step t
            eps = f64(point["eps"])
            return float(sum((r64[t - 1] * c.step(theta, s[t - 1] + eps[t - 1][:, None] * before[t - 1],
                                                  x[t - 1], t - 1)[0]).sum() for t in range(1, T + 1)))

        def paired(point):
            th = {k: f64(point[k]) for k in theta}
            return float(sum((q64[t - 1][:, None] * nu64[t - 1] * c.step(th, s[t - 1], x[t - 1], t - 1)[0]).sum()
                             for t in range(1, T + 1)))
        parts = [_fd_part("a_t", along, {"eps": np.zeros(a.shape[:2])}, {"eps": np.einsum("tbn,tbn->tb", r, a)}),
                 _fd_part("b_t", paired, {k: to_numpy(v) for k, v in theta.items()},
                          _split(np.einsum("tb,tbp->p", q, b), fx.meta["param_columns"]))]
        # Alg. 1 written out, per example: rho0 = sqrt(|θ̃|/(|a|+ε)) + ε, rho1 = sqrt(|b|/(|ν|+ε)) + ε
        eps, norm = 1e-7, (lambda v: np.sqrt((v * v).sum(axis=-1, keepdims=True)))
        theta_before = _previous(theta_tilde)
        rho0 = np.sqrt(norm(theta_before) / (norm(a) + eps)) + eps
        rho1 = np.sqrt(norm(b) / (norm(nu) + eps)) + eps
        error = _relative([rho0 * a + rho1 * nu, theta_before / rho0 + b / rho1], [s_tilde, theta_tilde])
        parts.append(("Alg. 1", error, exact_tol(), error <= exact_tol(), ""))
        return _worst_of(parts)
    return run


def _kfrtrl_fd(name):
    def run():
        fx = kfrtrl_fixture(name, T=T, B=B, input_size=I, hidden_size=H, output_size=O)
        c, theta, x, s = _replayed(fx, name)
        A = fx.arrays
        JA, D, h_hat, A_t, u = (A[f"forward/{q}_l0"] for q in ("J_s_A", "D", "h_hat", "A", "u"))
        signs = A["inputs/c"]
        A_before, u_before = _previous(A_t), _previous(u)
        A64 = f64(A_before)
        r, R = to_numpy(rng(1).normal(D.shape)), to_numpy(rng(2).normal(D.shape))
        r64, R64 = f64(r), f64(R)

        def along(point):                  # kicks ε_{t,b,j} along column j of A_{t−1}[b] at step t
            eps = f64(point["eps"])
            return float(sum((r64[t - 1] * c.step(theta, s[t - 1] + np.einsum("bij,bj->bi", A64[t - 1], eps[t - 1]),
                                                  x[t - 1], t - 1)[0]).sum() for t in range(1, T + 1)))
        blocks = fx.meta["u_blocks"]

        def paired(point):
            th = dict(theta, **{k: f64(point[k]) for k in blocks})
            return float(sum((R64[t - 1] * c.step(th, s[t - 1], x[t - 1], t - 1)[0]).sum() for t in range(1, T + 1)))
        RD = R * D
        analytic = {k: np.einsum("tbi,tbj->ij", RD, h_hat[:, :, first:last]).reshape(theta[k].shape)
                    for k, (first, last) in blocks.items()}
        parts = [_fd_part("J_s A_(t-1)", along, {"eps": np.zeros(D.shape)},
                          {"eps": np.einsum("tbi,tbij->tbj", r, JA)}),
                 _fd_part("D (x) h_hat", paired, {k: to_numpy(theta[k]) for k in blocks}, analytic)]
        if "forward/M_rest_l0" in A:      # the exactly carried columns: as fixture(rtrl)
            M, rest = A["forward/M_rest_l0"], fx.meta["rest_columns"]
            w = to_numpy(rng(3).normal(M.shape[:3]))
            w64 = f64(w)
            g = np.einsum("tbn,tbnp->p", w, M)

            def pairing(point):
                states = forward(c, dict(theta, **{k: f64(point[k]) for k in rest}), x, s[0]).s
                return float(sum((states[t] * w64[t - 1]).sum() for t in range(1, T + 1)))
            parts.append(_fd_part("M_rest", pairing, {k: to_numpy(theta[k]) for k in rest},
                                  {k: g[first:last].reshape(theta[k].shape) for k, (first, last) in rest.items()}))
        # Eq. 5 with Lemma 1's p1, p2 written out
        eps = 1e-7
        norm = (lambda v: np.sqrt((v * v).reshape(v.shape[0], v.shape[1], -1).sum(axis=-1)))
        p1 = np.sqrt((norm(JA) + eps) / (norm(u_before) + eps))
        p2 = np.sqrt((norm(D) + eps) / (norm(h_hat) + eps))
        c1, c2 = signs[:, 0], signs[:, 1]                                  # (T, B)
        u_ours = (c1 * p1)[..., None] * u_before + (c2 * p2)[..., None] * h_hat
        A_ours = (c1 / p1)[..., None, None] * JA + (c2 / p2)[..., None, None] * (D[..., :, None] * np.eye(D.shape[-1]))
        error = _relative([A_ours, u_ours], [A_t, u])
        parts.append(("Eq. 5", error, exact_tol(), error <= exact_tol(), ""))
        return _worst_of(parts)
    return run


def _implicit_fd(name, variant):
    def run():
        fx = implicit_fixture(name, variant=variant, B=B, input_size=I, hidden_size=H, K=40)
        A = fx.arrays
        c = _problem(name, 0, 1, B, I, H, O)[0]
        theta = {k: f64(A[f"params/{k}"]) for k in c.param_shapes()}
        x, g, h_star = f64(A["inputs/x"]), f64(A["cotangents/h_star"]), f64(A["forward/h_star"])

        def solved(th, xx, kick):          # h* of h = F(h) + kick, from the fixture's h* (close by)
            if variant == "neumann_rbp":     # Prop. 2: TBPTT through K + 1 applications of F from h* (held)
                h = h_star
                for _ in range(fx.meta["options"]["K"] + 1):
                    h = c.step(th, h, xx)[0] + kick
            else:
                h, _ = map_fixed_point(lambda h: c.step(th, h, xx)[0] + kick, h_star, tol=1e-14, maxiter=20000)
            return float((g * h).sum())
        zero = np.zeros(A["backward/z"].shape)
        parts = [_fd_part("z", lambda p: solved(theta, x, f64(p["eps"])), {"eps": zero}, {"eps": A["backward/z"]}),
                 _fd_part("dtheta, dx", lambda p: solved({k: f64(p[k]) for k in theta}, f64(p["x"]), f64(zero)),
                          {**{k: to_numpy(v) for k, v in theta.items()}, "x": to_numpy(x)},
                          {**{k: A[f"grads/{k}"] for k in theta}, "x": A["grads/x"]})]
        gap = float(np.abs(to_numpy(c.step(theta, h_star, x)[0]) - to_numpy(h_star)).max())
        parts.append(("h* = F(h*)", gap, 1e-12, gap <= 1e-12, ""))
        if "backward/z_iterates_l0" in A:  # z_i = Jᵀ z_{i−1} + g, Jᵀ z by FD of ⟨z, F(h)⟩ in h at h*
            Z = A["backward/z_iterates_l0"]
            before = _previous(Z)
            r = to_numpy(rng(4).normal(Z.shape[:1]))          # a weight per iterate: one FD for all

            def pulled(p):
                h = f64(p["h"])
                return float(sum(r[i] * (f64(before[i]) * c.step(theta, h, x)[0]).sum() for i in range(len(Z))))
            JTz = {"h": np.einsum("i,ibn->bn", r, Z) - r.sum() * to_numpy(g)}   # Σ_i r_i (z_i − g)
            parts.append(_fd_part("z_i", pulled, {"h": to_numpy(h_star)}, JTz))
        return _worst_of(parts)
    return run


def _ernn_written_out(cell, theta, s_prev, x, t, kick):
    """One ERNN step, Eq. 9 with Eq. 12's φ (I + U series), a kick added after each inner quantity."""
    eta = theta["eta"] if theta["eta"].ndim == 1 else theta["eta"][t]
    inp = x @ theta["W"].T + theta["b"]
    h = s_prev + kick("dh_k0")
    values = {}
    for k in range(1, cell.K + 1):
        a = h @ theta["V"].T + inp
        phi = cell.sigma.fn(a + a @ theta["U"].T)
        values[f"a_k{k}"], values[f"phi_k{k}"] = a, phi
        a = a + kick(f"da_k{k}")
        phi = cell.sigma.fn(a + a @ theta["U"].T)
        h = h + eta[k - 1] * (phi - h)
        values[f"h_k{k}"] = h
        h = h + kick(f"dh_k{k}")
    return h, values


def _fast_weights_written_out(cell, theta, s_prev, x, t, kick):
    """One fast-weight step, Eq. 2 (f = ReLU, LN with gain and bias), a kick after each inner quantity."""
    def f(a):
        return relu.fn(ln(a, theta["ln_weight"], theta["ln_bias"], cell.ln_eps)[0])
    h_prev, memory = cell.read_memory(s_prev, t)
    z = h_prev @ theta["weight_hh"].T + x @ theta["weight_ih"].T
    values = {"z": z}
    z = z + kick("dz")
    h = f(z + kick("da_s0"))
    values["h_s0"] = h
    h = h + kick("dh_s0")
    for k in range(1, cell.S + 1):
        read = cell.read(memory, h, t)
        values[f"read_s{k}"] = read
        h = f(z + read + kick(f"da_s{k}"))
        values[f"h_s{k}"] = h
        h = h + kick(f"dh_s{k}")
    return cell.write(s_prev, h, t), values


def _hopfield_written_out(cell, theta, s_prev, x, t, kick):
    """One Euler step s_t = (1 − a) s_{t−1} + W_s σ(b u), u = [x, s_{t−1}], W = (U + Uᵀ) ⊙ (1 − I) formed
    explicitly (Liao et al. 2018); a kick to σ's argument b u and one after the step."""
    xp = xp_of(s_prev)                  # NumPy or the device: the write-out runs where the cell does
    W = theta["U"] + theta["U"].T
    W = W * (1.0 - xp.eye(W.shape[0], dtype=W.dtype))
    u = xp.concatenate([x, s_prev], axis=1)
    sig = 1.0 / (1.0 + xp.exp(-(cell.b * u + kick("dbu"))))
    s = (1.0 - cell.a) * s_prev + sig @ W[cell.input_size:].T
    return s + kick("ds"), {"u": u, "sig": 1.0 / (1.0 + xp.exp(-cell.b * u)), "s": s}


def _exact_ernn_written_out(cell, theta, s_prev, x, t, kick):
    """h* of h = tanh(U h + c + kick_g) + kick_z, c = V h_{t−1} + W x_t + b, by Newton's method to rounding
    (independent of the cell's solver); then a kick after the step.  kick_g's adjoint is ∂L/∂g = D z, kick_z's
    the implicit adjoint z (the map's own kick, as fixture(rbp))."""
    xp = xp_of(s_prev)
    U = theta["U"]
    c = s_prev @ theta["V"].T + x @ theta["W"].T + theta["b"]
    k_g, k_z = kick("dg"), kick("z")

    def G(h):
        return xp.tanh(h @ U.T + c + k_g) + k_z - h
    h = s_prev
    for _ in range(100):
        y = xp.tanh(h @ U.T + c + k_g)
        J = (1.0 - y * y)[:, :, None] * U[None] - xp.eye(U.shape[0], dtype=U.dtype)[None]    # ∂G/∂h per example
        step = xp.linalg.solve(J, -G(h)[:, :, None])[:, :, 0]
        h = h + step
        if xp.abs(step).max() <= 1e-15 * max(1.0, xp.abs(h).max()):
            break
    residual = xp.abs(xp.tanh(h @ U.T + c) - h).max(axis=1, keepdims=True)
    return h + kick("dh"), {"h": h, "residual": residual}


_WRITTEN_OUT = {"ernn": _ernn_written_out, "fast_weights": _fast_weights_written_out,
                "fast_weights_attention": _fast_weights_written_out, "hopfield": _hopfield_written_out,
                "exact_ernn": _exact_ernn_written_out}


def _inner_fd(name, steps):
    def run():
        fx = inner_bptt_fixture(name, T=T, B=B, input_size=I, hidden_size=H, output_size=O, inner_steps=steps)
        A = fx.arrays
        c = INNER_CELLS[name].factory(I, H, O, T, steps)
        step = _WRITTEN_OUT[name]
        theta = {k: f64(A[f"params/{k}"]) for k in c.param_shapes()}
        head = refnet.Head(c.n_out, O)
        beta = {"weight": f64(A["params/head.weight"]), "bias": f64(A["params/head.bias"])}
        x, y, w = f64(A["inputs/x"]), A["inputs/y"], f64(A["inputs/loss_weights"])
        s0 = np.zeros((B, c.n_state))
        s0[:, :A["inputs/h0"].shape[-1]] = A["inputs/h0"][0]
        s0 = f64(s0)
        backward = [k for k, info in fx.meta["traces"].items() if info["direction"] == "backward"]
        forward_keys = [k for k, info in fx.meta["traces"].items() if info["direction"] == "forward"]

        def run_sequence(kicks):
            s, total, values = s0, 0.0, {k: [] for k in forward_keys}
            for t in range(1, T + 1):
                s, v = step(c, theta, s, x[t - 1], t - 1,
                            lambda q: 0.0 if kicks is None else f64(kicks[q][t - 1]))
                for k in forward_keys:
                    values[k].append(to_numpy(v[fx.meta["traces"][k]["quantity"]]))
                total += float(head.loss_value(beta, c.output(s), y[t - 1], w[t - 1]))
            return total, values
        quantities = {fx.meta["traces"][k]["quantity"]: k for k in backward}
        grads = {q: A[k] for q, k in quantities.items()}
        parts = [_fd_part("inner adjoints", lambda p: run_sequence(p)[0],
                          {q: np.zeros(g.shape) for q, g in grads.items()}, grads)]
        _, values = run_sequence(None)
        # a residual ‖T(h*) − h*‖ is rounding (~1e-16): it is held to an absolute bound, not relative to itself
        residuals = [k for k in forward_keys if fx.meta["traces"][k]["quantity"] == "residual"]
        kept = [k for k in forward_keys if k not in residuals]
        error = _relative([np.stack(values[k]) for k in kept], [A[k] for k in kept])
        parts.append(("forward inner traces", error, exact_tol(), error <= exact_tol(), ""))
        for k in residuals:
            gap = float(np.abs(np.stack(values[k]) - A[k]).max())
            parts.append(("residual", gap, exact_tol(), gap <= exact_tol(), ""))
        return _worst_of(parts)
    return run


def _fpp_fd(name):
    def run():
        fx = fpp_fixture(name, B=B, input_size=I, hidden_size=H, output_size=O, state_weight=0.7, lr=0.3)
        A, options = fx.arrays, fx.meta["options"]
        c = _problem(name, 0, 1, B, I, H, O)[0]
        suffix = "_l0" if name in FIXTURE_CELLS else ""
        theta = {k: f64(A[f"params/{k}{suffix}"]) for k in c.param_shapes()}
        head = refnet.Head(c.n_out, O)
        beta = {"weight": f64(A["params/head.weight"]), "bias": f64(A["params/head.bias"])}
        s_prev, s_next, x, x_next = (f64(A[f"inputs/{k}"]) for k in ("s_prev", "s_next", "x", "x_next"))
        y, w, v, lam = A["inputs/y"], f64(A["inputs/loss_weights"]), f64(A["inputs/state_weights"]), options[
            "state_weight"]

        def objective(th, be, sp, sn, kick1, kick2):    # Algorithm 1 written out, with a kick after each step
            s_T = c.step(th, sp, x)[0] + kick1
            s_pred = c.step(th, s_T, x_next)[0] + kick2
            r = s_pred - sn
            L_s = lam * float((v * (r * r).sum(axis=1)).sum()) / c.n_state
            return L_s, float(head.loss_value(be, c.output(s_T), y, w)), s_T, s_pred
        zero = np.zeros(A["inputs/s_prev"].shape)
        ds = A["backward/ds_l0"]
        parts = [_fd_part("ds_T, ds'_T+1", lambda p: sum(objective(theta, beta, s_prev, s_next, f64(p["k1"]),
                                                                   f64(p["k2"]))[:2]),
                          {"k1": zero, "k2": zero}, {"k1": ds[0], "k2": ds[1]})]
        point = {**{f"theta/{k}": to_numpy(v_) for k, v_ in theta.items()},
                 **{f"beta/{k}": to_numpy(v_) for k, v_ in beta.items()},
                 "s_prev": to_numpy(s_prev), "s_next": to_numpy(s_next)}
        grads = {**{f"theta/{k}": A[f"grads/{k}{suffix}"] for k in theta},
                 **{f"beta/{k}": A[f"grads/head.{k}"] for k in beta},
                 "s_prev": A["grads/s_prev"], "s_next": A["grads/s_next"]}
        parts.append(_fd_part("grads", lambda p: sum(objective(
            {k: f64(p[f"theta/{k}"]) for k in theta}, {k: f64(p[f"beta/{k}"]) for k in beta}, f64(p["s_prev"]),
            f64(p["s_next"]), 0.0, 0.0)[:2]), point, grads))
        L_s, L_t, s_T, s_pred = objective(theta, beta, s_prev, s_next, 0.0, 0.0)
        updated = {k: theta[k] - options["lr"] * f64(A[f"grads/{k}{suffix}"]) for k in theta}
        _, _, fresh_T, written = objective(updated, beta, s_prev, s_next, 0.0, 0.0)
        s_T, s_pred, fresh_T, written = (to_numpy(a) for a in (s_T, s_pred, fresh_T, written))
        L_s, L_t = float(L_s), float(L_t)
        error = _relative([np.stack([s_T, s_pred]), np.array([L_s, L_t, L_s + L_t]), np.stack([fresh_T, written])],
                          [A["forward/s_l0"], np.array([A["forward/state_loss"], A["forward/target_loss"],
                                                        A["forward/loss"]]), A["forward/refreshed"]])
        parts.append(("steps, losses, written back", error, exact_tol(), error <= exact_tol(), ""))
        return _worst_of(parts)
    return run


UORO_CELLS = ("elman_tanh", "lstm", "gru", *STEP_CELLS)
INNER_ROWS = (("ernn", 1), ("ernn", 3), ("fast_weights", 2), ("fast_weights_attention", 2), ("hopfield", None),
              ("exact_ernn", None))
FPP_CELLS = ("elman_tanh", "lstm", "gru", *STEP_CELLS)
KFRTRL_CELLS = ("elman_tanh", "fastrnn")     # the smooth cells with kronecker_factors (ReLU's kinks spoil FD)


def checks():
    """The exporters family's checks, in display order: one row per table entry.

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
    out = [Check(name, "fixture(bptt)", "traces dh, da_* = FD of kicks at step t", _cell_traces_fd(name))
           for name in STEP_CELLS]
    out += [Check(name, "fixture(rtrl)", "sum_t <r_t, M_t> = FD of sum_t <r_t, s_t(theta)>",
                  _rtrl_sensitivities_fd(name)) for name in ("elman_tanh", "lstm", "gru", *STEP_CELLS)]
    out += [Check(name, "fixture(uoro)", "a_t, b_t = FD of kicks; s~, theta~ = Alg. 1 from the stored signs",
                  _uoro_fd(name)) for name in UORO_CELLS]
    out += [Check(name, "fixture(kfrtrl)", "J_s A, D (x) h^ = FD of kicks; A, u = Eq. 5 from the stored signs",
                  _kfrtrl_fd(name)) for name in KFRTRL_CELLS]
    out += [Check(name, f"fixture({variant})", "z, dtheta, dx = FD of kicks through the re-solved equilibrium",
                  _implicit_fd(name, variant)) for variant in RBP_VARIANTS for name in ("elman_tanh", "gru")]
    out += [Check(name, "fixture(bptt)" if steps is None else f"fixture(bptt,{INNER_CELLS[name].inner}={steps})",
                  "inner adjoints = FD of kicks at (t, inner step); inner forward = written out" if steps else
                  "step adjoints = FD of kicks at (t, quantity); forward = written out",
                  _inner_fd(name, steps)) for name, steps in INNER_ROWS]
    out += [Check(name, "fixture(fpp)", "ds_T, ds'_T+1, grads = FD of kicks; steps, write-back = written out",
                  _fpp_fd(name)) for name in FPP_CELLS]
    return out
