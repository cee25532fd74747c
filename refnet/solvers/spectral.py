"""Spectral radius ρ(J) of a cell's state Jacobian at a point, by the power method.

ρ(J) < 1 at h* is what the fixed-point iteration, original RBP (Liao et al.
2018, Alg. 1) and the Neumann series (Alg. 2, Prop. 3) need; Newton and
GMRES need only I − J invertible.  A diagnostic, not a certificate.
"""
import numpy

from .._validate import as_array, check_int, check_seed
from ..backend import xp_of
from .operators import linearise
from .problem import check_problem

__all__ = ["power_method", "spectral_radius"]


def power_method(apply, v0, *, iterations=200):
    """Per-example |λ_max| of a block-diagonal linear map by the power method.

    v ← M v / ‖M v‖ per example; the estimate is the geometric mean of the
    growth factors ‖M v‖ over the second half of the iterations, so a
    dominant complex pair (whose single-step factors oscillate) still gives
    |λ| up to an O(1/iterations) error.  Where M v vanishes the estimate is
    the float's smallest normal number, i.e. 0.

    Parameters
    ----------
    apply : callable
        The map M, (B, n) -> (B, n), row b depending on row b only.
    v0 : (B, n) array
        Start, floating, nonzero rows (a zero row gives the estimate 0).
    iterations : int
        Products with M, >= 2; the second half is averaged.

    Returns
    -------
    rho : (B,) array
        |λ_max| of each example's block, on the backend and in the dtype of ``v0``.

    Raises
    ------
    TypeError
        If ``iterations`` is not an int.
    ValueError
        If ``iterations`` < 2, or ``v0`` has no floating dtype
        (``numpy.finfo`` refuses it).
    """
    iterations = check_int("iterations", iterations, 2)
    xp = xp_of(v0)
    tiny = numpy.finfo(v0.dtype).tiny
    v = v0 / xp.maximum(xp.sqrt((v0 * v0).sum(axis=1, keepdims=True)), tiny)
    log_growth = xp.zeros(v0.shape[0], dtype=v0.dtype)
    for k in range(iterations):
        w = apply(v)
        norm = xp.sqrt((w * w).sum(axis=1))
        if k >= iterations // 2:
            log_growth = log_growth + xp.log(xp.maximum(norm, tiny))
        v = w / xp.maximum(norm, tiny)[:, None]
    return xp.exp(log_growth / (iterations - iterations // 2))


def spectral_radius(cell, theta, x, h_star, *, iterations=200, seed=0, t=None):
    """Power-method estimate of ρ(J), J = ∂F/∂h at h*, for every example (J v by ``cell.step_jvp``).

    A diagnostic, not a certificate: with a gap |λ₂|/|λ₁| close to 1 it
    converges slowly (:func:`power_method`).

    ρ(J) < 1 is the premise of the fixed-point iteration, original RBP
    (Liao et al. 2018, Alg. 1) and Neumann-RBP (Alg. 2, Prop. 3).

    Parameters
    ----------
    cell : refnet cell
        A cell with ``step``, ``step_vjp`` and ``step_jvp``.
    theta : dict {name: array}
        The cell's params.
    x : (B, I) array
        Static input.
    h_star : (B, n_state) array
        The point, usually an equilibrium h* (None is taken as zeros).
    iterations : int
        Power-method iterations, >= 2.
    seed : int
        Seed of the standard-normal start vector (NumPy's ``default_rng``), >= 0.
    t : int or None
        The step index passed to ``cell.step``.

    Returns
    -------
    rho : (B,) array
        ρ(J_b) per example, on the backend and in the dtype of ``h_star``.

    Raises
    ------
    TypeError
        If ``cell`` lacks ``step``/``step_vjp``/``step_jvp`` or a contract
        attribute, ``theta`` or an input is not a floating array dict/array,
        dtypes are mixed, ``iterations`` is not an int, or ``seed`` is not an
        int (a bool is refused).
    ValueError
        If shapes disagree with the cell, the batch is empty, an input holds
        NaN/Inf, ``iterations`` < 2, or ``seed`` is negative.
    """
    x = as_array("x", x)       # array-likes (torch tensors, lists) as the sequence algorithms take them
    h_star = check_problem(cell, theta, x, h_star, "h_star", needs=("step", "step_vjp", "step_jvp"))
    iterations = check_int("iterations", iterations, 2)
    seed = check_seed("seed", seed)
    xp = xp_of(h_star)
    lin = linearise(cell, theta, x, h_star, t)
    v0 = xp.asarray(numpy.random.default_rng(seed).standard_normal(h_star.shape), dtype=h_star.dtype)
    return power_method(lin.jvp, v0, iterations=iterations)
