"""Optimisers on params dicts, hand-written: SGD (with momentum), Adagrad, Adam.

Each is a small frozen description (its hyper-parameters) with two methods:

- ``init(params) -> state``, a NamedTuple of arrays shaped like ``params``;
- ``update(params, grads, state) -> state``: one step, ``params`` and the
  state's arrays updated in place; the returned state (with its step count)
  is the one to pass next time.

Nothing is hidden in the optimiser object, so two parameter sets can share
one.  The updates are PyTorch's (``torch.optim``, default options otherwise)
so that a refnet learner and a PyTorch one take the same steps:

========  ===================================================================
SGD       b ← μ b + g (b = g at the first step);  θ ← θ − lr b  (μ = 0: θ ← θ − lr g)
Adagrad   G ← G + g²;  θ ← θ − lr g / (√G + ε)            (Duchi et al. 2011)
Adam      m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;
          θ ← θ − (lr / (1 − β1ᵗ)) m / (√v / √(1 − β2ᵗ) + ε)   (Kingma & Ba 2015)
========  ===================================================================
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

from ._validate import first_nonfinite
from .params import zeros_like

__all__ = ["SGD", "SGDState", "Adagrad", "AdagradState", "Adam", "AdamState"]


def _check_positive(name, value, *, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
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


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


class SGDState(NamedTuple):
    momentum: dict   # the buffers b (empty dict when μ = 0)


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, PyTorch's form of momentum (no dampening, no Nesterov)."""

    lr: float
    momentum: float = 0.0

    def __post_init__(self):
        _check_positive("lr", self.lr, allow_zero=True)
        _check_fraction("momentum", self.momentum)

    def init(self, params):
        """The momentum buffers b = 0 shaped as ``params`` (none when μ = 0)."""
        _check_tree("params", params)
        return SGDState(zeros_like(params) if self.momentum else {})

    def update(self, params, grads, state, *, check=True):
        """θ ← θ − lr g, or θ ← θ − lr b with b ← μ b + g.

        Raises TypeError/ValueError, with nothing updated, for mismatched keys or shapes,
        non-finite gradients or a foreign state.  ``check=False`` skips the finiteness test (one
        read-back on a device), for a caller that guards the step itself (refnet.online).
        """
        _check_update(params, grads, state, SGDState, check)
        for k, p in params.items():
            g = grads[k]
            if self.momentum:
                b = state.momentum[k]
                b *= self.momentum
                b += g
                g = b
            p -= self.lr * g
        return state


class AdagradState(NamedTuple):
    sum_squares: dict   # G, the running sum of g²


@dataclass(frozen=True)
class Adagrad:
    """Adagrad (Duchi, Hazan & Singer 2011) as torch.optim.Adagrad (no lr decay, G_0 = 0)."""

    lr: float = 0.01
    eps: float = 1e-10

    def __post_init__(self):
        _check_positive("lr", self.lr, allow_zero=True)
        _check_positive("eps", self.eps)

    def init(self, params):
        """G = 0 shaped as ``params``."""
        _check_tree("params", params)
        return AdagradState(zeros_like(params))

    def update(self, params, grads, state, *, check=True):
        """G ← G + g²;  θ ← θ − lr g / (√G + ε).  Raises as :meth:`SGD.update`."""
        _check_update(params, grads, state, AdagradState, check)
        for k, p in params.items():
            g, G = grads[k], state.sum_squares[k]
            G += g * g
            p -= self.lr * g / (G ** 0.5 + self.eps)
        return state


class AdamState(NamedTuple):
    t: int       # steps taken
    m: dict      # first moment
    v: dict      # second moment


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015) as torch.optim.Adam (no weight decay, no amsgrad)."""

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
        """t = 0, m = v = 0 shaped as ``params``."""
        _check_tree("params", params)
        return AdamState(0, zeros_like(params), zeros_like(params))

    def update(self, params, grads, state, *, check=True):
        """Moments, then the bias-corrected step (module docstring).  Raises as :meth:`SGD.update`."""
        _check_update(params, grads, state, AdamState, check)
        t = state.t + 1
        step_size = self.lr / (1.0 - self.beta1 ** t)
        root_correction = math.sqrt(1.0 - self.beta2 ** t)
        for k, p in params.items():
            g, m, v = grads[k], state.m[k], state.v[k]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            p -= step_size * m / (v ** 0.5 / root_correction + self.eps)
        return state._replace(t=t)
