#!/bin/bash
# bench/gpu/gemv.sh — the batch-1 decode matmuls in one device call (helper
# "gemv", issue 11; bench/gpu/pack.sh packs it): test_cuda_ops (every op,
# the row-stream GEMV's cases among them), bench_kernels (every GEMV layout
# against cuBLASLt and the copy roofline per shape, the 32-layer matmul
# chain), then on the Llama-3-8B-shaped checkpoint the engine's batch-1
# decode 256/256 under each policy of $GEMV_SPECS (first and last: off =
# cuBLASLt, the baseline, measured twice for the drift), then the 2-layer
# engine checks with the default policy. Logs under $OUT. gate|up + swiglu
# fused (helper "swiglu"): GEMV_SPECS="auto auto+swiglu auto+swiglu-nt auto"
# (engine_gpu gemv's "+swiglu" tail), SGL_CUDA_FUSE_SWIGLU=1 for the checks.
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib PYTHONUNBUFFERED=1
B=$G/bin
t0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm,driver_version --format=csv,noheader | tee $OUT/gpu.txt
el ops; timeout 50 $B/test_cuda_ops > $OUT/ops.log 2>&1; echo "rc=$?"
grep -E "gemv rows|gemv swiglu|matmul_swiglu|FAIL" $OUT/ops.log | grep -vE "^ok +gemv rows (n|f32)" | head -40; tail -1 $OUT/ops.log
el kernels; timeout 60 $B/bench_kernels > $OUT/kernels.log 2>&1; echo "rc=$?"
sed -n '/^NVIDIA\|^H100\|copy .* GB\/s/,$p' $OUT/kernels.log | grep -vE "^prefill|^  .*layout" | cut -c1-260
d=/tmp/m8b; $B/sgl make-model --arch llama-3-8b --seed 1 --out $d > /dev/null
el gemv-engine; timeout ${GEMV_T:-65} $B/engine_gpu gemv $d 256 256 ${GEMV_SPECS:-off auto rows:2:8:1 rows:1:8:1:pdl rows:4:4:1:pdl rows:1:8:2:pdl off} \
    2>&1 | tee $OUT/engine.log | cut -c1-330
rm -rf $d
d=/tmp/m8b2; $B/sgl make-model --arch llama-3-8b --layers 2 --seed 11 --out $d > /dev/null
el graphcheck-8b; timeout 20 $B/engine_gpu graphcheck $d > $OUT/graph.log 2>&1; echo "rc=$?"; tail -2 $OUT/graph.log | cut -c1-300
el check-8b; timeout 30 $B/engine_gpu check $d > $OUT/check8b.log 2>&1; echo "rc=$?"; tail -2 $OUT/check8b.log | cut -c1-300
el done
