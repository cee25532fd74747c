"""Bad input to every solver, RBP and equilibrium entry point: a named error whose message names the
argument; and no NaN/Inf ever returned silently."""
import numpy as np
import pytest

import refnet
from refnet.solvers import (IdentityMinus, LinearOperator, cg_normal, failures, fixed_point_iteration, gmres,
                            neumann, nonlinear, spectral_radius)

from conftest import CONVERGENT


def _problem():
    r = refnet.rng(0)
    cell = CONVERGENT["elman_tanh"]()
    theta, x = cell.init(r), r.normal((3, 3))
    h = refnet.fixed_point(cell, theta, x, tol=1e-14, maxiter=5000).h
    return cell, theta, x, h, r.normal((3, 4))


def _system():
    M = np.diag([0.5, 0.2])
    return IdentityMinus(LinearOperator((2, 2), np.float64, lambda v: 0.5 * v, lambda v: 0.5 * v,
                                        block_diagonal=True)), np.ones((2, 2)), M


class _NoVJP:
    """A cell-like object with step but no step_vjp / step_jvp."""

    input_size, n_state = 3, 4

    def param_shapes(self):
        return {"w": (4, 4)}

    def check_params(self, params, name):
        return params

    def step(self, params, s, x, t=None):
        return s, None


def _rbp(**overrides):
    cell, theta, x, h, g = _problem()
    args = dict(cell=cell, theta=theta, x=x, h_star=h, dh=g)
    kwargs = overrides.pop("kwargs", {})
    args.update(overrides)
    return refnet.rbp(args["cell"], args["theta"], args["x"], args["h_star"], args["dh"], **kwargs)


BAD = [
    # (id, call, exception, the argument the message must name)
    ("batch of size 0", lambda: refnet.fixed_point(*_problem()[:2], np.zeros((0, 3))), ValueError, "x"),
    ("h0 of the wrong shape", lambda: refnet.fixed_point(*_problem()[:3], np.zeros((3, 5))), ValueError, "h0"),
    ("non-finite h_star", lambda: _rbp(h_star=np.full((3, 4), np.inf)), ValueError, "h_star"),
    ("h_star not an equilibrium", lambda: _rbp(h_star=np.ones((3, 4))), ValueError, "h_star"),
    ("dh of the wrong shape", lambda: _rbp(dh=np.zeros((3, 5))), ValueError, "dh"),
    ("dh not an array", lambda: _rbp(dh={"dh": 0.0}), TypeError, "dh"),
    ("integer dh", lambda: _rbp(dh=np.zeros((3, 4), dtype=np.int64)), TypeError, "dh"),
    ("maxiter 0 for GMRES", lambda: gmres(*_system()[:2], maxiter=0), ValueError, "maxiter"),
    ("maxiter not an int", lambda: fixed_point_iteration(*_system()[:2], maxiter=2.5), TypeError, "maxiter"),
    ("negative rtol", lambda: cg_normal(*_system()[:2], rtol=-1e-3), ValueError, "rtol"),
    ("NaN atol", lambda: gmres(*_system()[:2], atol=float("nan")), ValueError, "atol"),
    ("rtol a string", lambda: _rbp(kwargs={"rtol": "1e-8"}), TypeError, "rtol"),
    ("negative K", lambda: refnet.neumann_rbp(*_problem(), K=-1), ValueError, "K"),
    ("negative damping", lambda: refnet.cg_rbp(*_problem(), damping=-0.1), ValueError, "damping"),
    ("restart 0", lambda: refnet.gmres_rbp(*_problem(), restart=0), ValueError, "restart"),
    ("z0 of the wrong shape", lambda: _rbp(kwargs={"z0": np.zeros((2, 4))}), ValueError, "z0"),
    ("a cell without step_vjp", lambda: _rbp(cell=_NoVJP(), theta={"w": np.eye(4)}), TypeError, "cell"),
    ("solve not callable", lambda: refnet.implicit_vjp(*_problem(), solve="gmres"), TypeError, "solve"),
    ("check_equilibrium not a bool", lambda: _rbp(kwargs={"check_equilibrium": "no"}), TypeError,
     "check_equilibrium"),
    ("negative equilibrium_tol", lambda: refnet.implicit_vjp(*_problem(), solve=gmres, equilibrium_tol=-1.0),
     ValueError, "equilibrium_tol"),
    ("A not an operator", lambda: gmres("A", np.ones(3)), TypeError, "A"),
    ("b of the wrong shape", lambda: neumann(_system()[0], np.ones((2, 3)), maxiter=2), ValueError, "b"),
    ("x0 given to neumann", lambda: neumann(*_system()[:2], np.ones((2, 2)), maxiter=2), ValueError, "x0"),
    ("x0 of another dtype", lambda: gmres(*_system()[:2], np.ones((2, 2), dtype=np.float32)), TypeError, "x0"),
    ("cg_normal without rmatvec",
     lambda: cg_normal(LinearOperator((2,), np.float64, lambda v: v), np.ones(2)), TypeError, "A"),
    ("F not callable", lambda: nonlinear.fixed_point("F", np.zeros((1, 2))), TypeError, "F"),
    ("F changing the shape", lambda: nonlinear.fixed_point(lambda h: h[:, :1], np.zeros((1, 2))), ValueError, "F"),
    ("h0 with an empty batch", lambda: nonlinear.anderson(lambda h: h, np.zeros((0, 2))), ValueError, "h0"),
    ("hybr on a map without jacobian", lambda: nonlinear.hybr(lambda h: 0.5 * h, np.zeros((1, 2))), TypeError, "F"),
    ("anderson m 0", lambda: nonlinear.anderson(lambda h: 0.5 * h, np.ones((1, 2)), m=0), ValueError, "m"),
    ("spectral_radius with 1 iteration", lambda: spectral_radius(*_problem()[:4], iterations=1), ValueError,
     "iterations"),
    ("spectral_radius seed a float", lambda: spectral_radius(*_problem()[:4], seed=0.5), TypeError, "seed"),
    ("spectral_radius seed -1", lambda: spectral_radius(*_problem()[:4], seed=-1), ValueError, "seed"),
    ("an unknown failure mode", lambda: failures("quiet").__enter__(), ValueError, "mode"),
]


@pytest.mark.parametrize("call, error, argument", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises_a_named_error_naming_the_argument(call, error, argument):
    with pytest.raises(error) as info:
        call()
    words = str(info.value).replace(",", " ").replace(":", " ").replace(";", " ").split()
    assert argument in words, f"message does not name {argument!r}: {info.value}"


def test_there_are_at_least_fifteen_distinct_bad_inputs():
    assert len({b[0] for b in BAD}) >= 15


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_a_map_that_overflows_raises_numerical_error_naming_the_iteration():
    with pytest.raises(refnet.NumericalError, match=r"became (inf|nan) at iteration \d+"):
        nonlinear.fixed_point(lambda h: 1e200 * h + 1.0, np.ones((1, 2)), maxiter=10)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_a_diverging_adjoint_raises_numerical_error_even_when_failures_are_ignored():
    M = LinearOperator((1, 2), np.float64, lambda v: 1e100 * v, lambda v: 1e100 * v, block_diagonal=True)
    with failures("ignore"), pytest.raises(refnet.NumericalError, match="iteration"):
        fixed_point_iteration(IdentityMinus(M), np.ones((1, 2)), maxiter=20)
    with failures("ignore"), pytest.raises(refnet.NumericalError, match="neumann"):
        neumann(IdentityMinus(M), np.ones((1, 2)), maxiter=20)
