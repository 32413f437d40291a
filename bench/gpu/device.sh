#!/bin/bash
# bench/gpu/device.sh MODE... — what one device call runs, from the folder
# bench/gpu/pack.sh made (its own directory). Logs go to $OUT (or /tmp/out).
#   check   every CUDA op vs the CPU reference (test_cuda_ops); per arch
#           (llama-3.2-1b, qwen2.5-7b, llama-3-8b, 2 layers each, from
#           `sgl make-model`): engine_gpu check (CPU vs CUDA engine: greedy ids,
#           teacher-forced logits), transformers on the same ids
#           (e2e_logits.py), `sgl generate` on both devices
#   bench   every issue-11 figure (summary.py prints them beside the goals):
#           roofline and GEMM peak (bench_gpu --peaks); on the Llama-3-8B-shaped
#           checkpoint (make-model, all 32 layers): engine_gpu bench (batch-1
#           256/256, prefill 256 and 4096, decode rows, offline 128 x 256/256),
#           SGLang's offline CI workload (engine_gpu lens, 500 prompts),
#           the program workload (fewshot_fork.sgl, cache on/off), the
#           transformers generate peer and gpu_peer_fast.py, same call
#   tp      tensor parallelism (issue 12): bench/gpu/tp.sh check allreduce
#           bench (tp N vs the plain path, all-reduce bus bandwidth, the 8B
#           at tp 1 vs 2 and the 70B at tp 2/4/8, as the GPUs allow)
# Env: BENCH_REQ BENCH_IN BENCH_OUT BENCH_RUN BENCH_CHUNK (engine_gpu bench),
#      OFFLINE_TIMEOUT, PROG_N, SKIP_PROGRAM / SKIP_HF / SKIP_PEER.
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
B=$G/bin
. "$G/common.sh"
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
    # GGUF weights (make-model --gguf: q8_0 and q4_0 matrices, dequantized to bf16 at load on the GPU)
    d=/tmp/mm-g
    "$B/sgl" make-model --arch llama-3.2-1b --layers 2 --seed 11 --out "$d" --gguf q8_0 > /dev/null &&
        "$B/sgl" make-model --arch llama-3.2-1b --layers 2 --seed 11 --out "$d" --gguf q4_0 > /dev/null || fail=1
    for q in q8_0 q4_0; do
        echo "=== llama-3.2-1b (2 layers) as GGUF $q"
        "$B/engine_gpu" check "$d/model-$q.gguf" || fail=1
    done
    rm -rf "$d"
    # constrained generation (regex, JSON Schema, grammar; sampled and greedy) on both devices
    d=/tmp/mm-c
    "$B/sgl" make-model --arch llama-3.2-1b --layers 2 --seed 11 --out "$d" > /dev/null || fail=1
    for dev in cpu cuda; do
        "$B/sgl" run tests/gpu/constrained.sgl --json --model "$d" --device $dev > "/tmp/constrained-$dev.json" 2>&1 || fail=1
    done
    python3 "$G/check_constrained.py" /tmp/constrained-cpu.json /tmp/constrained-cuda.json || fail=1
    ;;
bench)
    # every issue-11 figure in one run (bench/gpu/summary.py prints the table)
    d=/tmp/m8b
    log=$OUT/bench.log
    : > "$log"
    "$B/bench_gpu" --peaks | tee -a "$log" || fail=1
    t0=$(date +%s%N)
    "$B/sgl" make-model --arch llama-3-8b --seed 1 --out "$d" || { fail=1; continue; }
    echo "make-model llama-3-8b: $(( ($(date +%s%N) - t0) / 1000000 )) ms, $(du -sh $d | cut -f1)"
    # batch-1 256 in / 256 out, the forward alone (prefill 256 and 4096, decode rows), offline 128 x 256/256
    SGL_BENCH_PREFILL=4096 timeout 150 "$B/engine_gpu" bench "$d" "${BENCH_REQ:-128}" "${BENCH_IN:-256}" \
        "${BENCH_OUT:-256}" "${BENCH_RUN:-0}" "${BENCH_CHUNK:-8192}" | tee -a "$log" || fail=1
    # SGLang's CI offline workload: 500 prompts, bench_serving's random lengths (seed 0, range ratio 0)
    sglang_lens /tmp/sglang-lens.txt
    timeout ${OFFLINE_TIMEOUT:-330} "$B/engine_gpu" lens "$d" /tmp/sglang-lens.txt "${BENCH_RUN:-0}" \
        "${BENCH_CHUNK:-8192}" | tee -a "$log" || fail=1
    # the program workload, cache on and off
    if [ -z "$SKIP_PROGRAM" ]; then
        program_bench "$d" "${PROG_N:-32}" 120 | tee -a "$log" || fail=1
    fi
    # the in-house peer: transformers generate on the same checkpoint
    [ -z "$SKIP_HF" ] && { timeout 150 python3 "$G/hf_generate_peer.py" "$d" --in 256 --out 256 --batch 64 2>&1 \
        | grep -v -i warn | tee -a "$log" || fail=1; }
    rm -rf "$d"
    echo "--- peer: gpu_peer_fast.py (same call)"
    [ -z "$SKIP_PEER" ] && PEER_BS=${PEER_BS:-64} timeout 120 python3 "$G/gpu_peer_fast.py" 2>&1 | tail -1 | tee -a "$log"
    python3 "$G/summary.py" "$log"
    ;;
tp)
    bash "$G/tp.sh" check allreduce bench || fail=1
    ;;
esac
done
[ $fail = 0 ] && echo "device.sh: all passed" || echo "device.sh: FAILED"
exit $fail
