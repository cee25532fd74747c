"""examples/oracle_pytorch.py with --quick --json, and the README's example: agreement, and a named bug."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from figures import MAX_WIDTH, png_size

ROOT = Path(__file__).resolve().parents[1]


def test_oracle_pytorch_quick_json_reports_each_candidate(tmp_path):
    for module in ("torch", "matplotlib", "tqdm"):
        pytest.importorskip(module)
    png = tmp_path / "oracle.png"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "oracle_pytorch.py"), "--quick", "--json",
                          "--png", str(png)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {row["candidate"]: row for row in map(json.loads, out.stdout.splitlines())}
    assert rows["correct"]["passed"] and rows["correct"]["max_rel_error_grads"] <= 1e-10
    assert rows["float32"]["passed"] and rows["float32"]["dtype"] == "float32"
    assert not rows["gate order i,f,o,g"]["passed"]
    assert rows["gate order i,f,o,g"]["first_divergence"] == "forward step 1, a_g (gate g)"
    assert rows["check_torch(nn.LSTM)"]["passed"] and rows["check_torch(nn.LSTM)"]["max_rel_error_grads"] <= 1e-10
    assert png_size(png)[0] <= MAX_WIDTH
    assert [json.loads(line) for line in (tmp_path / "oracle_pytorch_results.jsonl").open()] == list(rows.values())


# The README's complete example ("Using refnet as an oracle"), verbatim.
README_EXAMPLE = '''
import torch
from gradcheck.compare import compare
from refnet.fixtures import bptt_fixture

fx = bptt_fixture("lstm", T=6, B=2, input_size=3, hidden_size=4, output_size=3)   # refnet's answer
A = {k: torch.from_numpy(v) for k, v in fx.arrays.items()}

# Your LSTM, gate by gate, in PyTorch's layout (rows i, f, g, o), with a linear head and cross-entropy.
P = {k: A[f"params/{k}_l0"].clone().requires_grad_() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
h, c, hs, cs, loss = A["inputs/h0"][0], A["inputs/c0"][0], [], [], 0.0
for t, x_t in enumerate(A["inputs/x"]):
    i, f, g, o = (x_t @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"]).chunk(4, dim=1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    h = o.sigmoid() * c.tanh()
    h.retain_grad(), c.retain_grad(), hs.append(h), cs.append(c)
    logits = h @ A["params/head.weight"].T + A["params/head.bias"]
    ce = torch.nn.functional.cross_entropy(logits, A["inputs/y"][t], reduction="none")
    loss = loss + (A["inputs/loss_weights"][t] * ce).sum()
loss.backward()

report = compare(fx, {**{f"grads/{k}_l0": p.grad for k, p in P.items()},
                      "forward/h_l0": torch.stack(hs), "forward/c_l0": torch.stack(cs),
                      "backward/dh_l0": torch.stack([h.grad for h in hs]),
                      "backward/dc_l0": torch.stack([c.grad for c in cs])})
print(report)
'''


def test_the_readme_example_runs_and_agrees(capsys):
    pytest.importorskip("torch")
    namespace = {}
    exec(README_EXAMPLE, namespace)
    assert namespace["report"].passed and len(namespace["report"].arrays) == 8
    assert "first backward divergence: none" in capsys.readouterr().out


def test_the_readme_example_names_swapped_gates():
    pytest.importorskip("torch")
    namespace = {}
    exec(README_EXAMPLE.replace("i, f, g, o = (", "i, f, o, g = ("), namespace)
    first = namespace["report"].first_forward
    assert (first.step, first.quantity) == (1, "h")
