#!/bin/bash
# bench/gpu/final.sh — issue 11's correctness and its figures in one device call of about
# FINAL_S seconds (default 500; bench/gpu/pack.sh packs it; `bash .dev/gpu/final.sh` with carry
# [".dev/gpu"]); a trimmed tests/gpu/run.sh + device.sh bench for when device time is short:
#   1. test_cuda_ops; engine_gpu check on the 2-layer Llama-3-8B shape (CPU vs GPU greedy ids,
#      alone vs batched, teacher-forced logits; the overlap scheduler on, the default);
#      graphcheck and sample on a 2-layer 1B q8_0 GGUF (a q4_k GGUF too with KQUANT=1);
#      constrained generation on both devices; fusecheck (SGL_CUDA_FUSE_ROPE off vs on: identical ids)
#      and bench_decode rope (fused vs rope_kv + attention: per-layer time, bit-identity);
#   2. on the full Llama-3-8B shape: the roofline and GEMM peak, engine_gpu bench (batch-1
#      256/256, prefill 256/4096, decode rows, offline 64 x 256/256), gpu_peer_fast.py (same
#      call), SGLang's offline workload (500 prompts) when 150 s are left; then, with time
#      left, where a batch-1 step's GPU time goes (engine_gpu prof: every op timed), the
#      program workload and batch-1 with the overlap scheduler off. Right after the default
#      engine bench: batch-1 again with RoPE + KV write fused into the decode attention
#      (SGL_CUDA_FUSE_ROPE=1, bench-fuse-rope.log; NOTES.md, Session 5 (helper rope)); then
#      gate|up + swiglu fused (SGL_CUDA_FUSE_SWIGLU=1) against the default, in one process
#      and as batch-1 benches.
# summary.py prints the figures beside the goals. Logs under $OUT.
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
B=$G/bin
. "$G/common.sh"
END=${FINAL_S:-500}
t0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( END - ($(date +%s) - t0) - ${1:-0} )); }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee $OUT/gpu.txt
el ops; timeout 75 $B/test_cuda_ops > $OUT/ops.log 2>&1; echo "rc=$?"; grep -E "FAIL|fail" $OUT/ops.log | head -5; tail -1 $OUT/ops.log
d=/tmp/m8b2; $B/sgl make-model --arch llama-3-8b --layers 2 --seed 11 --out $d >/dev/null
el check-8b; timeout 40 $B/engine_gpu check $d > $OUT/check8b.log 2>&1; echo "rc=$?"; tail -3 $OUT/check8b.log | cut -c1-300
rm -rf $d
d1=/tmp/m1b; $B/sgl make-model --arch llama-3.2-1b --layers 2 --seed 11 --out $d1 --gguf q8_0 >/dev/null
[ -n "$KQUANT" ] && $B/sgl make-model --arch llama-3.2-1b --layers 2 --seed 11 --out $d1 --gguf q4_k >/dev/null
el graphcheck; timeout 30 $B/engine_gpu graphcheck $d1/model-q8_0.gguf > $OUT/graph.log 2>&1; echo "rc=$?"; tail -2 $OUT/graph.log | cut -c1-300
el fusecheck; timeout 30 $B/engine_gpu fusecheck $d1/model-q8_0.gguf > $OUT/fuse.log 2>&1; echo "rc=$?"; grep -E "ids_off_eq_on|passed|FAILED" $OUT/fuse.log | cut -c1-300
el decode-rope; timeout 25 $B/bench_decode rope > $OUT/bench-decode-rope.log 2>&1; echo "rc=$?"; grep -E '"batch": 1,|false|error' $OUT/bench-decode-rope.log | cut -c1-250
el sample; timeout 35 $B/engine_gpu sample $d1/model-q8_0.gguf > $OUT/sample.log 2>&1; echo "rc=$?"; grep -E "seeded|sample_check" $OUT/sample.log | cut -c1-300
[ -n "$KQUANT" ] && { el gguf-q4_k; timeout 25 $B/engine_gpu check $d1/model-q4_k.gguf > $OUT/gguf-q4k.log 2>&1; echo "rc=$?"; tail -2 $OUT/gguf-q4k.log | cut -c1-300; }
el constrained; for dev in cpu cuda; do timeout 15 $B/sgl run tests/gpu/constrained.sgl --json --model $d1 --device $dev > /tmp/c-$dev.json 2>&1; done
python3 $G/check_constrained.py /tmp/c-cpu.json /tmp/c-cuda.json
log=$OUT/bench.log; : > $log
el peaks; $B/bench_gpu --peaks | tee -a $log
d=/tmp/m8b; $B/sgl make-model --arch llama-3-8b --seed 1 --out $d > /dev/null
el engine-bench; SGL_BENCH_PREFILL=4096 timeout 75 $B/engine_gpu bench $d 64 256 256 0 8192 | tee -a $log | cut -c1-250
t=$(left 0)
[ "$t" -gt 200 ] && { el "batch-1 fused rope (limit 45s)"; SGL_CUDA_FUSE_ROPE=1 timeout 45 $B/engine_gpu bench $d 1 256 256 0 8192 | tee $OUT/bench-fuse-rope.log | cut -c1-250; }
el peer-fast; PEER_BS=64 timeout 35 python3 $G/gpu_peer_fast.py 2>&1 | tail -1 | tee -a $log
sglang_lens /tmp/lens.txt
t=$(left 0)
[ "$t" -gt 150 ] && { el "sglang-offline (limit ${t}s)"; SGL_BENCH_PROGRESS=20 timeout $t $B/engine_gpu lens $d /tmp/lens.txt 0 8192 | tee -a $log; }
python3 $G/summary.py $log | tee $OUT/summary.txt
t=$(left 0)
[ "$t" -gt 60 ] && { el "op times (limit ${t}s)"; timeout 50 $B/engine_gpu prof $d 1 384 | tee $OUT/prof-b1.log | cut -c1-200; }
t=$(left 0)
[ "$t" -gt 45 ] && { el program; program_bench $d 8 20 max_tokens=32 | tee -a $log; }
t=$(left 0)
[ "$t" -gt 30 ] && { el "overlap off (limit ${t}s)"; SGL_OVERLAP=0 timeout $t $B/engine_gpu bench $d 1 256 256 0 8192 | tee $OUT/bench-overlap-off.log | cut -c1-250; }
# gate|up + swiglu fused (SGL_CUDA_FUSE_SWIGLU, helper "swiglu", not yet run): one process,
# forward times and batch-1 tok/s for the table alone, fused, fused without the early trigger,
# the table again; ids_first_diff_vs_auto must be -1 (the same bits); then the engine's batch-1
# default / fused / fused + the rope helper's switch, and the op times with it on
t=$(left 0)
[ "$t" -gt 45 ] && { el "swiglu fused A/B (limit ${t}s)"; timeout $t $B/engine_gpu gemv $d 256 256 auto auto+swiglu auto+swiglu-nt auto | tee $OUT/gemv-swiglu.log | cut -c1-320; }
t=$(left 0)
[ "$t" -gt 30 ] && { el "batch-1 default (limit ${t}s)"; timeout $t $B/engine_gpu bench $d 1 256 256 0 8192 | tee $OUT/bench-b1-default.log | cut -c1-250; }
t=$(left 0)
[ "$t" -gt 30 ] && { el "batch-1 swiglu fused (limit ${t}s)"; SGL_CUDA_FUSE_SWIGLU=1 timeout $t $B/engine_gpu bench $d 1 256 256 0 8192 | tee $OUT/bench-b1-fuse-swiglu.log | cut -c1-250; }
t=$(left 0)
[ "$t" -gt 30 ] && { el "batch-1 swiglu + rope fused (limit ${t}s)"; SGL_CUDA_FUSE_SWIGLU=1 SGL_CUDA_FUSE_ROPE=1 timeout $t $B/engine_gpu bench $d 1 256 256 0 8192 | tee $OUT/bench-b1-fuse-both.log | cut -c1-250; }
t=$(left 0)
[ "$t" -gt 60 ] && { el "op times, swiglu fused (limit ${t}s)"; SGL_CUDA_FUSE_SWIGLU=1 timeout 50 $B/engine_gpu prof $d 1 384 | tee $OUT/prof-b1-fuse-swiglu.log | cut -c1-200; }
el done
