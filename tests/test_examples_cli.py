"""examples/_cli.py and every example's command line: usage errors, results that survive a failure.

The examples are imported from their paths (examples/ is not a package) and
their ``main(argv)`` is called in-process: a bad argument must end in
argparse's usage error (SystemExit 2, the option named on stderr) before any
work starts, so these tests take well under a second each.
"""
import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import _cli  # noqa: E402

NEEDS = {"associative_retrieval": ("tqdm",), "cycleworld": ("tqdm", "joblib"),
         "hopfield_rbp": ("tqdm", "sklearn"), "hyperopt_rbp": ("tqdm", "sklearn"),
         "oracle_pytorch": ("torch", "tqdm"), "random_walk_ernn": ("tqdm",),
         "sequential_digits": ("tqdm", "joblib", "sklearn")}


def load(name):
    """The example module ``examples/<name>.py``, skipping when an optional dependency is missing."""
    for module in NEEDS[name]:
        pytest.importorskip(module)
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the argument types ------------------------------------------------------------------------

@pytest.mark.parametrize("kind, text", [(_cli.positive_int, "0"), (_cli.positive_int, "-3"),
                                        (_cli.positive_int, "2.5"), (_cli.positive_int, "ten"),
                                        (_cli.nonnegative_int, "-1"), (_cli.seed, "-1"), (_cli.seed, "1e3"),
                                        (_cli.positive_float, "0"), (_cli.positive_float, "nan"),
                                        (_cli.positive_float, "inf"), (_cli.probability, "1.5"),
                                        (_cli.probability, "-0.1"), (_cli.probability, "nan")])
def test_argument_types_refuse_bad_values_saying_what_was_expected_and_what_came(kind, text):
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected .*got {text!r}"):
        kind(text)


@pytest.mark.parametrize("kind, text, value", [(_cli.positive_int, "1", 1), (_cli.nonnegative_int, "0", 0),
                                               (_cli.seed, "0", 0), (_cli.seed, "12", 12),
                                               (_cli.positive_float, "1e-3", 1e-3), (_cli.probability, "0", 0.0),
                                               (_cli.probability, "1", 1.0)])
def test_argument_types_accept_the_edges_of_their_ranges(kind, text, value):
    assert kind(text) == value


def test_parser_refuses_abbreviated_options(capsys):
    parser = _cli.parser("test")
    parser.add_argument("--seeds", type=_cli.positive_int)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--seed", "3"])
    assert exit_.value.code == 2 and "unrecognized arguments: --seed" in capsys.readouterr().err


@pytest.mark.parametrize("values, message", [([], "expected at least one value, got none"),
                                             ([10, 20, 10], r"expected distinct values, got \[10, 20, 10\]")])
def test_check_grid_is_a_usage_error_naming_the_option(values, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        _cli.check_grid(_cli.parser("test"), "--truncations", values)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --truncations" in err
    assert pytest.importorskip("re").search(message, err)


# ---- results that cannot be lost ---------------------------------------------------------------

def test_write_json_lines_replaces_the_file_with_every_row(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text("old\n")
    _cli.write_json_lines(path, [{"a": 1}, {"b": [2, 3]}])
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"b": [2, 3]}]
    assert os.listdir(tmp_path) == ["runs.jsonl"]           # no temporary file left behind


def test_write_json_lines_keeps_the_old_file_when_a_row_cannot_be_written(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        _cli.write_json_lines(path, [{"a": 1}, {"b": object()}])
    assert path.read_text() == '{"old": true}\n'
    assert os.listdir(tmp_path) == ["runs.jsonl"]


def test_atomic_path_keeps_the_old_file_and_the_finished_rows_when_the_run_fails(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"old": true}\n')
    with pytest.raises(RuntimeError, match="run 2 failed"):
        with _cli.atomic_path(path, keep_partial=True) as tmp, open(tmp, "w") as out:
            out.write('{"run": 1}\n')
            out.flush()
            raise RuntimeError("run 2 failed")
    assert path.read_text() == '{"old": true}\n'
    assert (tmp_path / "runs.jsonl.partial").read_text() == '{"run": 1}\n'
    assert sorted(os.listdir(tmp_path)) == ["runs.jsonl", "runs.jsonl.partial"]


def test_atomic_path_into_a_missing_folder_fails_before_the_run(tmp_path):
    with pytest.raises(FileNotFoundError):
        with _cli.atomic_path(tmp_path / "missing" / "runs.jsonl"):
            pytest.fail("the block must not run when the results cannot be written")


def test_save_figure_reports_a_bad_path_and_returns_false(tmp_path, capsys):
    pytest.importorskip("matplotlib")

    def draw(path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        fig.savefig(path)

    bad = str(tmp_path / "missing" / "figure.png")
    assert _cli.save_figure(draw, bad) is False
    assert f"figure not saved to {bad!r}" in capsys.readouterr().err
    assert _cli.save_figure(draw, str(tmp_path / "figure.png")) is True


def test_save_figure_reports_missing_matplotlib(capsys):
    def draw(path):
        raise ImportError("No module named 'matplotlib'")
    assert _cli.save_figure(draw, "x.png") is False
    assert "pip install matplotlib" in capsys.readouterr().err


# ---- every example: bad arguments are usage errors naming the argument -------------------------

BAD_ARGUMENTS = [
    ("hyperopt_rbp", ["--steps", "0"], "--steps"),
    ("hyperopt_rbp", ["--seed", "-1"], "--seed"),
    ("hyperopt_rbp", ["--cost-K", "10", "10"], "--cost-K"),
    ("hyperopt_rbp", ["--cost-K", "200"], "--cost-K"),
    ("hyperopt_rbp", ["--K", "-1"], "--K"),
    ("hyperopt_rbp", ["--meta", "3"], "--meta"),
    ("random_walk_ernn", ["--seed", "3"], "--seed"),
    ("random_walk_ernn", ["--epochs", "0"], "--epochs"),
    ("random_walk_ernn", ["--seeds", "-2"], "--seeds"),
    ("random_walk_ernn", ["--lr", "0"], "--lr"),
    ("random_walk_ernn", ["--models", "RNN", "RNN"], "--models"),
    ("random_walk_ernn", ["--n-per-class", "1"], "--n-per-class"),
    ("associative_retrieval", ["--steps", "0"], "--steps"),
    ("associative_retrieval", ["--seed", "-1"], "--seed"),
    ("associative_retrieval", ["--sizes", "20", "20"], "--sizes"),
    ("associative_retrieval", ["--pairs", "27"], "--pairs"),
    ("associative_retrieval", ["--eval-every", "0"], "--eval-every"),
    ("associative_retrieval", ["--stop-at", "1.5"], "--stop-at"),
    ("hopfield_rbp", ["--seed", "3"], "--seed"),
    ("hopfield_rbp", ["--steps", "0"], "--steps"),
    ("hopfield_rbp", ["--truncations", "60"], "--truncations"),
    ("hopfield_rbp", ["--truncations", "10", "10"], "--truncations"),
    ("hopfield_rbp", ["--corruption", "1.5"], "--corruption"),
    ("hopfield_rbp", ["--methods", "RBP", "RBP"], "--methods"),
    ("hopfield_rbp", ["--methods", "BPTT"], "--methods"),
    ("hopfield_rbp", ["--dtype", "float16"], "--dtype"),
    ("cycleworld", ["--seed", "3"], "--seed"),
    ("cycleworld", ["--steps", "0"], "--steps"),
    ("cycleworld", ["--window", "5000"], "--steps"),
    ("cycleworld", ["--long", "5"], "--long"),
    ("cycleworld", ["--jobs", "0"], "--jobs"),
    ("cycleworld", ["--methods", "fpp1", "fpp1"], "--methods"),
    ("sequential_digits", ["--seed", "3"], "--seed"),
    ("sequential_digits", ["--epochs", "0"], "--epochs"),
    ("sequential_digits", ["--batch", "-1"], "--batch"),
    ("sequential_digits", ["--budget", "0"], "--budget"),
    ("sequential_digits", ["--budget", "1000", "--epochs", "3"], "--budget"),
    ("sequential_digits", ["--budget", "1000", "--fpp-epochs", "2"], "--budget"),
    ("oracle_pytorch", ["--seed", "-1"], "--seed"),
    ("oracle_pytorch", ["--se", "1"], "--se"),
]


@pytest.mark.parametrize("name, argv, option", BAD_ARGUMENTS, ids=[f"{n} {' '.join(a)}" for n, a, _ in BAD_ARGUMENTS])
def test_bad_argument_is_a_usage_error_naming_it(name, argv, option, tmp_path, capsys):
    example = load(name)
    out = tmp_path / "results.jsonl"
    with pytest.raises(SystemExit) as exit_:
        example.main([*argv, "--out", str(out), "--png", str(tmp_path / "figure.png")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert "usage:" in err and option in err.split("error:", 1)[1], err
    assert not out.exists() and not (tmp_path / "figure.png").exists()     # nothing ran


# ---- a figure that cannot be saved loses no numbers --------------------------------------------

@pytest.mark.parametrize("name", ["hyperopt_rbp", "hopfield_rbp", "sequential_digits"])
def test_bad_png_path_reports_the_error_after_the_results_are_saved(name, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    example = load(name)
    out = tmp_path / "results.jsonl"
    bad_png = tmp_path / "no such folder" / "figure.png"
    code = example.main(["--quick", "--json", "--out", str(out), "--png", str(bad_png)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"figure not saved to {str(bad_png)!r}" in captured.err
    saved = [json.loads(line) for line in out.read_text().splitlines()]
    printed = [json.loads(line) for line in captured.out.splitlines()]
    assert saved and printed        # the runs are in --out, the results on stdout, though the figure failed


def test_a_failed_sweep_keeps_the_previous_results_and_its_finished_rows(tmp_path, monkeypatch):
    example = load("sequential_digits")
    out = tmp_path / "sequential_digits_runs.jsonl"
    out.write_text('{"previous": "results"}\n')
    calls = []

    def run(**point):           # the first run finishes, the second fails
        calls.append(point)
        if len(calls) == 2:
            raise RuntimeError("the second run failed")
        return {"test_accuracy": [0.5], "seconds_per_epoch": 1.0, "T": 8}

    monkeypatch.setattr(example, "run", run)
    with pytest.raises(RuntimeError, match="the second run failed"):
        example.main(["--quick", "--methods", "bptt", "tbptt10", "--out", str(out),
                      "--png", str(tmp_path / "figure.png")])
    assert out.read_text() == '{"previous": "results"}\n'
    (partial,) = [json.loads(line) for line in (tmp_path / "sequential_digits_runs.jsonl.partial").open()]
    assert partial["method"] == "bptt" and partial["test_accuracy"] == [0.5]
    assert not (tmp_path / "figure.png").exists()


# ---- the hyper-parameter example's truncated hyper-gradient ------------------------------------

def test_tbptt_hypergradient_through_every_step_is_bptt():
    np = pytest.importorskip("numpy")
    example = load("hyperopt_rbp")
    task = example.make_task(steps=5, hidden=3, batch=7, seed=4)
    theta = {"log_lr": np.array([-1.0, -2.0])}
    loss_b, g_b = example.bptt_hypergradient(task, theta, 5)
    loss_t, g_t = example.tbptt_hypergradient(task, theta, 5, 5)
    # the same products in the same order: equal to the last bit
    assert loss_t == loss_b and np.array_equal(g_t, g_b)
    _, g_short = example.tbptt_hypergradient(task, theta, 5, 2)
    assert not np.allclose(g_short, g_b, rtol=1e-3)        # truncation drops terms far above rounding
