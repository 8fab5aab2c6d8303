#!/usr/bin/env bash
# What a CUDA host has to show, in one go, into OUTDIR (default: gpu-check):
#   1. the CUDA-graph step against eager on real graphs (tests/test_graphs.py, real_cuda tests);
#   2. xpnet train on digits with cupy, eager and captured (--compile off / on): the same accuracy;
#   3. the GPU benchmark table (xpnet[cupy] and xpnet[torch cuda:0], eager and CUDA graph step,
#      against torch native CUDA), with only numpy in the CPU table to keep the run short;
#   4. the parity matrix's cupy and torch-CUDA rows (the longest part: last, so the rest is kept).
# Usage: bash ci/gpu_check.sh [OUTDIR]. Each part's output is in OUTDIR; the exit status is
# non-zero when any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XPNET_COMPILE_CACHE=off
status=0

echo "== 1. real CUDA graphs against eager"
python -m pytest -q -rs tests/test_graphs.py -k real_cuda 2>&1 | tee "$out/graphs.log" || status=1

echo "== 2. xpnet train --backend cupy, eager and captured"
for mode in off on; do
    rm -rf "$out/train-$mode"
    python -m xpnet train --backend cupy --compile "$mode" --epochs 10 --no-plot --out "$out/train-$mode" \
        2>&1 | tee "$out/train-$mode.log" || status=1
done

echo "== 3. the GPU benchmark table"
python -m xpnet.bench --backends numpy --no-memory --repeats 5 --json "$out/bench-gpu.json" \
    --markdown "$out/bench-gpu.md" > "$out/bench.log" 2>&1 || status=1
cat "$out/bench-gpu.md" 2>/dev/null || tail -n 40 "$out/bench.log"

echo "== 4. the parity matrix, cupy and torch on CUDA"
XPNET_TEST_BACKENDS=cupy,torch:cuda:0 python ci/matrix.py --out "$out/matrix-gpu.md" > "$out/matrix.log" 2>&1 \
    || status=1
tail -n 30 "$out/matrix.log"
exit "$status"
