"""Stacked (multi-layer) recurrent networks: layer l reads the outputs of layer l − 1.

    s^l_t = f_l(θ_l, s^l_{t−1}, output(s^{l−1}_t)),   output(s^0_t) ≡ x_t,   l = 1..L

which is PyTorch's ``nn.RNN/LSTM/GRU(num_layers=L)`` without dropout between
layers.  The network's output is the top layer's; every layer has its own
initial and final state.  Back-propagation goes layer by layer from the top:
the cotangent of layer l's outputs is the ``dx`` that layer l + 1's sequence
VJP returns (Werbos 1990, applied to the layered graph).  Lists are indexed by
layer, 0 at the bottom (PyTorch's ``_l0``).
"""
from dataclasses import dataclass
from typing import Any

from ..backend import xp_of
from .._validate import as_array, check_array, check_same_dtype
from . import fused
from .bptt import _forward, _sequence_vjp
from .checks import check_cell, check_run
from .trainable import check_trainable, restrict

__all__ = ["StackedVJP", "stacked_forward", "stacked_sequence_vjp"]


@dataclass(frozen=True)
class StackedVJP:
    """The top layer's outputs, every layer's final state, and the pulled-back cotangents (:func:`stacked_sequence_vjp`).

    Lists are indexed by layer, 0 at the bottom.

    Attributes
    ----------
    outputs : (T, B, n_out) array
        output(s^L_t) of the top layer for t = 1..T.
    s_T : list of L arrays (B, n_state_l)
        Every layer's final state.
    dtheta : list of L dicts {name: array}
        Every layer's parameter cotangent (its trainable parameters only).
    dx : (T, B, I) array
        The cotangent on the bottom layer's inputs.
    ds0 : list of L arrays (B, n_state_l)
        The cotangent on every layer's initial state.
    """

    outputs: Any     # (T, B, n_out of the top layer)
    s_T: list        # per layer, (B, n_state)
    dtheta: list     # per layer, a params dict
    dx: Any          # (T, B, I)
    ds0: list        # per layer, (B, n_state)


def _as_list(name, value, what):
    """``value`` as a list (one entry per layer); TypeError naming ``name`` for a non-sequence."""
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"{name} must be a list with {what} per layer, got {type(value).__name__}")


def _check_stack(cells, thetas, x, s0s):
    """Validate the stack once; returns ``(cells, thetas, x, s0s)``, s0s a list (zeros where None)."""
    cells, thetas = _as_list("cells", cells, "one cell"), _as_list("thetas", thetas, "one params dict")
    if not cells or len(thetas) != len(cells):
        raise ValueError(f"cells and thetas must be non-empty and of one length, got {len(cells)} cells "
                         f"and {len(thetas)} params dicts")
    for l, cell in enumerate(cells):
        check_cell(cell, f"cells[{l}]")
    for l in range(1, len(cells)):
        if cells[l].input_size != cells[l - 1].n_out:
            raise ValueError(f"cells[{l}].input_size must be {cells[l - 1].n_out} (the output width of "
                             f"cells[{l - 1}]), got {cells[l].input_size}")
    for l, (cell, theta) in enumerate(zip(cells, thetas)):
        cell.check_params(theta, f"thetas[{l}]")
    x = as_array("x", x)
    check_array("x", x, shape=(None, None, cells[0].input_size))
    T, B = x.shape[:2]
    if T < 1 or B < 1:
        raise ValueError(f"x must hold at least one step and one sequence (T >= 1, B >= 1), got shape "
                         f"{tuple(x.shape)}")
    s0s = [None] * len(cells) if s0s is None else _as_list("s0s", s0s, "one initial state (or None)")
    if len(s0s) != len(cells):
        raise ValueError(f"s0s must hold one initial state per layer ({len(cells)}), got {len(s0s)}")
    for l, cell in enumerate(cells):
        if s0s[l] is None:
            s0s[l] = xp_of(x).zeros((B, cell.n_state), dtype=x.dtype)
        s0s[l] = as_array(f"s0s[{l}]", s0s[l])
        check_array(f"s0s[{l}]", s0s[l], shape=(B, cell.n_state))
    check_same_dtype({"x": x, **{f"s0s[{l}]": s0 for l, s0 in enumerate(s0s)},
                      **{f"thetas[{l}]": next(iter(th.values())) for l, th in enumerate(thetas)}})
    return cells, thetas, x, s0s


def stacked_forward(cells, thetas, x, s0s=None):
    """Run the stack over x, s^l_t = f_l(θ_l, s^l_{t−1}, output(s^{l−1}_t)); returns each layer's trajectory.

    Parameters
    ----------
    cells : list of refnet.cells.Cell
        The L layers, bottom first, with ``cells[l].input_size == cells[l − 1].n_out``.
    thetas : list of dict {name: array}
        Their L parameter dicts.
    x : (T, B, I) array-like
        Inputs of layer 0, T >= 1, B >= 1.
    s0s : list of L (B, n_state_l) array-likes or None
        Every layer's initial state (a None entry for zeros), or None for all zeros.

    Returns
    -------
    list of Trajectory
        One :class:`~refnet.algorithms.bptt.Trajectory` per layer, bottom layer first.

    Raises
    ------
    TypeError
        ``cells``/``thetas``/``s0s`` not lists or tuples; an entry that is not a cell; a
        ``thetas[l]`` that is not a dict of floating arrays; an array argument that is not one;
        mixed dtypes or backends.
    ValueError
        No layer, mismatched lengths, a layer whose ``input_size`` is not the previous layer's
        ``n_out``, a wrong shape, T = 0, B = 0, a missing or extra parameter, a NaN/Inf input.
    refnet.NumericalError
        A layer's forward pass overflowed: names the layer and the first non-finite s_t.
    """
    cells, thetas, x, s0s = _check_stack(cells, thetas, x, s0s)
    trajectories, inputs = [], x
    for l, (cell, theta, s0) in enumerate(zip(cells, thetas, s0s)):
        trajectory = _forward(cell, theta, inputs, s0, function=f"stacked_forward (layer {l})")
        trajectories.append(trajectory)
        inputs = _outputs(cell, trajectory.s)
    return trajectories


def _outputs(cell, s):
    """output(s_t) for t = 1..T stacked to (T, B, n_out)."""
    return xp_of(s[1]).stack([cell.output(s_t) for s_t in s[1:]])


def stacked_sequence_vjp(cells, thetas, x, s0s, dout, ds_T=None, *, trainable=None):
    """Sequence VJP of a stack: gradients of ⟨dout, outputs⟩ + Σ_l ⟨ds_T[l], s^l_T⟩.

    Back-propagation goes layer by layer from the top: the cotangent of layer l's
    outputs is the ``dx`` that layer l + 1's sequence VJP returns (Werbos 1990 on
    the layered graph).  PyTorch: ``torch.autograd.grad`` of a multi-layer
    module's ``(output, h_n)`` (and ``c_n``) with those grad_outputs.  Each lower
    layer runs forward twice (once to make the inputs of the layer above, once
    inside its own VJP).

    Parameters
    ----------
    cells : list of refnet.cells.Cell
        The L layers, bottom first, with ``cells[l].input_size == cells[l − 1].n_out``.
    thetas : list of dict {name: array}
        Their L parameter dicts.
    x : (T, B, I) array-like
        Inputs of layer 0, T >= 1, B >= 1.
    s0s : list of L (B, n_state_l) array-likes or None
        Every layer's initial state (a None entry for zeros), or None for all zeros.
    dout : (T, B, n_out) array-like
        The cotangent of the top layer's outputs (n_out of the top layer).
    ds_T : list of L (B, n_state_l) array-likes or None
        Cotangents of the final states (a None entry for zero), or None for all zero.
    trainable : list of L (collection of str or None), or None
        Per layer, the names of the parameters in that layer's ``dtheta`` (an entry None: all);
        None for all in every layer.  Cotangents still pass through every layer: ``dx`` and the
        layers below are unchanged.

    Returns
    -------
    StackedVJP
        ``outputs`` (T, B, n_out), per-layer ``s_T``, ``dtheta`` and ``ds0``, and ``dx`` (T, B, I).

    Raises
    ------
    TypeError
        As :func:`stacked_forward`; ``dout`` or ``ds_T[l]`` not an array; ``ds_T`` or
        ``trainable`` not a list or tuple; a ``trainable`` entry that is a str.
    ValueError
        As :func:`stacked_forward`; ``dout`` not (T, B, n_out) or ``ds_T[l]`` not (B, n_state_l);
        ``ds_T`` or ``trainable`` not one entry per layer; a ``trainable`` name a layer lacks.
    refnet.NumericalError
        A layer's forward or backward pass overflowed: names the layer's pass and the first
        non-finite state, adjoint or input cotangent.
    """
    cells, thetas, x, s0s = _check_stack(cells, thetas, x, s0s)
    T, B = x.shape[:2]
    dout = as_array("dout", dout)
    check_array("dout", dout, shape=(T, B, cells[-1].n_out))
    ds_T = [None] * len(cells) if ds_T is None else _as_list("ds_T", ds_T, "one cotangent (or None)")
    if len(ds_T) != len(cells):
        raise ValueError(f"ds_T must hold one cotangent per layer ({len(cells)}), got {len(ds_T)}")
    for l, cell in enumerate(cells):
        if ds_T[l] is not None:
            ds_T[l] = as_array(f"ds_T[{l}]", ds_T[l])
            check_array(f"ds_T[{l}]", ds_T[l], shape=(B, cell.n_state))
    check_same_dtype({"x": x, "dout": dout, **{f"ds_T[{l}]": d for l, d in enumerate(ds_T)}})
    trainable = [None] * len(cells) if trainable is None else _as_list("trainable", trainable,
                                                                        "one collection of names (or None)")
    if len(trainable) != len(cells):
        raise ValueError(f"trainable must hold one collection of names (or None) per layer ({len(cells)}), "
                         f"got {len(trainable)}")
    names = [check_trainable(cell, k) for cell, k in zip(cells, trainable)]
    inputs = [x]
    for l, (cell, theta, s0) in enumerate(zip(cells[:-1], thetas[:-1], s0s[:-1])):
        if fused.applies(cell):   # the layer's fused forward; the per-step forward is its reference
            inputs.append(fused.fused_outputs(cell, theta, inputs[-1], check_run(cell, theta, inputs[-1], s0),
                                              name=f"stacked_sequence_vjp (layer {l})"))
        else:
            inputs.append(_outputs(cell, _forward(cell, theta, inputs[-1], s0,
                                                  function=f"stacked_sequence_vjp (layer {l})").s))
    L = len(cells)
    dtheta, ds0, s_T = [None] * L, [None] * L, [None] * L
    outputs, d = None, dout
    for l in range(L - 1, -1, -1):
        ds_T_l = xp_of(x).zeros_like(s0s[l]) if ds_T[l] is None else ds_T[l]
        res = _sequence_vjp(cells[l], thetas[l], inputs[l], s0s[l], d, ds_T_l,
                            function=f"stacked_sequence_vjp (layer {l})")
        dtheta[l], ds0[l], s_T[l], d = restrict(res.dtheta, names[l]), res.ds0, res.s_T, res.dx
        outputs = res.outputs if outputs is None else outputs
    return StackedVJP(outputs, s_T, dtheta, d, ds0)
