#!/bin/bash
# bench/gpu/pre.sh — one device call for the prefill attention and decode
# GEMV kernels (cuda_prefill.cu, cuda_gemv.cu), from the folder
# bench/gpu/pack.sh made (this script's directory). In order, each step
# logged under $OUT: the op tests; the kernel bench (old and new kernels
# beside the ceilings); the Llama-3-8B-shaped engine's 4096-token prefill
# with the old kernels (SGL_CUDA_PREFILL=wmma SGL_CUDA_GEMV_MAX_N=0) and the
# new; the 2-layer engine checks; then batch-1 decode under each GEMV policy
# (SGL_CUDA_GEMV_VEC / SGL_CUDA_GEMV_MAX_MB) while the call has time left.
# Env: PRE_CHECKS (archs to check, "" none), PRE_POLICIES (comma-separated
# "layout max_mb max_n"), PRE_BUDGET (seconds after which policies are skipped).
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=$G/bin
BUDGET=${PRE_BUDGET:-125}
fail=0
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 "$B/test_cuda_ops" > "$OUT/ops.log" 2>&1 || fail=1
grep -v "^ok" "$OUT/ops.log"; grep -cE "^ok" "$OUT/ops.log"
timeout 60 "$B/bench_kernels" > "$OUT/kernels.log" 2>&1 || fail=1
sed -n '/^$/,$p' "$OUT/kernels.log" | grep -v "^  .*layout"; grep -i "error\|fail" "$OUT/kernels.log"
echo "t=${SECONDS}s"
E="$OUT/engine.log"
d=/tmp/m8b
timeout 30 "$B/sgl" make-model --arch llama-3-8b --seed 1 --out "$d" > /dev/null || fail=1
eng() { # label env... -- args
    local label=$1; shift
    echo "=== $label" >> "$E"
    env "$@" timeout 40 "$B/engine_gpu" bench "$d" $ARGS >> "$E" 2>&1 || { echo "FAILED: $label" >> "$E"; fail=1; }
}
ARGS="2 4096 16 64 8192"
eng "prefill4096 old: wmma, no gemv" SGL_CUDA_PREFILL=wmma SGL_CUDA_GEMV_MAX_N=0
eng "prefill4096 new: mma (default)" SGL_CUDA_PREFILL=mma
eng "prefill4096 mma-fast" SGL_CUDA_PREFILL=mma-fast
grep -E "===|forward prefill|FAILED" "$E"
echo "t=${SECONDS}s"
for arch in ${PRE_CHECKS-llama-3.2-1b qwen2.5-7b llama-3-8b}; do
    c=/tmp/mm-$arch
    echo "=== check $arch (2 layers)" >> "$OUT/check.log"
    timeout 30 "$B/sgl" make-model --arch "$arch" --layers 2 --seed 11 --out "$c" > /dev/null || { fail=1; continue; }
    timeout 40 "$B/engine_gpu" check "$c" >> "$OUT/check.log" 2>&1 || fail=1
    rm -rf "$c"
done
grep -E "===|rel_max|greedy" "$OUT/check.log" | cut -c1-200
echo "t=${SECONDS}s"
ARGS="1 256 256 64 8192"
IFS=, read -ra POL <<< "${PRE_POLICIES-0 0 0,0x11 64 8,0x18 64 8,0x11 100000 8,0x18 100000 8,0x14 64 8,0x1 64 8}"
for p in "${POL[@]}"; do
    set -- $p
    [ $SECONDS -lt $BUDGET ] || { echo "skipped policy $p (time)"; continue; }
    eng "decode gemv layout=$1 max_mb=$2 max_n=$3" SGL_CUDA_GEMV_VEC=$1 SGL_CUDA_GEMV_MAX_MB=$2 SGL_CUDA_GEMV_MAX_N=$3
done
grep -E "===|\"batch\": (1|16)\,|batch-1|FAILED" "$E" | grep -v "prefill4096" | cut -c1-150
rm -rf "$d"
echo "t=${SECONDS}s"
[ $fail = 0 ] && echo "pre.sh: all passed" || echo "pre.sh: FAILED"
exit $fail
