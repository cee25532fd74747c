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

from .params import zeros_like

__all__ = ["SGD", "SGDState", "Adagrad", "AdagradState", "Adam", "AdamState"]


def _check_positive(name, value, *, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        want = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {want}, got {value!r}")


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
        return SGDState(zeros_like(params) if self.momentum else {})

    def update(self, params, grads, state):
        """θ ← θ − lr g, or θ ← θ − lr b with b ← μ b + g."""
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
        return AdagradState(zeros_like(params))

    def update(self, params, grads, state):
        """G ← G + g²;  θ ← θ − lr g / (√G + ε)."""
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
        return AdamState(0, zeros_like(params), zeros_like(params))

    def update(self, params, grads, state):
        """Moments, then the bias-corrected step (module docstring)."""
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
