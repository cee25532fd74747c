"""Every row of the gradcheck matrix on the device double, with zero implicit conversions to NumPy.

Slow (the whole matrix, about three minutes on one core), so it runs where
``REFNET_STRICT_MATRIX=1`` is set: CI's ``.ci/run`` sets it in its own line.
A row that converted a device array implicitly would fail anyway (the double
raises TypeError); counting them too catches a conversion that some code
caught and swallowed.
"""
import os

import pytest

from gradcheck.matrix import checks, run_check
from refnet import _strict

pytestmark = pytest.mark.skipif(os.environ.get("REFNET_STRICT_MATRIX") != "1",
                                reason="the whole matrix on the device double: set REFNET_STRICT_MATRIX=1")



def _rows_on_the_double():
    """The matrix as it registers on the double: rows that need NumPy arrays (the numba kernels' rows)
    are registered on NumPy only, exactly as ``python -m gradcheck --backend strict`` lists them."""
    saved = os.environ.get("REFNET_BACKEND")
    os.environ["REFNET_BACKEND"] = "strict"
    try:
        return checks()
    finally:
        if saved is None:
            os.environ.pop("REFNET_BACKEND", None)
        else:
            os.environ["REFNET_BACKEND"] = saved


ROWS = _rows_on_the_double() if os.environ.get("REFNET_STRICT_MATRIX") == "1" else []


@pytest.mark.parametrize("check", ROWS, ids=[f"{c.cell}-{c.algorithm}-{i}" for i, c in enumerate(ROWS)])
def test_matrix_row_passes_on_the_device_double(check, monkeypatch):
    monkeypatch.setenv("REFNET_BACKEND", "strict")
    with _strict.counting() as counted:
        row = run_check(check)
    assert counted.implicit == 0, counted
    assert row.passed, f"{row.cell} {row.algorithm} {row.relation}: {row.verdict.status} {row.detail}"
