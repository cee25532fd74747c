"""Weight exchange with Keras/TensorFlow's LSTM, GRU and SimpleRNN layers <-> refnet params.

Keras keeps one ``kernel`` (input, G·H) applied as ``x @ kernel``, one
``recurrent_kernel`` (H, G·H) applied as ``h @ recurrent_kernel``, and a
``bias``; the gate blocks are *columns*.  refnet (PyTorch's layout) keeps
``weight_ih`` (G·H, input) and ``weight_hh`` (G·H, H), gate blocks in rows:

==========  ==================  ============  =====================================================
Keras       gate columns        bias          refnet / PyTorch
==========  ==================  ============  =====================================================
LSTM        i | f | c | o       (4H,)         rows i | f | g | o (c = g): the same order, transposed;
                                              one bias b = b_ih + b_hh (kept on bias_ih, b_hh = 0)
GRU         z | r | h           (2, 3H)       rows r | z | n; ``reset_after=True`` (TF2's default):
            reset_after=True    [input;       bias[0] = b_i, bias[1] = b_h, exact both ways:
                                recurrent]    h̃ = tanh(x W_h + b_ih + r ⊙ (h U_h + b_hh)) is nn.GRU's n
GRU         reset_after=False   (3H,)         a different cell: h̃ = tanh(x W_h + (r ⊙ h) U_h + b_h)
                                              applies r *before* the recurrent product; refused by name
SimpleRNN   one block           (H,)          nn.RNN; b = b_ih + b_hh (kept on bias_ih)
==========  ==================  ============  =====================================================

Formulas (Keras' defaults, ``activation='tanh'``, ``recurrent_activation='sigmoid'``)::

    LSTM:  [z_i z_f z_c z_o] = x @ kernel + h @ recurrent_kernel + bias
           c' = σ(z_f) c + σ(z_i) tanh(z_c),   h' = σ(z_o) tanh(c')
    GRU:   [x_z x_r x_h] = x @ kernel + bias[0],  [r_z r_r r_h] = h @ recurrent_kernel + bias[1]
           z = σ(x_z + r_z),  r = σ(x_r + r_r),  h̃ = tanh(x_h + r ⊙ r_h),  h' = z h + (1 − z) h̃

Other activations (TF1-era Keras' ``hard_sigmoid`` recurrent activation) have
no refnet counterpart: compare with a layer built with the defaults.
Keras' LSTM state list is ``[h, c]``, refnet's state ``[h, c]`` too.

The kind is a required argument with no default, and the arrays' shapes
must fit it; a gate order or orientation that is wrong but has the right
shape cannot be seen in the shapes, so :func:`from_keras` takes
``check=(x, state, new_state)``: one step the Keras layer computed, which
the converted cell must reproduce.  Gradients: :func:`grads_to_keras` /
:func:`grads_from_keras` (a merged bias b has ∂L/∂b = ∂L/∂b_ih, not the sum).
"""
import numpy as np

from ._validate import check_dtype, check_finite, first_nonfinite
from .backend import asarray, to_numpy
from .cells.elman import ElmanRNN
from .cells.gru import GRU
from .cells.lstm import LSTM

__all__ = ["KINDS", "from_keras", "to_keras", "grads_from_keras", "grads_to_keras"]

KINDS = ("LSTM", "GRU", "SimpleRNN")
_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _numpy(value, name):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):    # tf.Variable / tf.Tensor
        value = value.numpy()
    a = np.asarray(to_numpy(value))
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating array, got dtype {a.dtype}")
    return a


def _weights_dict(weights, kind):
    """{'kernel', 'recurrent_kernel'[, 'bias']} from a dict or ``layer.get_weights()``'s list."""
    if isinstance(weights, (list, tuple)):
        if len(weights) not in (2, 3):
            raise ValueError(f"weights must be [kernel, recurrent_kernel(, bias)] (layer.get_weights()), "
                             f"got a list of {len(weights)}")
        weights = dict(zip(("kernel", "recurrent_kernel", "bias"), weights))
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict or layer.get_weights()'s list, got {type(weights).__name__}")
    unknown = sorted(set(weights) - {"kernel", "recurrent_kernel", "bias"})
    missing = sorted({"kernel", "recurrent_kernel"} - set(weights))
    if unknown or missing:
        raise ValueError(f"weights of a Keras {kind} must have the keys kernel, recurrent_kernel (and bias); "
                         f"missing {missing}, unexpected {unknown}")
    return {k: _numpy(v, f"weights[{k!r}]") for k, v in weights.items()}


def _check_kind(kind, reset_after):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (the Keras layer; no default), got {kind!r}")
    if kind == "GRU" and reset_after is not True:
        raise ValueError("reset_after=False is a different GRU cell (Keras/TF1 and the original Cho et al. 2014 "
                         "form: h̃ = tanh(x W_h + (r ⊙ h) U_h + b_h), r applied before the recurrent product); "
                         "refnet implements reset_after=True (TF2's default, PyTorch's nn.GRU) only")


def _cols_to_rows(kernel, H, order):
    """Keras' column blocks (in Keras gate order) -> PyTorch row blocks in refnet's order ``order``."""
    blocks = [kernel[:, j * H:(j + 1) * H] for j in range(kernel.shape[1] // H)]
    return np.concatenate([blocks[j].T for j in order], axis=0)


def _rows_to_cols(weight, H, order):
    """The inverse of :func:`_cols_to_rows`."""
    rows = [weight[k * H:(k + 1) * H] for k in range(weight.shape[0] // H)]
    blocks = [None] * len(order)
    for k, j in enumerate(order):
        blocks[j] = rows[k].T
    return np.concatenate(blocks, axis=1)


# refnet row block k comes from Keras column block _ORDER[kind][k]
_ORDER = {"LSTM": (0, 1, 2, 3), "GRU": (1, 0, 2), "SimpleRNN": (0,)}


def _to_theta(kind, w, merged_bias_both):
    G = _GATES[kind]
    kernel, recurrent = w["kernel"], w["recurrent_kernel"]
    if recurrent.ndim != 2 or recurrent.shape[1] != G * recurrent.shape[0]:
        raise ValueError(f"weights['recurrent_kernel'] of a Keras {kind} must have shape (H, {G}·H), got "
                         f"{recurrent.shape}" + ("; it looks transposed (PyTorch's weight_hh is (G·H, H))"
                                                 if recurrent.ndim == 2 and recurrent.shape[0] == G * recurrent.shape[1]
                                                 else ""))
    H = recurrent.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ValueError(f"weights['kernel'] of a Keras {kind} must have shape (input, {G * H}), got {kernel.shape}"
                         + ("; it looks transposed (PyTorch's weight_ih is (G·H, input))"
                            if kernel.ndim == 2 and kernel.shape[0] == G * H else ""))
    order = _ORDER[kind]
    theta = {"weight_ih": _cols_to_rows(kernel, H, order), "weight_hh": _cols_to_rows(recurrent, H, order)}
    bias = w.get("bias")
    zero = np.zeros(G * H, dtype=kernel.dtype)
    if kind == "GRU":
        if bias is not None and bias.shape == (G * H,):
            raise ValueError(f"weights['bias'] has shape ({G * H},), the layout of reset_after=False; a "
                             f"reset_after=True GRU's bias is (2, {G * H}) = [input bias; recurrent bias]")
        if bias is not None and bias.shape != (2, G * H):
            raise ValueError(f"weights['bias'] of a Keras GRU (reset_after=True) must have shape (2, {G * H}), "
                             f"got {bias.shape}")
        b_i, b_h = (zero, zero) if bias is None else (bias[0], bias[1])
        theta["bias_ih"] = _reorder_vector(b_i, H, order)
        theta["bias_hh"] = _reorder_vector(b_h, H, order)
    else:
        if bias is not None and bias.shape != (G * H,):
            raise ValueError(f"weights['bias'] of a Keras {kind} must have shape ({G * H},), got {bias.shape}")
        b = zero if bias is None else _reorder_vector(bias, H, order)
        theta["bias_ih"], theta["bias_hh"] = b, (b.copy() if merged_bias_both else np.zeros_like(b))
    return theta, kernel.shape[0], H


def _reorder_vector(b, H, order):
    return np.concatenate([b[j * H:(j + 1) * H] for j in order])


def _cell(kind, I, H, activation):
    if kind == "LSTM":
        return LSTM(I, H)
    if kind == "GRU":
        return GRU(I, H)
    if activation not in ("tanh", "relu"):
        raise ValueError(f"activation must be 'tanh' or 'relu' for a SimpleRNN, got {activation!r}")
    return ElmanRNN(I, H, activation)


def from_keras(kind, weights, *, reset_after=True, activation="tanh", dtype=None, check=None):
    """(cell, θ) of refnet's LSTM / GRU / Elman RNN from a Keras layer's weights (module docstring).

    Parameters
    ----------
    kind : {'LSTM', 'GRU', 'SimpleRNN'}
        Required: the Keras layer the weights come from.
    weights : dict or list
        ``{'kernel': (I, G·H), 'recurrent_kernel': (H, G·H), 'bias': …}`` or ``layer.get_weights()``
        (NumPy, TensorFlow, JAX or torch arrays); no bias = ``use_bias=False`` (zeros).  The bias is
        (G·H,), or (2, 3H) for a GRU.
    reset_after : bool
        Must be True for a GRU (False is a different cell, refused by name); ignored otherwise.
    activation : {'tanh', 'relu'}
        SimpleRNN's activation (default 'tanh'); ignored otherwise.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', refnet's arrays' dtype (None: ``REFNET_DTYPE``).
    check : (x (B, I), state, new_state) or None
        One step the Keras layer computed (``state`` is h, or [h, c] for an LSTM); the converted cell
        must reproduce it (rtol 1e-5, which float32 Keras outputs meet).

    Returns
    -------
    tuple
        (cell, θ) with PyTorch's names and layout; a merged Keras bias sits on ``bias_ih``
        (``bias_hh`` = 0).

    Raises
    ------
    ValueError
        For an unknown kind, reset_after=False, a list of other than 2 or 3 weights, missing or extra
        keys, shapes that do not fit the kind (naming a transposed layout when that is what came),
        non-finite values, an unknown SimpleRNN activation or ``dtype``, or a ``check`` step that the
        converted cell does not reproduce (or whose arrays have the wrong shapes).
    TypeError
        For ``weights`` neither a dict nor a list, non-floating arrays, or ``check`` not a triple.
    """
    dtype = check_dtype("dtype", dtype)
    _check_kind(kind, reset_after)
    w = _weights_dict(weights, kind)
    theta, I, H = _to_theta(kind, w, False)
    cell = _cell(kind, I, H, activation)
    theta = cell.check_params({k: asarray(v, dtype) for k, v in theta.items()}, "weights")
    if check is not None:
        _check_step(cell, theta, check, kind, dtype)
    return cell, theta


def _check_step(cell, theta, check, kind, dtype):
    if not isinstance(check, (tuple, list)) or len(check) != 3:
        raise TypeError("check must be a triple (x, state, new_state)")
    x, state, new_state = check
    as_state = lambda s, name: (np.concatenate([_numpy(s[0], name), _numpy(s[1], name)], axis=1)  # noqa: E731
                                if isinstance(s, (list, tuple)) else _numpy(s, name))
    x = asarray(_numpy(x, "check's x"), dtype)
    s, s_next = asarray(as_state(state, "check's state"), dtype), asarray(as_state(new_state, "check's new_state"), dtype)
    for name, a, width in (("x", x, cell.input_size), ("state", s, cell.n_state), ("new_state", s_next, cell.n_state)):
        if a.ndim != 2 or a.shape != (x.shape[0], width):
            raise ValueError(f"check's {name} must have shape ({x.shape[0]}, {width}), got {tuple(a.shape)}")
    got, _ = cell.step(theta, s, x)
    got, want = to_numpy(got), to_numpy(s_next)
    if not np.allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(want).max(initial=0.0)))):
        err = float(np.max(np.abs(got - want)))
        raise ValueError(f"check: the converted {kind} does not reproduce the Keras step (max |diff| {err:.3e}); "
                         "the weights may be in another gate order or orientation, from a layer with other "
                         "activations, or (GRU) from reset_after=False")


def to_keras(cell, theta):
    """A Keras layer's weights {'kernel', 'recurrent_kernel', 'bias'} computing refnet's cell θ.

    LSTM and SimpleRNN: ``bias = b_ih + b_hh``; GRU: ``bias = [b_ih; b_hh]`` (2, 3H), reset_after=True.
    Use as ``layer.set_weights([w['kernel'], w['recurrent_kernel'], w['bias']])``.

    Parameters
    ----------
    cell : LSTM, GRU or ElmanRNN
        The refnet cell (an IRNN is an Elman RNN: a SimpleRNN with 'relu').
    theta : dict
        The cell's params, PyTorch's names and layout.

    Returns
    -------
    dict
        ``kernel`` (I, G·H), ``recurrent_kernel`` (H, G·H) with Keras' gate column order (GRU z|r|h),
        and ``bias`` (G·H,) or (2, 3H); NumPy arrays.

    Raises
    ------
    TypeError
        If ``cell`` is not a refnet LSTM, GRU or ElmanRNN, or ``theta`` is not a dict of floating arrays.
    ValueError
        Naming ``theta``, for missing or extra names, wrong shapes or NaN/Inf.
    """
    return _from_theta(cell, theta, lambda b_i, b_h: b_i + b_h)


def grads_to_keras(cell, dtheta):
    """refnet's gradient as the gradient w.r.t. the Keras weights (merged bias: ∂L/∂b = ∂L/∂b_ih).

    Parameters
    ----------
    cell : LSTM, GRU or ElmanRNN
        The refnet cell (an IRNN is an Elman RNN: a SimpleRNN with 'relu').
    dtheta : dict
        ∂L/∂θ in the cell's names and shapes.

    Returns
    -------
    dict
        ∂L/∂kernel, ∂L/∂recurrent_kernel, ∂L/∂bias in Keras' layout (:func:`to_keras`).

    Raises
    ------
    TypeError
        If ``cell`` is not a refnet LSTM, GRU or ElmanRNN, or ``dtheta`` is not a dict of floating arrays.
    ValueError
        For missing or extra names, wrong shapes or NaN/Inf (the message calls ``dtheta`` "theta").
    """
    return _from_theta(cell, dtheta, lambda db_i, db_h: db_i)


def grads_from_keras(kind, dweights, *, reset_after=True, dtype=None):
    """The gradient w.r.t. refnet's θ from one w.r.t. the Keras weights: ∂L/∂b_ih = ∂L/∂b_hh = ∂L/∂b.

    For a GRU (reset_after=True) the two bias rows are the two biases' gradients as they are.

    Parameters
    ----------
    kind : {'LSTM', 'GRU', 'SimpleRNN'}
        The Keras layer the gradient is of.
    dweights : dict or list
        ∂L/∂{kernel (I, G·H), recurrent_kernel (H, G·H), bias}, as ``weights`` of :func:`from_keras`.
    reset_after : bool
        Must be True for a GRU.
    dtype : str, numpy.dtype or None
        'float64' or 'float32' (None: ``REFNET_DTYPE``).

    Returns
    -------
    dict
        ∂L/∂θ in refnet's names (``weight_ih`` (G·H, I), ``weight_hh`` (G·H, H), ``bias_ih``,
        ``bias_hh`` (G·H,)), on the active backend.

    Raises
    ------
    ValueError
        For an unknown kind, reset_after=False, missing or extra keys, shapes that do not fit the kind,
        an unknown ``dtype``, or NaN/Inf in an array (``dweights['kernel']`` etc., named with the
        first bad index) or in one cast to ``dtype`` (a float64 beyond float32's range).
    TypeError
        For ``dweights`` neither a dict nor a list, or a non-floating array.
    """
    dtype = check_dtype("dtype", dtype)
    _check_kind(kind, reset_after)
    w = _weights_dict(dweights, kind)
    for key, a in w.items():          # a NaN gradient would pass through the reordering unnoticed
        check_finite(f"dweights[{key!r}]", a)
    theta, _, _ = _to_theta(kind, w, True)
    out = {k: asarray(v, dtype) for k, v in theta.items()}
    found = first_nonfinite(list(out.values()))
    if found is not None:
        k, index, value = found
        raise ValueError(f"dweights must be finite in {out[list(out)[k]].dtype}: its part that becomes "
                         f"{list(out)[k]!r} overflows to {value} at index {index} in the cast")
    return out


def _kind_of(cell):
    if isinstance(cell, LSTM):
        return "LSTM"
    if isinstance(cell, GRU):
        return "GRU"
    if isinstance(cell, ElmanRNN):
        return "SimpleRNN"
    raise TypeError(f"cell must be a refnet LSTM, GRU or ElmanRNN, got {type(cell).__name__}")


def _from_theta(cell, theta, merge):
    kind = _kind_of(cell)
    cell.check_params(theta, "theta")
    H, order = cell.hidden_size, _ORDER[kind]
    p = {k: to_numpy(v) for k, v in theta.items()}
    out = {"kernel": _rows_to_cols(p["weight_ih"], H, order), "recurrent_kernel": _rows_to_cols(p["weight_hh"], H, order)}
    if kind == "GRU":
        out["bias"] = np.stack([_unreorder(p["bias_ih"], H, order), _unreorder(p["bias_hh"], H, order)])
    else:
        out["bias"] = _unreorder(merge(p["bias_ih"], p["bias_hh"]), H, order)
    return out


def _unreorder(b, H, order):
    blocks = [None] * len(order)
    for k, j in enumerate(order):
        blocks[j] = b[k * H:(k + 1) * H]
    return np.concatenate(blocks)
