"""Check a hand-written PyTorch LSTM against refnet, and see where a bug first shows.

The LSTM below is written gate by gate in torch (not nn.LSTM), with PyTorch's
weight layout; autograd gives its gradients, and ``retain_grad`` on every
step's pre-activations, h_t and c_t gives its traces.  refnet computes a BPTT
fixture for the same weights, inputs and loss (``refnet.fixtures``), and
``gradcheck.compare`` compares the two.  Three candidates:

- ``correct``      the equations as nn.LSTM has them, float64: must agree to 1e-10;
- ``float32``      the same module in float32: held to the float32 tolerances (1e-4);
- ``gate order``   the weights read in the order i, f, o, g (Caffe's; Keras keeps
                   i, f, c, o, PyTorch's order transposed) instead of PyTorch's i, f, g, o:
                   compare must name step 1, gate g.

Then the one-call check for the common case: ``gradcheck.check_torch`` on a
``torch.nn.LSTM`` holding the same weights, with the same loss written as a
torch function, must pass (``nn.LSTM (check_torch)``).

There are no published numbers for this check: the reference is refnet's own
float64 computation, and the expected outcome is in the table's last column.
The rows are written first (``--out``, JSON lines, replaced atomically), then
printed, then drawn (``--png``: each candidate's error per step, forward and
backward).  The exit status is 0 when every candidate meets its expectation.
Run ``python examples/oracle_pytorch.py [--quick] [--json] [--seed N] [--png PATH]``.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gradcheck import check_torch
from gradcheck.compare import compare
from refnet.fixtures import bptt_fixture

sys.path.insert(0, str(Path(__file__).resolve().parent))   # examples/_cli.py, however this file is started
import _cli  # noqa: E402

SIZES = {"quick": dict(T=6, B=2, input_size=3, hidden_size=4, output_size=3),
         "full": dict(T=40, B=8, input_size=10, hidden_size=32, output_size=5)}


class HandWrittenLSTM(torch.nn.Module):
    """c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t); gates from one affine map, rows in ``order``."""

    def __init__(self, arrays, order="ifgo", dtype=torch.float64):
        super().__init__()
        self.order = order
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(self, name, torch.nn.Parameter(torch.tensor(arrays[f"params/{name}_l0"], dtype=dtype)))
        self.head = torch.nn.Linear(*arrays["params/head.weight"].shape[::-1], dtype=dtype)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor(arrays["params/head.weight"]))
            self.head.bias.copy_(torch.tensor(arrays["params/head.bias"]))

    def forward(self, x, h, c):
        """Returns the logits (T, B, O) and every step's pre-activations, h_t and c_t (grads retained)."""
        trace = {"a": [], "h": [], "c": []}
        for x_t in x:
            a = x_t @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
            gate = dict(zip(self.order, a.chunk(4, dim=1)))
            i, f, o = gate["i"].sigmoid(), gate["f"].sigmoid(), gate["o"].sigmoid()
            c = f * c + i * gate["g"].tanh()
            h = o * c.tanh()
            for name, value in (("a", a), ("h", h), ("c", c)):
                value.retain_grad()
                trace[name].append(value)
        return self.head(torch.stack(trace["h"])), trace


def candidate(arrays, order, dtype):
    """Run the hand-written LSTM on the fixture's problem; returns its arrays under the fixture's keys."""
    model = HandWrittenLSTM(arrays, order, dtype)
    as_t = lambda key: torch.tensor(arrays[key], dtype=dtype)  # noqa: E731
    h0, c0 = as_t("inputs/h0")[0].requires_grad_(), as_t("inputs/c0")[0].requires_grad_()
    logits, trace = model(as_t("inputs/x"), h0, c0)
    T, B, O = logits.shape
    ce = torch.nn.functional.cross_entropy(logits.reshape(T * B, O), torch.tensor(arrays["inputs/y"]).reshape(-1),
                                           reduction="none")
    loss = (as_t("inputs/loss_weights").reshape(-1) * ce).sum()
    loss.backward()
    out = {f"grads/{name}_l0": getattr(model, name).grad
           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    out.update({"grads/head.weight": model.head.weight.grad, "grads/head.bias": model.head.bias.grad,
                "grads/h0": h0.grad[None], "grads/c0": c0.grad[None], "forward/loss": loss,
                "forward/h_l0": torch.stack(trace["h"]), "forward/c_l0": torch.stack(trace["c"]),
                "backward/dh_l0": torch.stack([h.grad for h in trace["h"]]),
                "backward/dc_l0": torch.stack([c.grad for c in trace["c"]])})
    for k, g in enumerate(model.order):
        out[f"forward/a_{g}_l0"] = torch.stack([a.chunk(4, dim=1)[k] for a in trace["a"]])
        out[f"backward/da_{g}_l0"] = torch.stack([a.grad.chunk(4, dim=1)[k] for a in trace["a"]])
    return out


def step_errors(reference, cand, key):
    """max |a − r| at each step over that step's ‖r_t‖_∞ (the measure compare uses for traces)."""
    r = reference[key]
    a = cand[key].detach().numpy().astype(np.float64)
    return np.abs(a - r).reshape(len(r), -1).max(axis=1) / np.abs(r).reshape(len(r), -1).max(axis=1)


def one_call_row(arrays, sizes):
    """``gradcheck.check_torch`` on an nn.LSTM with the fixture's weights and loss: one call, one report."""
    lstm = torch.nn.LSTM(sizes["input_size"], sizes["hidden_size"]).double()
    head = torch.nn.Linear(sizes["hidden_size"], sizes["output_size"]).double()
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            p.copy_(torch.tensor(arrays[f"params/{name}"]))
        head.weight.copy_(torch.tensor(arrays["params/head.weight"]))
        head.bias.copy_(torch.tensor(arrays["params/head.bias"]))
    y, w = torch.tensor(arrays["inputs/y"]), torch.tensor(arrays["inputs/loss_weights"])

    def loss(out, state):
        ce = torch.nn.functional.cross_entropy(head(out).flatten(0, 1), y.flatten(), reduction="none")
        return (w.flatten() * ce).sum()

    report = check_torch(lstm, arrays["inputs/x"], h0=arrays["inputs/h0"], c0=arrays["inputs/c0"], loss=loss)
    grads = [a.max_rel for a in report.arrays if a.key.startswith("grads/")]
    return {"candidate": "check_torch(nn.LSTM)", "dtype": report.dtype, "passed": report.passed,
            "max_rel_error_grads": max(grads), "rtol": report.rtol, "first_divergence": "none"
            if report.first_divergence is None else report.first_divergence.describe(),
            "expected": "agrees (one call, max rel error <= 1e-10)",
            **{k: sizes[k] for k in ("T", "B", "hidden_size")}}


CANDIDATES = [  # name, gate order, dtype, expected
    ("correct", "ifgo", torch.float64, "agrees (max rel error <= 1e-10)"),
    ("float32", "ifgo", torch.float32, "agrees within float32 tolerance (1e-4)"),
    ("gate order i,f,o,g", "ifog", torch.float64, "diverges: forward step 1, gate g"),
]


def plot(curves, sizes, path):
    """Each candidate's relative error per step, forward (h_t) and backward (dL/dh_t), one legend below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in zip(axes, ("forward/h_l0", "backward/dh_l0"), ("forward: h_t", "backward: dL/dh_t")):
        for name, series in curves.items():
            steps = np.arange(1, sizes["T"] + 1)
            ax.semilogy(steps, np.maximum(series[key], 1e-18), marker="o", ms=3, label=name)
        ax.axhline(1e-10, color="gray", ls="--", lw=0.8, label="float64 tolerance")
        ax.axhline(1e-4, color="gray", ls=":", lw=0.8, label="float32 tolerance")
        ax.set_xlabel("step t")
        ax.set_title(title)
    axes[0].set_ylabel("max |candidate − refnet| / ‖refnet_t‖∞")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = _cli.parser(__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small problem (seconds)")
    p.add_argument("--json", action="store_true", help="one JSON object per candidate instead of the tables")
    p.add_argument("--out", default="oracle_pytorch_results.jsonl", help="one JSON line per candidate")
    p.add_argument("--png", default="oracle_pytorch.png", help="where to save the figure")
    p.add_argument("--seed", type=_cli.seed, default=0, help="the fixture's weights and data (default 0)")
    args = p.parse_args(argv)

    from tqdm import tqdm

    sizes = SIZES["quick" if args.quick else "full"]
    rows, curves, reports = [], {}, []
    with _cli.pinned_blas():
        fixture = bptt_fixture("lstm", seed=args.seed, **sizes)
        for name, order, dtype, expected in tqdm(CANDIDATES, desc="candidates", file=sys.stderr):
            cand = candidate(fixture.arrays, order, dtype)
            report = compare(fixture, cand)
            grads = [a.max_rel for a in report.arrays if a.key.startswith("grads/")]
            first = report.first_divergence
            where = "none" if first is None else f"{first.direction} step {first.step}, {first.quantity}" + \
                (f" (gate {first.gate})" if first.gate else "")
            rows.append({"candidate": name, "dtype": report.dtype, "passed": report.passed,
                         "max_rel_error_grads": max(grads), "rtol": report.rtol, "first_divergence": where,
                         "expected": expected, "seed": args.seed,
                         **{k: sizes[k] for k in ("T", "B", "hidden_size")}})
            curves[name] = {key: step_errors(fixture.arrays, cand, key) for key in ("forward/h_l0", "backward/dh_l0")}
            reports.append((name, report))
        rows.append(one_call_row(fixture.arrays, sizes))
    _cli.write_json_lines(args.out, rows)
    if args.json:
        for row in rows:
            print(json.dumps(row), flush=True)
    else:
        for name, report in reports:
            print(f"--- {name} ---\n{report}\n")
        print(f"hand-written PyTorch LSTM vs refnet (T = {sizes['T']}, B = {sizes['B']}, "
              f"H = {sizes['hidden_size']}, seed {args.seed}); published: none (the reference is refnet in float64)")
        print(f"{'candidate':<20} {'dtype':<8} {'max rel err (grads)':>19} {'rtol':>7}  {'first divergence':<36} "
              f"{'result':<6} expected")
        for r in rows:
            print(f"{r['candidate']:<20} {r['dtype']:<8} {r['max_rel_error_grads']:19.2e} {r['rtol']:7.0e}  "
                  f"{r['first_divergence']:<36} {'pass' if r['passed'] else 'FAIL':<6} {r['expected']}")
        print(f"results: {args.out}")
    if not _cli.save_figure(plot, args.png, curves, sizes):
        return 1
    if not args.json:
        print(f"figure: {args.png}")
    return 0 if [r["passed"] for r in rows] == [True, True, False, True] else 1


if __name__ == "__main__":
    sys.exit(main())
