"""refnet's verification matrix: every cell × every algorithm, with the relation it claims.

This subpackage is the one part of gradcheck that imports refnet.  Each
module registers one family of checks (``core``: cells, heads, BPTT, TBPTT,
the sequence VJP; ``interop``: stacked layers and fixture traces); :func:`checks` lists them all in display order.
"""
from . import core, fast_weights, interop
from .common import CELLS, Check, Row, run_check

__all__ = ["CELLS", "Check", "Row", "checks", "run_check"]


def checks():
    """Every registered check, in display order."""
    return core.checks() + interop.checks() + fast_weights.checks()
