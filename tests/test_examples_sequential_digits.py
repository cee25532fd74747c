"""examples/sequential_digits.py with --quick --json: one line per method, and the figure."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from figures import MAX_WIDTH, png_size

ROOT = Path(__file__).resolve().parents[1]


def test_sequential_digits_quick_json_reports_every_method(tmp_path):
    for module in ("matplotlib", "tqdm", "joblib", "sklearn"):
        pytest.importorskip(module)
    png = tmp_path / "digits.png"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "sequential_digits.py"), "--quick", "--json",
                          "--png", str(png)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["method"] for r in rows] == ["bptt", "tbptt10", "tbptt15", "fpp10", "fpp15"]
    for r in rows:
        assert r["T"] == 8 and len(r["curve_mean"]) == r["epochs"]
        assert all(0.0 <= a <= 1.0 for a in r["final_accuracy"])
    assert png_size(png)[0] <= MAX_WIDTH


def _load():
    for module in ("tqdm", "joblib", "sklearn"):
        pytest.importorskip(module)
    import importlib.util
    spec = importlib.util.spec_from_file_location("sequential_digits", ROOT / "examples" / "sequential_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# 8-step rows, 32 training sequences in minibatches of 16: one BPTT epoch is 2 minibatches x 8 VJPs = 16.
SMALL = {"seed": 0, "epochs": 1, "batch": 16, "rows": True, "train": 32, "mnist_dir": None, "fpp_sequences": 2}


@pytest.mark.parametrize("method, unit, spent", [
    ("bptt", 8, [16, 32, 48]),            # a 4th epoch's first minibatch would reach 56 > 50
    ("tbptt10", 8, [16, 32, 48]),         # k = 10 > T = 8: the whole sequence, as BPTT
    ("fpp2", 2, [50]),                    # 25 updates of 2 VJPs, within the first epoch's 30
])
def test_budget_stops_each_method_before_the_minibatch_or_update_that_would_exceed_it(method, unit, spent):
    digits = _load()
    result = digits.run(method, budget=50, **SMALL)
    assert result["vjps"] == spent
    assert len(result["test_accuracy"]) == len(spent)        # an accuracy where each epoch or the budget ends
    assert 0 <= 50 - spent[-1] < unit and result["cpu_seconds"] > 0


def test_without_a_budget_every_epoch_is_run_and_counted():
    digits = _load()
    result = digits.run("tbptt10", **{**SMALL, "epochs": 3})
    assert result["vjps"] == [16, 32, 48] and len(result["test_accuracy"]) == 3


def test_budget_run_prints_the_matched_compute_table(tmp_path):
    for module in ("matplotlib", "tqdm", "joblib", "sklearn"):
        pytest.importorskip(module)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "sequential_digits.py"), "--quick",
                          "--methods", "bptt", "fpp10", "--budget", "60", "--png", str(tmp_path / "d.png")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "matched compute: every run spends at most 60 cell-step VJPs" in out.stdout
    rows = [json.loads(line) for line in (tmp_path / "sequential_digits_runs.jsonl").open()]
    assert {r["method"]: r["vjps"][-1] for r in rows} == {"bptt": 56, "fpp10": 60}


def test_vjps_per_minibatch_counts_the_steps_back_propagated_and_refuses_fpp():
    digits = _load()
    assert (digits.vjps_per_minibatch("bptt", 64), digits.vjps_per_minibatch("tbptt10", 64),
            digits.vjps_per_minibatch("tbptt15", 8)) == (64, 10, 8)
    with pytest.raises(ValueError, match="method: expected 'bptt' or 'tbpttK', got 'fpp10'"):
        digits.vjps_per_minibatch("fpp10", 64)


def test_fpp_state_loss_targets_the_stored_next_state():
    """With W frozen the stored trajectory is the forward one, so f(f(s_{T-1}, o_T), o_{T+1}) = stored s_{T+1}.

    An off-by-one (the stored s_T as the target) made FPP pull every state back one step and left it
    near chance on the digits; this holds the transition's indices.
    """
    import numpy as np
    import refnet
    module = _load()

    class Frozen:                                   # an optimiser that leaves θ and β as they are
        def update(self, params, grads, state):
            return state

    split = module._data(0, True, None, 32)
    T, n_in = split.x_train.shape[0], split.x_train.shape[2]
    r = refnet.rng(0)
    cell, head = refnet.LSTM(n_in, 6), refnet.Head(6, 10, refnet.heads.softmax_cross_entropy)
    theta, beta = cell.init(r), head.init(r)
    buffer = module._TrajectoryBuffer(2, T, 16, cell.n_state, n_in, split.x_train.dtype)
    residuals, real = [], module.fpp_grad

    def recording(cell_, theta_, head_, beta_, s_prev, x, x_next, s_next, y, w, *, v, t):
        if np.any(v):                               # a transition whose state loss counts
            s_T = cell_.step(theta_, s_prev, x, t)[0]
            residuals.append(float(np.abs(cell_.step(theta_, s_T, x_next, t + 1)[0] - s_next).max()))
        return real(cell_, theta_, head_, beta_, s_prev, x, x_next, s_next, y, w, v=v, t=t)
    module.fpp_grad = recording
    module._fpp_epoch(cell, theta, head, beta, Frozen(), [None, None], split, np.arange(32), 16, 2, buffer,
                      module._uniforms(0))
    assert len(residuals) > 10
    assert max(residuals) <= 1e-12
