#!/bin/bash
# bench/gpu/fp8.sh — the fp8 options (issue 11) in one device call (bench/gpu/pack.sh packs it;
# `bash .dev/fp8/fp8.sh` with carry [".dev/fp8"]): test_cuda_ops (its fp8 cases among all), the
# engine check on a 2-layer Llama-3-8B shape with bf16, --quantization fp8 and --kv-cache-dtype
# fp8_e4m3 (engine_gpu reads SGL_QUANTIZATION / SGL_KV_CACHE_DTYPE), decode graphs with both, then
# the full 8B shape: engine_gpu bench (forward prefill 256 / 4096, forward decode rows, batch-1
# decode 256/256, offline 64 x 256/256) for each of the three, after the copy roofline and GEMM peak.
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib PYTHONUNBUFFERED=1
B=$G/bin
t0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - t0 ))s] $*"; }
OPTS="none:auto fp8:auto none:fp8_e4m3"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee $OUT/gpu.txt
el ops; timeout 45 $B/test_cuda_ops > $OUT/ops.log 2>&1; echo "rc=$?"; grep -E "fp8|FAIL" $OUT/ops.log | cut -c1-150; tail -1 $OUT/ops.log
d=/tmp/m8b2; $B/sgl make-model --arch llama-3-8b --layers 2 --seed 11 --out $d >/dev/null
for o in $OPTS; do
    q=${o%:*}; kv=${o#*:}
    el "check-8b-2l quantization=$q kv=$kv"
    SGL_QUANTIZATION=$q SGL_KV_CACHE_DTYPE=$kv timeout 35 $B/engine_gpu check $d > $OUT/check-$q-$kv.log 2>&1
    echo "rc=$?"; grep -E "backend|greedy_ids|teacher" $OUT/check-$q-$kv.log | cut -c1-300
done
el "graphcheck fp8 + fp8 KV"
SGL_QUANTIZATION=fp8 SGL_KV_CACHE_DTYPE=fp8_e4m3 timeout 30 $B/engine_gpu graphcheck $d > $OUT/graph-fp8.log 2>&1
echo "rc=$?"; tail -3 $OUT/graph-fp8.log | cut -c1-300
rm -rf $d
el peaks; $B/bench_gpu --peaks | tee $OUT/peaks.log
d=/tmp/m8b; $B/sgl make-model --arch llama-3-8b --seed 1 --out $d > /dev/null
for o in $OPTS; do
    q=${o%:*}; kv=${o#*:}
    el "bench-8b quantization=$q kv=$kv"
    SGL_QUANTIZATION=$q SGL_KV_CACHE_DTYPE=$kv SGL_BENCH_PREFILL=4096 timeout 45 $B/engine_gpu bench $d 64 256 256 0 8192 \
        > $OUT/bench-$q-$kv.log 2>&1
    echo "rc=$?"; cut -c1-260 $OUT/bench-$q-$kv.log
done
el done
