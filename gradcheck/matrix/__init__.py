"""refnet's verification matrix: every cell × every algorithm, with the relation it claims.

This subpackage is the one part of gradcheck that imports refnet.  Each
module registers one family of checks: ``core`` (core cells, heads, BPTT,
TBPTT, the sequence VJP), ``interop`` (stacked layers, fixture traces),
``fast_weights``, ``ernn`` (FastRNN, FastGRNN, ERNN, exact ERNN), ``rbp``
(Hopfield, RBP, CG-RBP, GMRES-RBP, Neumann-RBP), ``rtrl`` (RTRL = BPTT; UORO
and KF-RTRL → RTRL by z-test), ``fpp`` (FPP's per-transition gradient = FD), ``rtrl_approx`` (leaky cells, SnAp-n, RFLO,
KF-RTRL beyond Elman),
``paths`` (numba kernels = their twins with the kernel watched, optimisers = their papers),
``fused`` (fused whole-sequence path = per-step path, fused kernels = twins),
``exporters`` (fixtures of FastRNN/FastGRNN and RTRL's M_t = FD),
``verdicts`` (gradcheck's own verdicts: a kink is named, no evidence is not a pass).
:func:`checks` lists them all in display order.
"""
from . import core, ernn, exporters, fast_weights, fpp, fused, interop, paths, rbp, rtrl, rtrl_approx, verdicts
from .common import CELLS, Check, Row, run_check

__all__ = ["CELLS", "Check", "Row", "checks", "run_check"]


def checks():
    """Every registered check, in display order.

    The families of the module docstring, in that order; the fast-weight
    cells' RTRL = BPTT rows follow the RTRL family's.  Nothing is run:
    :func:`run_check` runs one row.

    Returns
    -------
    list of Check
        One per matrix row (cell, algorithm, relation, ``run``).

    Raises
    ------
    ValueError
        If ``REFNET_BACKEND`` names no backend (the fused and approximate-RTRL
        families read it to decide whether their kernel rows apply).
    """
    rtrl_for_other_families = [c for family in (fast_weights,) for name, factory in family.CELLS.items()
                               for c in rtrl.rtrl_checks(name, factory, estimators=False)]
    return (core.checks() + interop.checks() + fast_weights.checks() + ernn.checks() + rbp.checks()
            + rtrl.checks() + rtrl_for_other_families + fpp.checks() + rtrl_approx.checks()
            + fused.checks() + paths.checks() + exporters.checks() + verdicts.checks())
