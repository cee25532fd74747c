"""gradcheck: finite differences and gradient reports.  Depends on NumPy only.

``gradcheck.matrix`` (imported by ``python -m gradcheck``, not here) registers
refnet's cells × algorithms.
"""
from .check import (GradcheckError, GradReport, TaylorReport, check_directional, check_grads,
                    compare_grads, dot_product_test, taylor_test)
from .finite_differences import directional_derivative, numerical_gradient
from .tolerances import TOLERANCES, tolerances_for

__all__ = ["GradcheckError", "GradReport", "TaylorReport", "check_directional", "check_grads",
           "compare_grads", "dot_product_test", "taylor_test", "directional_derivative",
           "numerical_gradient", "TOLERANCES", "tolerances_for"]
