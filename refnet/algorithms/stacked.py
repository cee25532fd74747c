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
from .._validate import check_array
from . import fused
from .bptt import forward, sequence_vjp
from .checks import check_run

__all__ = ["StackedVJP", "stacked_forward", "stacked_sequence_vjp"]


@dataclass(frozen=True)
class StackedVJP:
    """The top layer's outputs, every layer's final state, and the pulled-back cotangents."""

    outputs: Any     # (T, B, n_out of the top layer)
    s_T: list        # per layer, (B, n_state)
    dtheta: list     # per layer, a params dict
    dx: Any          # (T, B, I)
    ds0: list        # per layer, (B, n_state)


def _check_stack(cells, thetas, x, s0s):
    """Validate the stack once; returns ``s0s`` as a list (zeros where None)."""
    cells, thetas = list(cells), list(thetas)
    if not cells or len(thetas) != len(cells):
        raise ValueError(f"cells and thetas must be non-empty and of one length, got {len(cells)} cells "
                         f"and {len(thetas)} params dicts")
    for l in range(1, len(cells)):
        if cells[l].input_size != cells[l - 1].n_out:
            raise ValueError(f"cells[{l}].input_size must be {cells[l - 1].n_out} (the output width of "
                             f"cells[{l - 1}]), got {cells[l].input_size}")
    for l, (cell, theta) in enumerate(zip(cells, thetas)):
        cell.check_params(theta, f"thetas[{l}]")
    check_array("x", x, shape=(None, None, cells[0].input_size))
    if s0s is None:
        s0s = [None] * len(cells)
    s0s = list(s0s)
    if len(s0s) != len(cells):
        raise ValueError(f"s0s must hold one initial state per layer ({len(cells)}), got {len(s0s)}")
    return cells, thetas, s0s


def stacked_forward(cells, thetas, x, s0s=None):
    """Run the stack over x; returns each layer's :class:`~refnet.algorithms.bptt.Trajectory`.

    Parameters
    ----------
    cells : sequence of L refnet cells;  thetas : their params dicts
    x : (T, B, I) inputs of layer 0;  s0s : L initial states (B, n_state), or None for zeros
    """
    cells, thetas, s0s = _check_stack(cells, thetas, x, s0s)
    trajectories, inputs = [], x
    for cell, theta, s0 in zip(cells, thetas, s0s):
        trajectory = forward(cell, theta, inputs, s0)
        trajectories.append(trajectory)
        inputs = _outputs(cell, trajectory.s)
    return trajectories


def _outputs(cell, s):
    """output(s_t) for t = 1..T stacked to (T, B, n_out)."""
    return xp_of(s[1]).stack([cell.output(s_t) for s_t in s[1:]])


def stacked_sequence_vjp(cells, thetas, x, s0s, dout, ds_T=None):
    """Sequence VJP of a stack: gradients of ⟨dout, outputs⟩ + Σ_l ⟨ds_T[l], s^l_T⟩.

    PyTorch: ``torch.autograd.grad`` of a multi-layer module's ``(output, h_n)``
    (and ``c_n``) with those grad_outputs.  Each layer runs forward twice (once
    to make the inputs of the layer above, once inside its own
    :func:`~refnet.algorithms.bptt.sequence_vjp`).

    Parameters
    ----------
    cells, thetas, x, s0s : as :func:`stacked_forward`
    dout : (T, B, n_out of the top layer), the cotangent of the top layer's outputs
    ds_T : L cotangents (B, n_state) of the final states, or None for zeros

    Returns
    -------
    StackedVJP with per-layer dtheta and ds0, and dx (T, B, I).
    """
    cells, thetas, s0s = _check_stack(cells, thetas, x, s0s)
    if ds_T is None:
        ds_T = [None] * len(cells)
    if len(ds_T) != len(cells):
        raise ValueError(f"ds_T must hold one cotangent per layer ({len(cells)}), got {len(ds_T)}")
    inputs = [x]
    for cell, theta, s0 in zip(cells[:-1], thetas[:-1], s0s[:-1]):
        if fused.applies(cell):   # the layer's fused forward; the per-step forward is its reference
            inputs.append(fused.fused_outputs(cell, theta, inputs[-1], check_run(cell, theta, inputs[-1], s0)))
        else:
            inputs.append(_outputs(cell, forward(cell, theta, inputs[-1], s0).s))
    L = len(cells)
    dtheta, ds0, s_T = [None] * L, [None] * L, [None] * L
    outputs, d = None, dout
    for l in range(L - 1, -1, -1):
        res = sequence_vjp(cells[l], thetas[l], inputs[l], s0s[l], d, ds_T[l])
        dtheta[l], ds0[l], s_T[l], d = res.dtheta, res.ds0, res.s_T, res.dx
        outputs = res.outputs if outputs is None else outputs
    return StackedVJP(outputs, s_T, dtheta, d, ds0)
