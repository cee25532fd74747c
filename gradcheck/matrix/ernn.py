"""The ERNN family in the matrix: FastRNN, FastGRNN, ERNN (K inner iterations), exact-equilibrium ERNN.

Rows come from :func:`gradcheck.matrix.core.cell_checks`.  Every cell runs the
relations of :data:`CORE_ROWS`: BPTT = FD (through the inner iterations, or
through the implicit per-step solve), TBPTT(2, 3) = FD of the truncated
objective, TBPTT(2, T) = BPTT, sequence VJP = FD, the JVP/VJP dot product
and Jacobians = JVP, and RTRL = BPTT (from :mod:`gradcheck.matrix.rtrl`; not
UORO's statistical test); the cells in :data:`FULL` run every row of
``cell_checks``, the toy only the cheaper rows of :data:`LIGHT`.  ERNN runs with K = 1, 2, 3, with a shared η (K,) (ReLU,
the paper's σ) and a per-step η (T, K) (tanh).  At ERNN's own init U = 0 and
η = 1e-2, which would leave the self-feedback and the (1 − η) path nearly
untested, so the problems here draw U ~ N(0, 0.3²) and η ~ U(0.2, 0.8); the
exact-equilibrium ERNN draws U too.  The exact cells solve each step with
the plain fixed-point iteration (their maps contract at these points) and
then their own Newton correction, so each solve is exact to rounding whatever
the solver; their default solver ``hybr`` is tested in tests/test_ernn_exact.py.
"""
from refnet.cells.ernn import ERNN
from refnet.cells.ernn_exact import ExactERNN, ToyERNN
from refnet.cells.fastgrnn import FastGRNN
from refnet.cells.fastrnn import FastRNN
from refnet.solvers.nonlinear import fixed_point

from .common import H, I, T
from .core import cell_checks
from .rtrl import rtrl_checks

__all__ = ["CELLS", "checks"]


class _DrawnERNN(ERNN):
    """ERNN whose init draws U and η (module docstring)."""

    def init(self, rng):
        theta = super().init(rng)
        theta["U"] = rng.normal((H, H), 0.3)
        theta["eta"] = rng.uniform(theta["eta"].shape, 0.2, 0.8)
        return theta


class _DrawnExactERNN(ExactERNN):
    """Exact-equilibrium ERNN whose init draws U (its own init has U = 0, a trivial solve)."""

    def init(self, rng):
        theta = super().init(rng)
        theta["U"] = rng.normal((H, H), 0.3)
        return theta


CELLS = {
    "fastrnn": lambda: FastRNN(I, H),
    "fastgrnn": lambda: FastGRNN(I, H),
    **{f"ernn_k{K}": (lambda K=K: _DrawnERNN(I, H, K, "relu")) for K in (1, 2, 3)},
    **{f"ernn_k{K}_tk": (lambda K=K: _DrawnERNN(I, H, K, "tanh", sequence_length=T)) for K in (1, 2, 3)},
    "exact_ernn": lambda: _DrawnExactERNN(I, H, solver=fixed_point, maxiter=1000),
    "toy_ernn": lambda: ToyERNN(I, H, solver=fixed_point, maxiter=1000),
}

# The relations the issue asks of every cell.  Only FULL runs every row of cell_checks (the
# extra rows exercise the algorithms more than the cell), to keep the family at a few seconds.
CORE_ROWS = {("bptt", "= FD of L (every step, CE)"), ("tbptt(2,3)", "= FD of truncated objective"),
             (f"tbptt(2,{T})", "= bptt (k2 >= T)"), ("sequence_vjp", "= FD of <dout, outputs> + <ds_T, s_T>"),
             ("jvp/vjp", "<u, J v> = <J^T u, v>"), ("jacobians", "J_s v + J_theta p = jvp")}
FULL = ("fastrnn", "fastgrnn", "ernn_k2")
# The toy shares exact_ernn's solve and implicit gradient (with U = I fixed): the FD rows that
# cost most (the truncated objective, the sequence VJP) run for exact_ernn only.
LIGHT = {"toy_ernn": CORE_ROWS - {("tbptt(2,3)", "= FD of truncated objective"),
                                  ("sequence_vjp", "= FD of <dout, outputs> + <ds_T, s_T>")}}


def checks():
    """The family's checks, in display order.

    For each cell: its rows of :func:`~gradcheck.matrix.core.cell_checks`
    (all of them for :data:`FULL`, the light set otherwise), then RTRL = BPTT.

    Returns
    -------
    list of Check
        The rows, each with its cell, algorithm, relation and ``run``.

    Raises
    ------
    None
        For the registered cells.  Listing builds each cell once
        (:func:`~gradcheck.matrix.rtrl.rtrl_checks` asks whether it has
        ``kronecker_factors``); every problem is built when its row's ``run``
        is called, and :func:`~gradcheck.matrix.common.run_check` turns
        whatever that raises into a FAIL row.
    """
    out = []
    for name, factory in CELLS.items():
        out += [check for check in cell_checks(name, factory)
                if name in FULL or (check.algorithm, check.relation) in LIGHT.get(name, CORE_ROWS)]
        out += [check for check in rtrl_checks(name, factory) if check.algorithm == "rtrl"]
    return out
