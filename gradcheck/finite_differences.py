"""Central finite differences on dicts of NumPy arrays, in float64.

``f`` maps a params dict ``{name: float64 array}`` to a float; it is called
with perturbed copies and must not keep them.
"""
import numpy as np

__all__ = ["numerical_gradient", "directional_derivative", "as_float64"]


def as_float64(params):
    """A float64 NumPy copy of every array in ``params``."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    return {k: np.array(v, dtype=np.float64) for k, v in params.items()}


def numerical_gradient(f, params, *, eps):
    """∂f/∂θ_i ≈ (f(θ + ε e_i) − f(θ − ε e_i)) / 2ε for every coordinate i."""
    params = as_float64(params)
    grads = {}
    for name, value in params.items():
        g = np.empty_like(value)
        flat, g_flat = value.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            f_plus = f(params)
            flat[i] = original - eps
            f_minus = f(params)
            flat[i] = original
            g_flat[i] = (f_plus - f_minus) / (2.0 * eps)
        grads[name] = g
    return grads


def directional_derivative(f, params, direction, *, eps):
    """⟨∇f, v⟩ ≈ (f(θ + ε v) − f(θ − ε v)) / 2ε."""
    params = as_float64(params)
    plus = {k: params[k] + eps * direction[k] for k in params}
    minus = {k: params[k] - eps * direction[k] for k in params}
    return (f(plus) - f(minus)) / (2.0 * eps)
