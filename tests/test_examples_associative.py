"""examples/associative_retrieval.py: the --quick --json run, in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from figures import MAX_WIDTH, png_size

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_rows(tmp_path_factory):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    folder = tmp_path_factory.mktemp("associative")
    png = folder / "curves.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "associative_retrieval.py"), "--quick",
                           "--json", "--png", str(png)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], png


def test_quick_run_prints_one_json_row_per_model_beside_the_paper(quick_rows):
    rows, _ = quick_rows
    assert [(r["model"], r["R"], r["pairs"]) for r in rows] == [
        ("irnn", 20, 2), ("lstm", 20, 2), ("fast_weights", 20, 2)]
    for row in rows:
        assert row["diverged"] is None and row["steps"] == 40
        assert 0.0 <= row["test_error"] <= 1.0
        assert row["paper_test_error_k4"] is not None


def test_quick_run_records_learning_curves_and_saves_the_figure(quick_rows):
    rows, png = quick_rows
    for row in rows:
        assert [step for step, _ in row["curve"]] == [0, 20, 40]
    assert png_size(png)[0] <= MAX_WIDTH


def test_quick_run_writes_the_rows_it_printed_to_the_results_file(quick_rows):
    rows, png = quick_rows
    saved = [json.loads(line) for line in (png.parent / "associative_retrieval_results.jsonl").open()]
    assert saved == rows


def test_stop_at_ends_a_model_at_the_first_evaluation_that_reaches_the_target(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    # every validation error is <= 100%: each model stops at its first evaluation, step 20 of the quick run's 40
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "associative_retrieval.py"), "--quick", "--json",
                           "--models", "irnn", "--stop-at", "1.0", "--png", str(tmp_path / "c.png")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert row["steps"] == 20 and row["curve"][-1][0] == 20 and row["test_error"] is not None
