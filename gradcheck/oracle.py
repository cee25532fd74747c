"""One call to check a PyTorch recurrent network's gradients against refnet: ``assert check_torch(...).passed``.

``check_torch(model, x, loss=...)`` runs refnet on the module's own weights
and inputs, runs the module (or the user's gradient function) under torch
autograd, and returns :func:`gradcheck.compare`'s report with its
three-valued verdict.  How the two sides meet:

1. refnet runs the forward pass (float64 by default) from the module's
   weights, ``x`` and the initial state;
2. the user's ``loss(output, state)`` is differentiated *by torch* at
   refnet's forward values, giving the cotangents ∂L/∂output, ∂L/∂h_n (and
   ∂L/∂c_n); the loss itself is the user's code, not what is checked;
3. refnet pulls those cotangents back through the network (the sequence
   VJP, with every step's traces: a golden fixture), and
4. the candidate — autograd through the module, or ``grads(x, h0[, c0])`` —
   is compared with it: every parameter's gradient, ∂L/∂x, ∂L/∂h0 (∂L/∂c0)
   and the top layer's output.

refnet and torch are imported when the function is called; ``import
gradcheck`` stays NumPy-only.
"""
import numpy as np

from .compare import CompareReport, compare
from .verdict import Verdict

__all__ = ["check_torch"]


def _candidate_keys(grads):
    """The user's gradient dict under fixture keys: 'weight_ih_l0' -> 'grads/weight_ih_l0', 'x' -> 'grads/x'."""
    if not isinstance(grads, dict):
        raise TypeError(f"grads(...) must return a dict {{name: gradient}}, got {type(grads).__name__}")
    out = {}
    for key, value in grads.items():
        if not isinstance(key, str):
            raise TypeError(f"grads(...) must return str keys, got {key!r}")
        out[key if "/" in key else f"grads/{key}"] = value
    return out


def check_torch(model, x, *, loss, h0=None, c0=None, grads=None, rtol=None, atol=None, dtype="float64"):
    """Check the gradients of a PyTorch nn.RNN/LSTM/GRU (or your gradient function) against refnet.

    The cells are Elman's (1990, Eq. 1; ``nn.RNN``), the LSTM with forget
    gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000) and the GRU (Cho
    et al. 2014), in PyTorch's gate order and parameter names.

    Parameters
    ----------
    model : torch.nn.RNN, LSTM or GRU, or parameters
        A module with ``batch_first=False``, unidirectional, any num_layers,
        bias on or off; or, with ``grads``, anything
        :func:`refnet.fixtures.model_from` accepts (state_dict, Flax tree,
        per-gate dict, plain arrays).
    x : (T, B, input_size) tensor or array
        The inputs, T steps of B examples.
    loss : callable
        ``loss(output, state) -> scalar tensor`` on what the module returns:
        ``output`` (T, B, H) and ``state`` = ``h_n`` (num_layers, B, H), or
        ``(h_n, c_n)`` for an LSTM; e.g.
        ``lambda out, _: F.cross_entropy(head(out).flatten(0, 1), y.flatten())``.
    h0 : (num_layers, B, H) tensor or array, optional
        Initial hidden state (a (B, H) one for one layer); default zeros.
    c0 : (num_layers, B, H) tensor or array, optional
        Initial cell state, LSTM only; default zeros.
    grads : callable, optional
        ``grads(x, h0)`` (``grads(x, h0, c0)`` for an LSTM) returning your gradients of ``loss``
        {name: tensor or array}: names ``weight_ih_l0`` …, ``x``, ``h0``, ``c0`` (or fixture keys such as
        ``forward/h_l0``); it is called with float64 tensors that require grad.  Default: torch autograd
        through ``model`` itself.
    rtol : float, optional
        Relative tolerance (>= 0) overriding :data:`gradcheck.COMPARE_TOLERANCES` (by the
        candidate's dtype: float32 modules are held to the float32 row).
    atol : float, optional
        Absolute floor (>= 0) overriding the row's.
    dtype : {'float64', 'float32'}
        Precision of refnet's reference (default float64).

    Returns
    -------
    CompareReport
        ``report.passed`` (PASS only), ``report.verdict`` (PASS / FAIL /
        INCONCLUSIVE), ``print(report)`` (per-array errors, first
        divergence).  INCONCLUSIVE when the loss's cotangents are all exactly
        zero (every gradient is zero: nothing is tested).

    Raises
    ------
    ImportError
        If torch (or refnet) is not installed.
    TypeError
        If ``loss`` or ``grads`` is not callable, ``model`` is not a torch
        module while ``grads`` is None, ``loss`` does not return a 0-d torch
        tensor, or ``grads`` returns something other than a dict with str keys.
    ValueError
        If ``dtype`` is neither 'float64' nor 'float32'; for a module in
        training mode with dropout between layers; as
        :func:`refnet.fixtures.problem_from` for data that do not fit the
        model (named argument, expected and received); and as
        :func:`gradcheck.compare` for a bad tolerance.
    """
    import torch

    from refnet.algorithms.stacked import stacked_forward
    from refnet.backend import to_numpy
    from refnet.fixtures.user import problem_from, sequence_vjp_fixture_from

    if not callable(loss):
        raise TypeError(f"loss must be a callable loss(output, state) -> scalar tensor, got {type(loss).__name__}")
    if grads is not None and not callable(grads):
        raise TypeError(f"grads must be a callable returning a dict of gradients, got {type(grads).__name__}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    is_module = hasattr(model, "mode") and hasattr(model, "named_parameters")
    if grads is None and not is_module:
        raise TypeError(f"model must be a torch nn.RNN/LSTM/GRU module when grads is not given, got "
                        f"{type(model).__name__}")
    if is_module and model.training and getattr(model, "dropout", 0) and model.num_layers > 1:
        raise ValueError(f"model must not drop out (dropout={model.dropout} in training mode): call model.eval() "
                         "or build it with dropout=0 so that both sides compute one function")

    p = problem_from(model, x, h0=h0, c0=c0, dtype=dtype)
    lstm = p.cell == "lstm"
    runs = stacked_forward(p.cells, p.thetas, p.x, p.s0s)
    top = p.cells[-1]
    output = np.stack([to_numpy(top.output(s)) for s in runs[-1].s[1:]])
    H = top.hidden_size
    h_n = np.stack([to_numpy(run.s[-1][:, :H]) for run in runs])
    c_n = np.stack([to_numpy(run.s[-1][:, H:]) for run in runs]) if lstm else None

    # The user's loss differentiated by torch at refnet's forward values: the cotangents refnet pulls back.
    # In the module's dtype, which the loss's own modules (a head) share; the reference stays in ``dtype``.
    tdt = next(model.parameters()).dtype if is_module else getattr(torch, dtype)
    out_t = torch.tensor(output, dtype=tdt, requires_grad=True)
    leaves = [out_t, torch.tensor(h_n, dtype=tdt, requires_grad=True)]
    if lstm:
        leaves.append(torch.tensor(c_n, dtype=tdt, requires_grad=True))
    L = _scalar(loss(out_t, (leaves[1], leaves[2]) if lstm else leaves[1]), "loss(output, state)")
    cot = torch.autograd.grad(L, leaves, allow_unused=True)
    cot = [np.zeros(leaf.shape) if g is None else g.detach().cpu().double().numpy() for leaf, g in zip(leaves, cot)]
    fixture = sequence_vjp_fixture_from(model, x, h0=h0, c0=c0, dout=cot[0], h_n=cot[1],
                                        c_n=cot[2] if lstm else None, dtype=dtype)

    if grads is None:
        candidate = _autograd_candidate(torch, model, x, h0, c0, loss, lstm)
    else:
        tensors = [torch.tensor(np.asarray(fixture.arrays[k]), dtype=torch.float64, requires_grad=True)
                   for k in ("inputs/x", "inputs/h0") + (("inputs/c0",) if lstm else ())]
        candidate = _candidate_keys(grads(*tensors))
    report = compare(fixture, candidate, rtol=rtol, atol=atol)
    if all(not np.any(c) for c in cot) and report.verdict.status != "fail":
        return CompareReport(Verdict.inconclusive("the loss's cotangents dL/doutput, dL/dh_n (dL/dc_n) are all "
                                                  "exactly zero: every gradient is zero and nothing was tested"),
                             report.dtype, report.rtol, report.atol, report.arrays, report.first_forward,
                             report.first_backward, report.missing, report.ignored, report.context)
    return report


def _scalar(value, what):
    if not (hasattr(value, "backward") and getattr(value, "ndim", None) == 0):
        raise TypeError(f"{what} must return a scalar (0-d) torch tensor, got "
                        f"{type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))}")
    return value


def _autograd_candidate(torch, model, x, h0, c0, loss, lstm):
    """The module's own gradients under torch autograd, in the module's dtype, as fixture keys."""
    param = next(model.parameters())
    dtype, device = param.dtype, param.device

    def leaf(value, shape):
        if value is None:
            return torch.zeros(shape, dtype=dtype, device=device, requires_grad=True)
        value = value.detach() if hasattr(value, "detach") else torch.as_tensor(np.asarray(value))
        value = value.to(dtype=dtype, device=device)
        if value.ndim == 2:          # (B, H) for one layer, as problem_from accepts
            value = value[None]
        return value.clone().requires_grad_()

    xt = leaf(x, None)
    shape = (model.num_layers, xt.shape[1], model.hidden_size)
    h0t = leaf(h0, shape)
    c0t = leaf(c0, shape) if lstm else None
    output, state = model(xt, (h0t, c0t) if lstm else h0t)
    L = _scalar(loss(output, state), "loss(output, state)")
    names = [name for name, _ in model.named_parameters()]
    inputs = [p for _, p in model.named_parameters()] + [xt, h0t] + ([c0t] if lstm else [])
    got = torch.autograd.grad(L, inputs, allow_unused=True)
    keys = [f"grads/{n}" for n in names] + ["grads/x", "grads/h0"] + (["grads/c0"] if lstm else [])
    candidate = {k: (torch.zeros_like(i) if g is None else g) for k, i, g in zip(keys, inputs, got)}
    candidate[f"forward/h_l{model.num_layers - 1}"] = output.detach()
    return candidate
