"""The CuPy backend: the same numbers as NumPy, and the matrix passing on the GPU.

Skipped where CuPy cannot be imported or sees no GPU.  Run on a GPU machine:
``python -m pytest tests/test_cupy.py`` and ``python -m gradcheck --backend cupy``.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import refnet

from conftest import CELL_FACTORIES

cupy = pytest.importorskip("cupy")
try:
    if cupy.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("CuPy sees no GPU", allow_module_level=True)
except Exception as exc:  # no driver, no device
    pytest.skip(f"CuPy is unusable: {exc}", allow_module_level=True)


def _run(name, monkeypatch, backend):
    monkeypatch.setenv("REFNET_BACKEND", backend)
    r = refnet.rng(0)
    cell = CELL_FACTORIES[name](3, 4)
    head = refnet.Head(cell.n_out, 3)
    theta, beta = cell.init(r), head.init(r)
    x, s0, y = r.normal((6, 2, 3)), r.normal((2, cell.n_state)), r.integers(0, 3, (6, 2))
    res = refnet.tbptt(cell, theta, x, s0, head, beta, y, k1=2, k2=3)
    return res


@pytest.mark.parametrize("name", list(CELL_FACTORIES))
def test_cupy_gradients_equal_numpy_gradients(name, monkeypatch):
    on_gpu = _run(name, monkeypatch, "cupy")
    assert isinstance(on_gpu.ds0, cupy.ndarray)
    on_cpu = _run(name, monkeypatch, "numpy")
    assert on_gpu.loss == pytest.approx(on_cpu.loss, rel=1e-12)
    for k in on_cpu.dtheta:
        np.testing.assert_allclose(refnet.to_numpy(on_gpu.dtheta[k]), on_cpu.dtheta[k], rtol=1e-10, atol=1e-13)


def test_mixing_backends_in_one_call_is_a_type_error(monkeypatch):
    monkeypatch.setenv("REFNET_BACKEND", "cupy")
    cell = refnet.GRU(2, 3)
    theta = cell.init(refnet.rng(0))
    with pytest.raises(TypeError, match="mixed"):
        refnet.forward(cell, theta, np.zeros((2, 1, 2)), None)


def test_the_gradcheck_matrix_passes_on_cupy():
    env = dict(os.environ, REFNET_BACKEND="cupy")
    out = subprocess.run([sys.executable, "-m", "gradcheck", "--json"], capture_output=True, text=True, env=env,
                         timeout=600)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    failed = [r for r in rows if not r["passed"]]
    assert out.returncode == 0 and not failed, failed or out.stderr
    assert all(r["backend"] == "cupy" for r in rows)
