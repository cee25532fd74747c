"""Agreement with PyTorch autograd in float64 (nn.RNN tanh/relu, nn.LSTM, nn.GRU), weights copied across.

Skipped when torch is absent; CI installs torch==2.13.0 so these run there.
Relation: max normwise relative error <= 1e-10 (both sides are exact float64
computations of the same function; only summation order differs).
"""
import numpy as np
import pytest

import refnet
from gradcheck import compare_grads

torch = pytest.importorskip("torch")

T, B, I, H, O = 6, 3, 4, 5, 3

CASES = {
    "rnn_tanh": (lambda: torch.nn.RNN(I, H, nonlinearity="tanh"), lambda: refnet.ElmanRNN(I, H, "tanh")),
    "rnn_relu": (lambda: torch.nn.RNN(I, H, nonlinearity="relu"), lambda: refnet.ElmanRNN(I, H, "relu")),
    "lstm": (lambda: torch.nn.LSTM(I, H), lambda: refnet.LSTM(I, H)),
    "gru": (lambda: torch.nn.GRU(I, H), lambda: refnet.GRU(I, H)),
}


def _setup(name, seed=0):
    torch.manual_seed(seed)
    module = CASES[name][0]().double()
    cell = CASES[name][1]()
    theta = {k: module.state_dict()[f"{k}_l0"].numpy().copy() for k in cell.param_shapes()}
    r = np.random.default_rng(seed)
    x = r.normal(size=(T, B, I))
    s0 = r.normal(size=(B, cell.n_state)) * 0.5
    return module, cell, theta, x, s0, r


def _torch_state(name, s0):
    h0 = torch.tensor(s0[:, :H][None], requires_grad=True)
    if name == "lstm":
        return (h0, torch.tensor(s0[:, H:][None], requires_grad=True)), [h0]
    return h0, [h0]


@pytest.mark.parametrize("name", list(CASES))
def test_sequence_vjp_matches_torch_autograd(name):
    module, cell, theta, x, s0, r = _setup(name)
    dout = r.normal(size=(T, B, H))
    ds_T = r.normal(size=(B, cell.n_state))
    ours = refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)

    xt = torch.tensor(x, requires_grad=True)
    state, _ = _torch_state(name, s0)
    out, final = module(xt, state)
    if name == "lstm":
        h_n, c_n = final
        pairs = [(out, dout), (h_n, ds_T[:, :H][None]), (c_n, ds_T[:, H:][None])]
        leaves = [xt, state[0], state[1]]
    else:
        pairs = [(out, dout), (final, ds_T[None])]
        leaves = [xt, state]
    params = [module.state_dict(keep_vars=True)[f"{k}_l0"] for k in cell.param_shapes()]
    outputs = [p for p, _ in pairs]
    cotangents = [torch.tensor(c) for _, c in pairs]
    grads = torch.autograd.grad(outputs, params + leaves, cotangents)
    theirs = {k: g.numpy() for k, g in zip(cell.param_shapes(), grads)}
    theirs["x"] = grads[len(params)].numpy()
    ds0 = [g.numpy()[0] for g in grads[len(params) + 1:]]
    theirs["s0"] = np.concatenate(ds0, axis=1)

    np.testing.assert_allclose(ours.outputs, out.detach().numpy(), rtol=1e-12, atol=1e-14)
    compare_grads(dict(ours.dtheta, x=ours.dx, s0=ours.ds0), theirs, rtol=1e-10, reference_name="torch")


@pytest.mark.parametrize("name", list(CASES))
def test_bptt_with_a_cross_entropy_head_matches_torch(name):
    module, cell, theta, x, s0, r = _setup(name, seed=1)
    head = refnet.Head(H, O)
    beta = {"weight": r.normal(size=(O, H)), "bias": r.normal(size=O)}
    y = r.integers(0, O, size=(T, B))
    ours = refnet.bptt(cell, theta, x, s0, head, beta, y)

    linear = torch.nn.Linear(H, O).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(beta["weight"]))
        linear.bias.copy_(torch.tensor(beta["bias"]))
    state, _ = _torch_state(name, s0)
    out, _ = module(torch.tensor(x), state)
    loss = torch.nn.functional.cross_entropy(linear(out).reshape(T * B, O), torch.tensor(y).reshape(-1))
    loss.backward()
    theirs = {k: module.state_dict(keep_vars=True)[f"{k}_l0"].grad.numpy() for k in cell.param_shapes()}
    theirs.update({"head/weight": linear.weight.grad.numpy(), "head/bias": linear.bias.grad.numpy()})

    assert ours.loss == pytest.approx(loss.item(), rel=1e-12)
    mine = dict(ours.dtheta, **{"head/weight": ours.dbeta["weight"], "head/bias": ours.dbeta["bias"]})
    compare_grads(mine, theirs, rtol=1e-10, reference_name="torch")
