"""Real-time recurrent learning (Williams & Zipser 1989): the gradient carried forward in time.

The sensitivity M_t = ds_t/dθ (B, n, P) obeys

    M_0 = 0,     M_t = J_s M_{t−1} + J_θ,     dθ = Σ_t Σ_b (∂L_t/∂s_t)[b] M_t[b]

with J_s = ∂s_t/∂s_{t−1} and J_θ = ∂s_t/∂θ from the cell's ``jacobians``
(columns in ``refnet.params.flatten`` order of ``cell.param_shapes()``).
The cell has no direct loss term; the head's gradient dβ is taken at each
step.  With θ fixed over the sequence this is BPTT's gradient, computed
forward (O(n²P) per step, no stored trajectory) — the relation the gradcheck
matrix checks.  ``ds0`` is carried the same way, S_t = ds_t/ds_0 = J_s S_{t−1},
S_0 = I.
"""
from .. import kernels
from ..backend import xp_of
from ..params import axpy, unflatten, zeros_like
from .bptt import GradResult
from .checks import StepWatch, check_finite_tree, check_objective, check_sequence
from .trainable import check_trainable, trainable_columns

__all__ = ["rtrl_update", "rtrl", "KERNEL_MAX_WORK"]

# Largest n²P per example for which the numba loop beats BLAS: measured on 2 cores, the loop
# took 1.7 µs against NumPy's 3.1 µs at n = 8, P = 88 (5.6k multiply-adds) and 21 µs against
# 8 µs at n = 16, P = 304 (78k); NumPy's fixed cost per call is what the loop saves.
KERNEL_MAX_WORK = 1 << 15


def rtrl_update(J_s, J_theta, M, out=None):
    """One RTRL step of the sensitivity, M_t = J_s M_{t−1} + J_θ (Williams & Zipser 1989; module docstring).

    Parameters
    ----------
    J_s : (B, n, n) array
        ∂s_t/∂s_{t−1}, per example.
    J_theta : (B, n, P) array
        ∂s_t/∂θ, per example, columns in ``refnet.params.flatten`` order (the trainable columns
        only when parameters are frozen).
    M : (B, n, P) array
        The sensitivity M_{t−1} = ds_{t−1}/dθ.
    out : (B, n, P) array or None
        A new array to write M_t into (not ``M`` itself: the product reads M while it writes);
        None allocates one.

    Returns
    -------
    (B, n, P) array
        M_t (``out`` when given).  Small problems on NumPy (n²P <= ``KERNEL_MAX_WORK``, one
        float dtype) run the numba kernel ``refnet.kernels.rtrl._rtrl_update``; larger ones
        one batched BLAS matmul.

    Raises
    ------
    TypeError
        ``J_s``, ``J_theta`` or ``M`` is not a 3-d array.
    ValueError
        Shapes that do not fit (B, n, n) @ (B, n, P) + (B, n, P); ``out`` that is ``M`` or not
        (B, n, P); ``REFNET_NUMBA`` set to anything but '0' or '1'.
    """
    for name, a in (("J_s", J_s), ("J_theta", J_theta), ("M", M)):
        if not hasattr(a, "shape") or len(a.shape) != 3:
            raise TypeError(f"{name} must be a 3-d array, got {type(a).__name__} "
                            f"{getattr(a, 'shape', '')}")
    B, n, P = M.shape
    if J_s.shape != (B, n, n) or J_theta.shape != (B, n, P):
        raise ValueError(f"J_s must have shape (B, n, n) = {(B, n, n)} and J_theta (B, n, P) = {(B, n, P)} "
                         f"for M of shape {(B, n, P)}, got {tuple(J_s.shape)} and {tuple(J_theta.shape)}")
    if out is not None and (out is M or getattr(out, "shape", None) != (B, n, P)):
        raise ValueError(f"out must be a new (B, n, P) = {(B, n, P)} array, not M itself, got "
                         f"{'M' if out is M else getattr(out, 'shape', type(out).__name__)}")
    if out is None:
        out = xp_of(M).empty_like(M)
    if n * n * P <= KERNEL_MAX_WORK and kernels.applicable(J_s, J_theta, M, out):
        kernels.load("rtrl")._rtrl_update(J_s, M, J_theta, out)
        return out
    xp_of(M).matmul(J_s, M, out=out)
    out += J_theta
    return out


def rtrl(cell, theta, x, s0, head, beta, y, weights=None, *, trainable=None):
    """RTRL (Williams & Zipser 1989): the exact gradient of L, carried forward in time with θ fixed.

    M_0 = 0, M_t = J_s M_{t−1} + J_θ (:func:`rtrl_update`) and
    dθ = Σ_t Σ_b (∂L_t/∂s_t)[b] M_t[b]; ds_0 is carried the same way by
    S_t = J_s S_{t−1}, S_0 = I.  The result equals :func:`refnet.algorithms.bptt.bptt`'s
    to rounding (a gradcheck matrix relation) at O(n²P) per step and no stored trajectory.

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell; its ``jacobians`` give J_s and J_θ.
    theta : dict {name: array}
        The cell's parameters, shapes as in ``cell.param_shapes()``.
    x : (T, B, I) array-like
        Inputs, T >= 1, B >= 1; ``x[t − 1]`` is x_t.
    s0 : (B, n_state) array-like or None
        Initial state s_0; None for zeros.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout and its loss ℓ, on ``cell.output``; ``head.n_in == cell.n_out``.
    beta : dict {name: array}
        The head's parameters.
    y : (T, B) int array or (T, B, O) float array
        Class labels in [0, O) for a label loss, else targets of the head's width O.
    weights : (T, B) array or None
        Loss weights w[t − 1, b]; None for the mean over every step and sequence.
    trainable : collection of str or None
        Names of the parameters to differentiate (default None: all).  M_t keeps those columns
        only, (B, n, P_trainable), and ``dtheta`` holds only them
        (:mod:`refnet.algorithms.trainable`).

    Returns
    -------
    GradResult
        ``loss`` L, ``dtheta`` = ∂L/∂θ, ``dbeta`` = ∂L/∂β, ``ds0`` = ∂L/∂s_0 (B, n_state),
        ``s_T`` (B, n_state) and ``vjp_steps`` = 0 (RTRL uses no VJP).

    Raises
    ------
    TypeError
        ``cell`` or ``head`` lacks its contract; ``theta``/``beta`` not dicts of floating arrays;
        an argument that is neither an array nor a nested list of numbers; integer labels expected but not given; mixed dtypes or
        backends; ``trainable`` a str or not a collection.
    ValueError
        A missing or extra parameter, a wrong shape, T = 0, B = 0, ``head.n_in != cell.n_out``,
        labels outside [0, O), a NaN/Inf input, a ``trainable`` name the cell lacks, or a bad
        ``REFNET_NUMBA``.
    refnet.NumericalError
        Names the first non-finite state s_t, loss term L_t or gradient term (from M_t),
        checked every ``checks.CHECK_EVERY`` steps as the run goes, or a non-finite ds0.
    """
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    names = check_trainable(cell, trainable)
    xp = xp_of(x)
    T, B = x.shape[:2]
    n = cell.n_state
    ordered = {k: theta[k] for k in cell.param_shapes() if k in names}
    columns = None if len(names) == len(cell.param_shapes()) else xp.asarray(trainable_columns(cell, names))
    M = xp.zeros((B, n, sum(int(v.size) for v in ordered.values())), dtype=x.dtype)
    S = xp.broadcast_to(xp.eye(n, dtype=x.dtype), (B, n, n))
    dtheta_flat = xp.zeros(M.shape[2], dtype=x.dtype)
    ds0 = xp.zeros_like(s0)
    dbeta = zeros_like(beta)
    L, s = 0.0, [s0]
    watch = StepWatch("rtrl")
    for t in range(1, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        J_s, J_theta = cell.jacobians(theta, cache)
        if columns is not None:                      # frozen parameters: no sensitivity columns
            J_theta = xp.ascontiguousarray(J_theta[:, :, columns])
        M = rtrl_update(J_s, J_theta, M)
        S = J_s @ S
        L_t, dh, dbeta_t = head.loss_and_grad(beta, cell.output(s_t), y[t - 1], weights[t - 1], check=False)
        ds = cell.output_vjp(dh)[:, None, :]                                  # ∂L_t/∂s_t, (B, 1, n)
        g_t = (ds @ M)[:, 0, :].sum(axis=0)
        dtheta_flat += g_t
        ds0 += (ds @ S)[:, 0, :]
        axpy(1.0, dbeta_t, dbeta)
        L = L + L_t
        watch(t, s_t, L_t, g_t)
    watch.flush()
    check_finite_tree("rtrl", "ds0", {"ds0": ds0})
    dtheta = unflatten(dtheta_flat, ordered)
    return GradResult(float(L), dtheta, dbeta, ds0, s[T], 0)
