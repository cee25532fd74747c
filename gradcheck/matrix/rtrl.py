"""The RTRL family in the matrix: RTRL = BPTT exactly; UORO and KF-RTRL unbiased for RTRL.

=========  ==================================================================
algorithm  relation
=========  ==================================================================
rtrl       = BPTT (θ fixed over the sequence): dθ, dβ and ds_0, to rounding
uoro       mean of N independent estimates → RTRL's dθ (z-test, below)
kfrtrl     the same, for cells with ``kronecker_factors`` (Elman, iRNN)
=========  ==================================================================

The statistical relation has no tolerance that a bias could hide under.  N
independent estimates g_1..g_N of RTRL's gradient g (P coordinates) give, per
coordinate, z_j = |mean_j − g_j| / (sd_j / √N), which for an unbiased
estimator is |N(0, 1)| up to the central limit theorem.  The check passes
when max_j z_j is below the two-sided normal quantile at α = 10⁻³ with a
Bonferroni correction over the P coordinates, so an unbiased estimator fails
with probability at most 10⁻³ (the seeds are fixed: a run is reproducible);
a bias b_j is caught once it exceeds about (4–5)·sd_j/√N.  The detail also
reports the error in units of its standard deviation,
√N ‖mean − g‖ / √(tr Σ), whose square has mean 1 for every N when the
error falls as 1/√N, at N/16 and at N, and the per-estimate variance
tr Σ / ‖g‖².

The N estimates come from one batched run: the problem's first sequence is
repeated N times along the batch, and the estimators, being per example,
give N independent estimates at once.
"""
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

import refnet
from refnet.algorithms.kfrtrl import kfrtrl_init, kfrtrl_update
from refnet.algorithms.rtrl import rtrl
from refnet.algorithms.uoro import uoro_init, uoro_update
from refnet.backend import rng, to_numpy, xp_of

from ..check import compare_grads
from .common import CELLS, Check, Problem, exact_tol, worst

__all__ = ["ALPHA", "ZTest", "z_test", "checks", "rtrl_checks", "estimates"]

ALPHA = 1e-3      # family-wise false-rejection rate of the z-test
N_ESTIMATES = 2000


@dataclass(frozen=True)
class ZTest:
    """Outcome of :func:`z_test`."""

    max_z: float            # max_j |mean_j − g_j| / (sd_j / √N)
    critical: float         # Bonferroni-corrected two-sided normal quantile
    n: int                  # N, estimates
    p: int                  # coordinates tested
    scaled_error: float     # √N ‖mean − g‖ / √(tr Σ): ≈ 1 when the error falls as 1/√N
    rel_variance: float     # tr Σ / ‖g‖², the variance of one estimate relative to ‖g‖²
    passed: bool


def z_test(samples, reference, *, alpha=ALPHA, rtol=1e-12):
    """Is ``reference`` (P,) the mean of the distribution of ``samples`` (N, P)?

    Per-coordinate z-scores against the standard error sd/√N, with α split
    over the P coordinates (Bonferroni).  The standard error is floored at
    ``rtol``·max|g|, the rounding of the samples' dtype: a coordinate that
    never varies (a dead ReLU unit's weights) must match to rounding.
    """
    samples = np.asarray(samples, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    N, P = samples.shape
    mean = samples.mean(axis=0)
    sd = samples.std(axis=0, ddof=1)
    floor = rtol * max(float(np.abs(reference).max()), 1e-300)
    z = np.abs(mean - reference) / np.maximum(sd / np.sqrt(N), floor)
    critical = NormalDist().inv_cdf(1.0 - alpha / (2 * P))
    total_variance = float((sd ** 2).sum())
    scaled = float(np.sqrt(N) * np.linalg.norm(mean - reference) / np.sqrt(max(total_variance, 1e-300)))
    rel_variance = total_variance / max(float((reference ** 2).sum()), 1e-300)
    max_z = float(z.max())
    return ZTest(max_z, float(critical), N, P, scaled, rel_variance, bool(max_z <= critical))


def _first_sequence(p):
    """x, s_0, y and weights of the problem's first sequence (batch of 1)."""
    return p.x[:, :1], p.s0[:1], p.y[:, :1], p.weights[:, :1]


def _uoro_terms(p, seed):
    """(init, update, per-example gradient) of UORO on problem ``p``."""
    r = rng(seed, p.x.dtype)

    def update(cache, state):
        nu = r.signs(state.s_tilde.shape)
        return uoro_update(p.cell, p.theta, cache, state, nu)

    def per_example(state, ds):
        return (ds * state.s_tilde).sum(axis=1)[:, None] * state.theta_tilde
    return (lambda batch, like: uoro_init(p.cell, batch, like)), update, per_example


def _kfrtrl_terms(p, seed):
    """(init, update, per-example gradient) of KF-RTRL on problem ``p``."""
    r = rng(seed, p.x.dtype)

    def update(cache, state):
        B = state.A.shape[0]
        return kfrtrl_update(p.cell, p.theta, cache, state, r.signs((B,)), r.signs((B,)))

    def per_example(state, ds):
        xp = xp_of(ds)
        v = (ds[:, None, :] @ state.A)[:, 0, :]
        return xp.concatenate([(v[:, :, None] * state.u[:, None, first:last]).reshape(v.shape[0], -1)
                               for first, last in state.blocks.values()], axis=1)
    return (lambda batch, like: kfrtrl_init(p.cell, batch, like)), update, per_example


def estimates(p, N, terms):
    """N independent estimates (N, P) of dθ on the first sequence of problem ``p``, from one run."""
    init, update, per_example = terms
    xp = xp_of(p.x)
    x, s, y, w = _first_sequence(p)
    x, s = xp.tile(x, (1, N, 1)), xp.tile(s, (N, 1))
    y = xp.tile(y, (1, N)) if y.ndim == 2 else xp.tile(y, (1, N, 1))
    w = xp.tile(w, (1, N))
    T = x.shape[0]
    state = init(N, x)
    G = 0.0
    for t in range(1, T + 1):
        s, cache = p.cell.step(p.theta, s, x[t - 1], t - 1)
        state = update(cache, state)
        _, dh, _ = p.head.loss_and_grad(p.beta, p.cell.output(s), y[t - 1], w[t - 1])
        G = G + per_example(state, p.cell.output_vjp(dh))
    return to_numpy(G)


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


def _unbiased(cell, make_terms, seed=7):
    def run():
        p = Problem(cell)
        x, s0, y, w = _first_sequence(p)
        g = to_numpy(p.cell.flat_params(rtrl(p.cell, p.theta, x, s0, p.head, p.beta, y, w).dtheta))
        G = estimates(p, N_ESTIMATES, make_terms(p, seed))
        test = z_test(G, g, rtol=exact_tol())
        early = z_test(G[:N_ESTIMATES // 16], g, rtol=exact_tol())
        detail = (f"max|z| over P={test.p} at N={test.n} vs Bonferroni crit {test.critical:.2f} "
                  f"(alpha={ALPHA:g}); sqrt(N)|err|/sqrt(tr cov) = {early.scaled_error:.2f} "
                  f"(N={early.n}), {test.scaled_error:.2f} (N={test.n}); var/|g|^2 = {test.rel_variance:.3g}")
        return test.max_z, test.critical, test.passed, detail
    return run


def rtrl_checks(name, cell, *, estimators=True):
    """RTRL = BPTT for one cell (``cell``: a name in CELLS or a zero-argument factory), then, with
    ``estimators``, UORO's unbiasedness and KF-RTRL's where the cell has ``kronecker_factors``.

    Another family registers the RTRL row of its cells with
    ``rtrl_checks("mycell", lambda: MyCell(I, H), estimators=False)``.
    """
    out = [Check(name, "rtrl", "= bptt (theta fixed; dtheta, dbeta, ds0)", _rtrl_equals_bptt(cell))]
    if not estimators:
        return out
    made = CELLS[cell]() if isinstance(cell, str) else cell()
    out.append(Check(name, "uoro", "mean of N -> rtrl (z-test, max|z|)", _unbiased(cell, _uoro_terms)))
    if callable(getattr(made, "kronecker_factors", None)):
        out.append(Check(name, "kfrtrl", "mean of N -> rtrl (z-test, max|z|)", _unbiased(cell, _kfrtrl_terms)))
    return out


def checks():
    """The RTRL family for every core cell."""
    return [c for name in CELLS for c in rtrl_checks(name, name)]
