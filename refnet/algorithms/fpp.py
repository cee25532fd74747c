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
    """What :func:`fpp_grad` returns: the two losses and the gradients of L = L_s + L_t (Nath, Jafferjee & White, Algorithm 1).

    Attributes
    ----------
    state_loss : float
        L_s = λ Σ_b v_b (1/n) ‖s'_{T+1,b} − s_{T+1,b}‖², with its weight λ.
    target_loss : float
        L_t = Σ_b w_b ℓ(ŷ_{T,b}, y_{T,b}).
    dtheta : dict {name: array}
        ∂L/∂W, the cell's parameters (the trainable ones only).
    dbeta : dict {name: array}
        ∂L_t/∂β (= ∂L/∂β: L_s does not depend on β), the head's parameters.
    ds_prev : (B, n_state) array
        ∂L/∂s_{T−1}.
    ds_next : (B, n_state) array
        ∂L/∂s_{T+1}, the gradient on the stored target state.
    """

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
    """The FPP objective of one transition (Nath, Jafferjee & White, Algorithm 1): returns (L_s, L_t).

    s_T = f_W(s_{T−1}, o_T), s'_{T+1} = f_W(s_T, o_{T+1}),
    L_s = λ Σ_b v_b (1/n) ‖s'_{T+1,b} − s_{T+1,b}‖² and
    L_t = Σ_b w_b ℓ(g_β(output(s_T))_b, y_b) (module docstring).

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell f_W.
    theta : dict {name: array}
        Its parameters W, shapes as in ``cell.param_shapes()``.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout g_β and its loss ℓ, on ``cell.output``; ``head.n_in == cell.n_out``.
    beta : dict {name: array}
        The head's parameters β.
    s_prev : (B, n_state) array-like
        The stored state s_{T−1}, B >= 1.
    x : (B, I) array-like
        The observation o_T.
    x_next : (B, I) array-like
        The observation o_{T+1}.
    s_next : (B, n_state) array-like
        The stored state s_{T+1}, the state loss's target.
    y : (B,) int array-like or (B, O) float array-like
        The target y_T: class labels in [0, O) for a label loss, else targets of width O.
    w : (B,) array-like
        Weights of the examples in the target loss (1/B each for a batch mean).
    v : (B,) array-like or None
        Weights of the examples in the state loss; None for ``w``.
    state_weight : float
        λ >= 0, the weight of the state loss (1 in Algorithm 1; dimensionless).
    t : int or None
        Time index >= 0 handed to the cell for the first step (the second gets t + 1); None for
        cells that do not read it.

    Returns
    -------
    L_s : float
        The state loss, with its weight λ.
    L_t : float
        The target loss.

    Raises
    ------
    TypeError
        ``cell`` or ``head`` lacks its contract; ``theta``/``beta`` not dicts of floating
        arrays; an array argument that is not one; labels that are not integers for a label
        loss; mixed dtypes or backends; ``state_weight`` not a real number; ``t`` not an int.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, ``head.n_in != cell.n_out``, a NaN/Inf
        input, labels outside [0, O), ``state_weight`` < 0 or not finite, ``t`` < 0.
    refnet.NumericalError
        s_T or s'_{T+1} is NaN/Inf (named, with the first bad entry), or a loss is.
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
    """FPP's per-transition gradient (Nath, Jafferjee & White, Algorithm 1, "Calculate ∂L/∂W & ∂L_t/∂β").

    Back through the second step from the state loss, add the target loss's
    cotangent on s_T, back through the first step; the two steps share W, so
    their parameter gradients add.  The state gradients serve the variant that
    updates stored states by their own gradient (module docstring).

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell f_W.
    theta : dict {name: array}
        Its parameters W, shapes as in ``cell.param_shapes()``.
    head : refnet.heads.Head or refnet.heads.MLPHead
        The readout g_β and its loss ℓ, on ``cell.output``; ``head.n_in == cell.n_out``.
    beta : dict {name: array}
        The head's parameters β.
    s_prev : (B, n_state) array-like
        The stored state s_{T−1}, B >= 1.
    x : (B, I) array-like
        The observation o_T.
    x_next : (B, I) array-like
        The observation o_{T+1}.
    s_next : (B, n_state) array-like
        The stored state s_{T+1}, the state loss's target.
    y : (B,) int array-like or (B, O) float array-like
        The target y_T: class labels in [0, O) for a label loss, else targets of width O.
    w : (B,) array-like
        Weights of the examples in the target loss (1/B each for a batch mean).
    v : (B,) array-like or None
        Weights of the examples in the state loss; None for ``w``.
    state_weight : float
        λ >= 0, the weight of the state loss (1 in Algorithm 1; dimensionless).
    t : int or None
        Time index >= 0 handed to the cell for the first step (the second gets t + 1); None for
        cells that do not read it.
    trainable : collection of str or None
        Names of the parameters in ``dtheta`` (default None: all); the others are frozen and
        absent (:mod:`refnet.algorithms.trainable`).  The state gradients are always returned.

    Returns
    -------
    FPPGrad
        L_s, L_t, ∂L/∂W, ∂L_t/∂β, ∂L/∂s_{T−1} (B, n_state) and ∂L/∂s_{T+1} (B, n_state).

    Raises
    ------
    TypeError
        ``cell`` or ``head`` lacks its contract; ``theta``/``beta`` not dicts of floating
        arrays; an array argument that is not one; labels that are not integers for a label
        loss; mixed dtypes or backends; ``state_weight`` not a real number; ``t`` not an int.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, ``head.n_in != cell.n_out``, a NaN/Inf
        input, labels outside [0, O), ``state_weight`` < 0 or not finite, ``t`` < 0, or a
        ``trainable`` name the cell lacks (a ``trainable`` str is a TypeError).
    refnet.NumericalError
        s_T or s'_{T+1}, a loss, dθ, dβ, ds_prev or ds_next is NaN/Inf, named.
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
    """s_T = f_W(s_{T−1}, o_T) and s'_{T+1} = f_W(s_T, o_{T+1}) under the current W (Algorithm 1, its last lines).

    After the update of W, s'_{T+1} is what the buffer stores back as s_{T+1}
    (:meth:`refnet.algorithms.fpp_buffer.FPPBuffer.write_state`).

    Parameters
    ----------
    cell : refnet.cells.Cell
        The recurrent cell f_W.
    theta : dict {name: array}
        Its (updated) parameters W.
    s_prev : (B, n_state) array-like
        The stored state s_{T−1}, B >= 1.
    x : (B, I) array-like
        The observation o_T.
    x_next : (B, I) array-like
        The observation o_{T+1}.
    t : int or None
        Time index >= 0 for the first step (the second gets t + 1); None for most cells.

    Returns
    -------
    s_T : (B, n_state) array
        The re-run state at T.
    s_next : (B, n_state) array
        s'_{T+1}, the refreshed state to write back.

    Raises
    ------
    TypeError
        ``cell`` lacks the cell contract; ``theta`` not a dict of floating arrays; an array
        argument that is not one; mixed dtypes or backends; ``t`` not an int.
    ValueError
        A wrong shape, a missing or extra parameter, B = 0, a NaN/Inf input, ``t`` < 0.
    refnet.NumericalError
        s_T or s'_{T+1} is NaN/Inf, named with its first bad entry.
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
