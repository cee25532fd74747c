"""examples/random_walk_ernn.py: the --quick --json run, in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from figures import MAX_WIDTH, png_size

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["RNN", "FastRNN", "FastGRNN", "ERNN(K=1)", "ERNN(K=2)", "exact ERNN"]


@pytest.fixture(scope="module")
def quick_rows(tmp_path_factory):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    folder = tmp_path_factory.mktemp("random_walk_ernn")
    png = folder / "curves.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "random_walk_ernn.py"), "--quick", "--json",
                           "--png", str(png)], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], png


def test_quick_run_gives_a_row_per_reading_and_model_beside_the_paper(quick_rows):
    rows, _ = quick_rows
    runs = [r for r in rows if r["model"] != "step-variance threshold"]
    assert [(r["reading"], r["model"]) for r in runs] == [(reading, m) for reading in ("variance", "std")
                                                          for m in MODELS]
    for row in runs:
        assert row["failed"] is None and row["epochs"] == 2 and 0.0 <= row["test_accuracy"] <= 1.0
        assert len(row["train_loss"]) == len(row["param_change"]) == 2 and row["param_change"][-1] == 0.0
    assert {r["model"]: r["paper_test_accuracy"] for r in runs}["ERNN(K=1)"] == 99.7


def test_quick_run_prints_the_step_variance_baseline_and_saves_the_figure(quick_rows):
    rows, png = quick_rows
    baselines = [r for r in rows if r["model"] == "step-variance threshold"]
    assert [b["reading"] for b in baselines] == ["variance", "std"]
    assert all(0.0 <= b["test_accuracy"] <= 1.0 for b in baselines)
    assert png_size(png)[0] <= MAX_WIDTH
    saved = [json.loads(line) for line in (png.parent / "random_walk_ernn_results.jsonl").open()]
    assert saved == rows
