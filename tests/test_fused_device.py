"""The fused path's device loops (refnet.kernels.fused_device) = the per-step path, run without a GPU.

Under ``host_emulation()`` the kernels' CUDA C bodies are compiled for the
host and called with ElementwiseKernel's convention on NumPy arrays, so the
same loops and arithmetic that CuPy runs are held equal to the per-step
reference (``REFNET_FUSED=0``) here, for every activation the fused cells
accept, in float64 and float32.  The GPU twin of these tests is in
``tests/test_cupy.py``.  Skipped where no C++ compiler is found.
"""
import os

import numpy as np
import pytest

import refnet
from refnet.kernels import fused_device

if fused_device.host_compiler() is None:
    pytest.skip("no C++ compiler: the device kernels cannot be built for the host", allow_module_level=True)

# Float64: the same products summed in another order (T GEMMs vs per-step GEMMs; σ through tanh) —
# rounding only, DESIGN.md §4's 1e-12.  Float32: u = 6e-8 over T = 6 steps of H = 5 sums, 1e-5.
RTOL = {"float64": 1e-12, "float32": 1e-5}

CELLS = {
    "elman_tanh": lambda I, H: refnet.ElmanRNN(I, H, "tanh"),
    "elman_relu": lambda I, H: refnet.ElmanRNN(I, H, "relu"),
    "irnn": lambda I, H: refnet.IRNN(I, H, input_std=0.5),
    "lstm": lambda I, H: refnet.LSTM(I, H),
    "gru": lambda I, H: refnet.GRU(I, H),
    **{f"fastrnn_{a}": (lambda a: lambda I, H: refnet.FastRNN(I, H, a))(a) for a in fused_device.ACTIVATIONS},
    **{f"fastgrnn_{g}_{u}": (lambda g, u: lambda I, H: refnet.FastGRNN(I, H, g, u))(g, u)
       for g in fused_device.ACTIVATIONS for u in fused_device.ACTIVATIONS},
}


def _everything(name, dtype, T=6, B=3, I=3, H=5):
    r = refnet.rng(0, dtype=dtype)
    cell = CELLS[name](I, H)
    theta = cell.init(r)
    head = refnet.Head(cell.n_out, 3)
    beta = head.init(r)
    x, s0, y = r.normal((T, B, I)), r.normal((B, cell.n_state), 0.5), r.integers(0, 3, (T, B))
    dout, ds_T = r.normal((T, B, cell.n_out)), r.normal((B, cell.n_state))
    res = refnet.bptt(cell, theta, x, s0, head, beta, y)
    tb = refnet.tbptt(cell, theta, x, s0, head, beta, y, k1=2, k2=3)
    sv = refnet.sequence_vjp(cell, theta, x, s0, dout, ds_T)
    out = {"loss": res.loss, "ds0": res.ds0, "s_T": res.s_T, "tb_loss": tb.loss, "tb_ds0": tb.ds0,
           "outputs": sv.outputs, "dx": sv.dx, "sv_ds0": sv.ds0}
    out.update({f"d{k}": v for k, v in res.dtheta.items()})
    out.update({f"tb_d{k}": v for k, v in tb.dtheta.items()})
    out.update({f"sv_d{k}": v for k, v in sv.dtheta.items()})
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _launches(kernel_set):
    return sum(k.calls for k in kernel_set.built.values())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CELLS))
def test_device_loops_equal_the_per_step_path(name, dtype, monkeypatch):
    monkeypatch.setenv("REFNET_FUSED", "0")
    reference = _everything(name, dtype)
    monkeypatch.setenv("REFNET_FUSED", "1")
    with fused_device.host_emulation() as kernel_set:
        before = _launches(kernel_set)
        ours = _everything(name, dtype)
        launched = _launches(kernel_set) - before
    # bptt: T forward + T backward launches; tbptt(2, 3): forward and three windows; sequence_vjp: 2T.
    assert launched >= 4 * 6
    for key, value in reference.items():
        scale = max(float(np.abs(value).max()), 1.0)
        assert float(np.abs(ours[key] - value).max()) <= RTOL[dtype] * scale, key


@pytest.mark.parametrize("shape", [dict(T=1, B=1, I=1, H=1), dict(T=9, B=1, I=2, H=7), dict(T=2, B=8, I=4, H=1)])
@pytest.mark.parametrize("name", ["lstm", "gru", "fastgrnn_sigmoid_tanh"])
def test_edge_shapes(name, shape, monkeypatch):
    monkeypatch.setenv("REFNET_FUSED", "0")
    reference = _everything(name, "float64", **shape)
    monkeypatch.setenv("REFNET_FUSED", "1")
    with fused_device.host_emulation():
        ours = _everything(name, "float64", **shape)
    for key, value in reference.items():
        assert np.allclose(ours[key], value, rtol=1e-12, atol=1e-14), key


def test_outside_emulation_numpy_takes_no_device_kernels():
    assert fused_device.kernels_for(np) is None
    with fused_device.host_emulation() as kernel_set:
        assert fused_device.kernels_for(np) is kernel_set
    assert fused_device.kernels_for(np) is None


def test_the_device_double_takes_the_array_loop(monkeypatch):
    monkeypatch.setenv("REFNET_BACKEND", "strict")
    with fused_device.host_emulation():
        assert fused_device.kernels_for(refnet.get_xp()) is None


def test_every_kernel_builds_for_the_host():
    with fused_device.host_emulation() as kernel_set:
        for key in fused_device.kernel_names():
            assert kernel_set.get(*key).spec.name == "_".join(("refnet",) + key)


def test_a_launch_reads_in_out_arguments_and_writes_strided_views():
    """lstm_backward's dc is read then written (an in-out output); the gate blocks are strided views."""
    with fused_device.host_emulation() as kernel_set:
        k = kernel_set.get("lstm_backward")
        r = np.random.default_rng(0)
        B, H = 2, 3
        dh, dout, c_prev, tc = (r.normal(size=(B, H)) for _ in range(4))
        gates = r.uniform(0.1, 0.9, size=(B, 4 * H))
        dA = np.zeros((B, 4 * H))
        dc = r.normal(size=(B, H))
        dc_in = dc.copy()
        k(dh, dout, *(gates[:, j * H:(j + 1) * H] for j in range(4)), c_prev, tc,
          *(dA[:, j * H:(j + 1) * H] for j in range(4)), dc)
        gi, gf, gg, go = (gates[:, j * H:(j + 1) * H] for j in range(4))
        dh_t = dh + dout
        dc_t = dc_in + dh_t * go * (1 - tc * tc)
        expected = np.concatenate([dc_t * gg * gi * (1 - gi), dc_t * c_prev * gf * (1 - gf),
                                   dc_t * gi * (1 - gg * gg), dh_t * tc * go * (1 - go)], axis=1)
        np.testing.assert_allclose(dA, expected, rtol=1e-15)
        np.testing.assert_allclose(dc, dc_t * gf, rtol=1e-15)


def test_a_launch_refuses_mixed_dtypes_and_a_wrong_argument_count():
    with fused_device.host_emulation() as kernel_set:
        k = kernel_set.get("elman_forward", "tanh")
        a64, a32 = np.zeros((2, 3)), np.zeros((2, 3), dtype=np.float32)
        with pytest.raises(TypeError, match="one float32/float64 dtype"):
            k(a64, a32, np.zeros((2, 3)))
        with pytest.raises(TypeError, match="takes 2 inputs and 1 outputs, got 2"):
            k(a64, a64)
        with pytest.raises(ValueError, match="broadcast shape"):
            k(a64, np.zeros((4, 2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize("args, match", [(("lstm_sideways",), "kind must be one of"),
                                         (("elman_forward",), "takes 1 activation"),
                                         (("elman_forward", "softplus"), "takes 1 activation"),
                                         (("lstm_forward", "tanh"), "takes 0 activation")])
def test_spec_names_what_it_refuses(args, match):
    with pytest.raises(ValueError, match=match):
        fused_device.spec(*args)


def test_a_missing_compiler_is_named(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/refnet-test-c++")
    with pytest.raises(fused_device.HostCompilerError, match="could not be run"):
        fused_device._compile_host_library("int refnet_test_unique_symbol_42;\n")


def test_a_truncated_library_in_the_cache_is_rebuilt_not_fatal(tmp_path, monkeypatch):
    """The cache name is predictable in a shared temp directory: a bad file there must not break emulation."""
    import hashlib
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("CXX", fused_device.host_compiler())
    source = 'extern "C" int refnet_test_truncated_cache() { return 42; }\n'
    digest = hashlib.sha256((os.environ["CXX"] + "\0" + source).encode()).hexdigest()[:16]
    (tmp_path / f"refnet-fused-device-{digest}.so").write_bytes(b"")   # disk full, killed writer, foreign file
    library = fused_device._compile_host_library(source)
    assert library.refnet_test_truncated_cache() == 42
