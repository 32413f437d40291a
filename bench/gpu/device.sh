#!/bin/bash
# bench/gpu/device.sh MODE... — what one device call runs, from the folder
# bench/gpu/pack.sh made (its own directory). Logs go to $OUT (or /tmp/out).
#   check   every CUDA op vs the CPU reference (test_cuda_ops); per arch
#           (llama-3.2-1b, qwen2.5-7b, llama-3-8b, 2 layers each, from
#           `sgl make-model`): engine_gpu check (CPU vs CUDA engine: greedy ids,
#           teacher-forced logits), transformers on the same ids
#           (e2e_logits.py), `sgl generate` on both devices
#   bench   the Llama-3-8B-shaped checkpoint (make-model, all 32 layers):
#           engine_gpu bench (batch-1 decode, offline throughput), then the
#           PyTorch peer in the same call
#   tp      tensor parallelism (issue 12): bench/gpu/tp.sh check allreduce
#           bench (tp N vs the plain path, all-reduce bus bandwidth, the 8B
#           at tp 1 vs 2 and the 70B at tp 2/4/8, as the GPUs allow)
# Env: BENCH_REQ BENCH_IN BENCH_OUT BENCH_RUN BENCH_CHUNK (offline workload).
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
B=$G/bin
fail=0
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader
for mode in "$@"; do
case $mode in
check)
    "$B/test_cuda_ops" > "$OUT/ops.log" 2>&1 || fail=1
    tail -2 "$OUT/ops.log"
    for arch in llama-3.2-1b qwen2.5-7b llama-3-8b; do
        d=/tmp/mm-$arch
        echo "=== $arch (2 layers)"
        "$B/sgl" make-model --arch "$arch" --layers 2 --seed 11 --out "$d" || { fail=1; continue; }
        "$B/engine_gpu" check "$d" "$d" || fail=1
        python3 "$G/e2e_logits.py" "$d" 2>&1 | grep -v -i warn || fail=1
        for dev in cpu cuda; do
            "$B/sgl" generate --model "$d" --device $dev --temperature 0 --max-tokens 24 --ignore-eos \
                "The quick brown fox jumps over the lazy dog" > "/tmp/gen-$dev.txt" 2>&1 || fail=1
        done
        if cmp -s /tmp/gen-cpu.txt /tmp/gen-cuda.txt; then echo "sgl generate: cpu == cuda"
        else echo "sgl generate: cpu != cuda"; head -c 300 /tmp/gen-cpu.txt; echo; head -c 300 /tmp/gen-cuda.txt; echo; fi
    done
    ;;
bench)
    d=/tmp/m8b
    t0=$(date +%s%N)
    "$B/sgl" make-model --arch llama-3-8b --seed 1 --out "$d" || { fail=1; continue; }
    echo "make-model llama-3-8b: $(( ($(date +%s%N) - t0) / 1000000 )) ms, $(du -sh $d | cut -f1)"
    "$B/engine_gpu" bench "$d" "${BENCH_REQ:-128}" "${BENCH_IN:-1024}" "${BENCH_OUT:-256}" "${BENCH_RUN:-128}" \
        "${BENCH_CHUNK:-8192}" || fail=1
    if [ -n "$BENCH2" ]; then
        set -- $BENCH2
        "$B/engine_gpu" bench "$d" "$1" "$2" "$3" "$4" "$5" | grep -E "offline|prefill" || fail=1
    fi
    rm -rf "$d"
    echo "--- peer: gpu_peer_fast.py (same call)"
    PEER_BS=${PEER_BS:-64} python3 "$G/gpu_peer_fast.py" 2>&1 | tail -1
    ;;
tp)
    bash "$G/tp.sh" check allreduce bench || fail=1
    ;;
esac
done
[ $fail = 0 ] && echo "device.sh: all passed" || echo "device.sh: FAILED"
exit $fail
