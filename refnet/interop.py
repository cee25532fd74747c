"""Weight exchange with PyTorch and JAX/Flax: their parameter layouts <-> refnet params.

refnet's params already use PyTorch's names and gate orders (nn.RNN, nn.LSTM
i|f|g|o, nn.GRU r|z|n), so the PyTorch exchange is a renaming plus the layer
suffix ``_l{k}``.  A multi-layer module becomes a :class:`Layers`: one cell
and one params dict per layer (run it with
:mod:`refnet.algorithms.stacked`).

Layouts
-------
PyTorch state_dict (``to_torch`` / ``from_torch``), for every layer k::

    weight_ih_l{k} (G·H, I_k)   weight_hh_l{k} (G·H, H)   bias_ih_l{k} (G·H,)   bias_hh_l{k} (G·H,)

G = 1 (nn.RNN), 3 (nn.GRU, r|z|n), 4 (nn.LSTM, i|f|g|o); I_0 = input_size,
I_k = H above.  ``bias=False`` modules have no bias keys: they are read as
zero biases (the same function).  Initial states ``h0``, ``c0`` are
(num_layers, B, H); refnet's are one (B, n_state) per layer, ``[h, c]`` for
the LSTM (:func:`state_from_torch`, :func:`state_to_torch`).  Inputs are
(T, B, I), PyTorch's ``batch_first=False``.

Per-gate plain dict (``to_gate_dict`` / ``from_gate_dict``), the names of
PyTorch's documentation, for JAX users who write the equations gate by gate::

    LSTM: W_ii W_if W_ig W_io (H, I), W_hi W_hf W_hg W_ho (H, H), b_ii … b_io, b_hi … b_ho (H,)
    GRU:  W_ir W_iz W_in, W_hr W_hz W_hn, b_ir b_iz b_in, b_hr b_hz b_hn
    RNN:  W_ih (H, I), W_hh (H, H), b_ih, b_hh (H,)

with ``a = x @ W.T + b`` per gate.  The arrays are NumPy; ``jnp.asarray``
takes them as they are.

Flax linen (``to_flax`` / ``from_flax``): the ``params`` collection of
``flax.linen.LSTMCell`` (and ``OptimizedLSTMCell``, same tree), ``GRUCell``
and ``SimpleCell``, where Dense computes ``x @ kernel + bias`` (kernel = Wᵀ).
The functions are exactly the same, but Flax keeps one bias where PyTorch
keeps two, so the exchange is exact for the cell's function and lossy for the
split of a bias between ``bias_ih`` and ``bias_hh``:

=============  ==================================  =========================================
Flax cell      Flax bias                           PyTorch biases it stands for
=============  ==================================  =========================================
LSTMCell       hi, hf, hg, ho: ``bias``            b_i? + b_h? (input Dense has no bias)
GRUCell        ir, iz: ``bias``                    b_ir + b_hr, b_iz + b_hz (hr, hz have none)
GRUCell        in: ``bias``; hn: ``bias``          b_in; b_hn (inside r ⊙ (W_hn h + b_hn): kept apart)
SimpleCell     i: ``bias``                         b_ih + b_hh (h has none)
=============  ==================================  =========================================

``from_flax`` therefore puts a merged bias on one side and zero on the other
(LSTM: on ``bias_hh``; GRU r, z and SimpleCell: on ``bias_ih``).  Gradients
are not parameters: use :func:`grads_to_flax` / :func:`grads_from_flax`,
which map ∂L/∂(merged bias) to and from ∂L/∂b_ih = ∂L/∂b_hh instead of
summing the two.  Flax's LSTM carry is ``(c, h)``, refnet's state ``[h, c]``
(:func:`carry_to_flax`, :func:`carry_from_flax`).  Flax's ``SimpleCell`` with
``residual=True`` and cells with other ``gate_fn``/``activation_fn`` than the
defaults (tanh or ReLU for SimpleCell) have no refnet counterpart.

torch and jax are optional: nothing here imports them, except
``to_torch(..., tensors=True)``, which imports torch when called.
"""
import re
from dataclasses import dataclass

import numpy as np

from ._validate import check_array, check_dtype, tensor_to_numpy
from .backend import asarray, to_numpy, xp_of
from .cells.elman import ElmanRNN
from .cells.gru import GRU
from .cells.lstm import LSTM

__all__ = ["Layers", "gate_names", "from_torch", "to_torch", "state_from_torch", "state_to_torch",
           "to_gate_dict", "from_gate_dict", "to_flax", "from_flax", "grads_to_flax",
           "grads_from_flax", "carry_to_flax", "carry_from_flax"]

_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_TORCH_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")
_TORCH_MODES = {"RNN_TANH": (1, "tanh"), "RNN_RELU": (1, "relu"), "GRU": (3, None), "LSTM": (4, None)}


@dataclass(frozen=True)
class Layers:
    """A stack of cells: ``cells[k]`` runs with ``params[k]`` and reads the outputs of layer k − 1.

    ``len(layers)`` is the number of layers; run it with :mod:`refnet.algorithms.stacked`.

    Attributes
    ----------
    cells : tuple
        One refnet cell per layer; layer 0 reads x (T, B, input_size), layer k > 0 layer k − 1's h.
    params : tuple
        One params dict per layer, PyTorch's names (``weight_ih`` (G·H, I_k), ``weight_hh`` (G·H, H),
        ``bias_ih``, ``bias_hh`` (G·H,)).
    """

    cells: tuple
    params: tuple

    def __len__(self):
        return len(self.cells)


def gate_names(cell):
    """The gates stacked in the rows of ``weight_ih``/``weight_hh``, in PyTorch's order.

    ('i', 'f', 'g', 'o') for an LSTM, ('r', 'z', 'n') for a GRU and ('h',)
    for an Elman RNN (one block: PyTorch's W_ih, W_hh).

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).

    Returns
    -------
    tuple of str
        The gate letters, block k = rows k·H .. (k + 1)·H − 1.

    Raises
    ------
    TypeError
        If ``cell`` is not a refnet ElmanRNN, IRNN, LSTM or GRU.
    """
    if isinstance(cell, LSTM):
        return ("i", "f", "g", "o")
    if isinstance(cell, GRU):
        return ("r", "z", "n")
    if isinstance(cell, ElmanRNN):
        return ("h",)
    raise TypeError(f"cell must be a refnet ElmanRNN, IRNN, LSTM or GRU, got {type(cell).__name__}")


def _as_numpy(value, name):
    """A NumPy view of a torch tensor, CuPy or NumPy array (tensors are detached, moved to the CPU).

    Raises TypeError for anything else or a non-floating array, ValueError for NaN/Inf.
    """
    if hasattr(value, "detach"):        # torch.Tensor, without importing torch
        value = tensor_to_numpy(name, value)
    if not hasattr(value, "shape"):
        raise TypeError(f"{name} must be an array or tensor, got {type(value).__name__}")
    value = to_numpy(value)
    check_array(name, value)
    return value


def _check_cell(cell):
    gate_names(cell)     # TypeError naming the type unless an Elman RNN, LSTM or GRU
    return cell


def _cell_for(gates, input_size, hidden_size, nonlinearity):
    if gates == 4:
        return LSTM(input_size, hidden_size)
    if gates == 3:
        return GRU(input_size, hidden_size)
    return ElmanRNN(input_size, hidden_size, nonlinearity)


def from_torch(source, *, nonlinearity=None, dtype=None):
    """refnet :class:`Layers` from an nn.RNN/nn.LSTM/nn.GRU module or its state_dict.

    The cell kind follows from the gate count G = rows(weight_hh) / H.
    Bidirectional modules (``_reverse`` keys) and LSTM projections
    (``weight_hr``) have no refnet counterpart and are refused.  Dropout
    between layers is a training policy: compare with ``dropout=0`` or in
    ``eval()`` mode.

    Parameters
    ----------
    source : torch.nn.RNN, LSTM or GRU, or mapping
        A module, or ``{name: tensor or array}`` with keys ``weight_ih_l{k}`` (G·H, I_k),
        ``weight_hh_l{k}`` (G·H, H) and (unless the module has ``bias=False``) ``bias_ih_l{k}``,
        ``bias_hh_l{k}`` (G·H,), k = 0..L−1.
    nonlinearity : {'tanh', 'relu'} or None
        For an nn.RNN given as a state_dict, which does not record it (None: 'tanh').  A module
        says it itself.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', the refnet arrays' dtype on the active backend (None: ``REFNET_DTYPE``).

    Returns
    -------
    Layers
        One cell (LSTM for G = 4, GRU for G = 3, ElmanRNN for G = 1) and params dict per layer.

    Raises
    ------
    TypeError
        If ``source`` is neither a module nor a mapping, or a value is not a floating array or a CPU
        tensor.
    ValueError
        If a module is bidirectional, has ``proj_size`` or ``batch_first=True`` or an unknown mode; a
        key has no refnet counterpart; layers are missing or not 0..L−1; a weight is missing, empty,
        mis-shaped or NaN/Inf; only one of a layer's biases is given; the gate count is not 1, 3 or 4
        (or not the module's); layer k's input width is not layer k − 1's H; ``nonlinearity`` is
        not 'tanh'/'relu' or contradicts the module; ``dtype`` is not float64/float32.
    """
    dtype = check_dtype("dtype", dtype)
    mode_gates = None
    if hasattr(source, "mode") and hasattr(source, "state_dict"):
        if source.mode not in _TORCH_MODES:
            raise ValueError(f"source must be an nn.RNN, nn.LSTM or nn.GRU, got mode {source.mode!r}")
        if getattr(source, "bidirectional", False):
            raise ValueError("source must not be bidirectional: refnet has no reverse-direction layers")
        if getattr(source, "proj_size", 0):
            raise ValueError(f"source must have proj_size=0 (no LSTM projection), got {source.proj_size}")
        if getattr(source, "batch_first", False):
            raise ValueError("source must have batch_first=False: refnet's inputs are (T, B, I); "
                             "the weights are the same, so build the module with batch_first=False")
        mode_gates, module_nonlinearity = _TORCH_MODES[source.mode]
        if nonlinearity is not None and module_nonlinearity not in (None, nonlinearity):
            raise ValueError(f"nonlinearity={nonlinearity!r} contradicts the module's {source.mode}")
        nonlinearity = module_nonlinearity
        source = source.state_dict()
    if not hasattr(source, "items"):
        raise TypeError(f"source must be an nn.RNN/LSTM/GRU or a state_dict, got {type(source).__name__}")
    nonlinearity = "tanh" if nonlinearity is None else nonlinearity
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")

    by_layer, unknown = {}, []
    for key, value in source.items():
        match = _TORCH_KEY.match(key)
        if match is None:
            unknown.append(key)
            continue
        by_layer.setdefault(int(match.group(2)), {})[match.group(1)] = _as_numpy(value, f"source[{key!r}]")
    if unknown:
        raise ValueError(f"source has keys with no refnet counterpart: {sorted(unknown)} "
                         "(expected weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k})")
    if not by_layer or sorted(by_layer) != list(range(len(by_layer))):
        raise ValueError(f"source must hold layers 0..L-1, got layers {sorted(by_layer)}")

    cells, params = [], []
    for k in range(len(by_layer)):
        layer = by_layer[k]
        for name in ("weight_ih", "weight_hh"):
            if name not in layer:
                raise ValueError(f"source is missing {name}_l{k}")
        W_ih, W_hh = layer["weight_ih"], layer["weight_hh"]
        if W_hh.ndim == 2 and W_ih.ndim == 2 and 0 in W_hh.shape + W_ih.shape:
            raise ValueError(f"weight_hh_l{k} and weight_ih_l{k} must be non-empty (hidden and input size >= 1), "
                             f"got shapes {W_hh.shape} and {W_ih.shape}")
        if W_hh.ndim != 2 or W_ih.ndim != 2 or W_hh.shape[0] % W_hh.shape[1]:
            raise ValueError(f"weight_hh_l{k} must have shape (G*H, H) and weight_ih_l{k} (G*H, I), "
                             f"got {W_hh.shape} and {W_ih.shape}")
        H = W_hh.shape[1]
        gates = W_hh.shape[0] // H
        if gates not in (1, 3, 4) or (mode_gates is not None and gates != mode_gates):
            raise ValueError(f"weight_hh_l{k} has {gates} gate blocks of {H} rows; expected "
                             f"{mode_gates or '1 (RNN), 3 (GRU) or 4 (LSTM)'}")
        if ("bias_ih" in layer) != ("bias_hh" in layer):
            raise ValueError(f"source must have both bias_ih_l{k} and bias_hh_l{k} or neither")
        zero = np.zeros(gates * H, dtype=W_hh.dtype)
        theta = {"weight_ih": W_ih, "weight_hh": W_hh,
                 "bias_ih": layer.get("bias_ih", zero), "bias_hh": layer.get("bias_hh", zero)}
        cell = _cell_for(gates, W_ih.shape[1], H, nonlinearity)
        if k > 0 and cell.input_size != cells[-1].n_out:
            raise ValueError(f"weight_ih_l{k} must have {cells[-1].n_out} columns (layer {k - 1}'s "
                             f"hidden size), got {cell.input_size}")
        theta = {name: asarray(v, dtype) for name, v in theta.items()}
        cells.append(cell)
        params.append(cell.check_params(theta, f"source layer {k}"))
    return Layers(tuple(cells), tuple(params))


def _layer_list(params):
    if isinstance(params, Layers):
        return list(params.params)
    if isinstance(params, dict):
        return [params]
    if isinstance(params, (list, tuple)) and params and all(isinstance(p, dict) for p in params):
        return list(params)
    raise TypeError(f"params must be a params dict, a non-empty list of them or a Layers, got "
                    f"{type(params).__name__} {params!r:.60}")


def to_torch(params, *, tensors=True):
    """A PyTorch state_dict ``{weight_ih_l0: …}`` from refnet params.

    With ``tensors=True`` (for ``module.load_state_dict``, which wants tensors) the values are CPU
    torch tensors of the arrays' dtype and torch is imported now; with ``tensors=False`` they are
    NumPy arrays.

    Parameters
    ----------
    params : dict, sequence of dict, or Layers
        One params dict (one layer), a non-empty sequence of them (layer k = entry k) or a
        :class:`Layers`; each with exactly ``weight_ih`` (G·H, I_k), ``weight_hh`` (G·H, H),
        ``bias_ih``, ``bias_hh`` (G·H,).
    tensors : bool
        True for torch tensors, False for NumPy arrays.

    Returns
    -------
    dict
        ``{'weight_ih_l{k}': …, 'weight_hh_l{k}': …, 'bias_ih_l{k}': …, 'bias_hh_l{k}': …}``,
        contiguous copies.

    Raises
    ------
    TypeError
        If ``params`` is none of the three forms, or a value is not a floating array.
    ValueError
        If a layer's dict does not have exactly the four keys, or a value holds NaN/Inf.
    ImportError
        If ``tensors=True`` and torch is not installed.
    """
    out = {}
    for k, theta in enumerate(_layer_list(params)):
        missing = [name for name in _PARAMS if name not in theta]
        if missing or len(theta) != len(_PARAMS):
            raise ValueError(f"params of layer {k} must have exactly the keys {list(_PARAMS)}, "
                             f"got {sorted(theta)}")
        for name in _PARAMS:
            out[f"{name}_l{k}"] = np.ascontiguousarray(_as_numpy(theta[name], f"params of layer {k}[{name!r}]"))
    if tensors:
        import torch
        out = {key: torch.from_numpy(value.copy()) for key, value in out.items()}
    return out


def state_from_torch(h0, c0=None, *, dtype=None):
    """Per-layer refnet states (B, n_state) from PyTorch's ``h0`` (L, B, H) and, for an LSTM, ``c0``.

    Parameters
    ----------
    h0 : (num_layers, B, H) array or tensor
        PyTorch's initial hidden state, every size >= 1.
    c0 : (num_layers, B, H) array or tensor, or None
        The LSTM's initial cell state; None for the other cells.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', the refnet arrays' dtype on the active backend (None: ``REFNET_DTYPE``).

    Returns
    -------
    list
        One (B, H) state per layer, or (B, 2H) = [h, c] when ``c0`` is given.

    Raises
    ------
    TypeError
        If ``h0`` or ``c0`` is not an array or tensor, or not floating.
    ValueError
        If ``h0`` is not 3-D with every size >= 1, ``c0`` does not have ``h0``'s shape, a value is
        NaN/Inf, or ``dtype`` is not float64/float32.
    """
    dtype = check_dtype("dtype", dtype)
    h0 = _as_numpy(h0, "h0")
    if h0.ndim != 3 or 0 in h0.shape:
        raise ValueError(f"h0 must have shape (num_layers, B, H), each >= 1, got {h0.shape}")
    if c0 is None:
        return [asarray(h0[k], dtype) for k in range(h0.shape[0])]
    c0 = _as_numpy(c0, "c0")
    if c0.shape != h0.shape:
        raise ValueError(f"c0 must have the shape of h0 {h0.shape}, got {c0.shape}")
    return [asarray(np.concatenate([h0[k], c0[k]], axis=1), dtype) for k in range(h0.shape[0])]


def state_to_torch(cells, states):
    """PyTorch's ``h`` (L, B, H) — and ``(h, c)`` for LSTMs — as NumPy arrays, from per-layer states.

    Parameters
    ----------
    cells : list, tuple or Layers
        One refnet ElmanRNN, IRNN, LSTM or GRU per layer (or the :class:`Layers`).
    states : list or tuple
        One state (B, n_state) per layer ([h, c] for the LSTM).

    Returns
    -------
    numpy.ndarray or tuple
        ``h`` (num_layers, B, H); ``(h, c)`` when every layer is an LSTM.

    Raises
    ------
    TypeError
        If ``cells`` or ``states`` is not a list/tuple, a cell is not one of the four kinds, or a
        state is not a floating array.
    ValueError
        If the counts differ, or a state is not (B, n_state) or holds NaN/Inf.
    """
    cells = list(cells.cells) if isinstance(cells, Layers) else cells
    if not isinstance(cells, (list, tuple)) or not isinstance(states, (list, tuple)):
        raise TypeError(f"cells and states must be lists (or cells a Layers), got {type(cells).__name__} and "
                        f"{type(states).__name__}")
    cells = [_check_cell(cell) for cell in cells]
    if len(cells) != len(states):
        raise ValueError(f"states must hold one state per layer ({len(cells)}), got {len(states)}")
    for k, (cell, s) in enumerate(zip(cells, states)):
        check_array(f"states[{k}]", s, shape=(None, cell.n_state))
    h = np.stack([to_numpy(cell.output(s)) for cell, s in zip(cells, states)])
    if all(isinstance(cell, LSTM) for cell in cells):
        return h, np.stack([to_numpy(cell.split_state(s)[1]) for cell, s in zip(cells, states)])
    return h


def _blocks(cell, a):
    H = cell.hidden_size
    return [a[j * H:(j + 1) * H] for j in range(a.shape[0] // H)]


def to_gate_dict(cell, theta):
    """PyTorch-documentation names per gate (module docstring): ``{'W_ii': (H, I), …, 'b_ho': (H,)}``.

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    theta : dict
        The cell's params, PyTorch's stacked layout.

    Returns
    -------
    dict
        ``W_i<g>`` (H, I), ``W_h<g>`` (H, H), ``b_i<g>``, ``b_h<g>`` (H,) per gate g, NumPy views.

    Raises
    ------
    TypeError
        If ``cell`` is not a refnet ElmanRNN, IRNN, LSTM or GRU, or ``theta`` is not a dict of
        floating arrays.
    ValueError
        Naming ``theta``, for missing or extra names, wrong shapes or NaN/Inf.
    """
    _check_cell(cell)
    cell.check_params(theta, "theta")
    out = {}
    for name, side in (("weight_ih", "i"), ("weight_hh", "h"), ("bias_ih", "i"), ("bias_hh", "h")):
        letter = "W" if name.startswith("weight") else "b"
        for gate, block in zip(gate_names(cell), _blocks(cell, to_numpy(theta[name]))):
            out[f"{letter}_{side}{gate}"] = block
    return out


def from_gate_dict(cell, gates, *, dtype=None):
    """The inverse of :func:`to_gate_dict`: refnet params with PyTorch's stacked layout.

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    gates : dict
        Exactly the per-gate keys of :func:`to_gate_dict` for this cell: ``W_i<g>`` (H, I),
        ``W_h<g>`` (H, H), ``b_i<g>``, ``b_h<g>`` (H,); arrays or tensors.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', the refnet arrays' dtype on the active backend (None: ``REFNET_DTYPE``).

    Returns
    -------
    dict
        The cell's params, gate blocks stacked in rows in PyTorch's order.

    Raises
    ------
    TypeError
        If ``cell`` is not one of the four kinds, ``gates`` is not a dict, or a value is not a
        floating array or tensor.
    ValueError
        For other keys, wrong shapes, NaN/Inf, or a ``dtype`` other than float64/float32.
    """
    dtype = check_dtype("dtype", dtype)
    names = gate_names(cell)
    if not isinstance(gates, dict):
        raise TypeError(f"gates must be a dict {{'W_i…': array, …}}, got {type(gates).__name__}")
    expected = [f"{letter}_{side}{g}" for letter in "Wb" for side in "ih" for g in names]
    if sorted(gates) != sorted(expected):
        raise ValueError(f"gates must have exactly the keys {sorted(expected)}, got {sorted(gates)}")
    theta = {}
    for name, side in (("weight_ih", "i"), ("weight_hh", "h"), ("bias_ih", "i"), ("bias_hh", "h")):
        letter = "W" if name.startswith("weight") else "b"
        keys = [f"{letter}_{side}{g}" for g in names]
        theta[name] = asarray(np.concatenate([_as_numpy(gates[k], f"gates[{k!r}]") for k in keys], axis=0), dtype)
    return cell.check_params(theta, "gates")


def _flax_leaves(cell):
    """The leaves (module, name) of Flax's params tree for ``cell``."""
    if isinstance(cell, LSTM):
        return [(f"i{g}", "kernel") for g in "ifgo"] + [(f"h{g}", n) for g in "ifgo" for n in ("kernel", "bias")]
    if isinstance(cell, GRU):
        return ([(f"i{g}", n) for g in "rzn" for n in ("kernel", "bias")]
                + [(f"h{g}", "kernel") for g in "rzn"] + [("hn", "bias")])
    if isinstance(cell, ElmanRNN):
        return [("i", "kernel"), ("i", "bias"), ("h", "kernel")]
    raise TypeError(f"cell must be a refnet ElmanRNN, IRNN, LSTM or GRU, got {type(cell).__name__}")


def _flax_tree(cell, theta, merge):
    """The Flax tree of ``theta``; ``merge(b_i, b_h)`` is what Flax keeps of a bias pair."""
    p = to_gate_dict(cell, theta)
    tree = {module: {} for module, _ in _flax_leaves(cell)}
    for module, name in _flax_leaves(cell):
        side, gate = module[0], module[1:] or "h"     # SimpleCell's modules are 'i' and 'h'
        if name == "kernel":
            tree[module][name] = p[f"W_{side}{gate}"].T     # Dense: x @ kernel, kernel = Wᵀ
        elif module in ("in", "hn"):
            tree[module][name] = p[f"b_{side}{gate}"]       # the GRU candidate keeps both biases
        else:
            tree[module][name] = merge(p[f"b_i{gate}"], p[f"b_h{gate}"])
    return tree


def to_flax(cell, theta):
    """The ``params`` tree of Flax's LSTMCell / GRUCell / SimpleCell computing the same function.

    Use as ``flax_cell.apply({'params': to_flax(cell, theta)}, carry, x)``.
    Merged biases are ``b_ih + b_hh`` (module docstring).

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    theta : dict
        The cell's params, PyTorch's stacked layout.

    Returns
    -------
    dict
        ``{module: {'kernel': (in, H), 'bias': (H,)}}``, Flax's modules (``ii`` … ``ho``; ``ir`` …
        ``hn``; ``i``, ``h``), kernel = Wᵀ, NumPy arrays.

    Raises
    ------
    TypeError
        If ``cell`` is not one of the four kinds, or ``theta`` is not a dict of floating arrays.
    ValueError
        Naming ``theta``, for missing or extra names, wrong shapes or NaN/Inf.
    """
    return _flax_tree(cell, theta, lambda b_i, b_h: b_i + b_h)


def grads_to_flax(cell, dtheta):
    """refnet's gradient as the gradient with respect to Flax's ``params`` tree.

    A merged Flax bias b = b_ih + b_hh has ∂L/∂b = ∂L/∂b_hh (= ∂L/∂b_ih), not their sum.

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    dtheta : dict
        ∂L/∂θ in the cell's names and shapes.

    Returns
    -------
    dict
        ∂L/∂(Flax's tree), the tree of :func:`to_flax`.

    Raises
    ------
    TypeError
        If ``cell`` is not one of the four kinds, or ``dtheta`` is not a dict of floating arrays.
    ValueError
        For missing or extra names, wrong shapes or NaN/Inf (the message calls ``dtheta`` "theta").
    """
    return _flax_tree(cell, dtheta, lambda db_i, db_h: db_h)


def _from_flax_tree(cell, tree, both_sides, dtype):
    """refnet params from a Flax tree.  A merged bias goes to the side Flax keeps it on
    (LSTM: hidden; GRU r, z and SimpleCell: input) and, if ``both_sides``, to the other too."""
    leaves = {}
    for module, name in _flax_leaves(cell):
        try:
            leaf = tree[module][name]
        except (KeyError, TypeError, IndexError):
            raise ValueError(f"tree must be the params tree of Flax's counterpart of {type(cell).__name__} "
                             f"with leaves {['/'.join(leaf) for leaf in _flax_leaves(cell)]}; "
                             f"{module}/{name} is missing") from None
        leaves[module, name] = _as_numpy(leaf, f"tree[{module!r}][{name!r}]")
    p = {}
    for (module, name), value in leaves.items():
        side, gate = module[0], module[1:] or "h"
        if name == "kernel":
            p[f"W_{side}{gate}"] = value.T
        elif module in ("in", "hn"):
            p[f"b_{side}{gate}"] = value
        else:
            other = "h" if side == "i" else "i"
            p[f"b_{side}{gate}"] = value
            p[f"b_{other}{gate}"] = value if both_sides else np.zeros_like(value)
    return from_gate_dict(cell, p, dtype=dtype)


def from_flax(cell, tree, *, dtype=None):
    """refnet params from Flax's ``params`` tree (the inverse of :func:`to_flax` up to the bias split).

    A merged bias goes to ``bias_hh`` for the LSTM and to ``bias_ih`` for the
    GRU's r, z and for SimpleCell; the other side is zero.

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    tree : dict
        Flax's ``params`` collection of the counterpart cell: ``{module: {'kernel': (in, H),
        'bias': (H,)}}``; arrays (NumPy, JAX) or tensors.
    dtype : str, numpy.dtype or None
        'float64' or 'float32', the refnet arrays' dtype on the active backend (None: ``REFNET_DTYPE``).

    Returns
    -------
    dict
        The cell's params, PyTorch's stacked layout.

    Raises
    ------
    TypeError
        If ``cell`` is not one of the four kinds, or a leaf is not a floating array.
    ValueError
        If a leaf is missing (names it), has the wrong shape or NaN/Inf, or ``dtype`` is not
        float64/float32.
    """
    return _from_flax_tree(cell, tree, False, check_dtype("dtype", dtype))


def grads_from_flax(cell, dtree, *, dtype=None):
    """refnet's gradient from a gradient with respect to Flax's tree: ∂L/∂b_ih = ∂L/∂b_hh = ∂L/∂b.

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    dtree : dict
        ∂L/∂(Flax's tree), the tree's structure (:func:`to_flax`).
    dtype : str, numpy.dtype or None
        'float64' or 'float32', the refnet arrays' dtype on the active backend (None: ``REFNET_DTYPE``).

    Returns
    -------
    dict
        ∂L/∂θ in the cell's names; a merged bias's gradient on both sides.

    Raises
    ------
    TypeError
        If ``cell`` is not one of the four kinds, or a leaf is not a floating array.
    ValueError
        If a leaf is missing (names it), has the wrong shape or NaN/Inf, or ``dtype`` is not
        float64/float32.
    """
    return _from_flax_tree(cell, dtree, True, check_dtype("dtype", dtype))


def carry_to_flax(cell, s):
    """Flax's carry for refnet state ``s`` (B, n_state): ``(c, h)`` for an LSTM, ``h`` otherwise.

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    s : (B, n_state) array
        The refnet state ([h, c] for the LSTM).

    Returns
    -------
    array or tuple
        ``(c, h)``, each (B, H), for an LSTM (views of ``s``); ``s`` itself otherwise.

    Raises
    ------
    TypeError
        If ``cell`` is not one of the four kinds, or ``s`` is not a floating array.
    ValueError
        If ``s`` is not (B, n_state) or holds NaN/Inf.
    """
    _check_cell(cell)
    check_array("s", s, shape=(None, cell.n_state))
    if isinstance(cell, LSTM):
        h, c = cell.split_state(s)
        return c, h
    return s


def carry_from_flax(cell, carry):
    """refnet's state (B, n_state) from Flax's carry (the inverse of :func:`carry_to_flax`).

    Parameters
    ----------
    cell : ElmanRNN, IRNN, LSTM or GRU
        The refnet cell (PyTorch's layout: G = 1, 3 or 4 gate blocks of H rows).
    carry : array or (c, h)
        Flax's carry: ``(c, h)``, each (B, H), for an LSTM; h (B, H) otherwise.

    Returns
    -------
    (B, n_state) array
        [h, c] for an LSTM (a new array); ``carry`` itself otherwise.

    Raises
    ------
    TypeError
        If ``cell`` is not one of the four kinds, an LSTM's carry is not a pair, or an array is not
        a floating array.
    ValueError
        If an array has the wrong shape or holds NaN/Inf.
    """
    _check_cell(cell)
    if isinstance(cell, LSTM):
        if not isinstance(carry, (tuple, list)) or len(carry) != 2:
            raise TypeError(f"carry must be Flax's LSTM carry (c, h), got {type(carry).__name__}")
        c, h = carry
        check_array("carry[0] (c)", c, shape=(None, cell.hidden_size))
        check_array("carry[1] (h)", h, shape=(c.shape[0], cell.hidden_size))
        return xp_of(h, c).concatenate([h, c], axis=1)
    check_array("carry", carry, shape=(None, cell.n_state))
    return carry
