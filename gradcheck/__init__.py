"""gradcheck: finite differences and gradient reports.  Depends on NumPy only.

``gradcheck.matrix`` (imported by ``python -m gradcheck``, not here) registers
refnet's cells × algorithms; the ``export`` subcommand (gradcheck/cli_fixtures.py)
lazily imports refnet's exporters.  ``compare`` localises where a candidate's
forward or backward trace first leaves a reference fixture.
"""
from .check import (GradcheckError, GradReport, TaylorReport, check_directional, check_grads,
                    compare_grads, dot_product_test, taylor_test)
from .compare import COMPARE_TOLERANCES, CompareReport, compare, compare_tolerances
from .finite_differences import directional_derivative, numerical_gradient
from .fixture_io import Fixture, load_fixture, save_fixture
from .tolerances import TOLERANCES, tolerances_for

__all__ = ["GradcheckError", "GradReport", "TaylorReport", "check_directional", "check_grads",
           "compare_grads", "dot_product_test", "taylor_test", "directional_derivative",
           "numerical_gradient", "TOLERANCES", "tolerances_for",
           "COMPARE_TOLERANCES", "CompareReport", "compare", "compare_tolerances",
           "Fixture", "load_fixture", "save_fixture"]
