#!/bin/bash
# bench/gpu/short.sh — correctness and every issue-11 figure trimmed to one ~270 s device call
# (bench/gpu/pack.sh packs it; `bash .dev/gpu/short.sh` with carry [".dev/gpu"]): the ops, the
# 8B-2-layer engine check, graphs, device sampling, then the bench figures by priority, then GGUF,
# constrained generation and tp 1 through NCCL. OFF_T bounds the SGLang workload (seconds).
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
B=$G/bin
. "$G/common.sh"
t0=$(date +%s)
el() { echo "[t=$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee $OUT/gpu.txt
el ops; timeout 60 $B/test_cuda_ops > $OUT/ops.log 2>&1; tail -1 $OUT/ops.log
d=/tmp/m8b2; $B/sgl make-model --arch llama-3-8b --layers 2 --seed 11 --out $d >/dev/null
el check-8b; timeout 40 $B/engine_gpu check $d > $OUT/check8b.log 2>&1; echo "rc=$?"; tail -3 $OUT/check8b.log | cut -c1-300
d1=/tmp/m1b; $B/sgl make-model --arch llama-3.2-1b --layers 2 --seed 11 --out $d1 --gguf q8_0 >/dev/null
el graphcheck; timeout 30 $B/engine_gpu graphcheck $d1 > $OUT/graph.log 2>&1; echo "rc=$?"; tail -2 $OUT/graph.log | cut -c1-300
el sample; timeout 35 $B/engine_gpu sample $d1 > $OUT/sample.log 2>&1; echo "rc=$?"; grep -E "seeded|sample_check|bench" $OUT/sample.log | cut -c1-300
rm -rf $d
el bench; log=$OUT/bench.log; : > $log
$B/bench_gpu --peaks | tee -a $log
d=/tmp/m8b; $B/sgl make-model --arch llama-3-8b --seed 1 --out $d > /dev/null
sglang_lens /tmp/lens.txt
el sglang-offline; timeout ${OFF_T:-125} $B/engine_gpu lens $d /tmp/lens.txt 0 8192 | tee -a $log
el engine-bench; SGL_BENCH_PREFILL=4096 timeout 70 $B/engine_gpu bench $d 64 256 256 0 8192 | tee -a $log | cut -c1-250
el program; program_bench $d 8 20 max_tokens=32 | tee -a $log
el peer-fast; PEER_BS=64 timeout 35 python3 $G/gpu_peer_fast.py 2>&1 | tail -1 | tee -a $log
python3 $G/summary.py $log | tee $OUT/summary.txt
el hf-peer; timeout 50 python3 $G/hf_generate_peer.py $d --in 256 --out 64 --batch 8 2>&1 | grep -v -i warn | tee -a $log
el gguf; timeout 25 $B/engine_gpu check $d1/model-q8_0.gguf > $OUT/gguf.log 2>&1; echo "rc=$?"; tail -2 $OUT/gguf.log | cut -c1-300
el constrained; for dev in cpu cuda; do timeout 15 $B/sgl run tests/gpu/constrained.sgl --json --model $d1 --device $dev > /tmp/c-$dev.json 2>&1; done
python3 $G/check_constrained.py /tmp/c-cpu.json /tmp/c-cuda.json
el tp; timeout 35 bash $G/tp.sh check allreduce > $OUT/tp.log 2>&1; echo "rc=$?"; grep -E "passed|FAIL|busbw|GB/s|identical" $OUT/tp.log | head -12 | cut -c1-200
python3 $G/summary.py $log > $OUT/summary2.txt; cat $OUT/summary2.txt | tail -4
el done
