"""Corrupt fixture files are FixtureErrors naming the file and the problem; the CLI exits 2, never 1.

Each case is a fixture that loads badly in one way: an archive member that is not an .npy array, an
.npy header claiming more data than it holds (refused before numpy allocates it), a sidecar nested
beyond what json can read, and sidecar fields of the wrong type or range (every field refnet reads).
"""
import copy
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from gradcheck.compare import compare
from gradcheck.fixture_io import FixtureError, load_fixture, load_npz, save_fixture
from refnet.fixtures import bptt_fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("fixture")
    stem = str(d / "ref")
    save_fixture(bptt_fixture("lstm", T=3, B=1, input_size=2, hidden_size=2, output_size=2), stem)
    with open(stem + ".json") as f:
        return stem, json.load(f)


def _npz_with(src_npz, extra=None, replace=None):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, zipfile.ZipFile(src_npz) as s:
        for n in s.namelist():
            z.writestr(n, replace[1] if replace and n == replace[0] else s.read(n))
        if extra:
            z.writestr(*extra)
    return buf.getvalue()


def _header(shape, descr="<f8"):
    h = io.BytesIO()
    np.lib.format.write_array_header_1_0(h, {"descr": descr, "fortran_order": False, "shape": shape})
    return h.getvalue()


def _edit(meta, path, value):
    meta = copy.deepcopy(meta)
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return meta


def _cases(meta):
    grads = "grads/weight_hh_l0"
    trace = next(iter(meta["traces"]))
    block = next(iter(meta["gate_blocks"]))
    return {
        "non-npy member": (_edit(meta, ("arrays", "junk.txt"), {"shape": [], "dtype": "float64"}),
                           ("extra", ("junk.txt", b"hello")), "junk.txt"),
        "huge header": (meta, ("replace", ("grads/h0.npy", _header((10 ** 15,)) + b"\0" * 64)), "claims shape"),
        "header beyond data": (meta, ("replace", ("grads/h0.npy", _header((1000,)) + b"\0" * 64)), "claims shape"),
        "object header": (meta, ("replace", ("grads/h0.npy", _header((2,), "|O") + b"\0" * 16)), "pickle"),
        "json bomb": ('{"format": "refnet-fixture", "version": 1, "x": ' + "[" * 100000 + "]" * 100000 + "}",
                      None, "too deeply"),
        "gate_blocks axis 5": (_edit(meta, ("gate_blocks", block, "axis"), 5), None, "axis"),
        "gate_blocks axis str": (_edit(meta, ("gate_blocks", block, "axis"), "0"), None, "axis"),
        "gate_blocks size 0": (_edit(meta, ("gate_blocks", block, "size"), 0), None, "size"),
        "gate_blocks size wrong": (_edit(meta, ("gate_blocks", block, "size"), 3), None, "rows"),
        "gate_blocks gates []": (_edit(meta, ("gate_blocks", block, "gates"), []), None, "gates"),
        "gate_blocks unknown key": (_edit(meta, ("gate_blocks", "grads/nothing"),
                                          {"axis": 0, "size": 1, "gates": ["a"]}), None, "arrays"),
        "shape 5": (_edit(meta, ("arrays", grads, "shape"), 5), None, "shape"),
        "shape null": (_edit(meta, ("arrays", grads, "shape"), None), None, "shape"),
        "shape of strings": (_edit(meta, ("arrays", grads, "shape"), ["8", "2"]), None, "shape"),
        "dtype 7": (_edit(meta, ("arrays", grads, "dtype"), 7), None, "dtype"),
        "array claim a list": (_edit(meta, ("arrays", grads), [1, 2]), None, grads),
        "traces string": (_edit(meta, ("traces",), "forward/h_l0"), None, "traces"),
        "trace direction": (_edit(meta, ("traces", trace, "direction"), "sideways"), None, "direction"),
        "trace layer str": (_edit(meta, ("traces", trace, "layer"), "0"), None, "layer"),
        "trace not listed": (_edit(meta, ("traces", "forward/nothing"),
                                   {"direction": "forward", "quantity": "h", "layer": 0}), None, "arrays"),
        "trace of a vector": (_edit(meta, ("traces", "grads/bias_hh_l0"),
                                    {"direction": "backward", "quantity": "db", "layer": 0}), None, "ndim"),
        "T a string": (_edit(meta, ("T",), "3"), None, "'T'"),
        "tolerances bad": (_edit(meta, ("tolerances", "float64"), {"rtol": -1, "atol": 0}), None, "tolerances"),
        "version true": (_edit(meta, ("version",), True), None, "version"),
    }


CASES = list(_cases({"traces": {"t": {}}, "gate_blocks": {"b": {}}, "arrays": {"grads/weight_hh_l0": {}},
                     "tolerances": {"float64": {}}}))


@pytest.mark.parametrize("label", CASES)
def test_a_corrupt_fixture_is_a_fixture_error_naming_the_file_and_the_problem(src, tmp_path, label):
    stem0, meta0 = src
    meta, npz, needle = _cases(meta0)[label]
    stem = str(tmp_path / label.replace(" ", "_"))
    shutil.copy(stem0 + ".npz", stem + ".npz")
    if npz is not None:
        kind, payload = npz
        data = _npz_with(stem0 + ".npz", **{"extra" if kind == "extra" else "replace": payload})
        with open(stem + ".npz", "wb") as f:
            f.write(data)
    with open(stem + ".json", "w") as f:
        f.write(meta if isinstance(meta, str) else json.dumps(meta))
    with pytest.raises(FixtureError) as exc:
        load_fixture(stem)
    message = str(exc.value)
    assert os.path.basename(stem) in message and needle in message, message
    with pytest.raises(FixtureError):
        compare(stem, stem0)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "gradcheck", "compare", stem, stem0], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-500:]


def test_a_huge_header_is_refused_before_any_allocation(src, tmp_path, monkeypatch):
    stem0, _ = src
    path = tmp_path / "big.npz"
    path.write_bytes(_npz_with(stem0 + ".npz", replace=("grads/h0.npy", _header((10 ** 15,)) + b"\0" * 64)))

    def never(*args, **kwargs):
        raise AssertionError("an array was read before its header was checked")
    monkeypatch.setattr(np.lib.format, "read_array", never)
    with pytest.raises(FixtureError, match="claims shape"):
        load_npz(path)


def test_an_in_memory_fixture_with_a_bad_gate_block_is_named():
    fx = bptt_fixture("lstm", T=2, B=1, input_size=2, hidden_size=2, output_size=2)
    meta = copy.deepcopy(fx.meta)
    meta["gate_blocks"][next(iter(meta["gate_blocks"]))]["axis"] = 4
    bad = type(fx)(meta, fx.arrays)
    with pytest.raises(FixtureError, match="in memory.*axis"):
        compare(bad, {k: v for k, v in fx.arrays.items() if k.startswith("grads/")})
