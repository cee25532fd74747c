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
