"""Fixed Point Propagation (FPP): the per-transition objective and its hand-written gradient.

FPP (Nath, Jafferjee & White, "A Fixed-Point Formulation for Recurrent Neural
Networks", Algorithm 1) trains a recurrent
cell without gradients back in time.  A transition stored at time T is
``(s_{T−1}, o_T, o_{T+1}, s_{T+1}, y_T)``; one training update re-runs

    s_T       = f_W(s_{T−1}, o_T)
    ŷ_T       = g_β(output(s_T))
    s'_{T+1}  = f_W(s_T, o_{T+1})

and takes

    L_s = λ Σ_b v_b (1/n) ‖s'_{T+1,b} − s_{T+1,b}‖²      (state loss, MSE over the n state units)
    L_t = Σ_b w_b ℓ(ŷ_{T,b}, y_{T,b})                    (target loss, the head's)
    L   = L_s + L_t

W gets ∂L/∂W; β gets ∂L_t/∂β, which equals ∂L/∂β because L_s does not
depend on β.  λ (``state_weight``) is 1 in Algorithm 1; the example weights
v default to w (a batch mean of both losses) and differ where a transition
has a target but no next state (the end of a sequence) or the reverse.  The gradients with
respect to the stored states s_{T−1} and s_{T+1} are returned too: the ICLR
2020 formulation ("Training RNNs online by learning explicit state
variables") updates stored states by their own gradient.  After the update
of W, :func:`fpp_refresh` recomputes s'_{T+1} for writing back into the
buffer (:mod:`refnet.algorithms.fpp_buffer`).
"""
import math
from dataclasses import dataclass, replace

from .._validate import as_array, check_array, check_int, check_number, check_same_dtype
from ..errors import NumericalError
from .checks import check_cell, check_finite_tree, check_head, first_nonfinite
from .trainable import check_trainable, restrict

__all__ = ["FPPGrad", "fpp_loss", "fpp_grad", "fpp_refresh"]


@dataclass(frozen=True)
class FPPGrad:
    """What :func:`fpp_grad` returns: the two losses and the gradients of L = L_s + L_t."""

    state_loss: float   # L_s (with its weight λ)
    target_loss: float  # L_t
    dtheta: dict        # ∂L/∂W, the cell's params
    dbeta: dict         # ∂L_t/∂β (= ∂L/∂β), the head's params
    ds_prev: object     # (B, n_state) ∂L/∂s_{T−1}
    ds_next: object     # (B, n_state) ∂L/∂s_{T+1} (the stored target state)

    @property
    def loss(self):
        """L = L_s + L_t."""
        return self.state_loss + self.target_loss


def _check(cell, theta, head, beta, arrays, y, w, v, state_weight, t):
    """Validate one transition at entry; returns the arrays (as arrays), y, w and v."""
    check_cell(cell)
    cell.check_params(theta, "theta")
    if head is not None:
        check_head(head, cell)
        head.check_params(beta, "beta")
    arrays = {name: as_array(name, a) for name, a in arrays.items()}
    s_prev = arrays["s_prev"]
    B = s_prev.shape[0] if s_prev.ndim == 2 else None
    widths = {"s_prev": cell.n_state, "s_next": cell.n_state, "x": cell.input_size, "x_next": cell.input_size}
    for name, a in arrays.items():
        check_array(name, a, shape=(B, widths[name]))
    if B < 1:
        raise ValueError(f"s_prev must hold at least one example (B >= 1), got shape {tuple(s_prev.shape)}")
    if head is not None:
        y = as_array("y", y)
        head.check_targets(y, (B,), "y")
        w = as_array("w", w)
        check_array("w", w, shape=(B,))
        if v is not None:
            v = as_array("v", v)
            check_array("v", v, shape=(B,))
        check_number("state_weight", state_weight, low=0.0)
    if t is not None:
        check_int("t", t, 0)
    first = next(iter(cell.param_shapes()))
    check_same_dtype({**arrays, "w": w, "v": v, f"theta[{first!r}]": theta[first]})
    return arrays, y, w, v


def _check_states(function, states):
    """NumericalError naming the first non-finite re-run state ({name: (B, n)})."""
    found = first_nonfinite(list(states.values()))
    if found is not None:
        k, index, value = found
        name = list(states)[k]
        raise NumericalError(f"{function}: state {name} became non-finite (batch {index[0]}, unit {index[1]}: "
                             f"{value}); the transition overflowed", where=f"{function}: {name}", index=index)


def _second_t(t):
    return None if t is None else t + 1


def fpp_loss(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, *, v=None, state_weight=1.0, t=None):
    """The FPP objective of one transition (Algorithm 1): returns (L_s, L_t) as floats.

    Parameters
    ----------
    cell, theta : the cell f_W and its params W
    head, beta : the readout g_β and loss, and its params β
    s_prev : (B, n_state) the stored s_{T−1}
    x, x_next : (B, I) the observations o_T and o_{T+1}
    s_next : (B, n_state) the stored s_{T+1}
    y : (B,) labels or (B, O) targets, y_T
    w : (B,) weights of the examples in the target loss (1/B each for a batch mean)
    v : (B,) weights of the examples in the state loss, or None for ``w``
    state_weight : λ >= 0, the weight of the state loss (1 in Algorithm 1)
    t : time index handed to the cell for the first step (the second gets t + 1); None for most cells

    Returns
    -------
    (L_s, L_t) : floats

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, an array
        argument that is not one, mixed dtypes, ``t`` not an int.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, labels out
        of range, ``state_weight`` < 0, ``t`` < 0.
    refnet.NumericalError
        s_T, s'_{T+1}, a loss or a gradient is NaN/Inf, named.
    """
    arrays, y, w, v = _check(cell, theta, head, beta, {"s_prev": s_prev, "x": x, "x_next": x_next,
                                                       "s_next": s_next}, y, w, v, state_weight, t)
    v = w if v is None else v
    s_T, _ = cell.step(theta, arrays["s_prev"], arrays["x"], t)
    s_pred, _ = cell.step(theta, s_T, arrays["x_next"], _second_t(t))
    _check_states("fpp_loss", {"s_T": s_T, "s'_{T+1}": s_pred})
    r = s_pred - arrays["s_next"]
    L_s = state_weight * float((v * (r * r).sum(axis=1)).sum()) / cell.n_state
    L_t = float(head.loss_value(beta, cell.output(s_T), y, w, check=False))
    _check_losses("fpp_loss", L_s, L_t)
    return L_s, L_t


def _check_losses(function, L_s, L_t):
    for name, value in (("state loss L_s", L_s), ("target loss L_t", L_t)):
        if not math.isfinite(value):
            raise NumericalError(f"{function}: the {name} is {value}", where=f"{function}: {name.split()[-1]}")


def fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, *, v=None, state_weight=1.0, t=None,
             trainable=None):
    """FPP's per-transition gradient (Algorithm 1, "Calculate ∂L/∂W & ∂L_t/∂β").

    Back through the second step from the state loss, add the target loss's
    cotangent on s_T, back through the first step; the two steps share W, so
    their parameter gradients add.  Arguments as :func:`fpp_loss`, plus
    ``trainable`` (collection of parameter names, default all): the others are
    frozen and absent from ``dtheta`` (:mod:`refnet.algorithms.trainable`); the
    state gradients are always returned.

    Returns
    -------
    FPPGrad : L_s, L_t, ∂L/∂W, ∂L_t/∂β, ∂L/∂s_{T−1} (B, n), ∂L/∂s_{T+1} (B, n)

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, an array
        argument that is not one, mixed dtypes, ``t`` not an int.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, labels out
        of range, ``state_weight`` < 0, ``t`` < 0, a ``trainable`` name the cell lacks.
    refnet.NumericalError
        s_T, s'_{T+1}, a loss or a gradient is NaN/Inf, named.
    """
    arrays, y, w, v = _check(cell, theta, head, beta, {"s_prev": s_prev, "x": x, "x_next": x_next,
                                                       "s_next": s_next}, y, w, v, state_weight, t)
    names = check_trainable(cell, trainable)
    g = _fpp_grad(cell, theta, head, beta, arrays["s_prev"], arrays["x"], arrays["x_next"], arrays["s_next"],
                  y, w, v=v, state_weight=state_weight, t=t)
    _check_losses("fpp_grad", g.state_loss, g.target_loss)
    check_finite_tree("fpp_grad", "dtheta", g.dtheta)
    check_finite_tree("fpp_grad", "dbeta", g.dbeta)
    check_finite_tree("fpp_grad", "adjoint", {"ds_prev": g.ds_prev, "ds_next": g.ds_next})
    return replace(g, dtheta=restrict(g.dtheta, names))


def _fpp_grad(cell, theta, head, beta, s_prev, x, x_next, s_next, y, w, *, v=None, state_weight=1.0, t=None,
              check=True):
    """:func:`fpp_grad` without the entry checks (the learner's inner loop, which checks what it uses).

    ``check=False`` (a learner on a device, deferring its checks) skips the re-run states' check and
    leaves the losses as 0-d device arrays: no host read-back."""
    v = w if v is None else v
    s_T, cache_T = cell.step(theta, s_prev, x, t)
    s_pred, cache_next = cell.step(theta, s_T, x_next, _second_t(t))
    if check:
        _check_states("fpp_grad", {"s_T": s_T, "s'_{T+1}": s_pred})
    r = s_pred - s_next
    coef = (2.0 * state_weight / cell.n_state) * v[:, None]     # ∂L_s/∂s'_{T+1} = coef · r
    ds_pred = coef * r
    L_s = state_weight * (v * (r * r).sum(axis=1)).sum() / cell.n_state
    L_t, dh, dbeta = head.loss_and_grad(beta, cell.output(s_T), y, w, check=False)
    ds_T, dtheta_next, _ = cell.step_vjp(theta, cache_next, ds_pred)
    ds_T = ds_T + cell.output_vjp(dh)
    ds_prev, dtheta_T, _ = cell.step_vjp(theta, cache_T, ds_T)
    dtheta = {k: dtheta_T[k] + dtheta_next[k] for k in dtheta_T}
    if check:
        L_s, L_t = float(L_s), float(L_t)
    return FPPGrad(L_s, L_t, dtheta, dbeta, ds_prev, -ds_pred)


def fpp_refresh(cell, theta, s_prev, x, x_next, *, t=None):
    """s_T = f_W(s_{T−1}, o_T) and s'_{T+1} = f_W(s_T, o_{T+1}) under the current W (Algorithm 1, last lines).

    Parameters
    ----------
    cell, theta, s_prev, x, x_next, t : as :func:`fpp_loss`

    Returns
    -------
    ``(s_T, s'_{T+1})``, each (B, n_state); s'_{T+1} is what the buffer stores back as s_{T+1}.

    Raises
    ------
    TypeError
        A cell or head that is not one, θ/β not dicts of floating arrays, an array
        argument that is not one, mixed dtypes, ``t`` not an int.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, labels out
        of range, ``state_weight`` < 0, ``t`` < 0.
    refnet.NumericalError
        s_T, s'_{T+1}, a loss or a gradient is NaN/Inf, named.
    """
    arrays, _, _, _ = _check(cell, theta, None, None, {"s_prev": s_prev, "x": x, "x_next": x_next},
                             None, None, None, None, t)
    return _fpp_refresh(cell, theta, arrays["s_prev"], arrays["x"], arrays["x_next"], t=t)


def _fpp_refresh(cell, theta, s_prev, x, x_next, *, t=None, check=True):
    """:func:`fpp_refresh` without the entry checks; its states are still checked unless ``check`` is
    false (a learner deferring its checks on a device checks s'_{T+1} itself)."""
    s_T, _ = cell.step(theta, s_prev, x, t)
    s_pred, _ = cell.step(theta, s_T, x_next, _second_t(t))
    if check:
        _check_states("fpp_refresh", {"s_T": s_T, "s'_{T+1}": s_pred})
    return s_T, s_pred
