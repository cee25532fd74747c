"""examples/cycleworld.py with --quick --json: one line per (setting, method), and the figure."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"p6", "p6-mse", "p10", "p15"}
METHODS = {f"tbptt{T}" for T in range(1, 9)} | {"rtrl", "uoro", "kfrtrl"}


def test_cycleworld_quick_json_reports_every_method_in_every_setting(tmp_path):
    for module in ("matplotlib", "tqdm"):
        pytest.importorskip(module)
    png = tmp_path / "cycleworld.png"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "cycleworld.py"), "--quick", "--json",
                          "--png", str(png)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert {(r["setting"], r["method"]) for r in rows} == {(s, m) for s in SETTINGS for m in METHODS}
    for r in rows:
        assert len(r["final_accuracy"]) == len(r["seeds"]) == len(r["steps_to_95"]) == len(r["status"])
        assert all(0.0 <= a <= 1.0 for a in r["final_accuracy"])
        assert r["us_per_step"] > 0 and r["always_zero"] == (r["p"] - 1) / r["p"]
    assert png.stat().st_size > 0
