"""refnet.algorithms.traces: the trace update's numba kernel equals its array twin (SnAp-1, RFLO)."""
import numpy as np
import pytest

from refnet.algorithms.traces import trace_update


@pytest.mark.parametrize("n, m, seed", [(1, 1, 0), (4, 9, 1), (32, 35, 2)])
@pytest.mark.parametrize("in_place", [False, True])
def test_trace_kernel_equals_the_array_code(monkeypatch, n, m, seed, in_place):
    r = np.random.default_rng(seed)
    a, D, h_hat, E = r.normal(size=(1, n)), r.normal(size=(1, n)), r.normal(size=(1, m)), r.normal(size=(1, n, m))
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("REFNET_NUMBA", flag)
        E_in = E.copy()
        results[flag] = trace_update(a, D, h_hat, E_in, E_in if in_place else None).copy()
    # one multiply and one fused add per entry in both: the same rounding, to 1e-12 at most
    np.testing.assert_allclose(results["1"], results["0"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(results["0"], a[:, :, None] * E + D[:, :, None] * h_hat[:, None, :], rtol=1e-15)


def test_trace_update_at_batch_above_one_is_the_array_code():
    r = np.random.default_rng(3)
    a, D, h_hat, E = r.normal(size=(3, 4)), r.normal(size=(3, 4)), r.normal(size=(3, 5)), r.normal(size=(3, 4, 5))
    np.testing.assert_allclose(trace_update(a, D, h_hat, E), a[:, :, None] * E + D[:, :, None] * h_hat[:, None, :],
                               rtol=1e-15)
