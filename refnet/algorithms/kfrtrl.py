"""KF-RTRL (Mujika, Meier & Steger 2018): a Kronecker-factored, unbiased estimate of RTRL.

For cells whose immediate Jacobian is Kronecker-factored per parameter,
∂s_t/∂θ_k = diag(D_t) ⊗ ĥ_kᵀ (``cell.kronecker_factors``; the Elman RNN:
D = φ'(a_t), ĥ = x_t, h_{t−1} or 1), the sensitivity is kept as one
Kronecker product per example, M_t ≈ A_t ⊗ u_t, with A (n, n) and u the
concatenation of the rows u_k shaped like the ĥ_k, so that M_t restricted to
θ_k is A_t ⊗ u_kᵀ.  The exact recursion gives a sum of two Kronecker products,

    J_s M_{t−1} + J_θ = (J_s A_{t−1}) ⊗ u_{t−1} + diag(D_t) ⊗ ĥ_t,

which is replaced by one, with independent random signs c1, c2 and positive
p1, p2 (paper, Eq. 5 and Lemma 1):

    u_t = c1 p1 u_{t−1} + c2 p2 ĥ_t,       A_t = (c1/p1) J_s A_{t−1} + (c2/p2) diag(D_t).

E[c1 c2] = 0 kills the cross terms, so E[A_t ⊗ u_t] = J_s E[M_{t−1}] + J_θ:
unbiased by induction from M_0 = 0.  p1 = sqrt(‖J_s A‖/‖u‖) and
p2 = sqrt(‖D‖/‖ĥ‖) minimise the added variance (ε-guarded, for the first
step, where A = u = 0).  The gradient estimate for θ_k is
Σ_b (∂L_t/∂s_t A_t)[b] ⊗ u_k[b], shaped as θ_k.  Cost per step: J_s A and
O(n(n + m)) more, against RTRL's O(n²P); J_s comes from ``cell.jacobians``,
whose J_θ goes unused (for the Elman cell it is O(n²m) = O(nP) to build).
"""
from typing import NamedTuple

from .._validate import check_array, check_int, check_number
from ..backend import xp_of
from ..params import axpy, zeros_like
from .bptt import GradResult
from .checks import StepWatch, check_cell, check_objective, check_sequence
from .uoro import check_rng

__all__ = ["KFRTRLState", "kfrtrl_init", "kfrtrl_update", "kfrtrl_gradient", "kfrtrl_sensitivity",
           "kfrtrl", "EPS"]

EPS = 1e-7   # keeps p1, p2 finite and positive where a factor is zero (at t = 1)


class KFRTRLState(NamedTuple):
    A: object       # (B, n, n)
    u: object       # (B, m), the u_k side by side in param_shapes order
    blocks: dict    # {name: (first column, last column + 1)} of u_k in u


def _check_kronecker(cell):
    check_cell(cell)
    if not callable(getattr(cell, "kronecker_factors", None)):
        raise TypeError(f"KF-RTRL needs a cell whose J_theta is Kronecker-factored, with a "
                        f"kronecker_factors(params, cache) method (e.g. refnet.ElmanRNN); "
                        f"got {type(cell).__name__}, which has none")


def kfrtrl_init(cell, batch, like):
    """A = 0, u = 0 (M_0 = 0) for ``batch`` examples, on the backend and dtype of ``like``."""
    _check_kronecker(cell)
    batch = check_int("batch", batch, 1)
    check_array("like", like, finite=False)
    xp = xp_of(like)
    n = cell.n_state
    blocks, m = {}, 0
    for k, shape in cell.param_shapes().items():
        if shape[0] != n:
            raise ValueError(f"KF-RTRL needs every parameter to have n_state = {n} rows; "
                             f"theta[{k!r}] has shape {shape}")
        width = 1 if len(shape) == 1 else int(shape[1])
        blocks[k] = (m, m + width)
        m += width
    return KFRTRLState(xp.zeros((batch, n, n), dtype=like.dtype), xp.zeros((batch, m), dtype=like.dtype),
                       blocks)


def _norms(xp, v):
    """Per-example Frobenius norms of v (B, ...), as (B,)."""
    return xp.sqrt((v * v).reshape(v.shape[0], -1).sum(axis=1))


def kfrtrl_update(cell, theta, cache, state, c1, c2, *, eps=EPS):
    """One KF-RTRL step (Mujika et al. 2018, Eq. 5) after the transition that made ``cache``.

    Parameters
    ----------
    cell, theta : the cell (with ``kronecker_factors``) and its params
    cache : from ``cell.step`` at this step;  state : KFRTRLState at t − 1
    c1, c2 : (B,) independent random signs, drawn fresh at every step
    eps : the ε of the module docstring

    Returns
    -------
    KFRTRLState at t.
    """
    xp = xp_of(c1)
    A, u, blocks = state
    D, h_hat = cell.kronecker_factors(theta, cache)
    h_hat = xp.concatenate([h_hat[k] for k in blocks], axis=1)
    JA = cell.jacobians(theta, cache)[0] @ A
    p1 = xp.sqrt((_norms(xp, JA) + eps) / (_norms(xp, u) + eps))
    p2 = xp.sqrt((_norms(xp, D) + eps) / (_norms(xp, h_hat) + eps))
    u_new = (c1 * p1)[:, None] * u + (c2 * p2)[:, None] * h_hat
    A_new = (c1 / p1)[:, None, None] * JA
    diagonal = xp.arange(A.shape[1])
    A_new[:, diagonal, diagonal] += (c2 / p2)[:, None] * D                 # + (c2/p2) diag(D)
    return KFRTRLState(A_new, u_new, blocks)


def kfrtrl_gradient(state, ds, shapes):
    """The estimate of Σ_b (∂L_t/∂s_t)[b] M_t[b] as a params dict: θ_k ← Σ_b (ds A)[b] ⊗ u_k[b]."""
    v = (ds[:, None, :] @ state.A)[:, 0, :]                         # (B, n)
    G = v.T @ state.u                                               # (n, m), every θ_k side by side
    return {k: G[:, first:last].reshape(shapes[k]) for k, (first, last) in state.blocks.items()}


def kfrtrl_sensitivity(state):
    """The dense estimate M̃ = A ⊗ u (B, n, P), columns in flatten order (for tests and checks)."""
    xp = xp_of(state.A)
    B, n, _ = state.A.shape
    return xp.concatenate([(state.A[:, :, :, None] * state.u[:, None, None, first:last]).reshape(B, n, -1)
                           for first, last in state.blocks.values()], axis=2)


def kfrtrl(cell, theta, x, s0, head, beta, y, weights=None, *, rng, eps=EPS):
    """One KF-RTRL estimate of L's gradient over a sequence with θ fixed (Mujika et al. 2018).

    Arguments as :func:`refnet.algorithms.bptt.bptt`, plus ``rng`` (a
    :class:`refnet.backend.Rng`) for the signs c1, c2.  Returns a GradResult
    whose ``dtheta`` is a random, unbiased estimate of RTRL's; ``dbeta`` and
    ``loss`` are exact; ``ds0`` is None (not estimated); ``vjp_steps`` is 0.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, as :func:`refnet.algorithms.bptt.bptt`; ``rng`` not a Rng; ``eps`` <= 0;
        a cell without ``kronecker_factors`` (TypeError naming the cell).
    refnet.NumericalError
        Names the first non-finite state s_t, loss term or gradient term (from A_t, u_t).
    """
    check_rng(rng)
    check_number("eps", eps, low=0.0, low_open=True)
    _check_kronecker(cell)
    x, s0 = check_sequence(cell, theta, x, s0)
    y, weights = check_objective(head, beta, x, y, weights, cell)
    T, B = x.shape[:2]
    shapes = cell.param_shapes()
    state = kfrtrl_init(cell, B, x)
    c = rng.signs((T, 2, B)).astype(x.dtype, copy=False)
    dtheta = {k: xp_of(x).zeros(shape, dtype=x.dtype) for k, shape in shapes.items()}
    dbeta = zeros_like(beta)
    L, s = 0.0, [s0]
    watch = StepWatch("kfrtrl")
    for t in range(1, T + 1):
        s_t, cache = cell.step(theta, s[t - 1], x[t - 1], t - 1)
        s.append(s_t)
        state = kfrtrl_update(cell, theta, cache, state, c[t - 1, 0], c[t - 1, 1], eps=eps)
        L_t, dh, dbeta_t = head.loss_and_grad(beta, cell.output(s_t), y[t - 1], weights[t - 1], check=False)
        g_t = kfrtrl_gradient(state, cell.output_vjp(dh), shapes)
        axpy(1.0, g_t, dtheta)
        axpy(1.0, dbeta_t, dbeta)
        L = L + L_t
        watch(t, s_t, L_t, state.A)   # g_t is made from A_t and u_t: A_t overflows first (J_s A_{t−1})
    watch.flush()
    return GradResult(float(L), dtheta, dbeta, None, s[T], 0)
