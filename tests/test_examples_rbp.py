"""examples/hopfield_rbp.py and examples/hyperopt_rbp.py: --quick --json runs, and the hand-written training step."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from figures import MAX_WIDTH, png_size
from gradcheck import check_grads

ROOT = Path(__file__).resolve().parents[1]
HOPFIELD_METHODS = ["TBPTT", "RBP", "RBP (z0 = 0)", "CG-RBP", "Neumann-RBP"]


def _run(script, png):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--quick", "--json", "--png", str(png)],
                          cwd=png.parent, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def hyperopt():
    """The example module, imported from its path (examples/ is not a package)."""
    for name in ("matplotlib", "tqdm", "sklearn"):
        pytest.importorskip(name)
    spec = importlib.util.spec_from_file_location("hyperopt_rbp", ROOT / "examples" / "hyperopt_rbp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hopfield_quick_run_gives_a_row_per_method_and_truncation_beside_the_paper(tmp_path):
    for name in ("matplotlib", "tqdm", "sklearn"):
        pytest.importorskip(name)
    png = tmp_path / "hopfield.png"
    rows = _run("hopfield_rbp.py", png)
    assert [(r["method"], r["K"]) for r in rows] == [(m, K) for m in HOPFIELD_METHODS for K in (2, 4)]
    for row in rows:
        assert row["seeds"] == 2 and 0.0 <= row["success_rate"] <= 1.0 and len(row["ratios"]) == 2
    # the paper ran K = 10/20/30 only: nothing of it stands beside K = 2 or 4
    assert all(r["paper_success_rate"] is None for r in rows)
    assert png_size(png)[0] <= MAX_WIDTH
    saved = [json.loads(line) for line in (tmp_path / "hopfield_rbp_results.jsonl").open()]
    assert saved == rows


def test_hopfield_puts_the_paper_beside_the_truncation_it_ran():
    for name in ("matplotlib", "tqdm", "sklearn"):
        pytest.importorskip(name)
    spec = importlib.util.spec_from_file_location("hopfield_rbp", ROOT / "examples" / "hopfield_rbp.py")
    hopfield = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hopfield)
    args = hopfield.parse_args(["--truncations", "10", "15", "30"])
    runs = [{"method": m, "K": K, "seed": 0, "success": True, "ratio": 0.3, "capped_fraction": 0.0,
             "rho_final": 0.5} for m in hopfield.METHODS for K in (10, 15, 30)]
    paper = {(r["method"], r["K"]): r["paper_success_rate"] for r in hopfield.summarise(runs, args)}
    assert (paper[("RBP", 10)], paper[("RBP", 15)], paper[("RBP", 30)]) == (0.01, None, 0.99)
    assert paper[("RBP (z0 = 0)", 10)] is None


def test_hyperopt_quick_run_reports_both_meta_losses_and_the_cost_ratios(tmp_path):
    for name in ("matplotlib", "tqdm", "sklearn"):
        pytest.importorskip(name)
    png = tmp_path / "hyperopt.png"
    printed = _run("hyperopt_rbp.py", png)
    rows = {r["result"] + r.get("method", "") + str(r.get("K", "")): r for r in printed}
    assert rows["hypergradient at theta0"]["cosine"] > 0.9
    for method in ("BPTT", "Neumann-RBP"):
        assert len(rows["meta-training" + method]["meta_losses"]) == 3      # 2 meta steps and the end
    costs = [rows[f"cost of one hypergradient{K}"] for K in (2, 3, 6)]  # the quick run's --cost-K
    for cost in costs:
        assert cost["time_ratio"] > 0 and cost["bptt_peak_bytes"] > cost["neumann_peak_bytes"]
    # Neumann-RBP keeps two states whatever K is; TBPTT(K) keeps K caches
    assert len({c["neumann_peak_bytes"] for c in costs}) == 1
    assert costs[0]["tbptt_peak_bytes"] < costs[1]["tbptt_peak_bytes"] < costs[2]["tbptt_peak_bytes"]
    assert png_size(png)[0] <= MAX_WIDTH
    saved = [json.loads(line) for line in (tmp_path / "hyperopt_rbp_results.jsonl").open()]
    assert saved == printed


def _tiny(hyperopt, seed=0):
    """A 64–3–10 MLP with a 4-step schedule of batches of 5, at a random state."""
    task = hyperopt.make_task(steps=4, hidden=3, batch=5, seed=seed)
    r = np.random.default_rng(seed)
    s = np.concatenate([0.3 * r.standard_normal(task.cell.mlp.size), 0.1 * r.standard_normal(task.cell.mlp.size)])
    return task, s[None], {"log_lr": np.array([-0.5, -1.0])}, r


def test_hessian_vector_product_equals_finite_differences_of_the_gradient(hyperopt):
    task, s, _, r = _tiny(hyperopt)
    mlp, X, Y = task.cell.mlp, task.cell.X[:7], task.cell.Y[:7]
    w, u = s[0, :mlp.size], r.standard_normal(mlp.size)
    _, _, cache = hyperopt.loss_and_grad(mlp, w, X, Y)
    Hu = hyperopt.hessian_vector(mlp, w, cache, u)
    eps = 1e-6
    plus, minus = (hyperopt.loss_and_grad(mlp, w + e * u, X, Y)[1] for e in (eps, -eps))
    fd = (plus - minus) / (2 * eps)
    # Central difference of an O(1) gradient: truncation O(ε²), rounding ≈ 1e-16 / ε = 1e-10.
    np.testing.assert_allclose(Hu, fd, rtol=0, atol=1e-8 * np.abs(fd).max())


def test_training_step_jvp_and_vjp_pass_the_dot_product_test(hyperopt):
    task, s, theta, r = _tiny(hyperopt, seed=1)
    _, cache = task.cell.step(theta, s, np.zeros((1, 1)), 2)
    u, v = r.standard_normal(s.shape), r.standard_normal(s.shape)
    dtheta = {"log_lr": r.standard_normal(2)}
    lhs = float((u * task.cell.step_jvp(theta, cache, v, dtheta)).sum())
    ds_prev, dparams, _ = task.cell.step_vjp(theta, cache, u)
    rhs = float((ds_prev * v).sum() + dparams["log_lr"] @ dtheta["log_lr"])
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs))


def test_bptt_hypergradient_equals_finite_differences_of_the_meta_loss(hyperopt):
    task, _, theta, _ = _tiny(hyperopt, seed=2)
    _, g = hyperopt.bptt_hypergradient(task, theta, 4)

    def meta(flat):
        s = task.s0
        for t in range(4):
            s = task.cell.step(flat, s, np.zeros((1, 1)), t)[0]
        return hyperopt.meta_loss(task, s)[0]
    check_grads(meta, theta, {"log_lr": g})


def test_neumann_hypergradient_with_K_equal_to_the_steps_minus_one_is_tbptt_at_the_last_jacobian(hyperopt):
    # Neumann-RBP freezes J at the last transition; with one step (T = 1) there is no freezing
    # and Neumann-RBP(0) is exactly BPTT: the term gᵀ ∂s_1/∂θ.
    task, _, theta, _ = _tiny(hyperopt, seed=3)
    _, g_bptt = hyperopt.bptt_hypergradient(task, theta, 1)
    _, g_neumann = hyperopt.neumann_hypergradient(task, theta, 1, 0)
    np.testing.assert_allclose(g_neumann, g_bptt, rtol=1e-13)


def test_hopfield_from_runs_gives_the_summary_the_run_printed(tmp_path):
    for name in ("matplotlib", "tqdm", "sklearn"):
        pytest.importorskip(name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(ROOT / "examples" / "hopfield_rbp.py"), "--quick", "--json",
               "--methods", "TBPTT", "Neumann-RBP", "--dtype", "float32", "--runs-out", "runs.jsonl"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["method"], r["K"]) for r in printed] == [(m, K) for m in ("TBPTT", "Neumann-RBP") for K in (2, 4)]
    assert all(r["config"]["dtype"] == "float32" for r in printed)
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").open()]
    assert len(runs) == 2 * 2 * 2                       # methods x truncations x seeds, one line each
    again = subprocess.run([sys.executable, str(ROOT / "examples" / "hopfield_rbp.py"), "--quick", "--json",
                            "--methods", "TBPTT", "Neumann-RBP", "--from-runs", "runs.jsonl", "--out", "again.jsonl"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    summary = [json.loads(line) for line in again.stdout.splitlines()]
    keys = ("method", "K", "seeds", "success_rate", "ratios", "capped_fraction", "config")
    assert [{k: r[k] for k in keys} for r in summary] == [{k: r[k] for k in keys} for r in printed]


def test_hopfield_from_runs_of_a_missing_file_is_an_error_naming_it(tmp_path, capsys):
    for name in ("tqdm", "sklearn"):
        pytest.importorskip(name)
    spec = importlib.util.spec_from_file_location("hopfield_rbp", ROOT / "examples" / "hopfield_rbp.py")
    hopfield = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hopfield)
    missing = str(tmp_path / "none.jsonl")
    assert hopfield.main(["--from-runs", missing, "--out", str(tmp_path / "o.jsonl")]) == 2
    assert missing in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()
