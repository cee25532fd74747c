"""refnet.bench: the CLI's JSON rows, its error for an unknown case, and the helpers it rests on."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from refnet.bench.bptt import GRAD_RTOL, lstm_bptt_flops
from refnet.bench.report import format_table
from refnet.bench.timing import MIN_ROUNDS, gemm_flops, time_each

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None
ENV_KEYS = {"case", "numpy_version", "torch_version", "numpy_blas", "numpy_blas_threads",
            "torch_threads", "cpu_count"}
TIME_KEYS = {"median_s", "min_s", "max_s", "repeats"}


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "refnet.bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def bptt_rows():
    """The rows of one quick run (a few seconds; shared by the tests below)."""
    done = _bench("bptt", "--quick", "--json", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _rows(rows, kind):
    return [r for r in rows if r["row"] == kind]


def test_bptt_json_rows_carry_environment(bptt_rows):
    for row in bptt_rows:
        assert ENV_KEYS <= row.keys()
        assert row["case"] == "bptt"


def test_bptt_json_timing_rows_have_positive_ordered_times(bptt_rows):
    timing = _rows(bptt_rows, "timing")
    expected = {(cell, impl, dtype) for cell in ("lstm", "gru", "elman")
                for impl in ["refnet"] + ["torch"] * HAS_TORCH + ["jax"] * HAS_JAX for dtype in ("float32", "float64")}
    assert {(r["cell"], r["impl"], r["dtype"]) for r in timing} == expected
    for row in timing:
        assert TIME_KEYS | {"gflop_per_s", "fraction_of_gemm_cell", "fraction_of_gemm_square"} <= row.keys()
        assert row["kept_bytes"] > 0
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["repeats"] == 1


def test_bptt_json_gemm_rows_have_positive_throughput(bptt_rows):
    gemm = _rows(bptt_rows, "gemm")
    assert {(r["cell"], r["gemm"], r["dtype"]) for r in gemm} == {
        (c, g, d) for c, g in (("lstm", "cell"), ("lstm", "square"), ("gru", "cell"), ("elman", "cell"))
        for d in ("float32", "float64")}
    for row in gemm:
        assert row["median_s"] > 0 and row["gflop_per_s"] > 0


def test_bptt_json_ratio_rows_compare_with_torch_when_installed(bptt_rows):
    ratio = _rows(bptt_rows, "ratio")
    assert sorted((r["cell"], r["dtype"]) for r in ratio) == sorted(
        (c, d) for c in ("lstm", "gru", "elman") for d in ("float32", "float64"))
    for row in ratio:
        for peer, present in (("torch", HAS_TORCH), ("jax", HAS_JAX)):
            if present:
                assert row[f"refnet_over_{peer}"] > 0 and row[f"refnet_over_{peer}_kept"] > 0
                assert row[f"grad_max_rel_err_{peer}"] <= GRAD_RTOL[row["dtype"]]
            else:
                assert row[f"refnet_over_{peer}"] is None and row[f"grad_max_rel_err_{peer}"] is None


def test_unknown_case_exits_2_naming_valid_cases():
    done = _bench("no-such-case")
    assert done.returncode == 2
    assert "no-such-case" in done.stderr and "bptt" in done.stderr


def test_lstm_bptt_flops_counts_three_gate_sized_products_per_step():
    B, I, H, T = 2, 3, 5, 7
    assert lstm_bptt_flops(B, I, H, T) == T * 3 * gemm_flops(B, I + H, 4 * H)


def test_time_each_stops_at_budget_after_min_calls():
    calls = []
    timings = time_each({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        repeats=1000, warmup=0, warmup_seconds=0.0, max_seconds=0.0)
    assert timings["a"].repeats == timings["b"].repeats == MIN_ROUNDS
    assert calls == ["a"] * MIN_ROUNDS + ["b"] * MIN_ROUNDS


def test_format_table_aligns_text_left_and_numbers_right():
    table = format_table(("name", "ms"), [("a", "1.5"), ("long", "10.25")])
    assert table.splitlines() == ["name     ms", "a       1.5", "long  10.25"]


def test_fastweights_quick_rows_cover_both_forms_and_agree_with_torch():
    done = _bench("fastweights", "--quick", "--json", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(r["form"], r["impl"]) for r in rows if r["row"] == "timing"} == {
        (f, i) for f in ("explicit", "attention") for i in ["refnet"] + ["torch"] * HAS_TORCH}
    for r in rows:
        if r["row"] == "ratio" and HAS_TORCH:
            assert r["grad_max_rel_err"] <= 1e-10


def test_online_quick_json_reports_timings_and_agreement():
    done = _bench("online", "--quick", "--json", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert ("tbptt6", 4, "refnet_numba") in {(r["name"], r["n"], r["impl"]) for r in rows if r["row"] == "timing"}
    if HAS_TORCH:
        assert all(r["weights_max_rel_err"] <= r["rtol"] for r in rows if r["row"] == "agreement")


def test_gpu_case_without_a_gpu_refuses_to_report_and_says_why():
    from refnet.bench import gpu
    if gpu.import_gpu()[2] is None:
        pytest.skip("a GPU is here: tests/test_cupy.py runs the case")
    done = _bench("gpu", "--quick")
    assert done.returncode == 1
    assert "gpu: not measured" in done.stderr and gpu.import_gpu()[2] in done.stderr


def test_bptt_table_says_why_the_gpu_rows_are_absent(bptt_rows):
    from refnet.bench import gpu
    if gpu.import_gpu()[2] is None:
        pytest.skip("a GPU is here: the rows are present")
    assert not [r for r in bptt_rows if r["row"] == "gpu"]
    done = _bench("bptt", "--quick", "--repeats", "1")
    assert done.returncode == 0 and "gpu rows: not measured" in done.stdout
