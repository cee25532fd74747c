"""Finite differences, one-sided derivatives and the objective's measured noise.  NumPy only.

``f`` maps a params dict ``{name: array}`` to a real scalar; it is called
with perturbed copies and must not keep them.  :class:`Objective` wraps it:
it refuses a non-callable ``f`` or a result that is not a real scalar, and
records the least precise dtype ``f`` returned (a float32 objective
resolves ≈ 6e-8 of its value, not ≈ 1e-16).

Noise.  :func:`estimate_noise` measures the computational noise σ of a
function of one variable from m + 1 = 9 values at spacing h, by the
difference-table estimator of Moré & Wild (2011, "Estimating computational
noise", SIAM J. Sci. Comput. 33(3), eq. 2.4 and Alg. 1): for noise of
standard deviation σ, γ_k · mean((Δ^k φ)²) ≈ σ² with γ_k = (k!)² / (2k)!, for
every order k once h is small enough that the smooth part of Δ^k φ (≈ h^k
φ^(k)) is below the noise.  The table is taken on each side of θ separately
and the smaller estimate kept, so a kink *at* θ (where gradcheck most
needs the estimate) does not pass for noise.
"""
import math
import numbers

import numpy as np

__all__ = ["Objective", "numerical_gradient", "directional_derivative", "as_float64",
           "one_sided_derivatives", "estimate_noise", "unit_roundoff"]


def unit_roundoff(dtype):
    """u = eps / 2 of a float dtype (float64 for anything that is not a NumPy float).

    Parameters
    ----------
    dtype : dtype-like
        Anything ``np.dtype`` accepts; a non-float dtype (int, bool) counts as float64.

    Returns
    -------
    float
        The unit roundoff u (dimensionless): 2^-53 ≈ 1.1e-16 for float64,
        2^-24 ≈ 6e-8 for float32.

    Raises
    ------
    TypeError
        If ``np.dtype`` does not understand ``dtype``.
    """
    dtype = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
    return float(np.finfo(dtype).eps) / 2


def _check_params(params, name="params"):
    if not isinstance(params, dict):
        raise TypeError(f"{name} must be a dict {{name: array}}, got {type(params).__name__}")
    if not params:
        raise ValueError(f"{name} must hold at least one array, got an empty dict")


def as_float64(params, name="params"):
    """A float64 NumPy copy of every array in ``params`` (TypeError for a non-real entry).

    Torch tensors are detached and moved to the host, CuPy arrays copied to
    the host, so a check can be handed the user's own arrays.

    Parameters
    ----------
    params : dict {name: array}
        Arrays of any shape and real dtype (bool, int or float), or scalars.
    name : str, optional
        What ``params`` is called in error messages (``'params'``, ``'direction'``).

    Returns
    -------
    dict {name: float64 ndarray}
        Fresh copies with the same keys and shapes; the caller may write into them.

    Raises
    ------
    TypeError
        If ``params`` is not a dict, or an entry is not a real array (complex,
        object, string dtype, or not convertible by ``np.asarray``).
    ValueError
        If ``params`` is empty.
    """
    _check_params(params, name)
    out = {}
    for key, value in params.items():
        if hasattr(value, "detach"):                        # a torch tensor
            value = value.detach().cpu().numpy()
        if type(value).__module__.split(".")[0] == "cupy" or type(value).__name__ == "StrictArray":
            value = value.get()
        try:
            array = np.asarray(value)
        except Exception as exc:
            raise TypeError(f"{name}[{key!r}] must be a real array, got {type(value).__name__}") from exc
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name}[{key!r}] must be a real (bool, int or float) array, got dtype "
                            f"{array.dtype}")
        out[key] = np.array(array, dtype=np.float64)
    return out


def _result_dtype(value):
    """The floating precision a scalar result carries: float64 for Python numbers."""
    if isinstance(value, numbers.Real) and not isinstance(value, np.generic):
        return np.dtype(np.float64)
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return np.dtype(np.float64)
    text = str(dtype)
    if "float16" in text or "bfloat16" in text:
        return np.dtype(np.float16)
    if "float32" in text:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


class Objective:
    """``f`` with its result checked: a real scalar (a number or a 0-d array), read as a float.

    ``dtype`` is the least precise floating dtype ``f`` has returned (float64
    for Python floats), ``calls`` how often it was evaluated.  Calling it,
    ``objective(params, where)``, returns ``f(params)`` as a float; ``where``
    (e.g. ``"f(θ + ε e) at params['W'] flat index 3"``) names the evaluation
    in the TypeError raised for a result that is not a real scalar.

    Parameters
    ----------
    f : callable or Objective
        The objective, params dict ``{name: array}`` -> real scalar (a Python
        number or a 0-d array); an Objective is unwrapped to its ``f``.

    Raises
    ------
    TypeError
        If ``f`` is not callable.  A call raises TypeError when ``f`` returns
        something other than a real scalar (an array of shape other than (),
        a complex, a str, None).
    """

    def __init__(self, f):
        if isinstance(f, Objective):
            f = f.f
        if not callable(f):
            raise TypeError(f"f must be callable (params dict -> real scalar), got {type(f).__name__}")
        self.f = f
        self.dtype = None
        self.calls = 0

    def __call__(self, params, where="f(θ)"):
        """f(params) as a Python float, counted, with the dtype it was computed in remembered.

        Parameters
        ----------
        params : dict {name: array}
            The point θ at which f is evaluated.
        where : str
            How the point is named in an error (e.g. ``"f(θ + εd)"``).

        Returns
        -------
        float
            The objective's value.

        Raises
        ------
        TypeError
            If f returns anything but a real scalar (an array of shape other than (), a str, None,
            a complex number, or an object ``float()`` refuses), naming ``where``.
        """
        value = self.f(params)
        self.calls += 1
        shape = getattr(value, "shape", ())
        if tuple(shape) != ():
            raise TypeError(f"f must return a real scalar (the objective), got {type(value).__name__} "
                            f"of shape {tuple(shape)} from {where}")
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"f must return a real scalar (the objective), got {type(value).__name__} "
                            f"from {where}")
        kind = getattr(getattr(value, "dtype", None), "kind", None)
        if isinstance(value, complex) or kind == "c" or "complex" in str(getattr(value, "dtype", "")):
            raise TypeError(f"f must return a real scalar, got the complex {value!r} from {where}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"f must return a real scalar (the objective), got {type(value).__name__} "
                            f"from {where}") from exc
        dtype = _result_dtype(value)
        if self.dtype is None or np.finfo(dtype).eps > np.finfo(self.dtype).eps:
            self.dtype = dtype
        return number


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite step > 0, got {eps!r}")
    return float(eps)


def numerical_gradient(f, params, *, eps):
    """∂f/∂θ_i ≈ (f(θ + ε e_i) − f(θ − ε e_i)) / 2ε for every coordinate i, in float64.

    Costs 2 evaluations of ``f`` per coordinate; the truncation error is
    O(ε²) (times f's third derivative) and the rounding error O(u |f| / ε).

    Parameters
    ----------
    f : callable
        The objective, params dict {name: float64 array} -> real scalar.
    params : dict {name: array}
        The point θ; any real dtype, evaluated at float64 copies.
    eps : float
        The step ε > 0, in the parameters' units.

    Returns
    -------
    dict {name: float64 ndarray}
        The central differences, in params' shapes (NaN/Inf where f was not finite).

    Raises
    ------
    TypeError
        If ``f`` is not callable or returns something other than a real scalar,
        or ``params`` is not a dict or holds a non-real array.
    ValueError
        If ``eps`` is not a finite number > 0, or ``params`` is empty.
    """
    eps = _check_eps(eps)
    objective = Objective(f)
    params = as_float64(params)
    grads = {}
    for name, value in params.items():
        g = np.empty_like(value)
        flat, g_flat = value.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            f_plus = objective(params, f"f(θ + ε e) at params[{name!r}] flat index {i}")
            flat[i] = original - eps
            f_minus = objective(params, f"f(θ − ε e) at params[{name!r}] flat index {i}")
            flat[i] = original
            g_flat[i] = (f_plus - f_minus) / (2.0 * eps)
        grads[name] = g
    return grads


def directional_derivative(f, params, direction, *, eps):
    """⟨∇f, v⟩ ≈ (f(θ + ε v) − f(θ − ε v)) / 2ε, in float64.

    Two evaluations of ``f`` whatever the size of θ; ``v`` is used as given
    (not normalised), so the result scales with ‖v‖.

    Parameters
    ----------
    f : callable
        The objective, params dict {name: float64 array} -> real scalar.
    params : dict {name: array}
        The point θ; any real dtype, evaluated at float64 copies.
    direction : dict {name: array}
        The direction v, with params' keys and shapes.
    eps : float
        The step ε > 0 along v.

    Returns
    -------
    float
        The central difference (NaN/Inf when f was not finite at θ ± ε v).

    Raises
    ------
    TypeError
        As :func:`numerical_gradient`, and for a ``direction`` that is not a
        dict of real arrays.
    ValueError
        As :func:`numerical_gradient`, and if the keys or shapes of
        ``direction`` differ from those of ``params``.
    """
    eps = _check_eps(eps)
    objective = Objective(f)
    params = as_float64(params)
    direction = as_float64(direction, "direction")
    if set(direction) != set(params):
        raise ValueError(f"direction must have the keys {sorted(params)}, got {sorted(direction)}")
    for k in params:
        if direction[k].shape != params[k].shape:
            raise ValueError(f"direction[{k!r}] must have shape {params[k].shape}, got {direction[k].shape}")
    plus = {k: params[k] + eps * direction[k] for k in params}
    minus = {k: params[k] - eps * direction[k] for k in params}
    return (objective(plus, "f(θ + ε v)") - objective(minus, "f(θ − ε v)")) / (2.0 * eps)


def one_sided_derivatives(phi, phi0, eps):
    """Left and right derivatives of φ at 0 by second-order one-sided differences.

    right = (−3 φ(0) + 4 φ(ε) − φ(2ε)) / 2ε, left the mirror image; each also
    at step ε/2, so a side whose two estimates disagree has a kink inside
    (0, 2ε] rather than at 0.  Each is exact for a quadratic on its side
    (error O(ε²)), so at a kink left and right differ by the jump in slope.

    Parameters
    ----------
    phi : callable
        φ(t) = f(θ + t v), float -> float; called 8 times, at ±ε, ±2ε, ±ε/2.
    phi0 : float
        φ(0), already at hand.
    eps : float
        The step ε > 0 (not validated here).

    Returns
    -------
    tuple of 4 float
        ``(left, right, left_half, right_half)``: the left and right
        derivatives at step ε, then at step ε/2.

    Raises
    ------
    ZeroDivisionError
        If ``eps`` is 0.  Whatever ``phi`` raises propagates.
    """
    def right_at(h, sign):
        return sign * (-3.0 * phi0 + 4.0 * phi(sign * h) - phi(sign * 2.0 * h)) / (2.0 * h)
    return right_at(eps, -1.0), right_at(eps, 1.0), right_at(eps / 2, -1.0), right_at(eps / 2, 1.0)


def _table_noise(values):
    """Moré & Wild's σ from one row of equally spaced values: median over orders k = 2..6."""
    values = np.asarray(values, dtype=np.float64)
    estimates = []
    diff = values
    for k in range(1, 7):
        diff = np.diff(diff)
        if k >= 2 and diff.size:
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            estimates.append(math.sqrt(gamma * float(np.mean(diff * diff))))
    return float(np.median(estimates))


def estimate_noise(phi, phi0, h, *, m=8, grow=100.0, tries=4):
    """σ of φ's computational noise near 0 (module docstring), or NaN if φ was not finite there.

    Values φ(±i h), i = 1..m, on each side; a side with fewer than 3 distinct
    values is below φ's resolution, so h grows by ``grow`` (up to ``tries``
    times).  Moré & Wild (2011, Eq. 2.4, Alg. 1).

    Parameters
    ----------
    phi : callable
        φ(t) = f(θ + t v), float -> float; called 2 m times per try.
    phi0 : float
        φ(0), already at hand.
    h : float
        The first spacing, > 0, in the units of t.
    m : int, optional
        Values per side besides φ(0); differences of orders 2..6 are taken.
    grow : float, optional
        Factor by which h grows when a side is below φ's resolution.
    tries : int, optional
        How many spacings to try at most.

    Returns
    -------
    sigma : float
        The noise's standard deviation, in φ's units: the smaller of the two
        sides' estimates; 0 when φ is constant at every step tried; NaN when
        φ was not finite somewhere.
    h_used : float
        The spacing that gave ``sigma``, or, with NaN, the t where φ(t) was not finite.

    Raises
    ------
    TypeError
        If ``phi`` is not callable.  The arguments are not otherwise
        validated; whatever ``phi`` raises propagates.
    """
    for _ in range(tries):
        sides = []
        for sign in (1.0, -1.0):
            values = [phi0] + [phi(sign * i * h) for i in range(1, m + 1)]
            for i, v in enumerate(values):
                if not math.isfinite(v):
                    return float("nan"), sign * i * h
            if len(set(values)) >= 3:
                sides.append(_table_noise(values))
        if sides:
            return min(sides), h
        h *= grow
    return 0.0, h
