"""refnet.sweep: grids through joblib, results as JSON lines."""
import sys

import pytest

from refnet.sweep import grid, read_results, run_sweep


def square_plus(a, b):
    return {"value": a * a + b}


def test_grid_is_the_row_major_product_of_its_axes():
    assert grid(a=[1, 2], b=["x", "y"]) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                            {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_grid_rejects_an_axis_that_is_not_a_list():
    with pytest.raises(TypeError, match="axis 'a' must be a list of values, got str 'xy'"):
        grid(a="xy")


def test_run_sweep_in_two_processes_writes_one_json_line_per_point(tmp_path):
    pytest.importorskip("joblib")
    path = tmp_path / "runs.jsonl"
    seen = []
    rows = run_sweep(square_plus, grid(a=[1, 2, 3], b=[10, 20]), path, n_jobs=2, progress=seen.append)
    back = read_results(path)
    assert sorted((r["a"], r["b"], r["value"]) for r in back) == [(a, b, a * a + b) for a in (1, 2, 3)
                                                                  for b in (10, 20)]
    assert len(rows) == len(seen) == 6


def test_run_sweep_with_a_scheduler_but_no_dask_says_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("joblib")
    # Hide dask.distributed whether or not it is installed (None in sys.modules makes the import
    # fail), so the message is checked on every machine, CI's included, where dask is installed.
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ImportError, match=r"needs dask.distributed \(pip install 'dask\[distributed\]'\)"):
        run_sweep(square_plus, grid(a=[1], b=[1]), tmp_path / "runs.jsonl", scheduler="tcp://127.0.0.1:8786")


def test_run_sweep_on_a_local_dask_cluster_gives_the_same_rows(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        run_sweep(square_plus, grid(a=[1, 2], b=[0]), tmp_path / "runs.jsonl", scheduler=cluster.scheduler_address)
    assert sorted(r["value"] for r in read_results(tmp_path / "runs.jsonl")) == [1, 4]
