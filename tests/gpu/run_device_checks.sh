#!/usr/bin/env bash
# The GPU checks of issue 14 item 4, for a session that is lent a GPU (prepared without one: untested).
# Usage (repository root, on the device machine):  OUT=/some/dir bash tests/gpu/run_device_checks.sh
# Writes to $OUT: suite_cupy.log, gradcheck_cupy_float64.jsonl, gradcheck_cupy_float32.jsonl,
# bench_bptt.txt, gpu_vs_cudnn.jsonl (`python -m refnet.bench gpu`: refnet on CuPy against torch nn.LSTM/nn.GRU on cuDNN).
set -uo pipefail
OUT=${OUT:?set OUT to the folder for the results}
cd "$(dirname "$0")/../.."
pip install --quiet -e ".[test,gpu-cuda13]" > "$OUT/install.log" 2>&1 || { echo "install failed"; tail -20 "$OUT/install.log"; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
export REFNET_BACKEND=cupy
timeout 240 python -m pytest -q -x tests/test_cupy.py tests/test_device_double.py tests/test_uoro.py tests/test_kfrtrl.py \
    tests/test_online.py tests/test_bptt.py tests/test_fused.py > "$OUT/suite_cupy.log" 2>&1; echo "suite rc=$?" | tee -a "$OUT/summary.txt"
for dtype in float64 float32; do
    timeout 240 python -m gradcheck --backend cupy --dtype "$dtype" --json > "$OUT/gradcheck_cupy_$dtype.jsonl" 2>&1
    echo "gradcheck $dtype rc=$?" | tee -a "$OUT/summary.txt"
done
unset REFNET_BACKEND
timeout 120 python -m refnet.bench bptt > "$OUT/bench_bptt.txt" 2>&1; echo "bench rc=$?" | tee -a "$OUT/summary.txt"
timeout 180 python -m refnet.bench gpu --json > "$OUT/gpu_vs_cudnn.jsonl" 2>"$OUT/gpu_vs_cudnn.err"
echo "gpu bench rc=$?" | tee -a "$OUT/summary.txt"
timeout 60 python -m refnet.bench gpu >> "$OUT/summary.txt" 2>&1
