"""The RTRL family in the matrix: RTRL = BPTT exactly; UORO and KF-RTRL unbiased for RTRL, variance bounded.

==============  ================================================================
algorithm       relation
==============  ================================================================
rtrl            = BPTT (θ fixed over the sequence): dθ, dβ and ds_0, to rounding
uoro            the public ``uoro()`` at batch 1 (its VJP path), N calls: the mean
                of the N estimates → RTRL's dθ (z-test, below)
uoro(B=100)     the public ``uoro()`` at batch 100 (its per-example J_θ path), 20
                calls, each the mean of 100 estimates: → RTRL's dθ (t-test)
uoro var        tr Σ / ‖g‖², the variance of one estimate, <= the bound below
kfrtrl, …       the same three for the public ``kfrtrl()`` (and so
                ``kfrtrl_gradient``), for cells with ``kronecker_factors``
kfrtrl/uoro     var(KF-RTRL) / var(UORO) < 1 (Mujika, Meier & Steger 2018)
uoro step       one ``uoro_update`` = Tallec & Ollivier's Alg. 1 written out from the
                cell's J_s, J_θ (ρ0, ρ1 included), at batch 1 and 3, to rounding
kfrtrl step     one ``kfrtrl_update`` = Mujika et al.'s Eq. 5 with Lemma 1's p1, p2
==============  ================================================================

The statistical relation has no tolerance that a bias could hide under.  N
independent estimates g_1..g_N of RTRL's gradient g (P coordinates) give, per
coordinate, z_j = |mean_j − g_j| / (sd_j / √N), which for an unbiased
estimator is |N(0, 1)| up to the central limit theorem.  The check passes
when max_j z_j is below the two-sided normal quantile at α = 10⁻³ with a
Bonferroni correction over the P coordinates, so an unbiased estimator fails
with probability at most 10⁻³ (the seeds are fixed: a run is reproducible);
a bias b_j is caught once it exceeds about (4–5)·sd_j/√N.  With 20 batch
means the standard deviation is estimated from 20 values, so the quantile is
Student's t with 19 degrees of freedom.  The detail also reports the error in
units of its standard deviation, √N ‖mean − g‖ / √(tr Σ), whose square has
mean 1 for every N when the error falls as 1/√N, at N/16 and at N.

Unbiasedness says nothing of the variance: UORO with its ρ0 and ρ1 swapped
stays unbiased (its z-test passes, max|z| 1.7 against 4.2) while tr Σ / ‖g‖²
grows from 2.7 to 3e27 (elman_tanh, measured).  Tallec & Ollivier
(2018, Sec. 3, the rank-one trick, and Alg. 1) choose ρ0, ρ1 to minimise the
variance each step adds, and Mujika et al. (2018, Lemma 1) choose p1, p2
likewise; the papers give no number for a given problem, so the bounds are measured:
:data:`REFERENCE_VARIANCE` holds, for each cell of this problem (common's
T = 5, B = 1, seed 0), the largest tr Σ / ‖g‖² over 10 seeds of N = 1000 calls
(the 10 values spread by less than ±10 %), and a row fails above
:data:`VARIANCE_MARGIN` times it.  Re-measure them if the problem changes.
Mujika et al. (2018, variance analysis) show KF-RTRL's added variance
shrinking as 1/n where UORO's does not; here the measured ratio is 0.09–0.4,
and the row requires < 1.

Every estimate comes from the public entry points: N calls of ``uoro()`` /
``kfrtrl()`` on the problem's first sequence with one Rng, so each call draws
fresh signs.
"""
import functools
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

import refnet
from refnet.algorithms.kfrtrl import EPS as KFRTRL_EPS
from refnet.algorithms.kfrtrl import kfrtrl, kfrtrl_init, kfrtrl_update
from refnet.algorithms.rtrl import rtrl
from refnet.algorithms.uoro import EPS as UORO_EPS
from refnet.algorithms.uoro import UOROState, uoro, uoro_update
from refnet.backend import backend_name, get_dtype, rng, to_numpy, xp_of

from ..check import compare_grads
from .common import CELLS, Check, Problem, exact_tol, worst

__all__ = ["ALPHA", "N_ESTIMATES", "GROUPS", "GROUP_BATCH", "REFERENCE_VARIANCE", "VARIANCE_MARGIN", "ZTest",
           "z_test", "checks", "rtrl_checks", "estimates"]

ALPHA = 1e-3          # family-wise false-rejection rate of the z-test
N_ESTIMATES = 500     # public calls at batch 1 (the matrix stays under a minute; references below hold at 500)
GROUPS, GROUP_BATCH = 20, 100   # public calls at batch GROUP_BATCH, each a mean of GROUP_BATCH estimates
ESTIMATORS = {"uoro": uoro, "kfrtrl": kfrtrl}

# max over 10 seeds (7..16) of tr Σ / ‖g‖² (N = 500 calls at batch 1) on common's problem; measured
# min–max: elman_tanh UORO 2.61–2.81, KF-RTRL 0.51–0.57; elman_relu 2.92–3.11, 0.25–0.29;
# irnn 2.60–3.60, 0.88–1.31; lstm UORO 18.0–20.2; gru UORO 4.15–4.96.
REFERENCE_VARIANCE = {
    ("elman_tanh", "uoro"): 2.81, ("elman_tanh", "kfrtrl"): 0.57,
    ("elman_relu", "uoro"): 3.11, ("elman_relu", "kfrtrl"): 0.29,
    ("irnn", "uoro"): 3.60, ("irnn", "kfrtrl"): 1.31,
    ("lstm", "uoro"): 20.2,
    ("gru", "uoro"): 4.96,
}
VARIANCE_MARGIN = 1.5   # the seeds spread up to ±16 % (irnn UORO): 1.5 × their maximum leaves room for dtype and backend


@dataclass(frozen=True)
class ZTest:
    """Outcome of :func:`z_test`.

    Attributes
    ----------
    max_z : float
        max_j |mean_j − g_j| / (sd_j / √N), dimensionless.
    critical : float
        The Bonferroni-corrected two-sided quantile (normal, or Student's t) it is held to.
    n : int
        N, the number of estimates.
    p : int
        P, the number of coordinates tested.
    scaled_error : float
        √N ‖mean − g‖ / √(tr Σ): ≈ 1 when the error falls as 1/√N.
    rel_variance : float
        tr Σ / ‖g‖², the variance of one estimate relative to ‖g‖².
    passed : bool
        ``max_z <= critical``.
    """

    max_z: float            # max_j |mean_j − g_j| / (sd_j / √N)
    critical: float         # Bonferroni-corrected two-sided quantile (normal, or Student's t)
    n: int                  # N, estimates
    p: int                  # coordinates tested
    scaled_error: float     # √N ‖mean − g‖ / √(tr Σ): ≈ 1 when the error falls as 1/√N
    rel_variance: float     # tr Σ / ‖g‖², the variance of one estimate relative to ‖g‖²
    passed: bool


def z_test(samples, reference, *, alpha=ALPHA, rtol=1e-12, student=False):
    """Is ``reference`` (P,) the mean of the distribution of ``samples`` (N, P)?

    Per-coordinate z-scores against the standard error sd/√N, with α split
    over the P coordinates (Bonferroni).  The standard error is floored at
    ``rtol``·max|g|, the rounding of the samples' dtype: a coordinate that
    never varies (a dead ReLU unit's weights) must match to rounding.  With
    ``student`` the quantile is Student's t with N − 1 degrees of freedom (for
    few samples, each a mean of many estimates) instead of the normal one.

    Parameters
    ----------
    samples : (N, P) array
        N independent estimates of a P-vector (N >= 2: the standard deviation
        needs two).
    reference : (P,) array
        The value their mean should be (RTRL's dθ).
    alpha : float, optional
        Family-wise false-rejection rate, in (0, 1).
    rtol : float, optional
        Floor of the standard error, relative to max|reference| (dimensionless).
    student : bool, optional
        Use Student's t with N − 1 degrees of freedom (needs SciPy).

    Returns
    -------
    ZTest
        max z, the critical value, N, P, the scaled error, the relative
        variance and whether it passed.

    Raises
    ------
    ValueError
        If ``samples`` is not 2-D, ``reference`` does not broadcast against
        its rows, or ``reference`` is empty.
    ImportError
        If ``student`` and SciPy is not installed.
    """
    samples = np.asarray(samples, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    N, P = samples.shape
    mean = samples.mean(axis=0)
    sd = samples.std(axis=0, ddof=1)
    floor = rtol * max(float(np.abs(reference).max()), 1e-300)
    z = np.abs(mean - reference) / np.maximum(sd / np.sqrt(N), floor)
    if student:
        from scipy.stats import t as student_t
        critical = float(student_t.ppf(1.0 - alpha / (2 * P), N - 1))
    else:
        critical = NormalDist().inv_cdf(1.0 - alpha / (2 * P))
    total_variance = float((sd ** 2).sum())
    scaled = float(np.sqrt(N) * np.linalg.norm(mean - reference) / np.sqrt(max(total_variance, 1e-300)))
    rel_variance = total_variance / max(float((reference ** 2).sum()), 1e-300)
    max_z = float(z.max())
    return ZTest(max_z, float(critical), N, P, scaled, rel_variance, bool(max_z <= critical))


def _first_sequence(p):
    """x, s_0, y and weights of the problem's first sequence (batch of 1)."""
    return p.x[:, :1], p.s0[:1], p.y[:, :1], p.weights[:, :1]


def estimates(p, estimator, calls, batch=1, seed=7):
    """(calls, P) estimates of dθ on the first sequence of problem ``p`` from the public ``estimator``.

    Each row is one call's ``dtheta`` (flattened) divided by ``batch``: the
    mean of ``batch`` estimates, the sequence repeated along the batch.  One
    Rng serves every call, so the calls are independent.

    Parameters
    ----------
    p : Problem
        The problem (:class:`~gradcheck.matrix.common.Problem`); only its first
        sequence is used.
    estimator : callable
        ``uoro`` or ``kfrtrl`` (refnet's public entry points, with ``rng=``).
    calls : int
        How many calls, N.
    batch : int, optional
        Copies of the sequence per call; the call's dθ is divided by it.
    seed : int, optional
        Seed (>= 0) of the one Rng every call draws its signs from.

    Returns
    -------
    (calls, P) ndarray
        One flattened dθ estimate per row (P = the cell's parameter count).

    Raises
    ------
    TypeError
        If ``seed`` is not an int.
    ValueError
        If ``seed`` is negative or ``calls`` < 1 (nothing to stack).
    refnet.NumericalError
        If an estimator's run is not finite.
    """
    xp = xp_of(p.x)
    x, s, y, w = _first_sequence(p)
    x, s = xp.tile(x, (1, batch, 1)), xp.tile(s, (batch, 1))
    y = xp.tile(y, (1, batch)) if y.ndim == 2 else xp.tile(y, (1, batch, 1))
    w = xp.tile(w, (1, batch))
    r = rng(seed, p.x.dtype)
    return np.stack([to_numpy(p.cell.flat_params(estimator(p.cell, p.theta, x, s, p.head, p.beta, y, w,
                                                           rng=r).dtheta)) / batch for _ in range(calls)])


@functools.lru_cache(maxsize=64)
def _sampled(cell, estimator, calls, batch, dtype, backend):
    """RTRL's dθ (P,) and the estimates (calls, P) for a cell; cached so the rows of a cell share one run."""
    p = Problem(cell)
    x, s0, y, w = _first_sequence(p)
    g = to_numpy(p.cell.flat_params(rtrl(p.cell, p.theta, x, s0, p.head, p.beta, y, w).dtheta))
    return g, estimates(p, ESTIMATORS[estimator], calls, batch)


def _samples(cell, estimator, calls, batch=1):
    return _sampled(cell, estimator, calls, batch, str(get_dtype()), backend_name())


def _rtrl_equals_bptt(cell):
    def run():
        p = Problem(cell)
        full = refnet.bptt(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        forward = rtrl(p.cell, p.theta, p.x, p.s0, p.head, p.beta, p.y, p.weights)
        report = compare_grads(p.pack(forward.dtheta, forward.dbeta, forward.ds0),
                               p.pack(full.dtheta, full.dbeta, full.ds0), rtol=exact_tol(),
                               reference_name="bptt", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def _unbiased(cell, estimator, batch, calls):
    def run():
        g, G = _samples(cell, estimator, calls, batch)
        student = batch > 1
        test = z_test(G, g, rtol=exact_tol(), student=student)
        detail = (f"max|z| over P={test.p} at N={test.n} (batch {batch}) vs Bonferroni crit {test.critical:.2f} "
                  f"(alpha={ALPHA:g}); sqrt(N)|err|/sqrt(tr cov) = ")
        if calls >= 32:     # the error at N/16 too: it should fall as 1/sqrt(N)
            early = z_test(G[:calls // 16], g, rtol=exact_tol(), student=student)
            detail += f"{early.scaled_error:.2f} (N={early.n}), "
        detail += f"{test.scaled_error:.2f} (N={test.n}); var/|g|^2 = {test.rel_variance * batch:.3g}"
        return test.max_z, test.critical, test.passed, detail
    return run


def _variance_bound(cell, estimator, reference):
    def run():
        g, G = _samples(cell, estimator, N_ESTIMATES)
        variance = z_test(G, g, rtol=exact_tol()).rel_variance
        bound = VARIANCE_MARGIN * reference
        return variance, bound, variance <= bound, f"tr cov/|g|^2 at N={N_ESTIMATES}; measured reference {reference:g}"
    return run


def _kfrtrl_below_uoro(cell):
    def run():
        g, G_kf = _samples(cell, "kfrtrl", N_ESTIMATES)
        _, G_uoro = _samples(cell, "uoro", N_ESTIMATES)
        kf, uo = (z_test(G, g, rtol=exact_tol()).rel_variance for G in (G_kf, G_uoro))
        return kf / uo, 1.0, kf < uo, f"var/|g|^2: kfrtrl {kf:.3g}, uoro {uo:.3g}"
    return run


def _step_point(cell, batch, seed=11):
    """A problem's cell and θ, the cache of its third transition at ``batch`` examples, and an Rng."""
    p = Problem(cell)
    xp = xp_of(p.x)
    x, s = xp.tile(p.x[:, :1], (1, batch, 1)), xp.tile(p.s0[:1], (batch, 1))
    for t in range(3):
        s, cache = p.cell.step(p.theta, s, x[t], t)
    return p, cache, rng(seed, p.x.dtype)


def _norm(xp, v):
    """Per-example Frobenius norms of v (B, ...), as (B, 1)."""
    return xp.sqrt((v * v).reshape(v.shape[0], -1).sum(axis=1))[:, None]


def _uoro_step(cell):
    """``uoro_update`` = Tallec & Ollivier's Alg. 1 written out from the cell's Jacobians, at B = 1 and 3."""
    def run():
        worst_error, details = 0.0, []
        for batch in (1, 3):          # B = 1 takes νᵀJ_θ by a VJP, B > 1 from the per-example J_θ
            p, cache, r = _step_point(cell, batch)
            xp = xp_of(p.x)
            n, P = p.cell.n_state, int(p.cell.flat_params(p.theta).shape[0])
            state = UOROState(r.normal((batch, n)), r.normal((batch, P)))
            nu = r.signs((batch, n))
            ours = uoro_update(p.cell, p.theta, cache, state, nu)
            J_s, J_theta = p.cell.jacobians(p.theta, cache)
            a = (J_s @ state.s_tilde[:, :, None])[:, :, 0]
            b = (nu[:, None, :] @ J_theta)[:, 0, :]
            rho0 = xp.sqrt(_norm(xp, state.theta_tilde) / (_norm(xp, a) + UORO_EPS)) + UORO_EPS
            rho1 = xp.sqrt(_norm(xp, b) / (_norm(xp, nu) + UORO_EPS)) + UORO_EPS
            report = compare_grads({"s_tilde": to_numpy(ours.s_tilde), "theta_tilde": to_numpy(ours.theta_tilde)},
                                   {"s_tilde": to_numpy(rho0 * a + rho1 * nu),
                                    "theta_tilde": to_numpy(state.theta_tilde / rho0 + b / rho1)},
                                   rtol=exact_tol(), reference_name="Alg. 1", raise_on_failure=False)
            worst_error = max(worst_error, report.max_rel_error)
            details.append(f"B={batch}: {worst(report)}")
        return worst_error, exact_tol(), worst_error <= exact_tol(), "; ".join(details)
    return run


def _kfrtrl_step(cell):
    """``kfrtrl_update`` = Mujika et al.'s Eq. 5 with Lemma 1's p1, p2, written out, at B = 3."""
    def run():
        p, cache, r = _step_point(cell, 3)
        xp = xp_of(p.x)
        state = kfrtrl_init(p.cell, 3, p.x)
        state = state._replace(A=r.normal(state.A.shape), u=r.normal(state.u.shape))
        c1, c2 = r.signs((3,)), r.signs((3,))
        ours = kfrtrl_update(p.cell, p.theta, cache, state, c1, c2)
        D, h_hat = p.cell.kronecker_factors(p.theta, cache)
        h_hat = xp.concatenate([h_hat[k] for k in state.blocks], axis=1)
        JA = p.cell.jacobians(p.theta, cache)[0] @ state.A
        p1 = xp.sqrt((_norm(xp, JA) + KFRTRL_EPS) / (_norm(xp, state.u) + KFRTRL_EPS))
        p2 = xp.sqrt((_norm(xp, D) + KFRTRL_EPS) / (_norm(xp, h_hat) + KFRTRL_EPS))
        eye = xp.eye(p.cell.n_state, dtype=D.dtype)
        u = c1[:, None] * p1 * state.u + c2[:, None] * p2 * h_hat
        A = (c1[:, None] / p1)[:, :, None] * JA + (c2[:, None] / p2)[:, :, None] * (D[:, :, None] * eye)
        report = compare_grads({"A": to_numpy(ours.A), "u": to_numpy(ours.u)}, {"A": to_numpy(A), "u": to_numpy(u)},
                               rtol=exact_tol(), reference_name="Eq. 5", raise_on_failure=False)
        return report.max_rel_error, report.rtol, report.passed, worst(report)
    return run


def rtrl_checks(name, cell, *, estimators=True):
    """RTRL = BPTT for one cell (``cell``: a name in CELLS or a zero-argument factory), then, with
    ``estimators``, UORO's unbiasedness and KF-RTRL's where the cell has ``kronecker_factors``,
    and their variance bounds where :data:`REFERENCE_VARIANCE` has a reference for ``name``.

    Another family registers the RTRL row of its cells with
    ``rtrl_checks("mycell", lambda: MyCell(I, H), estimators=False)``.

    Parameters
    ----------
    name : str
        The rows' cell label, and the key of :data:`REFERENCE_VARIANCE`.
    cell : str or callable
        A name in :data:`~gradcheck.matrix.common.CELLS`, or a zero-argument
        factory returning a cell with input width ``common.I``.
    estimators : bool, optional
        Also list UORO's (and KF-RTRL's) step, unbiasedness and variance rows.

    Returns
    -------
    list of Check
        RTRL = BPTT, then with ``estimators`` the estimator rows of the module
        docstring's table.

    Raises
    ------
    KeyError
        With ``estimators``, if ``cell`` is a str not in ``CELLS`` (the cell is
        built once to ask whether it has ``kronecker_factors``).
    TypeError
        With ``estimators``, if ``cell`` is neither a str nor callable.
    """
    out = [Check(name, "rtrl", "= bptt (theta fixed; dtheta, dbeta, ds0)", _rtrl_equals_bptt(cell))]
    if not estimators:
        return out
    made = CELLS[cell]() if isinstance(cell, str) else cell()
    kinds = ["uoro"] + (["kfrtrl"] if callable(getattr(made, "kronecker_factors", None)) else [])
    out.append(Check(name, "uoro step", "uoro_update = Alg. 1 written out (B = 1 and 3)", _uoro_step(cell)))
    if "kfrtrl" in kinds:
        out.append(Check(name, "kfrtrl step", "kfrtrl_update = Eq. 5, Lemma 1's p1, p2, written out",
                         _kfrtrl_step(cell)))
    for kind in kinds:
        out.append(Check(name, kind, f"mean of N={N_ESTIMATES} public calls (B=1) -> rtrl (z-test, max|z|)",
                         _unbiased(cell, kind, 1, N_ESTIMATES)))
        out.append(Check(name, f"{kind}(B={GROUP_BATCH})",
                         f"mean of {GROUPS} public calls -> rtrl (t-test, max|t|)",
                         _unbiased(cell, kind, GROUP_BATCH, GROUPS)))
        if (name, kind) in REFERENCE_VARIANCE:
            out.append(Check(name, f"{kind} var", f"var/|g|^2 <= {VARIANCE_MARGIN:g} x measured reference",
                             _variance_bound(cell, kind, REFERENCE_VARIANCE[name, kind])))
    if "kfrtrl" in kinds:
        out.append(Check(name, "kfrtrl/uoro var", "var(kfrtrl) < var(uoro) (Mujika et al. 2018)",
                         _kfrtrl_below_uoro(cell)))
    return out


def checks():
    """The RTRL family for every core cell.

    Returns
    -------
    list of Check
        :func:`rtrl_checks` with estimators, for each of :data:`~gradcheck.matrix.common.CELLS`.

    Raises
    ------
    None
        For the registered cells: listing builds each cell once, every problem
        is built when its row's ``run`` is called.
    """
    return [c for name in CELLS for c in rtrl_checks(name, name)]
