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


# ---------------------------------------------------------------- the fused path's device kernels (issue 14 item 3)

FUSED_DEVICE_CELLS = {
    "elman_tanh": lambda: refnet.ElmanRNN(3, 5, "tanh"),
    "irnn": lambda: refnet.IRNN(3, 5, input_std=0.5),
    "lstm": lambda: refnet.LSTM(3, 5),
    "gru": lambda: refnet.GRU(3, 5),
    "fastrnn_relu": lambda: refnet.FastRNN(3, 5, "relu"),
    "fastgrnn_tanh_sigmoid": lambda: refnet.FastGRNN(3, 5, "tanh", "sigmoid"),
}


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("name", list(FUSED_DEVICE_CELLS))
def test_fused_device_kernels_equal_the_per_step_path_on_the_gpu(name, dtype, rtol, monkeypatch):
    from refnet.kernels import fused_device
    monkeypatch.setenv("REFNET_BACKEND", "cupy")
    r = refnet.rng(0, dtype=dtype)
    cell = FUSED_DEVICE_CELLS[name]()
    head = refnet.Head(cell.n_out, 3)
    theta, beta = cell.init(r), head.init(r)
    x, s0, y = r.normal((7, 4, 3)), r.normal((4, cell.n_state), 0.5), r.integers(0, 3, (7, 4))

    def run():
        res = refnet.bptt(cell, theta, x, s0, head, beta, y)
        return {"loss": res.loss, "ds0": res.ds0, **res.dtheta}
    monkeypatch.setenv("REFNET_FUSED", "0")
    reference = run()
    monkeypatch.setenv("REFNET_FUSED", "1")
    kernel_set = fused_device.kernels_for(cupy)
    before = sum(k.calls for k in kernel_set.built.values())
    ours = run()
    assert sum(k.calls for k in kernel_set.built.values()) - before == 2 * 7      # one launch per step each way
    for key, value in reference.items():
        value, got = cupy.asnumpy(cupy.asarray(value)), cupy.asnumpy(cupy.asarray(ours[key]))
        assert np.abs(got - value).max() <= rtol * max(np.abs(value).max(), 1.0), key


@pytest.mark.parametrize("dtype", ["float64", "float32"])      # T = float picks other overloads (tanh(float))
def test_every_device_kernel_compiles_with_nvrtc(dtype):
    from refnet.kernels import fused_device
    kernel_set = fused_device.kernels_for(cupy)
    for key in fused_device.kernel_names():
        k = kernel_set.get(*key)
        n_args = len(k.spec.inputs) + len(k.spec.outputs)
        arrays = [cupy.full((2, 3), 0.25, dtype=dtype) for _ in range(n_args)]
        k(*arrays)                      # compiles at first launch
        assert all(bool(cupy.isfinite(a).all()) for a in arrays[len(k.spec.inputs):])


def test_the_gpu_benchmark_runs_and_agrees_with_cudnn():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    from refnet.bench import gpu
    report = gpu.run(quick=True)
    assert [row["cell"] for row in report.rows] == ["lstm", "gru"]
    assert all(row["max_rel_error"] <= 1e-4 and row["refnet_cupy_s"] > 0 for row in report.rows)
