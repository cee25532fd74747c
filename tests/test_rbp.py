"""refnet.algorithms.rbp: the implicit VJP and RBP, CG-RBP, GMRES-RBP, Neumann-RBP against dense solves, FD, (T)BPTT."""
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refnet
from gradcheck import check_grads, compare_grads
from refnet import params as P
from refnet.solvers import ConvergenceWarning, failures, fixed_point, newton_krylov
from refnet.algorithms.rbp import ImplicitGradient, cg_rbp, gmres_rbp, neumann_rbp, rbp
from refnet.bench import rbp as bench_rbp

from conftest import CONVERGENT

SOLVERS = [rbp, cg_rbp, gmres_rbp]


def _problem(name, seed=0, B=3):
    """A cell at its equilibrium h* on a static x, and a random cotangent g = ∂L/∂h*."""
    r = refnet.rng(seed)
    cell = CONVERGENT[name]()
    theta, x = cell.init(r), r.normal((B, cell.input_size))
    h = fixed_point(cell, theta, x, tol=1e-14, rtol=0.0, maxiter=5000).h      # absolute rule only
    return cell, theta, x, h, r.normal((B, cell.n_state))


def _dense(cell, theta, x, h):
    """(J_s, J_θ, J_x) at h*, dense, J_x from JVPs along unit input tangents."""
    _, cache = cell.step(theta, h, x)
    J_s, J_theta = cell.jacobians(theta, cache)
    B, I = x.shape
    J_x = np.stack([cell.step_jvp(theta, cache, None, None, np.eye(I)[j][None].repeat(B, 0))
                    for j in range(I)], axis=2)
    return J_s, J_theta, J_x


def _implicit(cell, theta, x, h, g):
    """The implicit gradient by a dense solve of (I − Jᵀ) z = g per example."""
    J_s, J_theta, J_x = _dense(cell, theta, x, h)
    z = np.linalg.solve(np.eye(J_s.shape[1])[None] - J_s.transpose(0, 2, 1), g[:, :, None])[:, :, 0]
    dtheta = P.unflatten(np.einsum("bnp,bn->p", J_theta, z), {k: theta[k] for k in cell.param_shapes()})
    return z, dtheta, np.einsum("bni,bn->bi", J_x, z)


@settings(max_examples=8, deadline=None)
@given(name=st.sampled_from(list(CONVERGENT)), solver=st.sampled_from(SOLVERS + [neumann_rbp]),
       B=st.integers(1, 3), seed=st.integers(0, 1000))
def test_every_variant_gives_the_dense_implicit_gradient(name, solver, B, seed):
    # Solvers to rtol 1e-12 of a system with κ(I − Jᵀ) <= ~10: agreement to ~1e-10; Neumann-RBP
    # with K = 400 leaves ρ^401 <= 0.9^401 ≈ 5e-19 of the series.
    cell, theta, x, h, g = _problem(name, seed, B)
    kwargs = {"K": 400} if solver is neumann_rbp else {"rtol": 1e-12}
    res = solver(cell, theta, x, h, g, **kwargs)
    z, dtheta, dx = _implicit(cell, theta, x, h, g)
    np.testing.assert_allclose(res.z, z, rtol=0, atol=1e-10 * np.abs(z).max())
    compare_grads(dict(res.dtheta, x=res.dx), dict(dtheta, x=dx), rtol=1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
def test_implicit_gradient_equals_finite_differences_of_the_loss_at_the_equilibrium(solver):
    # L = ⟨c, output(h*(θ, x))⟩ with h* re-solved to 1e-14 at every FD point (ε = 1e-6: 1e-8 noise).
    cell, theta, x, h, _ = _problem("hopfield", seed=1)
    c = refnet.rng(9).normal((3, cell.n_out))
    res = solver(cell, theta, x, h, cell.output_vjp(c), rtol=1e-12)

    def L(flat):
        h_star = fixed_point(cell, {"U": flat["U"]}, flat["x"], h, tol=1e-14, maxiter=5000).h
        return float((c * cell.output(h_star)).sum())
    check_grads(L, dict(theta, x=x), dict(res.dtheta, x=res.dx))


@pytest.mark.parametrize("K", [0, 1, 4])
def test_neumann_rbp_K_equals_tbptt_through_K_plus_1_applications_not_K(K):
    # Prop. 2 with the README's (Reference section) index: Alg. 2 sums (Jᵀ)^0..(Jᵀ)^K, K + 1 terms, as TBPTT does
    # through K + 1 applications of F.  On a trajectory converged to rounding the two agree to
    # rounding; TBPTT through K applications misses the (Jᵀ)^K term, far above rounding.
    cell, theta, x, _, _ = _problem("gru", seed=2)
    T = 400
    xs, y = np.repeat(x[None], T, 0), np.zeros((T, 3), dtype=np.int64)
    head = refnet.Head(4, 3)
    beta, w = head.init(refnet.rng(3)), refnet.last_step(T, 3)

    def tbptt(k):
        return refnet.tbptt(cell, theta, xs, None, head, beta, y, w, k1=k, k2=k)
    exact = tbptt(K + 1)
    _, dy, _ = head.loss_and_grad(beta, exact.s_T, y[-1], w[-1])
    res = neumann_rbp(cell, theta, x, exact.s_T, dy, K=K)
    compare_grads(res.dtheta, exact.dtheta, rtol=1e-13)
    off_by_one = compare_grads(res.dtheta, tbptt(K).dtheta, rtol=1e-13, raise_on_failure=False) \
        if K > 0 else None
    assert off_by_one is None or off_by_one.max_rel_error > 1e-4


def test_neumann_rbp_with_K_at_least_the_trajectory_equals_bptt_through_it():
    # Prop. 1: BPTT through a trajectory that reached h* = Neumann-RBP(T − 1) up to the transient's
    # ρ^(T − t) terms (≈ 0.9^300 here): rounding.
    cell, theta, x, _, _ = _problem("lstm", seed=4)
    T = 400
    head = refnet.Head(4, 3)
    beta = head.init(refnet.rng(5))
    y, w = np.ones((T, 3), dtype=np.int64), refnet.last_step(T, 3)
    full = refnet.bptt(cell, theta, np.repeat(x[None], T, 0), None, head, beta, y, w)
    _, dy, _ = head.loss_and_grad(beta, cell.output(full.s_T), y[-1], w[-1])
    res = neumann_rbp(cell, theta, x, full.s_T, cell.output_vjp(dy), K=T - 1)
    compare_grads(res.dtheta, full.dtheta, rtol=1e-12)


def test_neumann_rbp_is_the_truncated_series_of_algorithm_2():
    cell, theta, x, h, g = _problem("elman_tanh", seed=6)
    J = _dense(cell, theta, x, h)[0]
    series, v = g.copy(), g.copy()
    for _ in range(5):
        v = np.einsum("bji,bj->bi", J, v)                          # v ← Jᵀ v
        series += v
    res = neumann_rbp(cell, theta, x, h, g, K=5)
    # Sums of 6 terms of O(|series|) in a different order: equal to a few u of the largest entry
    # (a small entry after cancellation differs by 1e-13 of itself).
    np.testing.assert_allclose(res.z, series, rtol=1e-13, atol=1e-14 * np.abs(series).max())
    v = np.einsum("bji,bj->bi", J, v)
    assert res.residual == pytest.approx(np.linalg.norm(v), rel=1e-10)    # ‖(Jᵀ)^{K+1} g‖
    assert res.iterations == 5 and res.converged is None


def test_rbp_from_zero_after_K_updates_is_neumann_rbp_K_minus_1():
    # z_K = Σ_{k<K} (Jᵀ)^k g: why Alg. 1 started at 0 cannot lose to Neumann-RBP, while U(0, 1)
    # adds (Jᵀ)^K z_0 (Liao et al.'s Hopfield table).
    cell, theta, x, h, g = _problem("hopfield", seed=7)
    with pytest.warns(ConvergenceWarning), failures("warn"):
        capped = rbp(cell, theta, x, h, g, rtol=0.0, maxiter=6)
    np.testing.assert_allclose(capped.z, neumann_rbp(cell, theta, x, h, g, K=5).z, rtol=1e-14, atol=0)
    assert capped.iterations == 6 and capped.converged is False


def test_rbp_from_a_uniform_start_converges_to_the_same_adjoint():
    cell, theta, x, h, g = _problem("gru", seed=8)
    z0 = refnet.rng(1).uniform(g.shape)
    a, b = rbp(cell, theta, x, h, g, rtol=1e-12), rbp(cell, theta, x, h, g, z0=z0, rtol=1e-12)
    np.testing.assert_allclose(a.z, b.z, rtol=0, atol=1e-10 * np.abs(a.z).max())


@pytest.mark.parametrize("solver", SOLVERS + [neumann_rbp])
def test_reported_residual_is_that_of_the_returned_adjoint(solver):
    cell, theta, x, h, g = _problem("lstm", seed=9)
    res = solver(cell, theta, x, h, g, **({"K": 7} if solver is neumann_rbp else {}))
    J = _dense(cell, theta, x, h)[0]
    r = g - res.z + np.einsum("bji,bj->bi", J, res.z)
    assert isinstance(res, ImplicitGradient)
    assert res.residual == pytest.approx(np.linalg.norm(r), rel=1e-6, abs=1e-15)
    assert res.fixed_point_residual <= 1e-14


@pytest.mark.parametrize("solver, kwargs", [
    (rbp, {"maxiter": 2}), (cg_rbp, {"maxiter": 1}), (gmres_rbp, {"restart": 1, "maxiter": 1}),
    (neumann_rbp, {"K": 1, "rtol": 1e-12}),
])
def test_non_convergence_raises_convergence_error_carrying_the_residual(solver, kwargs):
    cell, theta, x, h, g = _problem("gru", seed=10)
    with pytest.raises(refnet.ConvergenceError, match=solver.__name__) as info:
        solver(cell, theta, x, h, g, **kwargs)
    assert info.value.residual > 1e-12 * np.linalg.norm(g)
    with pytest.warns(ConvergenceWarning), failures("warn"):
        res = solver(cell, theta, x, h, g, **kwargs)
    assert res.converged is False and res.residual == pytest.approx(info.value.residual, rel=1e-12)


def _unstable():
    """h ← tanh(−3 h + 0.1 x): the equilibrium near 0 has J ≈ −3, ρ > 1."""
    cell = refnet.ElmanRNN(1, 1, "tanh")
    theta = {"weight_ih": np.array([[0.1]]), "weight_hh": np.array([[-3.0]]),
             "bias_ih": np.array([0.05]), "bias_hh": np.zeros(1)}
    x = np.ones((1, 1))
    return cell, theta, x, newton_krylov(cell, theta, x, np.array([[0.01]]), tol=1e-14).h


def test_rbp_cannot_differentiate_an_unstable_equilibrium_and_says_so():
    cell, theta, x, h = _unstable()
    with pytest.raises(refnet.ConvergenceError):
        rbp(cell, theta, x, h, np.ones((1, 1)), maxiter=50)


def test_gmres_rbp_differentiates_an_unstable_equilibrium_exactly():
    # The implicit function theorem needs I − J invertible, not ρ(J) < 1: GMRES solves it.
    cell, theta, x, h = _unstable()
    res = gmres_rbp(cell, theta, x, h, np.ones((1, 1)), rtol=1e-13)

    def L(flat):
        th = {k: flat[k] for k in theta}
        return float(newton_krylov(cell, th, x, h, tol=1e-15).h.sum())
    check_grads(L, theta, res.dtheta)


def test_a_batch_solve_equals_per_example_solves():
    cell, theta, x, h, g = _problem("hopfield", seed=11, B=4)
    batch = gmres_rbp(cell, theta, x, h, g, rtol=1e-13)
    parts = [gmres_rbp(cell, theta, x[b:b + 1], h[b:b + 1], g[b:b + 1], rtol=1e-13) for b in range(4)]
    np.testing.assert_allclose(batch.dx, np.concatenate([p.dx for p in parts]), rtol=1e-10, atol=1e-14)
    compare_grads(batch.dtheta, {"U": sum(p.dtheta["U"] for p in parts)}, rtol=1e-10)


def test_cg_rbp_with_damping_solves_the_damped_normal_equations():
    cell, theta, x, h, g = _problem("elman_tanh", seed=12)
    # Damping biases z by O(η), so the adjoint system itself is not solved: converged is False.
    eta = 0.1
    with failures("ignore"):
        res = cg_rbp(cell, theta, x, h, g, damping=eta, rtol=1e-13)
    assert res.converged is False
    J = _dense(cell, theta, x, h)[0]
    A = np.eye(4)[None] - J.transpose(0, 2, 1)                      # I − Jᵀ
    lhs = np.einsum("bij,bj->bi", A.transpose(0, 2, 1), np.einsum("bij,bj->bi", A, res.z)) + eta * res.z
    np.testing.assert_allclose(lhs, np.einsum("bji,bj->bi", A, g), rtol=0, atol=1e-11)
    assert res.residual > 1e-3 * np.linalg.norm(g)                  # damping biases z: O(η)


@pytest.mark.parametrize("call, error, match", [
    (lambda a: rbp(*a[:4], np.zeros((3, 5))), ValueError, r"dh must have shape \(3, 4\), got \(3, 5\)"),
    (lambda a: rbp(*a, rtol=-1.0), ValueError, "rtol must be a finite float >= 0, got -1.0"),
    (lambda a: rbp(*a, z0=np.zeros((2, 4))), ValueError, r"z0 must have shape \(3, 4\)"),
    (lambda a: neumann_rbp(*a, K=-1), ValueError, "K must be an int >= 0, got -1"),
    (lambda a: cg_rbp(*a, damping=-0.5), ValueError, "damping must be a finite float >= 0, got -0.5"),
    (lambda a: gmres_rbp(*a, restart=0), ValueError, "restart must be an int >= 1, got 0"),
    (lambda a: rbp(*a[:3], np.full((3, 4), np.nan), a[4]), ValueError, "h_star must be finite"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call(_problem("elman_tanh"))


def test_converged_solves_do_not_warn():
    cell, theta, x, h, g = _problem("lstm", seed=13)
    with warnings.catch_warnings(), failures("warn"):
        warnings.simplefilter("error")
        for solver in SOLVERS:
            assert solver(cell, theta, x, h, g).converged


def test_bench_case_rbp_quick_shows_neumann_memory_flat_in_T_and_bptt_growing():
    rows = bench_rbp.run(quick=True, repeats=1).rows
    json.dumps(rows)                                                # one JSON line per row under --json
    memory = {(r["impl"], r["T"]): r["peak_bytes"] for r in rows if r["row"] == "timing"}
    short, long = bench_rbp.SIZES["quick"]["T"]
    # BPTT keeps every step's state; Neumann-RBP a handful of (B, n) arrays whatever T.
    assert memory[("bptt", long)] > 2 * memory[("bptt", short)]
    assert memory[("neumann_rbp", long)] <= 1.1 * memory[("neumann_rbp", short)]
    assert all(r["grad_rel_err_vs_bptt"] <= bench_rbp.GRAD_RTOL for r in rows
               if r["row"] == "timing" and r["impl"] in ("neumann_rbp", "cg_rbp"))


# --- issue 12: convergence means the caller's system; singular systems and false premises are named ---

def _identity_jacobian(cell):
    """ReLU RNN with W_hh = I at its init (iRNN) or set so (Elman), zero input: every h > 0 is an
    equilibrium and J = I there, so I − Jᵀ = 0 and no z solves (I − Jᵀ) z = g ≠ 0."""
    theta = cell.init(refnet.rng(0))
    theta["weight_hh"] = np.eye(4)
    theta["bias_ih"], theta["bias_hh"] = np.zeros(4), np.zeros(4)
    x = np.zeros((3, 2))
    return theta, x, np.abs(refnet.rng(1).normal((3, 4))) + 0.5, refnet.rng(2).normal((3, 4))


def _rank_deficient():
    """ReLU RNN whose J = W_hh = Q diag(1, 0.5, 0.3, −0.2) Qᵀ at h* = (1, 2, 3, 4) > 0: rank(I − J) = n − 1."""
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    W = Q @ np.diag([1.0, 0.5, 0.3, -0.2]) @ Q.T
    h = np.array([[1.0, 2.0, 3.0, 4.0]])
    cell = refnet.ElmanRNN(2, 4, "relu")
    theta = {"weight_ih": np.zeros((4, 2)), "weight_hh": W, "bias_ih": (np.eye(4) - W) @ h[0],
             "bias_hh": np.zeros(4)}
    return cell, theta, np.zeros((1, 2)), h, refnet.rng(1).normal((1, 4))


@pytest.mark.parametrize("cell", [refnet.ElmanRNN(2, 4, "relu"), refnet.IRNN(2, 4)], ids=["elman_relu", "irnn"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_j_equal_to_identity_raises_singular_system_error_instead_of_a_converged_zero(cell, solver):
    # Before issue 12, cg_rbp returned z = 0 flagged converged with ‖g − (I − Jᵀ) z‖ = ‖g‖ (2.18 here).
    theta, x, h, g = _identity_jacobian(cell)
    with pytest.raises(refnet.SingularSystemError, match="singular") as info:
        solver(cell, theta, x, h, g)
    assert info.value.residual == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert info.value.iterations >= 0 and solver.__name__ in str(info.value)


@pytest.mark.parametrize("solver", [rbp, cg_rbp])
def test_rank_n_minus_1_raises_singular_system_error_with_the_least_squares_residual(solver):
    # Before issue 12, cg_rbp reported converged with a residual of 0.96 here: the part of g in the
    # null space of I − J, which no z can remove.
    cell, theta, x, h, g = _rank_deficient()
    Q_null = np.linalg.svd(np.eye(4) - theta["weight_hh"])[0][:, -1]
    with pytest.raises(refnet.SingularSystemError) as info:
        solver(cell, theta, x, h, g)
    assert info.value.residual == pytest.approx(abs(g[0] @ Q_null), rel=1e-6)


def test_gmres_on_rank_n_minus_1_does_not_claim_convergence():
    cell, theta, x, h, g = _rank_deficient()
    with pytest.raises(refnet.ConvergenceError):
        gmres_rbp(cell, theta, x, h, g)
    with failures("ignore"):
        assert gmres_rbp(cell, theta, x, h, g).converged is False


def test_a_singular_system_under_failures_warn_is_returned_flagged():
    cell = refnet.ElmanRNN(2, 4, "relu")
    theta, x, h, g = _identity_jacobian(cell)
    with failures("warn"), pytest.warns(ConvergenceWarning, match="singular"):
        res = cg_rbp(cell, theta, x, h, g)
    assert res.converged is False and res.info.singular
    assert res.residual == pytest.approx(np.linalg.norm(g), rel=1e-12)


@pytest.mark.parametrize("solver", SOLVERS + [neumann_rbp])
def test_an_h_star_that_is_not_an_equilibrium_is_refused_unless_the_caller_opts_out(solver):
    cell, theta, x, h, g = _problem("gru", seed=14)
    kwargs = {"K": 3} if solver is neumann_rbp else {}
    off = h + 1e-3
    with pytest.raises(ValueError, match=r"h_star must be an equilibrium .* check_equilibrium=False"):
        solver(cell, theta, x, off, g, **kwargs)
    res = solver(cell, theta, x, off, g, check_equilibrium=False, **kwargs)
    assert res.fixed_point_residual > 1e-4


def test_neumann_rbp_warns_when_the_terms_grow_and_reports_the_growth():
    # J ≈ −3 at the unstable equilibrium: |(Jᵀ)^k g| grows by ρ ≈ 3 per term, Prop. 3 does not hold.
    cell, theta, x, h = _unstable()
    with pytest.warns(refnet.solvers.SeriesDivergenceWarning, match="not converging"):
        res = neumann_rbp(cell, theta, x, h, np.ones((1, 1)), K=10)
    rho = float(refnet.spectral_radius(cell, theta, x, h)[0])
    assert res.info.diagnostics["growth"][0] == pytest.approx(rho, rel=1e-10)


def test_implicit_vjp_takes_any_linear_solver():
    from functools import partial
    cell, theta, x, h, g = _problem("lstm", seed=15)
    ours = refnet.implicit_vjp(cell, theta, x, h, g, solve=partial(refnet.solvers.gmres, rtol=1e-13))
    named = gmres_rbp(cell, theta, x, h, g, rtol=1e-13)
    np.testing.assert_array_equal(ours.z, named.z)
    assert ours.info.converged and ours.info.example_residual.shape == (3,)
