"""examples/cycleworld.py with --quick --json: one line per (setting, method) and heat-map cell, and the figure."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from figures import MAX_WIDTH, png_size

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"p6", "p6-mse", "p10", "p15"}
METHODS = {f"fpp{n}" for n in range(1, 11)} | {f"tbptt{T}" for T in range(1, 11)} | {"rtrl", "uoro", "kfrtrl", "snap1", "rflo"}
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _run(tmp_path, *args):
    for module in ("matplotlib", "tqdm", "joblib"):
        pytest.importorskip(module)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "cycleworld.py"), "--quick", "--json", *args],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_cycleworld_quick_json_reports_every_method_in_every_setting_and_the_heat_map(tmp_path):
    png = tmp_path / "cycleworld.png"
    rows = _run(tmp_path, "--png", str(png), "--jobs", "2")
    compare = [r for r in rows if r["study"] == "compare"]
    assert {(r["setting"], r["method"]) for r in compare} == {(s, m) for s in SETTINGS for m in METHODS}
    assert {(r["buffer"], r["budget"]) for r in rows if r["study"] == "heat"} == {(5, 1), (5, 2), (20, 1), (20, 2)}
    for r in rows:
        assert len(r["final_accuracy"]) == len(r["seeds"]) == len(r["steps_to_95"]) == len(r["status"])
        assert all(0.0 <= a <= 1.0 for a in r["final_accuracy"])
        assert r["us_per_step"] > 0 and r["always_zero"] == (r["p"] - 1) / r["p"]
    assert png_size(png)[0] <= MAX_WIDTH and png_size(tmp_path / "cycleworld_heat.png")[0] <= MAX_WIDTH
    assert (tmp_path / "cycleworld_runs.jsonl").stat().st_size > 0


def test_cycleworld_long_run_reports_memory_samples_and_finite_parameters(tmp_path):
    (row,) = _run(tmp_path, "--long", "500", "--trace-heap")
    assert row["steps"] == 500 and row["params_finite"] and len(row["memory"]) == 10
    assert [json.loads(line) for line in (tmp_path / "cycleworld_long.jsonl").open()] == [row]
    assert all(m["rss_kb"] > 0 and m["heap_kb"] > 0 for m in row["memory"])
