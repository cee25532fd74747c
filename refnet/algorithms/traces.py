"""Per-parameter eligibility traces of Kronecker-factored cells, shared by RFLO and SnAp-1.

For a cell whose immediate Jacobian is ∂s_t/∂θ_k = diag(D_t) ⊗ ĥ_kᵀ for every
parameter (``cell.kronecker_factors``: Elman, leaky RNN), an approximation of
RTRL's sensitivity M_t that keeps one entry per parameter, M_t[i, (i, j)],
is a trace E (B, n, m) with m the width of ĥ = [ĥ_k side by side]:

    E_t = a_t ⊙ E_{t−1} + D_t ⊗ ĥ_t,        E[b, i, c] ← a[b, i] E[b, i, c] + D[b, i] ĥ[b, c]

RFLO (Murray 2019, the trace p of its learning rule) takes a = 1 − α, the
leak; SnAp-1 (Menick et al. 2021, §3, n = 1) takes a = diag(J_s).  The trace
of θ_k[i, j] is E[:, i, first_k + j], so E holds exactly P entries.  At batch 1
on NumPy the update runs the kernel :func:`refnet.kernels.traces._trace_update`
(the array code below is its twin).
"""
from .. import kernels
from ..backend import xp_of

__all__ = ["trace_update", "trace_gradient", "split_blocks"]


def trace_update(a, D, h_hat, E, out=None):
    """E_t = a ⊙ E_{t−1} + D ⊗ ĥ (module docstring; Murray 2019's trace p, Menick et al. 2021's SnAp-1); returns E_t.

    Parameters
    ----------
    a : (B, n) array
        Per-unit decay of the trace: RFLO's leak 1 − α or SnAp-1's diag(J_s).
    D : (B, n) array
        The diagonal factor of J_θ = diag(D) ⊗ ĥᵀ.
    h_hat : (B, m) array
        The ĥ_k of every carried parameter, side by side.
    E : (B, n, m) array
        The trace at t − 1.
    out : (B, n, m) array or None
        Where to write E_t (may be ``E`` itself); None allocates.

    Returns
    -------
    (B, n, m) array
        E_t (``out`` when given).  At B = 1 on NumPy, with one float dtype, the numba kernel
        ``refnet.kernels.traces._trace_update`` computes it; otherwise the array code.

    Raises
    ------
    ValueError
        Shapes that do not broadcast as stated (array path), or ``REFNET_NUMBA`` set to
        anything but '0' or '1'.  The batch-1 kernel does not check shapes: callers pass the
        shapes above.
    TypeError
        An argument that is not an array.
    """
    if out is None:
        out = xp_of(E).empty_like(E)
    if E.shape[0] == 1 and kernels.applicable(a, D, h_hat, E, out):
        kernels.load("traces")._trace_update(a, D, h_hat, E, out)
        return out
    xp_of(E).multiply(a[:, :, None], E, out=out)
    out += D[:, :, None] * h_hat[:, None, :]
    return out


def trace_gradient(E, ds):
    """The gradient Σ_b ds[b, i] E[b, i, c] (n, m) that the trace gives for a cotangent on s_t.

    Parameters
    ----------
    E : (B, n, m) array
        The trace E_t.
    ds : (B, n) array
        The cotangent ∂ℓ_t/∂s_t (RFLO's learning signal δ_t).

    Returns
    -------
    (n, m) array
        Row i, column c: the gradient of θ_k[i, j] at c = first_k + j, summed over the batch.

    Raises
    ------
    ValueError
        ``ds`` and ``E`` whose shapes do not broadcast as (B, n, 1) against (B, n, m).
    TypeError
        An argument that is not an array.
    """
    return (ds[:, :, None] * E).sum(axis=0)


def split_blocks(G, blocks, shapes):
    """The (n, m) gradient ``G`` cut into parameters: {name: G[:, first:last] shaped as shapes[name]}.

    Parameters
    ----------
    G : (n, m) array
        Gradients of every carried parameter's trace entries, side by side (:func:`trace_gradient`).
    blocks : dict {name: (int, int)}
        The columns [first, last) of each parameter in G, in the order wanted.
    shapes : dict {name: tuple}
        Every parameter's shape (``cell.param_shapes()``); (n,) for a bias, (n, m_k) for a matrix.

    Returns
    -------
    dict {name: array}
        One gradient per entry of ``blocks``, shaped as ``shapes[name]``.

    Raises
    ------
    KeyError
        A name of ``blocks`` missing from ``shapes``.
    ValueError
        A block whose n·(last − first) entries do not fit ``shapes[name]``.
    """
    return {k: G[:, first:last].reshape(shapes[k]) for k, (first, last) in blocks.items()}
