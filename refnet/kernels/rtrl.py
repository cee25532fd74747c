"""The RTRL sensitivity update as a numba loop: the twin of ``J_s @ M + J_θ``.

Used by :func:`refnet.algorithms.rtrl.rtrl_update` for small problems, where
NumPy's two calls (matmul, add) and their temporaries cost more than the
n²P multiply-adds; BLAS wins once n²P is large (see that function).
"""
import numba

__all__ = []


@numba.njit(cache=True)
def _rtrl_update(J_s, M_prev, J_theta, M):
    """M[b] = J_s[b] M_prev[b] + J_θ[b] (Williams & Zipser 1989); writes M (B, n, P)."""
    B, n, P = M.shape
    for b in range(B):
        for i in range(n):
            row = M[b, i]
            row[:] = J_theta[b, i]
            for k in range(n):
                J_ik = J_s[b, i, k]
                M_k = M_prev[b, k]
                for p in range(P):
                    row[p] += J_ik * M_k[p]
