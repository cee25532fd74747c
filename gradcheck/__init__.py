"""gradcheck: finite differences and gradient reports with pass / fail / inconclusive verdicts.

Depends on NumPy only.  ``gradcheck.matrix`` (imported by ``python -m
gradcheck``, not here) registers refnet's cells × algorithms; the ``export``
subcommand (gradcheck/cli_fixtures.py) lazily imports refnet's exporters.
``compare`` localises where a candidate's forward or backward trace first
leaves a reference fixture; ``check_torch`` (gradcheck/oracle.py, which
imports refnet and torch when called) checks a PyTorch nn.RNN/LSTM/GRU's
gradients against refnet in one call.  Every check returns a report whose ``verdict``
(:class:`Verdict`) is PASS, FAIL or INCONCLUSIVE with its reason
(gradcheck/verdict.py); inconclusive is never a pass.
"""
from .check import (GradReport, Kink, TaylorReport, check_directional, check_grads, compare_grads,
                    dot_product_test, taylor_test)
from .compare import COMPARE_TOLERANCES, CompareReport, compare, compare_tolerances
from .finite_differences import directional_derivative, estimate_noise, numerical_gradient
from .fixture_io import Fixture, FixtureError, load_fixture, save_fixture
from .oracle import check_torch
from .tolerances import FLOAT32_OBJECTIVE, TOLERANCES, tolerances_for
from .verdict import FAIL, INCONCLUSIVE, PASS, GradcheckError, InconclusiveError, Verdict

__all__ = ["GradcheckError", "InconclusiveError", "Verdict", "PASS", "FAIL", "INCONCLUSIVE",
           "GradReport", "TaylorReport", "Kink", "check_directional", "check_grads",
           "compare_grads", "dot_product_test", "taylor_test", "directional_derivative",
           "numerical_gradient", "estimate_noise", "TOLERANCES", "FLOAT32_OBJECTIVE", "tolerances_for",
           "COMPARE_TOLERANCES", "CompareReport", "compare", "compare_tolerances",
           "Fixture", "FixtureError", "load_fixture", "save_fixture", "check_torch"]
