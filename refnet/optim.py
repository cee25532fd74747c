"""Optimisers on params dicts, hand-written: SGD (with momentum), Adagrad, Adam.

Each is a small frozen description (its hyper-parameters) with two methods:

- ``init(params) -> state``, a NamedTuple of arrays shaped like ``params``;
- ``update(params, grads, state) -> state``: one step, ``params`` and the
  state's arrays updated in place; the returned state (with its step count)
  is the one to pass next time.

Nothing is hidden in the optimiser object, so two parameter sets can share
one.  An update is all or nothing: the state is first checked against the
params (keys, shapes, dtypes, the optimiser's own state type), the new state
and params are computed into temporaries and checked finite, and only then
written in place; a non-finite result (one finite gradient of 1e160 squares
to Inf) raises :class:`refnet.NumericalError` naming the optimiser, the
quantity, the parameter and the index, and nothing is changed.  The updates are PyTorch's (``torch.optim``, default options otherwise)
so that a refnet learner and a PyTorch one take the same steps:

========  ===================================================================
SGD       b ← μ b + g (b = g at the first step);  θ ← θ − lr b  (μ = 0: θ ← θ − lr g)
Adagrad   G ← G + g²;  θ ← θ − lr g / (√G + ε)            (Duchi et al. 2011)
Adam      m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;
          θ ← θ − (lr / (1 − β1ᵗ)) m / (√v / √(1 − β2ᵗ) + ε)   (Kingma & Ba 2015)
========  ===================================================================
"""
import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy

from ._validate import first_nonfinite
from .errors import NumericalError
from .params import zeros_like

__all__ = ["SGD", "SGDState", "Adagrad", "AdagradState", "Adam", "AdamState"]


def _check_real(name, value, want):
    """TypeError unless ``value`` is a Python int or float (a bool is refused): a hyper-parameter's kind."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number (int or float) {want}, got {type(value).__name__} "
                        f"{value!r}")


def _check_positive(name, value, *, allow_zero=False):
    _check_real(name, value, ">= 0" if allow_zero else "> 0")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        want = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {want}, got {value!r}")


def _check_tree(name, tree):
    """TypeError unless ``tree`` is a non-empty dict of floating arrays."""
    if not isinstance(tree, dict) or not tree:
        raise TypeError(f"{name} must be a non-empty dict {{name: floating array}}, got {type(tree).__name__} "
                        f"{tree!r:.60}")
    for k, v in tree.items():
        if not hasattr(v, "dtype") or v.dtype.kind != "f":
            raise TypeError(f"{name}[{k!r}] must be a floating array, got "
                            f"{getattr(v, 'dtype', type(v).__name__)}")


def _check_update(params, grads, state, state_type, check=True):
    """Validate one ``update`` call before anything is changed: same keys and shapes, finite grads
    (unless ``check`` is false: the caller guards the step on the device, refnet.online)."""
    _check_tree("params", params)
    _check_tree("grads", grads)
    if set(grads) != set(params):
        raise ValueError(f"grads must have the keys of params {sorted(params)}, got {sorted(grads)}")
    for k, p in params.items():
        if tuple(grads[k].shape) != tuple(p.shape):
            raise ValueError(f"grads[{k!r}] must have the shape of params[{k!r}] {tuple(p.shape)}, "
                             f"got {tuple(grads[k].shape)}")
    if not isinstance(state, state_type):
        raise TypeError(f"state must be the {state_type.__name__} this optimiser's init returned, got "
                        f"{type(state).__name__}")
    if not check:
        return
    keys = list(grads)
    found = first_nonfinite([grads[k] for k in keys])
    if found is not None:
        k, index, value = found
        raise ValueError(f"grads[{keys[k]!r}] must be finite, got {value} at index {index}; "
                         "the parameters were not updated")


def _check_buffers(field, buffers, params, made_by):
    """ValueError/TypeError unless ``buffers`` (one of a state's dicts) was made for ``params``.

    A state made by ``init`` for other params (other keys, shapes or dtypes, or
    another backend) would otherwise fail half-way through the update, with
    some moments already changed.
    """
    if not isinstance(buffers, dict):
        raise TypeError(f"state.{field} must be a dict {{name: array}} as {made_by}.init(params) makes, got "
                        f"{type(buffers).__name__}")
    if set(buffers) != set(params):
        raise ValueError(f"state.{field} was made for other params: it has the keys {sorted(buffers)}, but params "
                         f"has {sorted(params)}; make the state with {made_by}.init(params) for these params")
    for k, p in params.items():
        b = buffers[k]
        if type(b) is not type(p) or b.dtype != p.dtype or tuple(b.shape) != tuple(p.shape):
            raise ValueError(
                f"state.{field}[{k!r}] was made for another parameter: it is a {type(b).__name__} "
                f"{getattr(b, 'dtype', '?')} of shape {tuple(getattr(b, 'shape', ()))}, but params[{k!r}] is a "
                f"{type(p).__name__} {p.dtype} of shape {tuple(p.shape)}; make the state with "
                f"{made_by}.init(params) for these params")


def _commit(optimiser, changes, check=True):
    """Write every new array in place, or none: NumericalError if any is not finite.

    ``changes`` is a list of ``(quantity, key, target, new)``; every ``new`` is
    checked before the first ``target`` is written, so a failing update leaves
    the params and the state as they were.  ``check=False`` skips the test (one
    read-back on a device): the caller (refnet.online, deferred) guards the step
    itself and undoes it on the device if it was not finite.
    """
    found = first_nonfinite([new for _, _, _, new in changes]) if check else None
    if found is not None:
        position, index, value = found
        quantity, key = changes[position][:2]
        name = type(optimiser).__name__
        raise NumericalError(
            f"{name}.update: the new {quantity}[{key!r}] is non-finite at index {index} ({value}); "
            "a gradient or a hyper-parameter too large for the dtype overflowed it; nothing was updated "
            "(params and state are as before)", where=f"{name}: {quantity}[{key!r}]", index=index)
    for _, _, target, new in changes:
        target[...] = new


def _check_fraction(name, value):
    _check_real(name, value, "in [0, 1)")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


class SGDState(NamedTuple):
    """What :class:`SGD` carries between steps.

    Attributes
    ----------
    momentum : dict {name: array}
        The momentum buffers b, shaped as the params; an empty dict when μ = 0.
    """

    momentum: dict   # the buffers b (empty dict when μ = 0)


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, PyTorch's form of momentum (no dampening, no Nesterov).

    b ← μ b + g (b = g at the first step);  θ ← θ − lr b, as ``torch.optim.SGD``.

    Parameters
    ----------
    lr : float
        Learning rate (step size per update, in units of θ per unit of
        gradient), finite and >= 0.
    momentum : float
        Momentum factor μ (dimensionless), in [0, 1); 0 for plain SGD.

    Raises
    ------
    ValueError
        If ``lr`` is not a finite number >= 0 or ``momentum`` not a number in
        [0, 1).
    TypeError
        If ``lr`` or ``momentum`` is not an int or float (a bool or a str is refused).
    """

    lr: float
    momentum: float = 0.0

    def __post_init__(self):
        _check_positive("lr", self.lr, allow_zero=True)
        _check_fraction("momentum", self.momentum)

    def init(self, params):
        """The momentum buffers b = 0 shaped as ``params`` (none when μ = 0).

        Parameters
        ----------
        params : dict {name: floating array}
            The parameters this state will update; any shapes.

        Returns
        -------
        SGDState
            Zero buffers with the keys, shapes, dtypes and backend of
            ``params``, or an empty dict when ``momentum`` is 0.

        Raises
        ------
        TypeError
            If ``params`` is not a non-empty dict of floating arrays.
        """
        _check_tree("params", params)
        return SGDState(zeros_like(params) if self.momentum else {})

    def update(self, params, grads, state, *, check=True):
        """θ ← θ − lr g, or θ ← θ − lr b with b ← μ b + g.

        Parameters
        ----------
        params : dict {name: floating array}
            θ, updated in place.
        grads : dict {name: floating array}
            g = ∂L/∂θ: the same keys and shapes as ``params``, finite.
        state : SGDState
            From this optimiser's ``init(params)`` or its previous ``update``.
        check : bool
            True (default): test the gradients and the new buffers/params for finiteness before
            writing.  False skips those tests (each is a read-back on a device) for a caller that
            guards the step itself (refnet.online's deferred checks); the new values are still
            computed into temporaries and written only after every one is computed.

        Returns
        -------
        SGDState
            The state to pass next time (the same object, its buffers updated in place).

        Raises
        ------
        TypeError
            Nothing updated: ``params`` or ``grads`` not a non-empty dict of
            floating arrays, ``state`` not an SGDState, or its buffers not a dict.
        ValueError
            Nothing updated: ``grads`` with other keys or shapes than
            ``params``, non-finite gradients (``check``), or a state made for
            other params (keys, shapes, dtypes or backend) or with the other
            momentum setting.
        refnet.NumericalError
            Nothing updated (``check``): the new momentum buffer or params would be NaN/Inf
            (named with the parameter and the index).
        """
        _check_update(params, grads, state, SGDState, check)
        if self.momentum:
            if isinstance(state.momentum, dict) and not state.momentum:
                raise ValueError(f"state was made by an SGD without momentum (it holds no buffers), but this SGD "
                                 f"has momentum={self.momentum}; make the state with this optimiser's "
                                 "init(params)")
            _check_buffers("momentum", state.momentum, params, "SGD(momentum > 0)")
        elif state.momentum:
            raise ValueError(f"state was made by an SGD with momentum (it holds buffers for "
                             f"{sorted(state.momentum)}), but this SGD has momentum=0; make the state with "
                             "this optimiser's init(params)")
        changes = []
        for k, p in params.items():
            g = grads[k]
            with numpy.errstate(over="ignore", invalid="ignore"):   # reported by _commit, by name
                if self.momentum:
                    b = state.momentum[k]
                    g = b * self.momentum + g
                    changes.append(("momentum buffer b", k, b, g))
                changes.append(("params", k, p, p - self.lr * g))
        _commit(self, changes, check)
        return state


class AdagradState(NamedTuple):
    """What :class:`Adagrad` carries between steps.

    Attributes
    ----------
    sum_squares : dict {name: array}
        G, the running sum of g², shaped as the params.
    """

    sum_squares: dict   # G, the running sum of g²


@dataclass(frozen=True)
class Adagrad:
    """Adagrad (Duchi, Hazan & Singer 2011) as torch.optim.Adagrad (no lr decay, G_0 = 0).

    G ← G + g²;  θ ← θ − lr g / (√G + ε), elementwise.

    Parameters
    ----------
    lr : float
        Learning rate (step size per update), finite and >= 0.
    eps : float
        ε added to √G for stability (units of the gradient), finite and > 0.

    Raises
    ------
    ValueError
        If ``lr`` is not a finite number >= 0 or ``eps`` not a finite number > 0.
    TypeError
        If ``lr`` or ``eps`` is not an int or float (a bool or a str is refused).
    """

    lr: float = 0.01
    eps: float = 1e-10

    def __post_init__(self):
        _check_positive("lr", self.lr, allow_zero=True)
        _check_positive("eps", self.eps)

    def init(self, params):
        """G = 0 shaped as ``params``.

        Parameters
        ----------
        params : dict {name: floating array}
            The parameters this state will update; any shapes.

        Returns
        -------
        AdagradState
            Zero sums with the keys, shapes, dtypes and backend of ``params``.

        Raises
        ------
        TypeError
            If ``params`` is not a non-empty dict of floating arrays.
        """
        _check_tree("params", params)
        return AdagradState(zeros_like(params))

    def update(self, params, grads, state, *, check=True):
        """One Adagrad step: G ← G + g²;  θ ← θ − lr g / (√G + ε) (Duchi et al. 2011).

        All or nothing: every new value is computed into a temporary and
        checked before the first is written.

        Parameters
        ----------
        params : dict {name: floating array}
            θ, updated in place.
        grads : dict {name: floating array}
            g = ∂L/∂θ: the same keys and shapes as ``params``, finite.
        state : AdagradState
            From this optimiser's ``init(params)`` or its previous ``update``.
        check : bool
            True (default): test the gradients and the new values for
            finiteness before writing.  False skips those tests (each is a
            read-back on a device) for a caller that guards the step itself
            (refnet.online's deferred checks).

        Returns
        -------
        AdagradState
            The state to pass next time (the same object,
            its arrays updated in place).

        Raises
        ------
        TypeError
            Nothing updated: ``params`` or ``grads`` not a non-empty dict of
            floating arrays, ``state`` not an AdagradState, or a state buffer not a dict.
        ValueError
            Nothing updated: ``grads`` with other keys or shapes than
            ``params``, non-finite gradients (``check``), or a state made for
            other params (keys, shapes, dtypes or backend).
        refnet.NumericalError
            Nothing updated (``check``): a new sum of squares G or params would be NaN/Inf
            (named with the parameter and the index).
        """
        _check_update(params, grads, state, AdagradState, check)
        _check_buffers("sum_squares", state.sum_squares, params, "Adagrad")
        changes = []
        for k, p in params.items():
            g, G = grads[k], state.sum_squares[k]
            with numpy.errstate(over="ignore", invalid="ignore"):   # reported by _commit, by name
                G_new = G + g * g
                p_new = p - self.lr * g / (G_new ** 0.5 + self.eps)
            changes.append(("sum of squared gradients G", k, G, G_new))
            changes.append(("params", k, p, p_new))
        _commit(self, changes, check)
        return state


class AdamState(NamedTuple):
    """What :class:`Adam` carries between steps.

    Attributes
    ----------
    t : int
        Steps taken so far (the t of the bias corrections 1 − β1ᵗ, 1 − β2ᵗ).
    m : dict {name: array}
        First-moment estimates, shaped as the params.
    v : dict {name: array}
        Second-moment estimates, shaped as the params.
    """

    t: int       # steps taken
    m: dict      # first moment
    v: dict      # second moment


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1) as torch.optim.Adam (no weight decay, no amsgrad).

    m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;
    θ ← θ − (lr / (1 − β1ᵗ)) m / (√v / √(1 − β2ᵗ) + ε), PyTorch's placement of ε.

    Parameters
    ----------
    lr : float
        Learning rate (step size per update), finite and >= 0.
    beta1 : float
        Decay of the first moment (dimensionless), in [0, 1).
    beta2 : float
        Decay of the second moment (dimensionless), in [0, 1).
    eps : float
        ε added to the corrected √v (units of the gradient), finite and > 0.

    Raises
    ------
    ValueError
        If ``lr`` is not a finite number >= 0, ``beta1`` or ``beta2`` not a
        number in [0, 1), or ``eps`` not a finite number > 0.
    TypeError
        If ``lr``, ``beta1``, ``beta2`` or ``eps`` is not an int or float (a bool or a str is
        refused).
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        _check_positive("lr", self.lr, allow_zero=True)
        _check_fraction("beta1", self.beta1)
        _check_fraction("beta2", self.beta2)
        _check_positive("eps", self.eps)

    def init(self, params):
        """t = 0, m = v = 0 shaped as ``params``.

        Parameters
        ----------
        params : dict {name: floating array}
            The parameters this state will update; any shapes.

        Returns
        -------
        AdamState
            t = 0 and zero moments with the keys, shapes, dtypes and backend
            of ``params``.

        Raises
        ------
        TypeError
            If ``params`` is not a non-empty dict of floating arrays.
        """
        _check_tree("params", params)
        return AdamState(0, zeros_like(params), zeros_like(params))

    def update(self, params, grads, state, *, check=True):
        """One Adam step: the moments, then the bias-corrected step (Kingma & Ba 2015, Algorithm 1).

        All or nothing: every new value is computed into a temporary and
        checked before the first is written.

        Parameters
        ----------
        params : dict {name: floating array}
            θ, updated in place.
        grads : dict {name: floating array}
            g = ∂L/∂θ: the same keys and shapes as ``params``, finite.
        state : AdamState
            From this optimiser's ``init(params)`` or its previous ``update``.
        check : bool
            True (default): test the gradients and the new values for
            finiteness before writing.  False skips those tests (each is a
            read-back on a device) for a caller that guards the step itself
            (refnet.online's deferred checks).

        Returns
        -------
        AdamState
            The state to pass next time: a new AdamState with t + 1, holding
            the same m and v dicts, updated in place.

        Raises
        ------
        TypeError
            Nothing updated: ``params`` or ``grads`` not a non-empty dict of
            floating arrays, ``state`` not an AdamState, ``state.t`` not an int >= 0, or a state buffer not a dict.
        ValueError
            Nothing updated: ``grads`` with other keys or shapes than
            ``params``, non-finite gradients (``check``), or a state made for
            other params (keys, shapes, dtypes or backend).
        refnet.NumericalError
            Nothing updated (``check``): a new moment m, v or params would be NaN/Inf
            (named with the parameter and the index).
        """
        _check_update(params, grads, state, AdamState, check)
        if isinstance(state.t, bool) or not isinstance(state.t, numbers.Integral) or state.t < 0:
            raise TypeError(f"state.t must be the int >= 0 of steps taken, got {type(state.t).__name__} "
                            f"{state.t!r}")
        _check_buffers("m", state.m, params, "Adam")
        _check_buffers("v", state.v, params, "Adam")
        t = int(state.t) + 1
        step_size = self.lr / (1.0 - self.beta1 ** t)
        root_correction = math.sqrt(1.0 - self.beta2 ** t)
        changes = []
        for k, p in params.items():
            g, m, v = grads[k], state.m[k], state.v[k]
            with numpy.errstate(over="ignore", invalid="ignore"):   # reported by _commit, by name
                m_new = m * self.beta1 + (1.0 - self.beta1) * g
                v_new = v * self.beta2 + (1.0 - self.beta2) * g * g
                p_new = p - step_size * m_new / (v_new ** 0.5 / root_correction + self.eps)
            changes.append(("first moment m", k, m, m_new))
            changes.append(("second moment v", k, v, v_new))
            changes.append(("params", k, p, p_new))
        _commit(self, changes, check)
        return state._replace(t=t)
