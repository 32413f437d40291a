#!/bin/sh
# tests/gpu/run.sh [BINDIR] — the CUDA backend's correctness on the GPU machine:
#  1. every CUDA op against the CPU reference (test_cuda_ops);
#  2. the engine's model on the CUDA backend, per architecture (random-weight
#     checkpoints from `sgl make-model`, 2 layers: llama-3.2-1b, qwen2.5-7b,
#     llama-3-8b): engine_gpu check (CPU vs CUDA engine greedy ids alone /
#     batched / chunked with the prefix cache, teacher-forced logits within
#     CHECK_TOL), then transformers on the same ids (e2e_logits.py: within
#     bf16 tolerance of the f32 reference);
#  3. bench_gpu's own Llama-shaped forward against transformers (--e2e);
#  4. GGUF files (make-model --gguf q8_0, q4_0, q4_k, q6_k) through engine_gpu check;
#  5. constrained generation (tests/gpu/constrained.sgl) on the CPU and the
#     GPU, every value checked against its constraint.
# BINDIR holds sgl, engine_gpu, test_cuda_ops and bench_gpu (default build/gpu
# plus build/sgl). bench/gpu/device.sh check runs 1-2 from the packed folder.
# Exit 1 if any fails.
B=${1:-build/gpu}
SGL=${SGL:-$B/sgl}
[ -x "$SGL" ] || SGL=build/sgl
here=$(dirname "$0")
fail=0
"$B/test_cuda_ops" || fail=1
for arch in llama-3.2-1b qwen2.5-7b llama-3-8b; do
    d=$(mktemp -d)
    if "$SGL" make-model --arch "$arch" --layers 2 --seed 11 --out "$d" && "$B/engine_gpu" check "$d" "$d"; then
        python3 "$here/e2e_logits.py" "$d" 2>&1 | grep -v -i -e warn -e "loading weights" || fail=1
    else
        fail=1
    fi
    rm -rf "$d"
done
for shape in llama-3-8b-2l llama-3.2-1b-4l; do
    d=$(mktemp -d)
    if "$B/bench_gpu" --e2e "$d" "$shape"; then
        python3 "$here/e2e_logits.py" "$d" 2>&1 | grep -v -i warn || fail=1
    else
        fail=1
    fi
    rm -rf "$d"
done
# GGUF weights (make-model --gguf), dequantized at load: engine_gpu check on q8_0, q4_0, q4_k and q6_k files
d=$(mktemp -d)
for q in q8_0 q4_0 q4_k q6_k; do
    "$SGL" make-model --arch llama-3.2-1b --layers 2 --seed 11 --out "$d" --gguf $q >/dev/null &&
        "$B/engine_gpu" check "$d/model-$q.gguf" || fail=1
done
rm -rf "$d"
# constrained generation on both devices (regex, JSON Schema, grammar)
d=$(mktemp -d)
if "$SGL" make-model --arch llama-3.2-1b --layers 2 --seed 11 --out "$d" >/dev/null; then
    for dev in cpu cuda; do "$SGL" run "$here/constrained.sgl" --json --model "$d" --device $dev > "$d/$dev.json" 2>&1; done
    python3 "$here/check_constrained.py" "$d/cpu.json" "$d/cuda.json" || fail=1
else
    fail=1
fi
rm -rf "$d"
[ $fail = 0 ] && echo "tests/gpu: all passed" || echo "tests/gpu: FAILED"
exit $fail
