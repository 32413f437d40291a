#!/bin/bash
# bench/gpu/decode.sh — the decode path's device call, from the folder
# bench/gpu/pack.sh made (this script copied beside device.sh). Logs to $OUT.
#   1. test_cuda_ops (every op against the CPU reference, the split-K decode
#      kernel included)
#   2. bench_decode: decode attention alone, row kernel vs split-K policies
#   3. engine_gpu graphcheck per arch (2 layers): graph replays == the same
#      padded steps op by op (greedy ids), and against plain steps
#   4. Llama-3-8B shape (32 layers): engine_gpu decode (forward at B x ctx,
#      row eager / split eager / split graph; batch-1 engine decode), the
#      offline run with split+graphs, a profile of one eager batch-1 step
#      (ncu), the offline run with the row kernel
# Env: CHECK=1 adds engine_gpu check per arch; NO_ROW_OFFLINE=1 skips the
# row-kernel offline run, NO_OFFLINE=1 both offline runs, NO_NCU=1 the profile. Each step has a time limit; steps that would start past BUDGET seconds are
# skipped (the device call's command limit).
G=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}
BUDGET=${BUDGET:-170}
mkdir -p "$OUT"
[ -d "$G/bin" ] || tar xJf "$G/bin.tar.xz" -C "$G"
export LD_LIBRARY_PATH=$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=$G/bin
T0=$(date +%s)
fail=0
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
step() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"

step test_cuda_ops
timeout 45 "$B/test_cuda_ops" > "$OUT/ops.log" 2>&1 || fail=1
grep -v "^ok" "$OUT/ops.log" | tail -12

step bench_decode
timeout 40 "$B/bench_decode" > "$OUT/bench_decode.log" 2>&1 || fail=1
python3 - "$OUT/bench_decode.log" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith('{"batch"'): continue
    r = json.loads(line)
    rows.setdefault((r["batch"], r["ctx"]), []).append(r)
for (b, c), rs in rows.items():
    print(f"B={b:<3} ctx={c:<5} " + " ".join(f'{r["policy"]}={r["us"]:.0f}us/{r["GB_s"]:.0f}' for r in rs)
          + f'  maxdiff={max(r["rel_diff_vs_row"] for r in rs):.1e}')
EOF

for arch in llama-3-8b llama-3.2-1b qwen2.5-7b; do
    [ "$(left)" -gt 100 ] || { echo "skipped graphcheck $arch (time)"; continue; }
    step "graphcheck $arch (2 layers)"
    d=/tmp/gc-$arch
    "$B/sgl" make-model --arch "$arch" --layers 2 --seed 11 --out "$d" > /dev/null || { fail=1; continue; }
    timeout 40 "$B/engine_gpu" graphcheck "$d" > "$OUT/graphcheck-$arch.log" 2>&1 || fail=1
    grep -E "ids_on|graphcheck\": \"(passed|FAILED)" "$OUT/graphcheck-$arch.log"
    if [ -n "$CHECK" ] && [ "$(left)" -gt 110 ]; then
        step "engine_gpu check $arch (CPU vs CUDA logits and ids)"
        timeout 30 "$B/engine_gpu" check "$d" >> "$OUT/graphcheck-$arch.log" 2>&1 || fail=1
        grep -E "teacher_forced|greedy_ids|check\"" "$OUT/graphcheck-$arch.log"
    fi
    rm -rf "$d"
done

d=/tmp/m8b
step "make-model llama-3-8b"
"$B/sgl" make-model --arch llama-3-8b --seed 1 --out "$d" > /dev/null || fail=1
if [ "$(left)" -gt 60 ]; then
    step "engine_gpu decode (8B)"
    timeout 60 "$B/engine_gpu" decode "$d" 2>&1 | tee "$OUT/decode8b.log" | grep -v '^{"backend' || fail=1
fi
if [ -z "$NO_OFFLINE" ] && [ "$(left)" -gt 35 ]; then
    step "offline 64 x 4096/512, split + graphs"
    timeout $(( $(left) - 5 )) "$B/engine_gpu" offline "$d" 64 4096 512 split on 2>&1 | tee -a "$OUT/decode8b.log" | grep offline
fi
if [ -z "$NO_NCU" ] && [ "$(left)" -gt 30 ] && command -v ncu > /dev/null; then
    step "ncu: one eager batch-1 step at ctx 1024"
    timeout 40 ncu --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \
        "$B/engine_gpu" prof "$d" 1 1024 > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
    grep '"prof"' "$OUT/ncu.csv"
    python3 - "$OUT/ncu.csv" <<'EOF' | tee "$OUT/ncu-summary.txt"
import csv, sys, collections
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum": continue
    name = r["Kernel Name"].split("(")[0][:60]
    v = float(r["Metric Value"].replace(",", ""))
    tot[name] += v; cnt[name] += 1
s = sum(tot.values())
print(f"kernels {sum(cnt.values())}, sum of durations {s/1e3:.1f} us")
for k, v in sorted(tot.items(), key=lambda kv: -kv[1])[:14]:
    print(f"{v/1e3:9.1f} us {100*v/s:5.1f}%  x{cnt[k]:<4} {k}")
EOF
fi
if [ -z "$NO_ROW_OFFLINE" ] && [ "$(left)" -gt 35 ]; then
    step "offline 64 x 4096/512, row kernel, no graphs (baseline)"
    timeout $(( $(left) - 3 )) "$B/engine_gpu" offline "$d" 64 4096 512 row off 2>&1 | tee -a "$OUT/decode8b.log" | grep offline
fi
rm -rf "$d"
step end
[ $fail = 0 ] && echo "decode.sh: all passed" || echo "decode.sh: FAILED"
exit $fail
