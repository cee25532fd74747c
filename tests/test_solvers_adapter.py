"""refnet.solvers.scipy_adapter: the keyword and maxiter differences of SciPy (>= 1.10) and cupyx (13, 14).

The fakes below have the signatures of the old APIs (``tol=`` only: SciPy 1.10/1.11, cupyx 13) and
the new ones (``rtol=`` only: SciPy >= 1.14), and count GMRES's ``maxiter`` in restart cycles (SciPy)
or inner iterations (cupyx); each records what it was called with.  The real SciPy runs too, and
cupyx where CuPy and a GPU are present.
"""
import numpy as np
import pytest
import scipy.sparse.linalg

from refnet.solvers import IdentityMinus, LinearOperator, gmres, linear, scipy_adapter
from refnet.solvers.scipy_adapter import KrylovBackend


class _Operator:
    """The minimal scipy-like LinearOperator the adapter builds."""

    def __init__(self, shape, matvec, dtype):
        self.shape, self.matvec, self.dtype = shape, matvec, dtype


def _fakes(calls, keyword):
    """cg and gmres accepting only ``keyword`` ('tol' or 'rtol'); they solve by a dense solve."""
    def solve(A, b):
        N = A.shape[0]
        dense = np.stack([A.matvec(e) for e in np.eye(N)], axis=1)
        return np.linalg.solve(dense, b)

    if keyword == "tol":
        def cg(A, b, x0=None, tol=1e-5, maxiter=None, M=None, callback=None, atol=None):
            calls.append(("cg", {"tol": tol, "atol": atol, "maxiter": maxiter}))
            return solve(A, b), 0

        def gmres(A, b, x0=None, tol=1e-5, restart=None, maxiter=None, M=None, callback=None, atol=None,
                  callback_type=None):
            calls.append(("gmres", {"tol": tol, "atol": atol, "restart": restart, "maxiter": maxiter,
                                    "callback_type": callback_type}))
            x = solve(A, b)
            if callback is not None:
                callback(x)
            return x, 0
    else:
        def cg(A, b, x0=None, *, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None):
            calls.append(("cg", {"rtol": rtol, "atol": atol, "maxiter": maxiter}))
            return solve(A, b), 0

        def gmres(A, b, x0=None, *, rtol=1e-5, atol=0.0, restart=None, maxiter=None, M=None, callback=None,
                  callback_type=None):
            calls.append(("gmres", {"rtol": rtol, "atol": atol, "restart": restart, "maxiter": maxiter,
                                    "callback_type": callback_type}))
            x = solve(A, b)
            if callback is not None:
                callback(x)
            return x, 0
    return cg, gmres


def _system():
    M = np.diag([0.5, -0.25, 0.1])
    op = LinearOperator((1, 3), np.float64, lambda v: v @ M.T, lambda v: v @ M, block_diagonal=True)
    return IdentityMinus(op), np.array([[1.0, 2.0, 3.0]]), np.array([[2.0, 1.6, 3 / 0.9]])


@pytest.mark.parametrize("keyword", ["tol", "rtol"])
def test_the_tolerance_keyword_is_chosen_by_the_solvers_signature(keyword, monkeypatch):
    calls = []
    cg, gm = _fakes(calls, keyword)
    backend = KrylovBackend("fake", cg, gm, _Operator, gmres_maxiter_in_cycles=True)
    monkeypatch.setattr(scipy_adapter, "backend_for", lambda xp: backend)
    A, b, exact = _system()
    for solver in (linear.cg_normal, linear.gmres):
        x, info = solver(A, b, rtol=1e-11, atol=0.0)
        np.testing.assert_allclose(x, exact, rtol=1e-13)
        assert info.converged
    assert [name for name, _ in calls] == ["cg", "gmres"]
    for _, options in calls:
        # refnet hands the backend its per-example target as an absolute one on the row-equilibrated
        # system (refnet.solvers.linear), so the relative keyword carries 0.
        assert options[keyword] == 0.0 and options["atol"] > 0.0
        assert ({"tol", "rtol"} - {keyword}).isdisjoint(options)
    assert calls[1][1]["callback_type"] == "x"


def test_a_solver_taking_neither_keyword_is_refused_by_name():
    def odd(A, b, x0=None, epsilon=1e-5):
        return b, 0
    with pytest.raises(TypeError, match="'odd' takes neither rtol nor tol"):
        scipy_adapter.tolerance_keyword(odd)


@pytest.mark.parametrize("in_cycles, maxiter, restart, expected", [
    (True, 7, 3, 3),        # SciPy: ceil(7 / 3) = 3 restart cycles
    (False, 7, 3, 9),       # cupyx: 3 cycles = 9 inner iterations (it checks after whole cycles)
    (True, 6, 3, 2), (False, 6, 3, 6),
    (True, 1, 20, 1), (False, 1, 20, 20),
])
def test_gmres_maxiter_is_translated_to_each_backends_count(in_cycles, maxiter, restart, expected):
    backend = KrylovBackend("fake", None, None, None, gmres_maxiter_in_cycles=in_cycles)
    assert scipy_adapter.gmres_maxiter(backend, maxiter, restart) == expected


@pytest.mark.parametrize("in_cycles, expected", [(True, 3), (False, 9)])
def test_refnet_gmres_passes_the_translated_maxiter(in_cycles, expected, monkeypatch):
    calls = []
    cg, gm = _fakes(calls, "tol" if not in_cycles else "rtol")
    backend = KrylovBackend("fake", cg, gm, _Operator, gmres_maxiter_in_cycles=in_cycles)
    monkeypatch.setattr(scipy_adapter, "backend_for", lambda xp: backend)
    A, b, _ = _system()
    gmres(A, b, restart=3, maxiter=7)
    assert calls[0][1]["maxiter"] == expected and calls[0][1]["restart"] == 3


def test_the_real_scipy_is_driven_through_the_adapter():
    backend = scipy_adapter.backend_for(np)
    assert backend.cg is scipy.sparse.linalg.cg and backend.gmres_maxiter_in_cycles
    assert scipy_adapter.tolerance_keyword(backend.cg) in ("rtol", "tol")
    A, b, exact = _system()
    x, info = gmres(A, b, rtol=1e-13, restart=2, maxiter=40)
    np.testing.assert_allclose(x, exact, rtol=1e-12)
    assert info.converged and len(info.abs_trace) >= 2          # one record per cycle, then the end


def test_cupyx_is_driven_through_the_adapter_where_a_gpu_is_present():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:                                     # noqa: BLE001  (no driver / no device)
        pytest.skip(f"no usable GPU: {exc}")
    backend = scipy_adapter.backend_for(cupy)
    assert not backend.gmres_maxiter_in_cycles
    M = cupy.asarray(np.diag([0.5, -0.25, 0.1]))
    op = LinearOperator((1, 3), np.float64, lambda v: v @ M.T, lambda v: v @ M, block_diagonal=True)
    b = cupy.asarray([[1.0, 2.0, 3.0]])
    for solver in (linear.gmres, linear.cg_normal):
        x, info = solver(IdentityMinus(op), b, rtol=1e-12)
        np.testing.assert_allclose(cupy.asnumpy(x), [[2.0, 1.6, 3 / 0.9]], rtol=1e-10)
        assert info.converged


def test_no_convergence_is_found_where_each_scipy_keeps_it():
    # SciPy >= 1.11 exports it from scipy.optimize; 1.10 only from scipy.optimize.nonlin.
    import types

    import scipy.optimize
    assert issubclass(scipy_adapter.NoConvergence, Exception)
    old = types.ModuleType("scipy.optimize")          # a namespace without the public name
    assert scipy_adapter.no_convergence_class(old) is scipy_adapter.no_convergence_class(scipy.optimize)
