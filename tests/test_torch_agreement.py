"""Agreement with PyTorch autograd in float64 (nn.RNN tanh/relu, nn.LSTM, nn.GRU), weights copied across.

Skipped when torch is absent; CI installs torch==2.13.0 so these run there.
Relation: max normwise relative error <= 1e-10 (both sides are exact float64
computations of the same function; only summation order differs).
"""
from pathlib import Path

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


# ---- through refnet.interop: 1-3 layers x bias on/off, drawn shapes, and fixtures loaded in PyTorch ----

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradcheck.compare import compare  # noqa: E402
from gradcheck.fixture_io import save_fixture  # noqa: E402
from refnet.algorithms.stacked import stacked_sequence_vjp  # noqa: E402
from refnet.fixtures import bptt_fixture, sequence_vjp_fixture  # noqa: E402
from refnet.interop import from_torch, state_from_torch, state_to_torch, to_torch  # noqa: E402

MODULES = {
    "rnn_tanh": lambda I, H, L, bias: torch.nn.RNN(I, H, L, nonlinearity="tanh", bias=bias),
    "rnn_relu": lambda I, H, L, bias: torch.nn.RNN(I, H, L, nonlinearity="relu", bias=bias),
    "lstm": lambda I, H, L, bias: torch.nn.LSTM(I, H, L, bias=bias),
    "gru": lambda I, H, L, bias: torch.nn.GRU(I, H, L, bias=bias),
}


# Every module × 1, 2, 3 layers × bias on and off, each combination named (drawn, bias off could
# miss two and three layers altogether); hypothesis draws only the shapes and the seed.
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("L", [1, 2, 3], ids=["L1", "L2", "L3"])
@pytest.mark.parametrize("name", list(MODULES))
@settings(max_examples=3, deadline=None)
@given(T=st.integers(1, 6), B=st.integers(1, 4), I=st.integers(1, 5), H=st.integers(1, 6),
       seed=st.integers(0, 10_000))
def test_stacked_sequence_vjp_matches_torch_through_interop(name, L, bias, T, B, I, H, seed):
    torch.manual_seed(seed)
    module = MODULES[name](I, H, L, bias).double()
    layers = from_torch(module)
    r = np.random.default_rng(seed)
    x, dout = r.normal(size=(T, B, I)), r.normal(size=(T, B, H))
    h0, c0, dh_n, dc_n = (r.normal(size=(L, B, H)) for _ in range(4))
    lstm = name == "lstm"
    s0 = state_from_torch(h0, c0 if lstm else None)
    ds_T = state_from_torch(dh_n, dc_n if lstm else None)
    ours = stacked_sequence_vjp(layers.cells, layers.params, x, s0, dout, ds_T)

    xt = torch.tensor(x, requires_grad=True)
    state = [torch.tensor(h0, requires_grad=True)] + ([torch.tensor(c0, requires_grad=True)] if lstm else [])
    out, final = module(xt, tuple(state) if lstm else state[0])
    finals = list(final) if lstm else [final]
    params = dict(module.named_parameters())
    grads = torch.autograd.grad([out] + finals, [xt] + state + list(params.values()),
                                [torch.tensor(dout), torch.tensor(dh_n)] + ([torch.tensor(dc_n)] if lstm else []))
    theirs = {"x": grads[0].numpy(), **{f"state{j}": g.numpy() for j, g in enumerate(grads[1:1 + len(state)])},
              **{k: g.numpy() for k, g in zip(params, grads[1 + len(state):])}}
    mine = to_torch(list(ours.dtheta), tensors=False)
    assert len(params) == L * (4 if bias else 2)                     # the case asked for is the one run
    mine = {k: v for k, v in mine.items() if k in params}          # bias=False: torch has no bias grads
    ds0 = state_to_torch(layers, ours.ds0)
    mine.update(x=ours.dx, **{f"state{j}": g for j, g in enumerate(ds0 if lstm else [ds0])})
    np.testing.assert_allclose(ours.outputs, out.detach().numpy(), rtol=0, atol=1e-12)
    # A drawn ReLU network can have every unit dead (T = B = I = 1): both gradients are then exactly
    # zero, and that agreement with torch is the claim here, so zeros count as evidence.
    compare_grads(mine, theirs, rtol=1e-10, reference_name="torch", zeros_are_evidence=True)


# The README's snippet ("Using refnet as an oracle"), verbatim: load a fixture into PyTorch and compare.
README_SNIPPET = '''
import torch
import torch.nn.functional as F
from gradcheck.compare import compare
from gradcheck.fixture_io import load_fixture

# made by: python -m gradcheck export --cell lstm --algorithm bptt --out fixtures
fx = load_fixture("fixtures/lstm_bptt")
A, m = fx.arrays, fx.meta
T = lambda key: torch.from_numpy(A[key])

lstm = torch.nn.LSTM(m["input_size"], m["hidden_size"], m["num_layers"]).double()
head = torch.nn.Linear(m["hidden_size"], m["output_size"]).double()
lstm.load_state_dict({k: T(f"params/{k}") for k in lstm.state_dict()})
head.load_state_dict({"weight": T("params/head.weight"), "bias": T("params/head.bias")})

h0, c0 = T("inputs/h0").requires_grad_(), T("inputs/c0").requires_grad_()
out, _ = lstm(T("inputs/x"), (h0, c0))
ce = F.cross_entropy(head(out).flatten(0, 1), T("inputs/y").flatten(), reduction="none")
loss = (T("inputs/loss_weights").flatten() * ce).sum()
loss.backward()

mine = {f"grads/{k}": p.grad for k, p in lstm.named_parameters()}
mine.update({"grads/head.weight": head.weight.grad, "grads/head.bias": head.bias.grad,
             "grads/h0": h0.grad, "grads/c0": c0.grad, "forward/loss": loss,
             f"forward/h_l{m['num_layers'] - 1}": out})
report = compare(fx, mine)
print(report)      # per-array errors, and the first step and gate where it diverges
assert report.passed
'''


@pytest.mark.parametrize("layers", [1, 2])
def test_the_readme_snippet_loads_a_fixture_into_pytorch_and_agrees(layers, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    save_fixture(bptt_fixture("lstm", T=6, B=3, num_layers=layers), tmp_path / "fixtures" / "lstm_bptt")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(README_SNIPPET, namespace)
    assert namespace["report"].passed and len(namespace["report"].arrays) == 10 + 4 * (layers - 1)


def test_torch_autograd_gives_every_trace_of_a_sequence_vjp_fixture():
    # retain_grad on h_t, c_t and the gate pre-activations: autograd's adjoints are the fixture's traces.
    fx = sequence_vjp_fixture("lstm", T=5, B=2, seed=7)
    A = {k: torch.from_numpy(v) for k, v in fx.arrays.items()}
    P = {k: A[f"params/{k}_l0"].clone().requires_grad_()
         for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    h, c = A["inputs/h0"][0], A["inputs/c0"][0]
    hs, cs, pre = [], [], []
    for t in range(5):
        a = A["inputs/x"][t] @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"]
        i, f, g, o = a.chunk(4, dim=1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        for v in (a, h, c):
            v.retain_grad()
        pre.append(a), hs.append(h), cs.append(c)
    pairing = (torch.stack(hs) * A["cotangents/output"]).sum() + (h * A["cotangents/h_n"][0]).sum() \
        + (c * A["cotangents/c_n"][0]).sum()
    pairing.backward()
    gates = [(k, g) for k, g in enumerate("ifgo")]
    cand = {"backward/dh_l0": torch.stack([v.grad for v in hs]),
            "backward/dc_l0": torch.stack([v.grad for v in cs]),
            **{f"backward/da_{g}_l0": torch.stack([a.grad.chunk(4, dim=1)[k] for a in pre]) for k, g in gates},
            **{f"forward/a_{g}_l0": torch.stack([a.chunk(4, dim=1)[k] for a in pre]) for k, g in gates},
            **{f"grads/{k}_l0": p.grad for k, p in P.items()}}
    report = compare(fx, cand)
    assert report.passed and len(report.arrays) == 14, report
