"""Fixture and candidate files are validated against what they claim, and the compare CLI's exit codes.

Every bad file is a ``FixtureError`` (a ValueError) naming the file and the
problem, never a traceback from zipfile or json; nothing is unpickled and no
file handle is left open.
"""
import gc
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from gradcheck import FixtureError, compare, load_fixture, save_fixture
from gradcheck.cli_fixtures import EXIT_AGREE, EXIT_COULD_NOT_COMPARE, EXIT_DIFFER, EXIT_INCONCLUSIVE
from gradcheck.fixture_io import FORMAT, Fixture, FixtureFileNotFound

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120   # seconds: a hung CLI fails its test instead of the suite


def _fixture():
    arrays = {"inputs/x": np.arange(6.0).reshape(3, 2), "grads/weight": np.linspace(-1, 1, 4).reshape(2, 2),
              "inputs/y": np.array([0, 1, 1])}
    return Fixture({"format": FORMAT, "version": 1, "cell": "toy", "dtype": "float64"}, arrays)


@pytest.fixture
def saved(tmp_path):
    npz, sidecar = save_fixture(_fixture(), tmp_path / "ref")
    return tmp_path / "ref", Path(npz), Path(sidecar)


def _edit_sidecar(sidecar, change):
    meta = json.loads(sidecar.read_text())
    change(meta)
    sidecar.write_text(json.dumps(meta))


# ---- the archive ---------------------------------------------------------------------------------

def test_a_truncated_archive_is_named(saved):
    stem, npz, _ = saved
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with pytest.raises(FixtureError, match=r"ref\.npz.*(truncated|not a zip)"):
        load_fixture(stem)


def test_a_corrupt_archive_is_named(saved):
    stem, npz, _ = saved
    data = bytearray(npz.read_bytes())
    start = data.index(b"\x93NUMPY") + 200           # inside the first member's array bytes
    data[start:start + 16] = b"\xff" * 16
    npz.write_bytes(bytes(data))
    with pytest.raises(FixtureError, match=r"ref\.npz.*corrupt"):
        load_fixture(stem)


def test_a_file_that_is_not_a_zip_is_named(saved):
    stem, npz, _ = saved
    npz.write_text("these are not the arrays you are looking for")
    with pytest.raises(FixtureError, match=r"ref\.npz' is not an \.npz archive"):
        load_fixture(stem)


def test_an_object_array_is_refused_without_unpickling(saved, monkeypatch):
    stem, npz, _ = saved
    np.savez(npz, **{"inputs/x": np.arange(6.0).reshape(3, 2), "grads/weight": np.array([{"a": 1}], dtype=object),
                     "inputs/y": np.array([0, 1, 1])})

    def never(*args, **kwargs):
        raise AssertionError("pickle was used")
    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(pickle, "loads", never)
    with pytest.raises(FixtureError, match=r"ref\.npz.*'grads/weight' cannot be read without pickle"):
        load_fixture(stem)


def test_a_string_array_is_refused(saved):
    stem, npz, _ = saved
    np.savez(npz, **{"inputs/x": np.arange(6.0).reshape(3, 2), "grads/weight": np.array(["a", "b"]),
                     "inputs/y": np.array([0, 1, 1])})
    with pytest.raises(FixtureError, match=r"'grads/weight' has dtype <U1"):
        load_fixture(stem)


def test_a_missing_archive_is_named(saved):
    stem, npz, _ = saved
    npz.unlink()
    with pytest.raises(FixtureFileNotFound, match=r"ref\.npz' does not exist"):
        load_fixture(stem)


# ---- the sidecar ---------------------------------------------------------------------------------

def test_a_missing_sidecar_is_named_and_is_also_file_not_found(saved):
    stem, _, sidecar = saved
    sidecar.unlink()
    with pytest.raises(FixtureError, match=r"ref\.json' does not exist") as info:
        load_fixture(stem)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_a_sidecar_that_is_not_json_is_named(saved):
    stem, _, sidecar = saved
    sidecar.write_text("{'format': refnet")
    with pytest.raises(FixtureError, match=r"sidecar '.*ref\.json' is not valid JSON"):
        load_fixture(stem)


def test_a_sidecar_that_is_not_an_object_is_named(saved):
    stem, _, sidecar = saved
    sidecar.write_text("[1, 2, 3]")
    with pytest.raises(FixtureError, match="must hold a JSON object, got a JSON list"):
        load_fixture(stem)


def test_a_sidecar_of_another_format_is_named(saved):
    stem, _, sidecar = saved
    _edit_sidecar(sidecar, lambda m: m.update(version=99))
    with pytest.raises(FixtureError, match=r"ref\.json' must be a 'refnet-fixture' sidecar of version"):
        load_fixture(stem)


def test_a_sidecar_without_an_arrays_table_is_named(saved):
    stem, _, sidecar = saved
    _edit_sidecar(sidecar, lambda m: m.pop("arrays"))
    with pytest.raises(FixtureError, match="must have an 'arrays' object"):
        load_fixture(stem)


def test_a_listed_array_the_archive_lacks_is_named(saved):
    stem, _, sidecar = saved
    _edit_sidecar(sidecar, lambda m: m["arrays"].update({"grads/bias": {"shape": [2], "dtype": "float64"}}))
    with pytest.raises(FixtureError, match=r"lacks arrays its sidecar .* lists: \['grads/bias'\]"):
        load_fixture(stem)


def test_an_unlisted_array_in_the_archive_is_named(saved):
    stem, _, sidecar = saved
    _edit_sidecar(sidecar, lambda m: m["arrays"].pop("inputs/y"))
    with pytest.raises(FixtureError, match=r"holds arrays its sidecar .* does not list: \['inputs/y'\]"):
        load_fixture(stem)


def test_a_shape_the_sidecar_misstates_is_named(saved):
    stem, _, sidecar = saved
    _edit_sidecar(sidecar, lambda m: m["arrays"]["grads/weight"].update(shape=[4]))
    with pytest.raises(FixtureError, match=r"'grads/weight' has shape \[2, 2\], but its sidecar says \[4\]"):
        load_fixture(stem)


def test_a_dtype_the_sidecar_misstates_is_named(saved):
    stem, _, sidecar = saved
    _edit_sidecar(sidecar, lambda m: m["arrays"]["grads/weight"].update(dtype="float32"))
    with pytest.raises(FixtureError, match=r"'grads/weight' has dtype float64, but its sidecar says 'float32'"):
        load_fixture(stem)


# ---- candidates, handles -------------------------------------------------------------------------

def test_a_plain_npz_candidate_without_a_sidecar_is_compared(saved, tmp_path):
    stem, _, _ = saved
    np.savez(tmp_path / "mine.npz", **{"grads/weight": _fixture().arrays["grads/weight"]})
    assert compare(stem, tmp_path / "mine.npz").passed


def test_a_truncated_candidate_is_named(saved, tmp_path):
    stem, _, _ = saved
    np.savez(tmp_path / "mine.npz", **{"grads/weight": _fixture().arrays["grads/weight"]})
    data = (tmp_path / "mine.npz").read_bytes()
    (tmp_path / "mine.npz").write_bytes(data[:40])
    with pytest.raises(FixtureError, match=r"mine\.npz"):
        compare(stem, tmp_path / "mine.npz")


def _open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_no_file_handle_is_left_open_on_any_bad_file(saved):
    stem, npz, sidecar = saved
    good_npz, good_json = npz.read_bytes(), sidecar.read_text()
    breakages = [lambda: npz.write_bytes(good_npz[:100]),
                 lambda: npz.write_text("not a zip"),
                 lambda: sidecar.write_text("{not json"),
                 lambda: _edit_sidecar(sidecar, lambda m: m["arrays"]["grads/weight"].update(shape=[9]))]
    gc.collect()
    before = _open_descriptors()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for breakage in breakages:
            npz.write_bytes(good_npz)
            sidecar.write_text(good_json)
            breakage()
            with pytest.raises(FixtureError):
                load_fixture(stem)
        npz.write_bytes(good_npz)
        sidecar.write_text(good_json)
        load_fixture(stem)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert _open_descriptors() == before


# ---- the CLI, as a user runs it ------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gradcheck", "compare", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_cli_exits_0_when_the_candidate_agrees(saved):
    stem, _, _ = saved
    out = _cli(stem, stem)
    assert out.returncode == EXIT_AGREE == 0, out.stderr


def test_cli_exits_1_when_the_candidate_differs(saved, tmp_path):
    stem, _, _ = saved
    np.savez(tmp_path / "mine.npz", **{"grads/weight": _fixture().arrays["grads/weight"] + 1.0})
    out = _cli(stem, tmp_path / "mine.npz")
    assert out.returncode == EXIT_DIFFER == 1 and "FAILED" in out.stdout


def test_cli_exits_2_and_names_a_bad_file(saved, tmp_path):
    stem, _, _ = saved
    (tmp_path / "mine.npz").write_text("garbage")
    out = _cli(stem, tmp_path / "mine.npz")
    assert out.returncode == EXIT_COULD_NOT_COMPARE == 2
    assert "mine.npz" in out.stderr and "Traceback" not in out.stderr


def test_cli_exits_2_for_a_missing_file(saved, tmp_path):
    stem, _, _ = saved
    out = _cli(stem, tmp_path / "nowhere.npz")
    assert out.returncode == 2 and "nowhere.npz" in out.stderr and "Traceback" not in out.stderr


def test_cli_exits_2_for_a_usage_error():
    out = _cli("only-one-argument")
    assert out.returncode == 2 and "usage" in out.stderr


def test_cli_exits_2_for_a_negative_tolerance(saved):
    stem, _, _ = saved
    out = _cli(stem, stem, "--rtol", "-1")
    assert out.returncode == 2 and "--rtol" in out.stderr


def test_cli_exits_3_when_nothing_is_shared(saved, tmp_path):
    stem, _, _ = saved
    np.savez(tmp_path / "mine.npz", other=np.zeros(2))
    out = _cli(stem, tmp_path / "mine.npz")
    assert out.returncode == EXIT_INCONCLUSIVE == 3 and "inconclusive" in out.stderr
