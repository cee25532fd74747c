"""Weight exchange with EdgeML's FastRNN and FastGRNN cells (Kusupati et al. 2018) <-> refnet params.

EdgeML's PyTorch ``FastRNNCell`` and ``FastGRNNCell`` (``edgeml_pytorch.graph.rnn``)
keep, with no low rank::

    W (input, hidden)   U (hidden, hidden)   bias_update (1, hidden)   [bias_gate (1, hidden)]
    alpha, beta (1, 1)  [FastGRNN: zeta, nu (1, 1)]

and apply both from the right: ``x @ W + h @ U``.  refnet's cells
(:class:`~refnet.cells.fastrnn.FastRNN`, :class:`~refnet.cells.fastgrnn.FastGRNN`)
keep W (hidden, input) and U (hidden, hidden) applied from the left, ``x Wᵀ + h Uᵀ``,
as PyTorch's layers and EdgeML's ``FastGRNNCUDACell`` (and some releases of
``FastGRNNCell``) do.  A square U loads in either orientation without a
shape error and gives a different network, so the orientation is a
required argument with no default:

=============  ===============================================  ===========================
``layout``     EdgeML computes                                   W's shape
=============  ===============================================  ===========================
``'right'``    ``x @ W + h @ U`` (FastRNNCell, FastGRNNCell)     (input, hidden)
``'left'``     ``x @ Wᵀ + h @ Uᵀ`` (FastGRNNCUDACell)            (hidden, input)
=============  ===============================================  ===========================

Read the layout off the cell's ``forward`` in the EdgeML release you use.
Where input = hidden W's shape cannot tell either; pass ``check=(x, h_prev,
h_next)``, one step the EdgeML cell computed, and the conversion is run on
it (an error names the layout that reproduces it, if the other one does).

The (1, hidden) and (1, 1) shapes become (hidden,) and (1,); the scalars are
the logits EdgeML stores (α = sigmoid(alpha)).  Gradients are converted
with the same functions (the maps are linear: transposes and reshapes).
Low-rank cells (``W1``, ``W2``, ``U1``, ``U2``) and quantised
nonlinearities have no refnet counterpart and are refused by name.
"""
import numpy as np

from ._validate import check_dtype
from .backend import asarray, to_numpy
from .cells.fastgrnn import FastGRNN
from .cells.fastrnn import FastRNN

__all__ = ["LAYOUTS", "from_edgeml", "to_edgeml"]

LAYOUTS = ("right", "left")
_FASTRNN = ("W", "U", "bias_update", "alpha", "beta")
_FASTGRNN = ("W", "U", "bias_gate", "bias_update", "zeta", "nu")


def _check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'right' (EdgeML computes x @ W + h @ U, W (input, hidden)) or 'left' "
                         f"(x @ W.T + h @ U.T, W (hidden, input)); there is no default, got {layout!r}")


def _array(params, key):
    value = params[key]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    a = np.asarray(to_numpy(value))
    if a.dtype.kind != "f":
        raise TypeError(f"params[{key!r}] must be a floating array, got dtype {a.dtype}")
    return a


def _oriented(params, layout):
    """(W (H, I), U (H, H)) in refnet's orientation from EdgeML's W, U under ``layout``."""
    W, U = _array(params, "W"), _array(params, "U")
    if U.ndim != 2 or U.shape[0] != U.shape[1]:
        raise ValueError(f"params['U'] must have shape (hidden, hidden), got {U.shape}")
    H = U.shape[0]
    want = "(input, hidden)" if layout == "right" else "(hidden, input)"
    axis = 1 if layout == "right" else 0
    if W.ndim != 2 or W.shape[axis] != H:
        other = "left" if layout == "right" else "right"
        hint = (f"; it fits layout={other!r}" if W.ndim == 2 and W.shape[1 - axis] == H else "")
        raise ValueError(f"params['W'] must have shape {want} = {('(*, %d)' if axis else '(%d, *)') % H} with "
                         f"layout={layout!r} (hidden = {H} from U), got {W.shape}{hint}")
    return (W.T, U.T) if layout == "right" else (W, U)


def from_edgeml(params, *, layout, update_nonlinearity="tanh", gate_nonlinearity="sigmoid", dtype=None,
                check=None):
    """(cell, θ) of refnet's FastRNN or FastGRNN from an EdgeML cell's parameters.

    FastRNN: h_t = α σ(W x_t + U h_{t−1} + b) + β h_{t−1}; FastGRNN: z = σ_g(W x + U h + b_z),
    h̃ = σ_u(W x + U h + b_h), h_t = (ζ(1 − z) + ν) ⊙ h̃ + z ⊙ h_{t−1} (Kusupati et al. 2018,
    Eqs. 1–4), with α, β, ζ, ν the sigmoids of the stored logits.

    Parameters
    ----------
    params : dict or EdgeML cell
        ``{name: tensor or array}``, or an EdgeML cell (``cell.named_parameters()`` is read).
        FastRNNCell: W, U, bias_update, alpha, beta; FastGRNNCell: W, U, bias_gate, bias_update,
        zeta, nu.  W (input, hidden) or (hidden, input) by ``layout``, U (hidden, hidden), biases
        (1, hidden), scalars (1, 1).
    layout : {'right', 'left'}
        Required (module docstring): how EdgeML applies W and U.
    update_nonlinearity : {'tanh', 'sigmoid', 'relu'}
        The cell's σ_u (FastRNN's σ), default 'tanh'.
    gate_nonlinearity : {'tanh', 'sigmoid', 'relu'}
        FastGRNN's σ_g, default 'sigmoid'; ignored for FastRNN.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', refnet's arrays' dtype (None: ``REFNET_DTYPE``).
    check : (x (B, I), h_prev (B, H), h_next (B, H)) or None
        One step of the EdgeML cell; the converted cell must reproduce it (rtol 1e-5, which float32
        EdgeML outputs meet).

    Returns
    -------
    tuple
        (FastRNN or FastGRNN, θ dict in refnet's layout: W (H, I), U (H, H), biases (H,), scalars (1,)).

    Raises
    ------
    ValueError
        For a missing or unknown layout, unknown or low-rank keys, shapes that do not fit the layout
        (naming the layout they fit), non-finite values, an unknown nonlinearity or ``dtype``, or a
        ``check`` step the converted cell does not reproduce (naming the other layout if it does).
    TypeError
        For ``params`` neither a dict nor an EdgeML cell, non-floating arrays, or a ``check`` that is
        not a triple of arrays.
    """
    _check_layout(layout)
    dtype = check_dtype("dtype", dtype)
    if hasattr(params, "named_parameters"):
        params = dict(params.named_parameters())
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict or an EdgeML cell, got {type(params).__name__}")
    low_rank = sorted(k for k in params if k in ("W1", "W2", "U1", "U2"))
    if low_rank:
        raise ValueError(f"params has low-rank factors {low_rank}: refnet's FastRNN/FastGRNN are full rank; "
                         f"multiply them into W and U (layout 'right': W = W1 @ W2) first")
    names = _FASTGRNN if "zeta" in params else _FASTRNN
    if sorted(params) != sorted(names):
        raise ValueError(f"params must have exactly the keys {list(names)} (EdgeML's "
                         f"{'FastGRNNCell' if names is _FASTGRNN else 'FastRNNCell'}), got {sorted(params)}")
    W, U = _oriented(params, layout)
    H, I = W.shape
    theta = {"W": W, "U": U}
    for key in names[2:]:
        value = _array(params, key)
        size = H if key.startswith("bias") else 1
        if value.size != size or value.ndim > 2:
            raise ValueError(f"params[{key!r}] must have shape (1, {size}) or ({size},), got {value.shape}")
        theta[key] = value.reshape(size)
    if names is _FASTGRNN:
        cell = FastGRNN(I, H, gate_nonlinearity=gate_nonlinearity, update_nonlinearity=update_nonlinearity)
    else:
        cell = FastRNN(I, H, nonlinearity=update_nonlinearity)
    theta = cell.check_params({k: asarray(v, dtype) for k, v in theta.items()}, "params")
    if check is not None:
        _check_step(cell, theta, check, params, layout, dtype)
    return cell, theta


def _check_step(cell, theta, check, params, layout, dtype):
    try:
        x, h_prev, h_next = (asarray(to_numpy(v.detach().cpu().numpy() if hasattr(v, "detach") else v), dtype)
                             for v in check)
    except (TypeError, ValueError):
        raise TypeError("check must be a triple (x (B, I), h_prev (B, H), h_next (B, H)) of arrays") from None
    for name, a, size in (("x", x, cell.input_size), ("h_prev", h_prev, cell.hidden_size),
                          ("h_next", h_next, cell.hidden_size)):
        if a.ndim != 2 or a.shape[1] != size or a.shape[0] != x.shape[0]:
            raise ValueError(f"check's {name} must have shape ({x.shape[0]}, {size}), got {tuple(a.shape)}")
    h, _ = cell.step(theta, h_prev, x)
    if _close(h, h_next):
        return
    other = "left" if layout == "right" else "right"
    fits = False
    try:
        W, U = _oriented(params, other)
        alt = dict(theta, W=asarray(W, dtype), U=asarray(U, dtype))
        fits = _close(cell.step(alt, h_prev, x)[0], h_next)
    except ValueError:
        pass
    err = float(np.max(np.abs(to_numpy(h) - to_numpy(h_next))))
    raise ValueError(f"check: the converted cell with layout={layout!r} does not reproduce h_next (max |diff| "
                     f"{err:.3e})" + (f"; layout={other!r} does: EdgeML applies W and U the other way"
                                      if fits else "; nor does the other layout (check the nonlinearities, "
                                                   "the keys, and that h_next is one step from h_prev)"))


def _close(a, b):
    a, b = to_numpy(a), to_numpy(b)
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(b).max(initial=0.0)))))


def to_edgeml(cell, theta, *, layout):
    """EdgeML's parameters {name: NumPy array} for refnet's FastRNN/FastGRNN θ (or dθ: the map is linear).

    Biases become (1, hidden) and the scalars (1, 1), EdgeML's shapes.

    Parameters
    ----------
    cell : FastRNN or FastGRNN
        The refnet cell (Kusupati et al. 2018).
    theta : dict
        Its params (or their gradient): W (H, I), U (H, H), biases (H,), scalars (1,).
    layout : {'right', 'left'}
        Required, as :func:`from_edgeml`: 'right' gives W (input, hidden) for ``x @ W``.

    Returns
    -------
    dict
        ``{name: numpy.ndarray}`` in EdgeML's names and shapes (copies).

    Raises
    ------
    ValueError
        For an unknown layout, or ``theta`` with missing or extra names, wrong shapes or NaN/Inf.
    TypeError
        If ``cell`` is not a refnet FastRNN or FastGRNN, or ``theta`` is not a dict of floating arrays.
    """
    _check_layout(layout)
    if not isinstance(cell, (FastRNN, FastGRNN)):
        raise TypeError(f"cell must be a refnet FastRNN or FastGRNN, got {type(cell).__name__}")
    cell.check_params(theta, "theta")
    W, U = to_numpy(theta["W"]), to_numpy(theta["U"])
    out = {"W": W.T.copy() if layout == "right" else W.copy(), "U": U.T.copy() if layout == "right" else U.copy()}
    for key in (_FASTGRNN if isinstance(cell, FastGRNN) else _FASTRNN)[2:]:
        value = to_numpy(theta[key])
        out[key] = value.reshape(1, -1).copy()
    return out
