"""The eligibility-trace update of RFLO and SnAp-1 as a numba loop: the twin of
:func:`refnet.algorithms.traces.trace_update` (``a ⊙ E + D ⊗ ĥ`` in three array operations).

At batch 1 the loop makes one pass over the P trace entries where NumPy makes
three, plus a temporary of P entries and the calls' fixed cost.
"""
import numba

__all__ = []


@numba.njit(cache=True)
def _trace_update(a, D, h_hat, E, out):
    """out[b, i, c] = a[b, i] E[b, i, c] + D[b, i] ĥ[b, c] (out may be E); writes out (B, n, m)."""
    B, n, m = E.shape
    for b in range(B):
        for i in range(n):
            a_i = a[b, i]
            d_i = D[b, i]
            for c in range(m):
                out[b, i, c] = a_i * E[b, i, c] + d_i * h_hat[b, c]
