"""Default steps and tolerances, keyed by dtype.

``eps`` is the central-difference step; its truncation error is O(eps²) and
its rounding error O(u / eps) with u the unit roundoff, balanced near
eps ≈ u^(1/3): 1e-6 in float64 (u ≈ 1.1e-16), 4e-3 in float32 (u ≈ 6e-8).
``rtol`` bounds the normwise relative error (see ``gradcheck.check``) of
gradients of that dtype; ``atol`` is the absolute floor used where a gradient
is itself tiny.  In float64 it sits a little above the rounding noise of a
central difference of an O(1) objective, ≈ 10 u / eps = 1e-9.  The float32
row's rtol/atol assume the reference is computed in float64 (as the matrix
does): they bound float32 rounding in the analytic gradient, 1e-4 / 1e-6.
A float32 difference quotient is itself noisy to ≈ u / eps ≈ 1e-5 · |f|.  ``exact`` is
the tolerance for relations that hold to rounding (RTRL = BPTT,
TBPTT with k2 >= T = BPTT, JVP/VJP dot products).

:data:`FLOAT32_OBJECTIVE` is the row ``check_grads`` uses when the objective
itself is computed in float32 (``f`` returns float32, or its measured noise
is beyond float64 rounding), so that both f(θ ± ε e) carry float32 rounding:
the step balances truncation and rounding at u32^(1/3) ≈ 4e-3, where each
error is ≈ 1e-5 relative for an O(1) objective and gradient, and rtol = 1e-3
leaves two orders of margin for a larger third derivative.  Differences
within the objective's measured noise are inconclusive, not failures.
"""
import numpy as np

__all__ = ["TOLERANCES", "FLOAT32_OBJECTIVE", "tolerances_for"]

TOLERANCES = {
    np.dtype("float64"): {"eps": 1e-6, "rtol": 1e-6, "atol": 1e-9, "exact": 1e-12},
    np.dtype("float32"): {"eps": 4e-3, "rtol": 1e-4, "atol": 1e-6, "exact": 1e-5},
}

FLOAT32_OBJECTIVE = {"eps": 4e-3, "rtol": 1e-3, "atol": 1e-6}


def tolerances_for(dtype):
    """The tolerance row for ``dtype``; ValueError for a dtype with no row.

    Parameters
    ----------
    dtype : dtype-like
        Anything ``np.dtype`` accepts (``'float64'``, ``np.float32``, an array's ``dtype``).

    Returns
    -------
    dict
        ``{'eps', 'rtol', 'atol', 'exact'}`` for that dtype (dimensionless;
        ``eps`` is the central-difference step in the parameters' units), the
        very dict stored in :data:`TOLERANCES` (do not mutate it).

    Raises
    ------
    TypeError
        If ``dtype`` is not something ``np.dtype`` understands.
    ValueError
        If it is a dtype with no row (only float64 and float32 have one).
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype (one of {[str(d) for d in TOLERANCES]}), "
                        f"got {dtype!r}") from None
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {[str(d) for d in TOLERANCES]}, got {dtype}")
    return TOLERANCES[dtype]
