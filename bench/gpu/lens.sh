#!/bin/bash
# bench/gpu/lens.sh — SGLang's offline CI workload (500 prompts, random 4096 in / 2048 out,
# bench_serving's seed-0 lengths, all submitted at once: issue 11's >= 3,800 output tok/s goal)
# on the Llama-3-8B-shaped bf16 checkpoint in one device call of about LENS_S seconds (default
# 540): the default engine (max_running 256 on a device, the overlap scheduler on), then, in
# what time is left, the same with the fp8 e4m3 KV cache (twice the slots). One progress line
# every 20 s and one JSON line a run ("offline-lens": output_tok_s, steps, retractions).
# Packed by bench/gpu/pack.sh: `bash .dev/gpu/lens.sh` with carry [".dev/gpu"]. Logs under $OUT.
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib PYTHONUNBUFFERED=1
B=$G/bin
. "$G/common.sh"
END=${LENS_S:-540}
t0=$(date +%s)
left() { echo $(( END - ($(date +%s) - t0) )); }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
d=/tmp/m8b; $B/sgl make-model --arch llama-3-8b --seed 1 --out $d > /dev/null
sglang_lens /tmp/lens.txt
echo "== bf16 KV, max_running ${LENS_MR:-0} (0: the default), limit $(left)s"
SGL_BENCH_PROGRESS=20 timeout $(( $(left) - 5 )) $B/engine_gpu lens $d /tmp/lens.txt ${LENS_MR:-0} 8192 | tee $OUT/lens-bf16.log
t=$(left)
[ "$t" -gt 120 ] && { echo "== fp8 e4m3 KV, limit ${t}s"; SGL_KV_CACHE_DTYPE=fp8_e4m3 SGL_BENCH_PROGRESS=20 timeout $(( t - 5 )) $B/engine_gpu lens $d /tmp/lens.txt ${LENS_MR:-0} 8192 | tee $OUT/lens-fp8kv.log; }
echo "== done at $(( $(date +%s) - t0 ))s"
