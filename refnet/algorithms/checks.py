"""Checks shared by every sequence algorithm (BPTT, TBPTT, RTRL, UORO, KF-RTRL, ...).

Inputs are validated once at entry (names, shapes, finiteness, one dtype);
results are checked once at exit (a non-finite loss or gradient raises
:class:`refnet.NumericalError` naming the first non-finite state).
"""
from ..backend import xp_of
from .._validate import check_array, check_same_dtype
from ..errors import NumericalError
from ..heads import every_step

__all__ = ["check_run", "check_objective", "check_finite_result"]


def check_run(cell, theta, x, s0):
    """Validate a (cell, θ, x, s0) run once at entry; returns s0 (zeros if None)."""
    cell.check_params(theta, "theta")
    check_array("x", x, shape=(None, None, cell.input_size))
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one time step (T >= 1), got T = {x.shape[0]}")
    B = x.shape[1]
    if s0 is None:
        s0 = xp_of(x).zeros((B, cell.n_state), dtype=x.dtype)
    check_array("s0", s0, shape=(B, cell.n_state))
    first = next(iter(cell.param_shapes()))   # check_params made every θ array one dtype
    check_same_dtype({"x": x, "s0": s0, f"theta[{first!r}]": theta[first]})
    return s0


def check_objective(head, beta, x, y, weights):
    """Validate head parameters, targets and weights; returns weights (mean over all steps if None)."""
    T, B = x.shape[:2]
    head.check_params(beta, "beta")
    head.check_targets(y, (T, B), "y")
    if weights is None:
        weights = every_step(T, B, like=x)
    check_array("weights", weights, shape=(T, B))
    first = next(iter(head.param_shapes()))
    check_same_dtype({"x": x, "weights": weights, f"beta[{first!r}]": beta[first]})
    return weights


def check_finite_result(name, loss_value, grads, s):
    """Raise NumericalError if the loss or a gradient is NaN/Inf, naming the first bad state."""
    xp = xp_of(s[-1])
    bad = [k for k, g in grads.items() if not bool(xp.isfinite(g).all())]
    if xp.isfinite(xp.asarray(loss_value)) and not bad:
        return
    for t in range(1, len(s)):
        if s[t] is not None and not bool(xp.isfinite(s[t]).all()):
            raise NumericalError(f"{name}: the state s_{t} holds NaN or Inf (the forward pass "
                                 "overflowed); the loss and gradients are not finite", where=f"s_{t}")
    raise NumericalError(f"{name}: non-finite loss ({float(loss_value)}) or gradients {bad} "
                         "with finite states", where="loss" if not bad else bad[0])
