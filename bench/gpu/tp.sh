#!/bin/bash
# bench/gpu/tp.sh MODE... — tensor parallelism on the GPU machine (issue 12),
# from the folder bench/gpu/pack.sh made (its own directory). Logs to $OUT.
#   check      2-layer llama-3-8b-shaped checkpoint (make-model): tp_gpu check
#              at tp 1 through NCCL vs the plain path (bit-identical logits,
#              identical ids), `sgl generate --tp 1 --tp-comm nccl` vs plain;
#              then tp 2/4/8 vs plain wherever that many GPUs are visible
#   allreduce  nccl-tests-style bus bandwidth, 1 MiB .. 1 GiB bf16, at N = 1
#              and at every GPU count 2/4/8 visible
#   bench      the Llama-3-8B shape at tp 1 vs 2 (tp 1 plain and through
#              NCCL on one GPU), then Llama-3-70B at tp 2/4/8: batch-1
#              decode and offline throughput; whatever does not fit (GPUs,
#              memory, disk for the 140 GB checkpoint) is skipped and said
# Env: TP_REQ TP_IN TP_OUT (offline workload, default 64 x 512 / 128).
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# never NVLink multicast (sgl sets it too, before NCCL starts)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -z "$SGL_NCCL_LIB" ]; then
    SGL_NCCL_LIB=$(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2 /{print $NF; exit}')
    [ -n "$SGL_NCCL_LIB" ] || SGL_NCCL_LIB=$(find /usr /opt -name 'libnccl.so.2' 2>/dev/null | head -1)
fi
export SGL_NCCL_LIB
B=$G/bin
set -o pipefail   # a failing program fails its `| tee` line
fail=0
nvidia-smi --query-gpu=index,name,memory.total,clocks.sm --format=csv,noheader
NGPU=$(nvidia-smi -L | wc -l)
echo "GPUs: $NGPU; libnccl: ${SGL_NCCL_LIB:-not found}"
for mode in "$@"; do
case $mode in
check)
    d=/tmp/tp-mm
    "$B/sgl" make-model --arch llama-3-8b --layers 2 --seed 11 --out "$d" >/dev/null || { fail=1; continue; }
    "$B/tp_gpu" check "$d" 1 2>&1 | tee "$OUT/tp-check-1.log" | tail -4 || fail=1
    grep -q "check tp 1: passed" "$OUT/tp-check-1.log" || fail=1
    for tp in plain nccl; do
        args=(); [ $tp = nccl ] && args=(--tp 1 --tp-comm nccl)
        "$B/sgl" generate --model "$d" --device cuda "${args[@]}" --temperature 0 --max-tokens 24 --ignore-eos \
            "The quick brown fox jumps over the lazy dog" > "/tmp/tp-gen-$tp.txt" 2>&1 || fail=1
    done
    if cmp -s /tmp/tp-gen-plain.txt /tmp/tp-gen-nccl.txt; then echo "sgl generate: --tp 1 --tp-comm nccl == plain"
    else echo "sgl generate: --tp 1 --tp-comm nccl != plain"; head -c 300 /tmp/tp-gen-nccl.txt; echo; fail=1; fi
    for tp in 2 4 8; do
        [ "$NGPU" -ge $tp ] || { echo "check tp $tp: skipped ($NGPU GPU(s))"; continue; }
        "$B/tp_gpu" check "$d" $tp 2>&1 | tee "$OUT/tp-check-$tp.log" | tail -3
        grep -q "check tp $tp: passed" "$OUT/tp-check-$tp.log" || fail=1
    done
    rm -rf "$d"
    ;;
allreduce)
    for n in 1 2 4 8; do
        [ "$NGPU" -ge $n ] || { echo "allreduce $n: skipped ($NGPU GPU(s))"; continue; }
        "$B/tp_gpu" allreduce $n 2>&1 | tee -a "$OUT/tp-allreduce.log" || fail=1
    done
    ;;
bench)
    R=${TP_REQ:-64}; I=${TP_IN:-512}; O=${TP_OUT:-128}
    d=/tmp/tp-m8b
    "$B/sgl" make-model --arch llama-3-8b --seed 1 --out "$d" >/dev/null || { fail=1; continue; }
    for tp in 0 1 2; do
        [ "$NGPU" -ge $(( tp > 0 ? tp : 1 )) ] || { echo "8b tp $tp: skipped ($NGPU GPU(s))"; continue; }
        echo "--- llama-3-8b, tp $tp (0: plain, no communicator)"
        "$B/tp_gpu" bench "$d" $tp "$R" "$I" "$O" 2>&1 | tee -a "$OUT/tp-bench.log" || fail=1
    done
    rm -rf "$d"
    if [ "$NGPU" -lt 2 ]; then echo "llama-3-70b: skipped (140 GB of bf16 needs tp >= 2 on 80 GB GPUs; $NGPU GPU)"
    else
        need=$((150 * 1024 * 1024)); have=$(df -k --output=avail /tmp | tail -1)
        if [ "$have" -lt "$need" ]; then echo "llama-3-70b: skipped ($((have / 1048576)) GB free on /tmp, 150 needed)"
        else
            d=/tmp/tp-m70b
            t0=$(date +%s)
            "$B/sgl" make-model --arch llama-3-70b --seed 1 --out "$d" >/dev/null || { fail=1; continue; }
            echo "make-model llama-3-70b: $(( $(date +%s) - t0 )) s"
            for tp in 2 4 8; do
                [ "$NGPU" -ge $tp ] || { echo "70b tp $tp: skipped ($NGPU GPU(s))"; continue; }
                echo "--- llama-3-70b, tp $tp"
                "$B/tp_gpu" bench "$d" $tp "$R" "$I" "$O" 2>&1 | tee -a "$OUT/tp-bench.log" || fail=1
            done
            rm -rf "$d"
        fi
    fi
    ;;
esac
done
[ $fail = 0 ] && echo "tp.sh: all passed" || echo "tp.sh: FAILED"
exit $fail
