#!/bin/bash
# bench/gpu/pre.sh — one device call for the prefill attention and decode
# GEMV kernels (cuda_prefill.cu, cuda_gemv.cu), from the folder
# bench/gpu/pack.sh made (this script's directory): the op tests, the kernel
# bench (old and new kernels beside the ceilings), the engine's prefill and
# decode with the old kernels (SGL_CUDA_PREFILL=wmma SGL_CUDA_GEMV_MAX_N=0)
# and the new, and the 2-layer engine checks. Logs under $OUT.
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=$G/bin
fail=0
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 "$B/test_cuda_ops" > "$OUT/ops.log" 2>&1 || fail=1
grep -v "^ok" "$OUT/ops.log"; grep -E "mma|gemv" "$OUT/ops.log" | head -40
timeout 60 "$B/bench_kernels" > "$OUT/kernels.log" 2>&1 || fail=1
sed -n '/^$/,$p' "$OUT/kernels.log"; grep -i "error\|fail" "$OUT/kernels.log"
E="$OUT/engine.log"
d=/tmp/m8b
timeout 30 "$B/sgl" make-model --arch llama-3-8b --seed 1 --out "$d" > /dev/null || fail=1
for v in "wmma 0" "mma 8" "mma1 8" "mma2 8"; do
    set -- $v
    echo "=== prefill=$1 gemv_max_n=$2" | tee -a "$E"
    if [ "$1" = mma ] || [ "$1" = wmma ]; then
        SGL_CUDA_PREFILL=$1 SGL_CUDA_GEMV_MAX_N=$2 timeout 40 "$B/engine_gpu" bench "$d" 8 256 256 64 8192 >> "$E" 2>&1 || fail=1
    fi
    SGL_CUDA_PREFILL=$1 SGL_CUDA_GEMV_MAX_N=$2 timeout 40 "$B/engine_gpu" bench "$d" 4 4096 32 64 8192 2>&1 \
        | grep -E "prefill|forward decode|error" >> "$E" || fail=1
done
grep -vE '"batch": (128)' "$E"
rm -rf "$d"
for arch in llama-3.2-1b qwen2.5-7b llama-3-8b; do
    d=/tmp/mm-$arch
    echo "=== check $arch (2 layers)" | tee -a "$OUT/check.log"
    timeout 30 "$B/sgl" make-model --arch "$arch" --layers 2 --seed 11 --out "$d" > /dev/null || { fail=1; continue; }
    timeout 40 "$B/engine_gpu" check "$d" >> "$OUT/check.log" 2>&1 || fail=1
    rm -rf "$d"
done
grep -E "===|rel_max|check\"|greedy|alone" "$OUT/check.log" | cut -c1-220
[ $fail = 0 ] && echo "pre.sh: all passed" || echo "pre.sh: FAILED"
exit $fail
