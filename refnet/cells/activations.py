"""Pointwise nonlinearities as (fn, grad) pairs, autograd-style.

``grad`` is written in terms of the *output* y = fn(a), which is what a
cache keeps: tanh' = 1 − y², sigmoid' = y (1 − y), relu' = [y > 0].

relu'(0) = 0 (PyTorch's convention): at a pre-activation exactly 0 the
gradient is the one-sided derivative from the side where the unit stays
off, which ``gradcheck.check_grads`` reports as a kink matching it.
"""
from typing import Callable, NamedTuple

from ..backend import xp_of

__all__ = ["Activation", "ACTIVATIONS", "sigmoid", "tanh", "relu"]


class Activation(NamedTuple):
    """A pointwise nonlinearity y = fn(a) and its derivative written from the output, grad(y) = fn'(a).

    Keeping the derivative as a function of y is what lets a cell's cache hold
    only the activations (autograd's derivative tables do the same).

    Attributes
    ----------
    fn : callable
        a -> y, elementwise on an array of any shape (B, n), same shape and dtype out.
    grad : callable
        y -> dy/da, elementwise, from the output y = fn(a) (same shape and dtype).
    """

    fn: Callable    # a -> y
    grad: Callable  # y -> dy/da


def _sigmoid(a):
    # 1 / (1 + e^{-a}) written through tanh: no overflow for any a.
    return 0.5 * (xp_of(a).tanh(0.5 * a) + 1.0)


def _tanh(a):
    return xp_of(a).tanh(a)


def _relu(a):
    return xp_of(a).maximum(a, 0.0)


#                    fn          grad (from the output y)
sigmoid = Activation(_sigmoid,   lambda y: y * (1.0 - y))
tanh = Activation(_tanh,         lambda y: 1.0 - y * y)
relu = Activation(_relu,         lambda y: (y > 0).astype(y.dtype))

ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu}
