#!/bin/bash
# bench/gpu/final.sh — issue 11's correctness and every figure in one device call of at most
# ~590 s (bench/gpu/pack.sh packs it; `bash .dev/gpu/final.sh` with carry [".dev/gpu"]):
#   1. tests/gpu/run.sh (every op vs the CPU reference, per-arch engine checks and transformers,
#      GGUF incl. k-quants, constrained generation on both devices);
#   2. on the Llama-3-8B shape: the roofline and GEMM peak, engine_gpu bench (batch-1 256/256,
#      prefill 256/4096, decode rows, offline 64 x 256/256; overlap scheduler on, the default),
#      SGLang's offline workload (500 prompts; its time limit is what is left after the peers'
#      share), the program workload (cache on/off), gpu_peer_fast.py and transformers generate
#      (same call), then the engine bench with the overlap scheduler off if time is left.
# summary.py prints the figures beside the goals. Logs under $OUT.
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
B=$G/bin
. "$G/common.sh"
END=${FINAL_S:-585}
t0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( END - ($(date +%s) - t0) - ${1:-0} )); }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee $OUT/gpu.txt
el tests; timeout 240 bash $G/tests-run.sh $B > $OUT/tests.log 2>&1; echo "rc=$?"
grep -E "^test_cuda_ops|FAIL|check\"|greedy|e2e|ok \{|passed|failed" $OUT/tests.log | cut -c1-220 | tail -30
log=$OUT/bench.log; : > $log
el peaks; $B/bench_gpu --peaks | tee -a $log
d=/tmp/m8b; $B/sgl make-model --arch llama-3-8b --seed 1 --out $d > /dev/null
el engine-bench; SGL_BENCH_PREFILL=4096 timeout 75 $B/engine_gpu bench $d 64 256 256 0 8192 | tee -a $log | cut -c1-250
sglang_lens /tmp/lens.txt
t=$(left 125)
el "sglang-offline (limit ${t}s)"; SGL_BENCH_PROGRESS=20 timeout $t $B/engine_gpu lens $d /tmp/lens.txt 0 8192 | tee -a $log
el program; program_bench $d 8 20 max_tokens=32 | tee -a $log
el peer-fast; PEER_BS=64 timeout 35 python3 $G/gpu_peer_fast.py 2>&1 | tail -1 | tee -a $log
el hf-peer; timeout 50 python3 $G/hf_generate_peer.py $d --in 256 --out 64 --batch 8 2>&1 | grep -v -i warn | tee -a $log
python3 $G/summary.py $log | tee $OUT/summary.txt
t=$(left 0)
if [ "$t" -gt 20 ]; then
    el "overlap off (limit ${t}s)"; SGL_OVERLAP=0 timeout $t $B/engine_gpu bench $d 64 256 256 0 8192 | tee $OUT/bench-overlap-off.log | cut -c1-250
fi
el done
