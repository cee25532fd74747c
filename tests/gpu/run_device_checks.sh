#!/usr/bin/env bash
# The GPU checks of issue 14 item 4, for a session that is lent a GPU (prepared without one: untested).
# Usage (repository root, on the device machine):  OUT=/some/dir bash tests/gpu/run_device_checks.sh
# Writes to $OUT: suite_cupy.log, gradcheck_cupy_float64.jsonl, gradcheck_cupy_float32.jsonl,
# bench_bptt.txt, gpu_vs_cudnn.json (refnet on CuPy against torch nn.LSTM/nn.GRU on cuDNN).
set -uo pipefail
OUT=${OUT:?set OUT to the folder for the results}
cd "$(dirname "$0")/../.."
pip install --quiet -e ".[test,gpu-cuda13]" > "$OUT/install.log" 2>&1 || { echo "install failed"; tail -20 "$OUT/install.log"; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
export REFNET_BACKEND=cupy
timeout 240 python -m pytest -q -x tests/test_cupy.py tests/test_device_double.py tests/test_uoro.py tests/test_kfrtrl.py \
    tests/test_online.py tests/test_bptt.py > "$OUT/suite_cupy.log" 2>&1; echo "suite rc=$?" | tee -a "$OUT/summary.txt"
for dtype in float64 float32; do
    timeout 240 python -m gradcheck --backend cupy --dtype "$dtype" --json > "$OUT/gradcheck_cupy_$dtype.jsonl" 2>&1
    echo "gradcheck $dtype rc=$?" | tee -a "$OUT/summary.txt"
done
unset REFNET_BACKEND
timeout 120 python -m refnet.bench bptt > "$OUT/bench_bptt.txt" 2>&1; echo "bench rc=$?" | tee -a "$OUT/summary.txt"
REFNET_BACKEND=cupy REFNET_DTYPE=float32 timeout 180 python - > "$OUT/gpu_vs_cudnn.json" 2>"$OUT/gpu_vs_cudnn.err" <<'PY'
# refnet (CuPy) vs torch cuDNN, B=64 I=64 H=512 T=256 float32, forward + backward, median of 10 after 3 warm-ups.
import json, time
import cupy, torch
import refnet
B, I, H, T = 64, 64, 512, 256
def median_time(fn, sync, n=10):
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(n):
        start = time.perf_counter(); fn(); sync(); times.append(time.perf_counter() - start)
    return sorted(times)[n // 2]
rows = []
for name, make, torch_cls in (("lstm", refnet.LSTM, torch.nn.LSTM), ("gru", refnet.GRU, torch.nn.GRU)):
    cell = make(I, H); r = refnet.rng(0)
    theta = cell.init(r); x = r.normal((T, B, I)); dout = r.normal((T, B, cell.n_out))
    ours = median_time(lambda: refnet.sequence_vjp(cell, theta, x, None, dout), cupy.cuda.Device().synchronize)
    net = torch_cls(I, H).cuda().float()
    xt = torch.randn(T, B, I, device="cuda", requires_grad=True); dt = torch.randn(T, B, H, device="cuda")
    def torch_step():
        net.zero_grad(); out, _ = net(xt); out.backward(dt)
    theirs = median_time(torch_step, torch.cuda.synchronize)
    rows.append({"cell": name, "B": B, "I": I, "H": H, "T": T, "dtype": "float32", "refnet_cupy_s": ours,
                 "torch_cudnn_s": theirs, "ratio": ours / theirs, "target": "<= 2"})
print(json.dumps(rows, indent=1))
PY
echo "gpu bench rc=$?" | tee -a "$OUT/summary.txt"
